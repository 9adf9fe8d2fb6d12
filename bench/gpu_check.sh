#!/usr/bin/env bash
# One-shot verification of the GPU runtime on a GPU machine (issue "GPU runtime", items 6 and 7):
#   1. environment + kernel compile on the device (`trt-pose-td precompile`)
#   2. pytest -m gpu  (kernels vs numpy twins, TrtEngine, conformance suite, GPU vs CPU pipeline)
#   3. engines for the default models (the builder when present, else the test helper)
#   4. trt-pose-td bench --backend tensorrt (fp16, then fp32)
# Writes at most 7 files to $OUT (default out/gpu_check). Run from the repository root:
#   OUT=/some/dir bash bench/gpu_check.sh
# Assumes: an NVIDIA driver; $PYTHON (default python3.10) importing tensorrt, cuda-python (NVRTC),
# numpy, cv2, pytest, onnx, onnxruntime, tqdm, packaging (the gpu-stage payload: see
# ../shared/tools/gpu-stage/README.md, e.g. `make_stage.sh .gpu-stage pytest
# "opencv-python-headless<5" onnx onnxruntime tqdm packaging`); the data mirror at
# $TRT_POSE_TD_MIRROR, ./shared or ../shared (models/, coco/val2017, crowd/MOT17).
# Knobs: PYTEST_TIMEOUT (s, default 420), BENCH_FRAMES (default 8), BENCH_REPEAT (default 2).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu_check}
PY=${PYTHON:-python3.10}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TRT_POSE_TD_CACHE=${TRT_POSE_TD_CACHE:-/tmp/trt_pose_td_cache}
if [ -z "${TRT_POSE_TD_MIRROR:-}" ]; then
    for d in shared ../shared; do
        [ -d "$d/models" ] && TRT_POSE_TD_MIRROR="$(cd "$d" && pwd)" && break
    done
fi
export TRT_POSE_TD_MIRROR=${TRT_POSE_TD_MIRROR:-}
ENGINES="$TRT_POSE_TD_CACHE/engines"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
note() { echo "$*" | tee -a "$SUMMARY"; }
step() {  # step NAME TIMEOUT_S LOGFILE CMD...: run, log, record rc and seconds
    local name=$1 limit=$2 log=$3; shift 3
    local t0=$SECONDS
    timeout "$limit" "$@" >> "$log" 2>&1
    local rc=$?
    note "$(printf '%-28s rc=%-3s %4ss  (%s)' "$name" "$rc" "$((SECONDS - t0))" "$(basename "$log")")"
    return $rc
}

# 1. environment and kernels --------------------------------------------------------------------
SETUP="$OUT/setup.txt"
{
    nvidia-smi -L || echo "nvidia-smi missing"
    nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv || true
    "$PY" - <<'EOF'
import importlib, sys
print("python", sys.version.split()[0])
for m in ("tensorrt", "cuda.bindings", "numpy", "cv2", "onnx", "onnxruntime", "pytest"):
    try:
        mod = importlib.import_module(m)
        print(f"{m:14s} {getattr(mod, '__version__', '?')}")
    except Exception as exc:  # report, do not stop
        print(f"{m:14s} MISSING ({exc})")
from trt_pose_td.cuda.driver import Device
from trt_pose_td.cuda.nvrtc import nvrtc_version
with Device(0) as d:
    print("device", d.info)
print("nvrtc", nvrtc_version())
EOF
} >> "$SETUP" 2>&1
note "mirror: ${TRT_POSE_TD_MIRROR:-none}  cache: $TRT_POSE_TD_CACHE"
step "precompile (this GPU)" 120 "$SETUP" "$PY" -m trt_pose_td precompile --force

# 2. gpu-marked tests ---------------------------------------------------------------------------
step "pytest -m gpu" "${PYTEST_TIMEOUT:-420}" "$OUT/pytest-gpu.txt" \
    "$PY" -m pytest -m gpu -rs -q -p no:cacheprovider -o log_cli=true --log-cli-level=WARNING \
    tests/cuda tests/engines tests/test_gpu_pipeline.py
tail -n 3 "$OUT/pytest-gpu.txt" | tee -a "$SUMMARY"

# 3. engines for the default models --------------------------------------------------------------
BUILD_LOG="$OUT/engines.txt"
mkdir -p "$ENGINES"
if "$PY" -c "import trt_pose_td.build" >/dev/null 2>&1 && \
        "$PY" -m trt_pose_td build --help >> "$BUILD_LOG" 2>&1; then
    for p in fp16 fp32; do
        step "builder: $p" 300 "$BUILD_LOG" "$PY" -m trt_pose_td build --precision "$p" \
            --engine-dir "$ENGINES" || true
    done
fi
step "engines (test helper)" 300 "$BUILD_LOG" "$PY" - "$ENGINES" <<'EOF'
import sys
from pathlib import Path
from tests.engines.trt_build import build_engine
from trt_pose_td.assets import model_path
from trt_pose_td.engine_meta import engine_filename
from trt_pose_td.models import get_spec
out = Path(sys.argv[1])
for precision in ("fp16", "fp32"):
    for name, role, batch, hw in (("rtmdet_nano_person", "detector", (1, 1, 1), (320, 320)),
                                  ("pp_tinypose_256x192", "pose", (1, 16, 64), None)):
        path = out / engine_filename(name, precision)
        if path.is_file():
            print("exists", path)
            continue
        build_engine(model_path(get_spec(name), False), path, role, precision == "fp16", batch,
                     hw, model=name)
        print("built", path)
EOF

# 4. bench ---------------------------------------------------------------------------------------
for p in fp16 fp32; do
    JSON=()
    [ "$p" = fp16 ] && JSON=(--json "$OUT/bench-fp16.json")  # one JSON: few files come back
    step "bench tensorrt $p" 240 "$OUT/bench-$p.txt" "$PY" -m trt_pose_td bench -q \
        --backend tensorrt --engine-dir "$ENGINES" --precision "$p" \
        --max-frames "${BENCH_FRAMES:-8}" --repeat "${BENCH_REPEAT:-2}" ${JSON[@]+"${JSON[@]}"} || true
done
note "done: $(ls "$OUT" | tr '\n' ' ')"
