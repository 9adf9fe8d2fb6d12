#!/usr/bin/env bash
# Container entrypoint: build the TensorRT engines into the volume when they are missing or were
# built for another TensorRT / GPU / ONNX (the .engine.json sidecar says so), then serve.
#
#   docker run ... IMAGE                      # serve with /etc/trt-pose-td/config.toml
#   docker run ... IMAGE --camera door -v     # extra flags go to `trt-pose-td serve`
#   docker run ... IMAGE rtsp://cam/stream    # so does a source
#   docker run ... IMAGE bash                 # an executable runs as a command
#
# Environment: TRT_POSE_TD_CONFIG (config file), TRT_POSE_TD_ENGINE_DIR (engine volume),
# TRT_POSE_TD_BUILD=auto|never (auto: build when TensorRT is importable, skip otherwise),
# TRT_POSE_TD_PRECISION (fp16|int8, when the config does not say), TRT_POSE_TD_HTTP_HOST (the
# HTTP bind address the images set to 0.0.0.0; the service's own default is 127.0.0.1).
set -euo pipefail

CONFIG=${TRT_POSE_TD_CONFIG:-/etc/trt-pose-td/config.toml}
ENGINE_DIR=${TRT_POSE_TD_ENGINE_DIR:-/var/lib/trt-pose-td/engines}
BUILD=${TRT_POSE_TD_BUILD:-auto}
PYTHON=${PYTHON:-python3}

log() { echo "entrypoint: $*" >&2; }

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

if [ "$BUILD" != "never" ] && "$PYTHON" -c "import tensorrt" 2>/dev/null; then
    # What to build comes from the resolved config, so the file and the flags decide it.
    resolved=$(trt-pose-td serve "${serve_args[@]}" "$@" --print-config)
    read -r detector pose precision < <(printf '%s' "$resolved" | "$PYTHON" -c '
import json, os, sys
p = json.load(sys.stdin)["pipeline"]
print(p["detector"], p["pose"], p.get("precision") or os.environ.get("TRT_POSE_TD_PRECISION", "fp16"))
')
    mkdir -p "$ENGINE_DIR"
    log "engines for $detector + $pose ($precision) in $ENGINE_DIR (built only when missing or stale)"
    trt-pose-td build --detector "$detector" --pose "$pose" --precision "$precision" \
        --output "$ENGINE_DIR" --skip-existing
    exec trt-pose-td serve "${serve_args[@]}" --backend tensorrt --engine-dir "$ENGINE_DIR" \
        --precision "$precision" "$@"
fi

if [ "$BUILD" = "never" ]; then
    log "TRT_POSE_TD_BUILD=never: not building engines"
else
    log "TensorRT is not importable here: serving with ONNX Runtime"
fi
exec trt-pose-td serve "${serve_args[@]}" "$@"
