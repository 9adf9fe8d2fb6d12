#!/usr/bin/env bash
# Set up a CPU install (ONNX Runtime) and run the pipeline on the sample class photo.
#   ./scripts/demo.sh                 # -> out/poses.jsonl + out/000000002299.jpg
#   ./scripts/demo.sh video.mp4 -o o  # any `trt-pose-td run` arguments
# Models and the sample come from $TRT_POSE_TD_MIRROR (default ../shared when it exists), else
# from their upstream URLs.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[ort]' 2>&1 \
    | { grep -v "^WARNING: Location" || true; }
if [ -z "${TRT_POSE_TD_MIRROR:-}" ] && [ -d ../shared/models ]; then
    TRT_POSE_TD_MIRROR="$(cd ../shared && pwd)"
    export TRT_POSE_TD_MIRROR
fi
if [ $# -eq 0 ]; then set -- --output out; fi
exec .venv/bin/trt-pose-td run "$@"
