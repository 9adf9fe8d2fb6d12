#!/usr/bin/env bash
# Set up a CPU install (ONNX Runtime) in .venv and run the pipeline on the packaged sample photo.
#   ./scripts/demo.sh                 # -> out/poses.jsonl + out/000000001000.jpg
#   ./scripts/demo.sh video.mp4 -o o  # any `trt-pose-td run` arguments
# The default models and the photo ship inside the package: no network or data mirror needed
# after the pip install. Other registry models come from $TRT_POSE_TD_MIRROR (default ../shared
# when it exists), else from their upstream URLs. Afterwards: `. .venv/bin/activate` puts
# `trt-pose-td` on PATH.
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
