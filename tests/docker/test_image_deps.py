"""The Jetson images' dependencies resolve for their own Python and aarch64 (issue 19 item 7).

scripts/container/check-jetson-deps.sh (scripts/container/image_deps.py) asks PyPI, as pip in
the image would, for the install set of docker/Dockerfile.jetson per JetPack, wheels only. The
network tests are ``slow`` (CI runs them) and skip only when PyPI cannot be reached; the old
JetPack 5 file (packaging==26.3: Requires-Python >= 3.9; numpy 1.24.4: TensorRT 8.5's nptype)
must fail, naming both.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "scripts" / "container" / "image_deps.py"
CHECK = REPO / "scripts" / "container" / "check-jetson-deps.sh"
JP5 = REPO / "docker" / "constraints-jp5.txt"


def load_tool():
    spec = importlib.util.spec_from_file_location("image_deps", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules["image_deps"] = module
    spec.loader.exec_module(module)
    return module


deps = load_tool()


def run(*argv: str) -> subprocess.CompletedProcess:
    """The tool as CI runs it; skips when the index cannot be reached (exit 3)."""
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run([*argv], capture_output=True, text=True, timeout=600, env=env,
                          cwd=REPO)
    if proc.returncode == deps.EXIT_OFFLINE:
        pytest.skip(proc.stderr.strip())
    return proc


def check(image: str, constraints: Path) -> subprocess.CompletedProcess:
    return run(sys.executable, str(TOOL), "check", image, "--constraints", str(constraints))


# -- offline: what the tool reads from the Dockerfile -------------------------------------------
def install_words(image: str):
    img = deps.IMAGES[image]
    text = (REPO / img.dockerfile).read_text()
    return deps.pip_install_requirements(text, deps.dockerfile_args(text, img.build_args))


def test_the_install_line_is_read_per_jetpack():
    jp6 = install_words("jetson")
    assert jp6 == ["pip", "numpy<2", "numpy<1.24; python_version < '3.9'",
                   "cuda-python>=12.6,<13", "onnx>=1.14", "onnxruntime>=1.15", ".[service,track]"]
    assert install_words("jp5")[3] == "cuda-python>=11.8,<11.8.3"


def test_markers_are_evaluated_for_the_images_python_not_this_one():
    Requirement = deps.Requirement
    jp5, jp6 = deps.IMAGES["jp5"], deps.IMAGES["jetson"]
    numpy = Requirement("numpy<1.24; python_version < '3.9'")
    assert deps.applies(numpy, jp5) and not deps.applies(numpy, jp6)
    tomli = Requirement('tomli>=1.2; python_version < "3.11"')
    assert deps.applies(tomli, jp5) and deps.applies(tomli, jp6)  # this interpreter: 3.11
    old_cuda = Requirement('cuda-python<11.8.3,>=11.8; python_version < "3.10" and extra == "trt"')
    assert deps.applies(old_cuda, jp5, ["trt"]) and not deps.applies(old_cuda, jp5, ["service"])
    assert not deps.applies(old_cuda, jp6, ["trt"])
    assert jp5.platforms[0] == "manylinux2014_aarch64" and jp5.platforms[-1] == \
        "manylinux_2_31_aarch64"


def test_pins_outside_the_install_lines_ranges_are_named(tmp_path):
    old = tmp_path / "jp5.txt"
    old.write_text("numpy==1.24.4\npackaging==26.2\n")
    reqs = [deps.Requirement("numpy<2"), deps.Requirement("numpy<1.24")]
    assert deps.pins_outside_ranges(deps.read_pins(old), reqs) == [
        "numpy==1.24.4 (line 1) is outside numpy<1.24, which the image installs"]


def build_args_in(text: str, tag: str) -> Dict[str, str]:
    """The --build-arg values of the `docker build ... -t TAG` command in ``text``."""
    joined = re.sub(r"\\\n#?\s*", " ", text)
    command = next(line for line in joined.splitlines() if f"-t {tag}" in line)
    words = shlex.split(command.lstrip("# "))
    return dict(words[i + 1].split("=", 1) for i, w in enumerate(words) if w == "--build-arg")


@pytest.mark.parametrize("doc", ["docker/Dockerfile.jetson", "docker/README.md"])
def test_the_documented_jetpack5_build_is_the_one_checked(doc):
    assert build_args_in((REPO / doc).read_text(), "trt-pose-td:jp5") == \
        deps.IMAGES["jp5"].build_args


# -- against PyPI -------------------------------------------------------------------------------
@pytest.mark.slow
def test_both_jetpacks_install_from_wheels():
    proc = run(str(CHECK))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "jp5: ok" in proc.stdout and "jetson: ok" in proc.stdout
    assert "every one a wheel for Python 3.8 on aarch64" in proc.stdout


@pytest.mark.slow
def test_the_old_jetpack5_file_fails_naming_each_bad_pin(tmp_path):
    old = tmp_path / "constraints-jp5.txt"  # main at 6a4d860, before this fix
    old.write_text(JP5.read_text().replace("numpy==1.23.5", "numpy==1.24.4")
                   .replace("packaging==26.2", "packaging==26.3"))
    proc = check("jp5", old)
    assert proc.returncode == deps.EXIT_PROBLEM, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert any("packaging==26.3" in ln and "Requires-Python >=3.9 excludes Python 3.8" in ln
               and "newest that installs: packaging==26.2" in ln for ln in lines), lines
    assert any("numpy==1.24.4" in ln and "outside numpy<1.24" in ln for ln in lines), lines
    assert "jp5: FAILED" in proc.stdout


@pytest.mark.slow
def test_a_source_only_pin_and_an_unpinned_package_fail(tmp_path):
    sdist = tmp_path / "sdist.txt"
    sdist.write_text(JP5.read_text().replace("lap==0.5.13", "lap==0.4.0"))
    proc = check("jp5", sdist)
    assert proc.returncode == deps.EXIT_PROBLEM
    assert "lap==0.4.0" in proc.stderr and "only a source distribution" in proc.stderr
    unpinned = tmp_path / "unpinned.txt"
    unpinned.write_text("".join(ln for ln in JP5.read_text().splitlines(keepends=True)
                                if not ln.startswith("tqdm==")))
    proc = check("jp5", unpinned)
    assert proc.returncode == deps.EXIT_PROBLEM
    assert re.search(r"tqdm==\S+ is installed but not pinned", proc.stderr), proc.stderr
