#!/usr/bin/env bash
# Re-resolve an image's pinned dependencies (docker/constraints-<image>.txt), then review the diff,
# rebuild and rerun the image's checks before committing:
#   scripts/container/refresh-constraints.sh cpu      # default; needs podman (make-base.sh)
#   scripts/container/refresh-constraints.sh jetson   # JetPack 6: Python 3.10, aarch64
#   scripts/container/refresh-constraints.sh jp5      # JetPack 5: Python 3.8, aarch64
#   scripts/container/refresh-constraints.sh x86      # NGC TensorRT 24.08: Python 3.10, x86_64
#   git diff docker/constraints-*.txt
#   scripts/container/check-jetson-deps.sh            # jetson + jp5: every pin a wheel there
#   nice python -m pytest -m container tests/docker/test_container.py
# cpu: pip installs the project ([ort,service,track]) into a fresh venv inside the image's base and
# the result is frozen. jetson / jp5 / x86: their bases cannot be pulled here, so
# scripts/container/image_deps.py resolves the Dockerfile's own install line (ARGs and markers
# for that Python) with pip --dry-run, wheels only, for that Python, CPU and glibc, against PyPI
# in isolated mode: Requires-Python is honoured (a local index without it once pinned
# packaging==26.3, which needs Python >= 3.9, for JetPack 5's 3.8). On the device, `pip freeze`
# inside the built image is the final word.
set -euo pipefail
cd "$(dirname "$0")/../.."

TARGET=${1:-cpu}
OUT=docker/constraints-$TARGET.txt

header() {
    echo "# Pinned dependencies of the $TARGET image (docker/README.md, constraints)."
    echo "# scripts/container/refresh-constraints.sh $TARGET, $(date -u +%F): $1"
}

freeze_cpu() {
    local base ca=/etc/ssl/certs/ca-certificates.crt
    local mounts=(-v "$PWD:/src:ro")
    [ -f "$ca" ] && mounts+=(-v "$ca:$ca:ro")
    base=$(awk 'toupper($1) == "FROM" {print $2; exit}' docker/Dockerfile.cpu)
    header "installed in $base."
    echo "# setuptools and wheel only build the project; the image drops them."
    podman run --rm --network=host "${mounts[@]}" "$base" sh -ec '
        mkdir /tmp/src
        cp -r /src/setup.py /src/pyproject.toml /src/README.md /src/trt_pose_td /tmp/src
        python3 -m venv /tmp/venv
        /tmp/venv/bin/pip install --quiet --disable-pip-version-check --no-cache-dir \
            "/tmp/src[ort,service,track]" --upgrade setuptools wheel >&2
        /tmp/venv/bin/pip freeze --all --exclude pip --exclude trt-pose-td' 2>/dev/null
}

# The checkout's virtualenv (packaging, a recent pip) unless PYTHON names another interpreter.
if [ -z "${PYTHON:-}" ]; then
    PYTHON=python3
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; fi
fi
case "$TARGET" in
    cpu) frozen=$(freeze_cpu) ;;
    jetson|jp5|x86) frozen=$("$PYTHON" scripts/container/image_deps.py resolve "$TARGET") ;;
    *) echo "usage: $0 [cpu|jetson|jp5|x86]" >&2; exit 2 ;;
esac
printf '%s\n' "$frozen" > "$OUT"
echo "wrote $OUT ($(grep -vc '^#' "$OUT") pins)"
