#!/usr/bin/env bash
# One-shot verification of the GPU runtime on a GPU machine; stops at the first failing step.
#   1. environment + kernel compile on the device (`trt-pose-td precompile`)
#   2. pytest -m gpu  (kernels vs numpy twins, TrtEngine, conformance suite, GPU vs CPU pipeline)
#   3. engines for the default models with the product's builder (`trt-pose-td build`)
#   4. trt-pose-td bench --backend tensorrt (fp16, then fp32)
# Writes at most 7 files to $OUT (default out/gpu_check), each as its step runs; summary.txt
# has one line per step and, on a failure, the tail of the failing step's log. Run from anywhere:
#   OUT=/some/dir bash bench/gpu_check.sh
# Assumes: an NVIDIA driver; $PYTHON (default python3.10) importing tensorrt, cuda-python (NVRTC),
# numpy, cv2, pytest, onnx, onnxruntime, tqdm, packaging (the gpu-stage payload: see
# ../shared/tools/gpu-stage/README.md, e.g. `make_stage.sh .gpu-stage pytest
# "opencv-python-headless<5" onnx onnxruntime tqdm packaging`); the data mirror at
# $TRT_POSE_TD_MIRROR, ./shared or ../shared (models/, coco/val2017, crowd/MOT17).
# Knobs: PYTEST_TIMEOUT (s, default 420), BENCH_FRAMES (default 8), BENCH_REPEAT (default 2),
# DETECTOR (default rtmdet_nano_person_raw: the NMS-in-graph export needs TensorRT >= 8.6),
# NO_CUBLAS_CUDNN (auto: on for TensorRT 8.5, whose staged cuBLAS/cuDNN are link-time stand-ins).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu_check}
PY=${PYTHON:-python3.10}
DETECTOR=${DETECTOR:-rtmdet_nano_person_raw}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TRT_POSE_TD_CACHE=${TRT_POSE_TD_CACHE:-/tmp/trt_pose_td_cache}
if [ -z "${TRT_POSE_TD_MIRROR:-}" ]; then
    for d in shared ../shared; do
        if [ -d "$d/models" ]; then
            TRT_POSE_TD_MIRROR="$(cd "$d" && pwd)"
            break
        fi
    done
fi
export TRT_POSE_TD_MIRROR=${TRT_POSE_TD_MIRROR:-}
ENGINES="$TRT_POSE_TD_CACHE/engines"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
note() { echo "$*" | tee -a "$SUMMARY"; }
step() {  # step NAME TIMEOUT_S LOGFILE CMD...: run, log, record rc and seconds; exit on failure
    local name=$1 limit=$2 log=$3 rc=0
    shift 3
    local t0=$SECONDS
    echo "+ $*" >> "$log"
    timeout "$limit" "$@" >> "$log" 2>&1 || rc=$?
    note "$(printf '%-28s rc=%-3s %4ss  (%s)' "$name" "$rc" "$((SECONDS - t0))" "$(basename "$log")")"
    if [ "$rc" -ne 0 ]; then
        local why="rc $rc"
        if [ "$rc" -eq 124 ]; then
            why="timed out after ${limit}s"
        fi
        note "FAILED: $name ($why); last lines of $(basename "$log"):"
        tail -n 25 "$log" | tee -a "$SUMMARY" >&2
        exit "$rc"
    fi
}

# 1. environment and kernels --------------------------------------------------------------------
SETUP="$OUT/setup.txt"
: > "$SETUP"
note "mirror: ${TRT_POSE_TD_MIRROR:-none}  cache: $TRT_POSE_TD_CACHE  detector: $DETECTOR"
step "nvidia-smi" 60 "$SETUP" nvidia-smi \
    --query-gpu=name,driver_version,memory.total,compute_cap --format=csv
ENV_CHECK=$(cat <<'EOF'
import importlib, sys
print("python", sys.version.split()[0])
missing = []
for m in ("tensorrt", "numpy", "cv2", "onnx", "onnxruntime", "pytest", "tqdm", "packaging"):
    try:
        print(f"{m:14s}", getattr(importlib.import_module(m), "__version__", "?"))
    except Exception as exc:
        missing.append(f"{m} ({exc})")
if missing:
    sys.exit("missing: " + "; ".join(missing))
from trt_pose_td.cuda.driver import Device, bindings
from trt_pose_td.cuda.nvrtc import nvrtc_version
print("cuda-python   ", bindings().__name__)
with Device(0) as d:
    print("device", d.info)
print("nvrtc", nvrtc_version())
EOF
)
step "python modules" 120 "$SETUP" "$PY" -c "$ENV_CHECK"
TRT_VERSION=$("$PY" -c 'import tensorrt; print(tensorrt.__version__)')
note "TensorRT $TRT_VERSION"
step "precompile (this GPU)" 120 "$SETUP" "$PY" -m trt_pose_td precompile --force

# 2. gpu-marked tests ---------------------------------------------------------------------------
PYTEST_LOG="$OUT/pytest-gpu.txt"
: > "$PYTEST_LOG"
step "pytest -m gpu" "${PYTEST_TIMEOUT:-420}" "$PYTEST_LOG" \
    "$PY" -m pytest -m gpu -rs -q -p no:cacheprovider -o log_cli=true --log-cli-level=WARNING \
    tests/cuda tests/engines tests/test_gpu_pipeline.py
tail -n 3 "$PYTEST_LOG" | tee -a "$SUMMARY"

# 3. engines for the default models, with the product's builder --------------------------------
BUILD_LOG="$OUT/engines.txt"
: > "$BUILD_LOG"
BUILD_FLAGS=(--detector "$DETECTOR" --output "$ENGINES" --skip-existing)
case "${NO_CUBLAS_CUDNN:-auto}" in
    auto) case "$TRT_VERSION" in 8.5.*) BUILD_FLAGS+=(--no-cublas-cudnn) ;; esac ;;
    1|yes|true) BUILD_FLAGS+=(--no-cublas-cudnn) ;;
    0|no|false) ;;
    *) note "NO_CUBLAS_CUDNN must be auto, 1 or 0, not ${NO_CUBLAS_CUDNN}"; exit 2 ;;
esac
note "build flags: ${BUILD_FLAGS[*]}"
for p in fp16 fp32; do
    step "build $p" 600 "$BUILD_LOG" "$PY" -m trt_pose_td build --precision "$p" "${BUILD_FLAGS[@]}"
done

# 4. bench ---------------------------------------------------------------------------------------
for p in fp16 fp32; do
    JSON=()
    if [ "$p" = fp16 ]; then
        JSON=(--json "$OUT/bench-fp16.json")  # one JSON: few files come back
    fi
    BENCH_LOG="$OUT/bench-$p.txt"
    : > "$BENCH_LOG"
    step "bench tensorrt $p" 300 "$BENCH_LOG" "$PY" -m trt_pose_td bench -q \
        --backend tensorrt --detector "$DETECTOR" --engine-dir "$ENGINES" --precision "$p" \
        --max-frames "${BENCH_FRAMES:-8}" --repeat "${BENCH_REPEAT:-2}" ${JSON[@]+"${JSON[@]}"}
done
note "done: $(cd "$OUT" && echo *)"
