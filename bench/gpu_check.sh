#!/usr/bin/env bash
# One-shot verification of the GPU runtime on a GPU machine, cheap and certain results first:
#   1. environment, kernel compile on the device (`trt-pose-td precompile`), the kernels'
#      one-crop self-test against their numpy twins (what the GPU pipeline runs at open)
#   2. pytest -m gpu  (kernel self-test and kernels vs numpy twins, TrtEngine, conformance suite,
#      GPU vs CPU pipeline)
#   3. engines for the default models with the product's builder (`trt-pose-td build`: fp16, fp32)
#   4. accuracy gates: `trt-pose-td eval` on the dev split, ONNX Runtime FP32 as the baseline,
#      then TensorRT per precision in $GATES (fp16: within 0.3 AP points, int8: within 1.0) at
#      keypoint batch 1 (a keypoint engine built with --pose-batch 1, in $ENGINES/batch1) and at
#      batch N (the default engine, profile 1,8,$BATCH_N): a dynamic batch axis has collapsed
#      FP16/INT8 accuracy in peers' TensorRT deployments (docs/jetson-first-run A10)
#   5. trt-pose-td bench --backend tensorrt (fp16, then fp32)
# Steps 1 and the fp16 build stop the script when they fail (nothing after them could run); any
# other failure is recorded and the script goes on, exiting 1 at the end. Writes at most 8 files
# to $OUT (default out/gpu_check), each as its step runs: summary.txt (one line per step and gate,
# a failing step's log tail), setup.txt, pytest-gpu.txt, engines.txt, eval.txt, gates.json (one
# record per gate: AP, baseline AP, budget, verdict, keypoint batch), bench.txt, bench-fp16.json.
#   OUT=/some/dir bash bench/gpu_check.sh
# Assumes: an NVIDIA driver; $PYTHON (default python3.10) importing tensorrt, cuda-python (NVRTC),
# numpy, cv2, pytest, onnx, onnxruntime, pycocotools, tqdm, packaging (the gpu-stage payload:
# see ../shared/tools/gpu-stage/README.md, e.g. `make_stage.sh .gpu-stage pytest
# "opencv-python-headless<5" onnx onnxruntime pycocotools tqdm packaging`); the data mirror at
# $TRT_POSE_TD_MIRROR, ./shared or ../shared (models/, coco/val2017 + annotations,
# coco/calib_train2017 for int8, crowd/MOT17).
# Knobs: PYTEST_TIMEOUT (s, default 420), BENCH_FRAMES (default 8), BENCH_REPEAT (default 2),
# DETECTOR (default rtmdet_nano_person_raw: the NMS-in-graph export needs TensorRT >= 8.6),
# NO_CUBLAS_CUDNN (auto: on for TensorRT 8.5, whose staged cuBLAS/cuDNN are link-time stand-ins),
# GATES (default "fp16 int8"; "" skips step 4), GATE_IMAGES (default 0 = the whole dev split),
# BATCH_N (default 32: the keypoint profile max, 1,8,32), EVAL_TIMEOUT (s per eval, default 420).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu_check}
PY=${PYTHON:-python3.10}
DETECTOR=${DETECTOR:-rtmdet_nano_person_raw}
GATES=${GATES-fp16 int8}
BATCH_N=${BATCH_N:-32}
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
WORK="$TRT_POSE_TD_CACHE/gpu_check"   # eval outputs (results JSON stay here; summaries to $OUT)
SUMMARY="$OUT/summary.txt"
FAILED=()
: > "$SUMMARY"
note() { echo "$*" | tee -a "$SUMMARY"; }
run_step() {  # run_step NAME TIMEOUT_S LOGFILE CMD...: run, log, record rc and seconds; sets RC
    local name=$1 limit=$2 log=$3
    shift 3
    local t0=$SECONDS
    RC=0
    echo "+ $*" >> "$log"
    timeout "$limit" "$@" >> "$log" 2>&1 || RC=$?
    note "$(printf '%-28s rc=%-3s %4ss  (%s)' "$name" "$RC" "$((SECONDS - t0))" "$(basename "$log")")"
    if [ "$RC" -ne 0 ]; then
        local why="rc $RC"
        if [ "$RC" -eq 124 ]; then
            why="timed out after ${limit}s"
        fi
        FAILED+=("$name")
        if [ "$RC" = "${VERDICT_RC:-}" ]; then  # a verdict, not a crash: no log tail
            return 0
        fi
        note "FAILED: $name ($why); last lines of $(basename "$log"):"
        tail -n 25 "$log" | tee -a "$SUMMARY" >&2
    fi
}
step() {  # step NAME TIMEOUT_S LOGFILE CMD...: run_step, and stop the script on a failure
    run_step "$@"
    if [ "$RC" -ne 0 ]; then
        exit "$RC"
    fi
}
soft_step() {  # soft_step NAME TIMEOUT_S LOGFILE CMD...: run_step; a failure is only recorded
    run_step "$@" || true
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
for m in sys.argv[1:]:
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
    print("device", d.info, "memory free/total", d.memory_info())
print("nvrtc", nvrtc_version())
EOF
)
MODULES=(tensorrt numpy cv2 onnx onnxruntime pytest tqdm packaging)
if [ -n "$GATES" ]; then
    MODULES+=(pycocotools)
fi
step "python modules" 120 "$SETUP" "$PY" -c "$ENV_CHECK" "${MODULES[@]}"
TRT_VERSION=$("$PY" -c 'import tensorrt; print(tensorrt.__version__)')
note "TensorRT $TRT_VERSION"
step "precompile (this GPU)" 120 "$SETUP" "$PY" -m trt_pose_td precompile --force
SELF_TEST=$(cat <<'EOF'
from trt_pose_td.cuda.driver import Device
from trt_pose_td.cuda.launchers import Kernels
with Device(0) as device:
    kernels = Kernels(device, self_test=False)
    try:
        for c in kernels.self_test():
            print(f"{c.kernel:16s} max |kernel - twin| {c.max_diff:.3g} (tolerance {c.allowed})")
    finally:
        kernels.close()
EOF
)
soft_step "kernel self-test" 120 "$SETUP" "$PY" -c "$SELF_TEST"

# 2. gpu-marked tests ---------------------------------------------------------------------------
PYTEST_LOG="$OUT/pytest-gpu.txt"
: > "$PYTEST_LOG"
soft_step "pytest -m gpu" "${PYTEST_TIMEOUT:-420}" "$PYTEST_LOG" \
    "$PY" -m pytest -m gpu -rs -q -p no:cacheprovider -o log_cli=true --log-cli-level=WARNING \
    tests/cuda tests/build tests/engines tests/test_gpu_pipeline.py
tail -n 3 "$PYTEST_LOG" | tee -a "$SUMMARY"

# 3. engines for the default models, with the product's builder --------------------------------
BUILD_LOG="$OUT/engines.txt"
: > "$BUILD_LOG"
BUILD_FLAGS=(--detector "$DETECTOR" --skip-existing)
case "${NO_CUBLAS_CUDNN:-auto}" in
    auto) case "$TRT_VERSION" in 8.5.*) BUILD_FLAGS+=(--no-cublas-cudnn) ;; esac ;;
    1|yes|true) BUILD_FLAGS+=(--no-cublas-cudnn) ;;
    0|no|false) ;;
    *) note "NO_CUBLAS_CUDNN must be auto, 1 or 0, not ${NO_CUBLAS_CUDNN}"; exit 2 ;;
esac
note "build flags: ${BUILD_FLAGS[*]}"
build() {  # build NAME SOFT|HARD PRECISION ARGS...: trt-pose-td build into $ENGINES (or ARGS')
    local name=$1 how=$2 p=$3
    shift 3
    local run=soft_step
    if [ "$how" = HARD ]; then
        run=step
    fi
    "$run" "$name" 600 "$BUILD_LOG" "$PY" -m trt_pose_td build --precision "$p" \
        "${BUILD_FLAGS[@]}" --output "$ENGINES" "$@"
}
build "build fp16" HARD fp16
build "build fp32" SOFT fp32
FP32_RC=$RC

# 4. accuracy gates at keypoint batch 1 and N ---------------------------------------------------
EVAL_LOG="$OUT/eval.txt"
GATES_JSON="$OUT/gates.json"
B1="$ENGINES/batch1"
EVAL_FLAGS=(-q --detector "$DETECTOR" --max-images "${GATE_IMAGES:-0}")
RECORD=$(cat <<'EOF'
import json, sys
from pathlib import Path
gates, name, precision, batch, budget, rc, out, baseline = sys.argv[1:9]
doc = json.loads(Path(gates).read_text()) if Path(gates).is_file() else []
summary = Path(out) / "summary.json"
s = json.loads(summary.read_text()) if int(rc) in (0, 1) and summary.is_file() else {}
base = json.loads(Path(baseline).read_text()) if Path(baseline).is_file() else {}
gate = s.get("gate") or {}
doc.append({"gate": name, "precision": precision, "keypoint_batch_asked": batch,
            "keypoint_batch": s.get("config", {}).get("keypoint_batch"),
            "AP": s.get("keypoints", {}).get("AP"), "baseline_AP": base.get("keypoints", {}).get("AP"),
            "max_drop_points": float(budget), "passed": gate.get("passed", False),
            "lines": gate.get("lines", []), "rc": int(rc), "images": s.get("images")})
Path(gates).write_text(json.dumps(doc, indent=1))
print(" | ".join(gate.get("lines", [])) or f"no verdict (rc {rc})")
EOF
)
gate() {  # gate PRECISION BATCH BUDGET ENGINE_DIR: eval against the baseline, record the verdict
    local p=$1 b=$2 budget=$3 dir=$4 name="gate $1 batch $2"
    local out="$WORK/eval-$p-b$b" VERDICT_RC=1  # eval's exit 1: the gate failed, said below
    rm -rf "$out"
    soft_step "$name" "${EVAL_TIMEOUT:-420}" "$EVAL_LOG" "$PY" -m trt_pose_td eval \
        "${EVAL_FLAGS[@]}" --backend tensorrt --precision "$p" --engine-dir "$dir" \
        --keypoint-batch "$b" --compare "$BASELINE" --max-drop "$budget" -o "$out"
    note "  $("$PY" -c "$RECORD" "$GATES_JSON" "$name" "$p" "$b" "$budget" "$RC" "$out" \
        "$BASELINE")"
}
batch1_engines() {  # batch1_engines PRECISION: $B1 = $ENGINES + a keypoint engine of batch 1
    mkdir -p "$B1"
    local f
    for f in "$ENGINES"/*.engine "$ENGINES"/*.engine.json "$ENGINES"/timing-*.cache; do
        if [ -f "$f" ]; then
            cp -f "$f" "$B1/"
        fi
    done
    soft_step "build $1 keypoint batch 1" 600 "$BUILD_LOG" "$PY" -m trt_pose_td build \
        --precision "$1" "${BUILD_FLAGS[@]}" --only pose --pose-batch 1 --output "$B1"
}
if [ -n "$GATES" ]; then
    : > "$EVAL_LOG"
    rm -f "$GATES_JSON"
    mkdir -p "$WORK"
    BASELINE="$WORK/eval-ort-fp32/summary.json"
    rm -rf "$WORK/eval-ort-fp32"
    soft_step "eval onnxruntime fp32" "${EVAL_TIMEOUT:-420}" "$EVAL_LOG" "$PY" -m trt_pose_td \
        eval "${EVAL_FLAGS[@]}" --backend onnxruntime --precision fp32 -o "$WORK/eval-ort-fp32"
    if [ "$RC" -eq 0 ]; then
        for p in $GATES; do
            case "$p" in
                fp16) budget=0.3 ;;
                int8) budget=1.0 ;;
                *) note "GATES takes fp16 and int8, not $p"; FAILED+=("gate $p"); continue ;;
            esac
            if [ "$p" != fp16 ]; then
                build "build $p" SOFT "$p"
                if [ "$RC" -ne 0 ]; then
                    note "gates $p: not run (no engines)"
                    continue
                fi
            fi
            batch1_engines "$p"
            if [ "$RC" -eq 0 ]; then
                gate "$p" 1 "$budget" "$B1"
            else
                note "gate $p batch 1: not run (no batch-1 keypoint engine)"
            fi
            gate "$p" "$BATCH_N" "$budget" "$ENGINES"
        done
    else
        note "gates: not run (no ONNX Runtime baseline)"
    fi
fi

# 5. bench ---------------------------------------------------------------------------------------
BENCH_LOG="$OUT/bench.txt"
: > "$BENCH_LOG"
for p in fp16 fp32; do
    if [ "$p" = fp32 ] && [ "$FP32_RC" -ne 0 ]; then
        note "bench tensorrt fp32: not run (no engines)"
        continue
    fi
    JSON=()
    if [ "$p" = fp16 ]; then
        JSON=(--json "$OUT/bench-fp16.json")  # one JSON: few files come back
    fi
    soft_step "bench tensorrt $p" 300 "$BENCH_LOG" "$PY" -m trt_pose_td bench -q \
        --backend tensorrt --detector "$DETECTOR" --engine-dir "$ENGINES" --precision "$p" \
        --max-frames "${BENCH_FRAMES:-8}" --repeat "${BENCH_REPEAT:-2}" ${JSON[@]+"${JSON[@]}"}
done
note "done: $(cd "$OUT" && echo *)"
if [ "${#FAILED[@]}" -ne 0 ]; then
    LIST=$(printf '%s; ' "${FAILED[@]}")
    note "FAILED ${#FAILED[@]}: ${LIST%; }"
    exit 1
fi
note "all steps passed"
