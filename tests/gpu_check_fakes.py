"""FAKES of the GPU machine for ``tests/test_gpu_check.py``: a ``python`` and an ``nvidia-smi``
that ``bench/gpu_check.sh`` runs instead of the real ones (NOT a GPU, NOT TensorRT).

The fake python appends every command line to ``$FAKE_LOG`` (one JSON list per line) and answers
as the real command would on a GPU machine, from the scenario in ``$FAKE_SCENARIO`` (JSON):

- ``-c CODE``: the script's environment, TensorRT-version and kernel self-test probes get canned
  answers; any other code (the gate recorder) runs for real;
- ``-m pytest``: one summary line, exit ``pytest_rc`` (default 0);
- ``-m trt_pose_td build``: writes the engine files and sidecars the real builder names into
  ``--output`` (the keypoint engine's file holds its profile max from ``--pose-batch``) and a
  timing cache; exit 2 for a precision in ``fail_build`` (``"int8"``, or ``"int8-b1"`` for the
  batch-1 keypoint build);
- ``-m trt_pose_td eval``: refuses (exit 2) like the real one when the engine folder lacks an
  engine or the keypoint engine's max exceeds ``--keypoint-batch``; else writes summary.json
  with AP ``ap[KEY]`` (KEY ``ort``, ``fp16-b1``, ``fp16-b32``, ...) and, with ``--compare``,
  runs the REAL gate (:func:`trt_pose_td.cli.eval.gate`: the drop arithmetic, the verdict in
  summary.json, exit 1 on a failed gate);
- ``-m trt_pose_td precompile`` / ``bench``: a line of output (bench writes its ``--json``).
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

PYTHON = r'''#!{python}
import argparse, json, os, sys
from pathlib import Path

argv = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(argv) + "\n")
SCENARIO = json.loads(os.environ.get("FAKE_SCENARIO", "{{}}"))
DETECTOR, POSE = "rtmdet_nano_person_raw", "pp_tinypose_256x192"


def engine_name(model, precision):
    mode = "int8-qdq" if precision == "int8" else precision
    return f"{{model}}.{{mode}}.engine"


def build(rest):
    p = argparse.ArgumentParser()
    for flag in ("--precision", "--output", "--only", "--detector", "--tactic-sources"):
        p.add_argument(flag)
    p.add_argument("--pose-batch", action="append")
    args, _ = p.parse_known_args(rest)
    batch1 = args.pose_batch == ["1"]
    key = args.precision + ("-b1" if batch1 else "")
    if key in SCENARIO.get("fail_build", []):
        print(f"trt-pose-td build: error: out of GPU memory ({{key}})", file=sys.stderr)
        return 2
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    top = int((args.pose_batch or ["1,8,32"])[-1].split(",")[-1])
    roles = [args.only] if args.only else ["detector", "pose"]
    for role in roles:
        model = args.detector if role == "detector" else POSE
        path = out / engine_name(model, args.precision)
        path.write_text(json.dumps({{"role": role, "max_batch": top if role == "pose" else 1}}))
        Path(str(path) + ".json").write_text("{{}}")
    (out / "timing-trt8.5.3.1-sm90.cache").write_bytes(b"timing")
    print(f"built {{roles}} {{args.precision}} into {{out}}")
    return 0


def evaluate(rest):
    p = argparse.ArgumentParser()
    for flag in ("-o", "--backend", "--precision", "--engine-dir", "--compare", "--detector"):
        p.add_argument(flag)
    p.add_argument("--keypoint-batch", type=int)
    p.add_argument("--max-drop", type=float, default=1.0)
    p.add_argument("--max-images", type=int, default=0)
    args, _ = p.parse_known_args(rest)
    if args.backend == "tensorrt":
        engines = Path(args.engine_dir)
        pose = engines / engine_name(POSE, args.precision)
        det = engines / engine_name(args.detector, args.precision)
        missing = [str(e) for e in (det, pose) if not e.is_file()]
        if missing:
            print(f"trt-pose-td eval: error: no TensorRT engine {{missing}}", file=sys.stderr)
            return 2
        batch = json.loads(pose.read_text())["max_batch"]
        if args.keypoint_batch is not None and batch > args.keypoint_batch:
            print(f"trt-pose-td eval: error: --keypoint-batch {{args.keypoint_batch}}: engine max "
                  f"{{batch}}", file=sys.stderr)
            return 2
        key = f"{{args.precision}}-b{{batch}}"
    else:
        batch, key = 8, "ort"
    summary = {{"keypoints": {{"AP": SCENARIO["ap"][key]}}, "bbox": None,
                "annotations": "coco/annotations/person_keypoints_val2017_dev.json",
                "images": args.max_images or 225,
                "config": {{"keypoint_batch": batch, "precision": args.precision,
                           "backend": args.backend}}}}
    code = 0
    if args.compare:
        from trt_pose_td.cli.eval import gate
        from trt_pose_td.benchmarks.evaluate import read_summary

        ns = argparse.Namespace(compare=args.compare, max_drop=args.max_drop,
                                compare_metrics="keypoints.AP")
        ok, lines = gate(summary, ns, read_summary(Path(args.compare)))
        print("\n".join(lines))
        code = 0 if ok else 1
    out = Path(args.o)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary))
    return code


def main():
    if argv[0] == "-c":
        code = argv[1]
        if "tensorrt" in argv[2:] or "import tensorrt" in code or "Device(0)" in code:
            print("8.5.3.1" if "__version__" in code else "python 3.10 (fake), no GPU")
            return 0
        sys.argv = ["-c", *argv[2:]]
        exec(compile(code, "<string>", "exec"), {{"__name__": "__main__"}})
        return 0
    if argv[:2] == ["-m", "pytest"]:
        print("3 passed (fake)")
        return SCENARIO.get("pytest_rc", 0)
    command, rest = argv[2], argv[3:]
    if command == "build":
        return build(rest)
    if command == "eval":
        return evaluate(rest)
    if command == "bench" and "--json" in rest:
        Path(rest[rest.index("--json") + 1]).write_text("{{}}")
    print(f"{{command}} (fake)")
    return 0


sys.exit(main())
'''

NVIDIA_SMI = """#!/bin/sh
echo "name, driver_version, memory.total [MiB], compute_cap"
echo "FAKE GPU (no GPU), 000.00, 1 MiB, 9.0"
"""


def install(bin_dir: Path) -> Path:
    """Write the fake ``python`` and ``nvidia-smi`` into ``bin_dir``; the fake python's path."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, text in (("python", PYTHON.format(python=sys.executable)),
                       ("nvidia-smi", NVIDIA_SMI)):
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return bin_dir / "python"


def path_with(bin_dir: Path) -> str:
    return f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
