"""The public API (issue 16): ``__all__`` is what docs/api.md documents, ``import trt_pose_td``
loads no heavy library until a pipeline is opened, the README's Python example runs as written,
and mypy both passes the examples and rejects wrong calls."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import trt_pose_td

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("tensorrt", "cuda", "onnxruntime", "cv2", "onnx", "paho", "pycocotools")


def run_python(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_all_is_exactly_what_docs_api_md_documents():
    documented = re.findall(r"^### `([A-Za-z_]+)`", (REPO / "docs/api.md").read_text(), re.M)
    assert documented == trt_pose_td.__all__
    assert sorted(trt_pose_td._EXPORTS) == sorted(trt_pose_td.__all__[1:])  # lazy table too
    for name in trt_pose_td.__all__:  # every documented name resolves
        assert getattr(trt_pose_td, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'CpuPipeline'"):
        trt_pose_td.CpuPipeline  # type: ignore[attr-defined]  # noqa: B018 (internal)


LAZY = """
import json, sys
before = set(sys.modules)
import trt_pose_td as tpt
names = [getattr(tpt, n) for n in tpt.__all__]
heavy = lambda: sorted({m.split('.')[0] for m in set(sys.modules) - before} & set(HEAVY))
loaded = heavy()
with tpt.open_pipeline() as pipeline:
    print(json.dumps([loaded, heavy(), pipeline.backend]))
"""


def test_import_loads_no_heavy_library_until_a_pipeline_is_opened():
    """Modules loaded at interpreter start (a .pth may import a ``cuda`` namespace) do not
    count; opening a pipeline must then load ONNX Runtime (so the check can fail)."""
    proc = run_python(f"HEAVY = {HEAVY!r}\n" + LAZY)
    assert proc.returncode == 0, proc.stderr
    on_import, after_open, backend = json.loads(proc.stdout.strip().splitlines()[-1])
    assert on_import == []
    assert backend == "onnxruntime" and "onnxruntime" in after_open


def test_open_pipeline_options_are_the_config_fields():
    """The TypedDict that types ``open_pipeline(**options)`` names every PipelineConfig field
    (a field added to one and not the other fails here), and untyped callers still get a
    one-line ConfigError for an unknown option."""
    from dataclasses import fields

    from trt_pose_td.api import PipelineOptions

    config_fields = [f.name for f in fields(trt_pose_td.PipelineConfig)]
    assert list(PipelineOptions.__annotations__) == config_fields
    with pytest.raises(trt_pose_td.ConfigError, match="unknown pipeline option.*backnd"):
        trt_pose_td.open_pipeline(backnd="auto")  # type: ignore[call-arg]


def readme_python_example() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("## Use it from Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]


def test_readme_python_example_runs_as_written():
    code = readme_python_example()
    assert len(code.strip().splitlines()) <= 5
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    people, shape = re.fullmatch(r"(\d+) people, keypoints \((\d+), 17, 3\)\n",
                                 proc.stdout).groups()  # type: ignore[union-attr]
    assert people == shape and int(people) >= 5  # the sample photo shows ~14 people


def mypy(*args: str) -> subprocess.CompletedProcess:
    """``mypy --strict`` on ``args`` against this checkout's package, as a user's checker sees an
    installed typed package: its types used, its own errors not reported (silent)."""
    pytest.importorskip("mypy")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent",
                           "--no-incremental", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)


BAD = """\
import trt_pose_td as tpt
with tpt.open_pipeline() as pipeline:
    result = pipeline(tpt.sample_image(), detections=[[0, 0, 10, 10]])
    tpt.draw(result.frame.image, result.poses.keypoints)
    tpt.open_pipline()
    count: str = len(result.poses)
tpt.open_pipeline(backnd="auto")
tpt.open_pipeline(det_size="640")
"""


@pytest.mark.slow
def test_examples_typecheck_strictly_and_wrong_calls_are_rejected(tmp_path):
    proc = mypy("examples")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    bad = tmp_path / "bad.py"
    bad.write_text(BAD)
    proc = mypy(str(bad))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = {int(m) for m in re.findall(r"bad\.py:(\d+): error", proc.stdout)}
    assert lines == {3, 4, 5, 6, 7, 8}, proc.stdout


def test_leaving_the_with_block_closes_the_engines(sample_photo):
    """(The GPU pipeline's ``__exit__`` is checked by mypy: open_pipeline returns it as a
    ``Pipeline``, whose protocol includes ``__exit__``.)"""
    with trt_pose_td.open_pipeline() as pipeline:
        assert len(pipeline(sample_photo).poses) >= 5
    with pytest.raises(trt_pose_td.EngineError, match="closed"):
        pipeline(sample_photo)
    pipeline.close()  # idempotent
