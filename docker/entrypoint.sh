#!/usr/bin/env bash
# Container entrypoint: resolve the service config once (file, --set, flags), build the TensorRT
# engines of exactly that pipeline into the volume when they are missing or their .engine.json
# sidecar no longer matches (TensorRT, GPU, ONNX, or any setting: det_size, precision, int8_mode,
# batch profile), then serve with the same arguments the build was resolved from.
#
#   docker run ... IMAGE                      # serve with /etc/trt-pose-td/config.toml
#   docker run ... IMAGE --camera door -v     # extra flags go to `trt-pose-td serve`
#   docker run ... IMAGE rtsp://cam/stream    # so does a source
#   docker run ... IMAGE bash                 # an executable runs as a command
#
# Environment: TRT_POSE_TD_CONFIG (config file), TRT_POSE_TD_ENGINE_DIR (engine volume),
# TRT_POSE_TD_BUILD=auto|never (auto: build when TensorRT is importable, skip otherwise),
# TRT_POSE_TD_PRECISION (fp16|int8, when the config does not say), TRT_POSE_TD_CALIB_DIR (INT8
# calibration images, default /var/lib/trt-pose-td/calib), TRT_POSE_TD_REQUIRE_GPU=1 (the GPU
# images: no GPU is an error naming --runtime nvidia, not a silent CPU fallback),
# TRT_POSE_TD_HTTP_HOST (the HTTP bind address the images set to 0.0.0.0; the service's own
# default is 127.0.0.1).
set -euo pipefail

CONFIG=${TRT_POSE_TD_CONFIG:-/etc/trt-pose-td/config.toml}
ENGINE_DIR=${TRT_POSE_TD_ENGINE_DIR:-/var/lib/trt-pose-td/engines}
CALIB_DIR=${TRT_POSE_TD_CALIB_DIR:-/var/lib/trt-pose-td/calib}
BUILD=${TRT_POSE_TD_BUILD:-auto}
REQUIRE_GPU=${TRT_POSE_TD_REQUIRE_GPU:-0}
ARGUS_SOCKET=${TRT_POSE_TD_ARGUS_SOCKET:-/tmp/argus_socket}
# nvarguscamerasrc inside a container: "cannot allocate memory in static TLS block" unless this
# is preloaded (jetson-containers #312); applied only when the Argus socket is mounted.
GL_DISPATCH=/usr/lib/aarch64-linux-gnu/libGLdispatch.so.0
PYTHON=${PYTHON:-python3}

log() { echo "entrypoint: $*" >&2; }
die() { log "$*"; exit 2; }

# A first argument naming an executable is a command (a shell, `trt-pose-td eval`, ...).
if [ "$#" -gt 0 ] && [ "${1#-}" = "$1" ] && command -v -- "$1" >/dev/null 2>&1; then
    exec "$@"
fi

serve_args=()
if [ -f "$CONFIG" ]; then
    serve_args+=(--config "$CONFIG")
else
    log "no config at $CONFIG: using flags and defaults only"
fi
# The service binds 127.0.0.1 by default; inside a container that is unreachable through -p, so
# the images set TRT_POSE_TD_HTTP_HOST=0.0.0.0 (set it empty to keep the config's address).
if [ -n "${TRT_POSE_TD_HTTP_HOST:-}" ]; then
    serve_args+=(--set "http.host=\"$TRT_POSE_TD_HTTP_HOST\"")
fi

if [ "$BUILD" = "never" ]; then
    log "TRT_POSE_TD_BUILD=never: not building engines"
    exec trt-pose-td serve "${serve_args[@]}" "$@"
fi

if ! "$PYTHON" -c "import tensorrt" 2>/dev/null; then
    if [ "$REQUIRE_GPU" = 1 ]; then
        die "TensorRT cannot be imported in this GPU image: start it with the NVIDIA runtime" \
            "(docker run --runtime nvidia; compose: runtime: nvidia), from a base matching the" \
            "host's L4T release (cat /etc/nv_tegra_release); or set TRT_POSE_TD_BUILD=never" \
            "to serve with ONNX Runtime on the CPU"
    fi
    log "TensorRT is not importable here: serving with ONNX Runtime"
    exec trt-pose-td serve "${serve_args[@]}" "$@"
fi

# The NVIDIA runtime mounts the GPU (on Jetson: /dev/nvmap, /dev/nvhost-*, the L4T libraries);
# without it TensorRT may import but no CUDA device exists (A5 of jetson-first-run.md).
if [ "$REQUIRE_GPU" = 1 ] && ! "$PYTHON" -c \
    "import sys; from trt_pose_td.cuda.driver import gpu_available; sys.exit(not gpu_available())"
then
    die "no CUDA GPU in this container: start it with --runtime nvidia (compose: runtime: nvidia)." \
        "If Docker does not list it (docker info --format '{{json .Runtimes}}'): sudo nvidia-ctk" \
        "runtime configure --runtime=docker && sudo systemctl restart docker"
fi

if [ -S "$ARGUS_SOCKET" ] && [ -e "$GL_DISPATCH" ] && [ -z "${LD_PRELOAD:-}" ]; then
    export LD_PRELOAD=$GL_DISPATCH
fi

# One resolution of file + --set + flags; the build and the service both take it from here.
run_args=("${serve_args[@]}" --backend tensorrt --engine-dir "$ENGINE_DIR")
resolved=$(trt-pose-td serve "${run_args[@]}" "$@" --print-config)
summary() {  # precision (- when unset), backend, csi (yes when a csi:// camera is configured)
    printf '%s' "$resolved" | "$PYTHON" -c '
import json, sys
cfg = json.load(sys.stdin)
p = cfg["pipeline"]
uris = [s["uri"] for s in [cfg["source"], *cfg["sources"]]]
print(p["precision"] or "-", p["backend"], "yes" if any(u.startswith("csi://") for u in uris) else "no")'
}
info=$(summary)
read -r precision backend csi <<< "$info"
if [ "$csi" = yes ] && [ ! -S "$ARGUS_SOCKET" ]; then
    die "a csi:// camera needs the Argus daemon's socket: docker run -v" \
        "/tmp/argus_socket:/tmp/argus_socket (nvargus-daemon running on the host; after" \
        "'Failed to create CaptureSession': sudo systemctl restart nvargus-daemon)"
fi
if [ "$backend" = onnxruntime ]; then
    log "backend onnxruntime asked for: not building engines"
    exec trt-pose-td serve "${run_args[@]}" "$@"
fi
if [ "$precision" = "-" ]; then  # the config does not say: the image's choice, fp16 by default
    run_args+=(--precision "${TRT_POSE_TD_PRECISION:-fp16}")
    resolved=$(trt-pose-td serve "${run_args[@]}" "$@" --print-config)
    info=$(summary)
    read -r precision backend csi <<< "$info"
fi

# INT8 calibrates on $CALIB_DIR (the volume's calib/ or a bind mount) unless it is empty and a
# data mirror ($TRT_POSE_TD_MIRROR/coco/calib_train2017) provides the set.
calib_args=()
if [ -n "$(ls -A "$CALIB_DIR" 2>/dev/null)" ] || [ -z "${TRT_POSE_TD_MIRROR:-}" ]; then
    calib_args=(--calib-images "$CALIB_DIR")
fi
if [ "$precision" = int8 ]; then
    log "INT8: calibration images from ${calib_args[1]:-the data mirror}"
fi
mkdir -p "$ENGINE_DIR"
log "engines of the resolved pipeline in $ENGINE_DIR ($precision; built only when missing or stale)"
printf '%s' "$resolved" | trt-pose-td build --from-config - --skip-existing "${calib_args[@]}"
exec trt-pose-td serve "${run_args[@]}" "$@"
