#!/usr/bin/env bash
# Re-resolve an image's pinned dependencies (docker/constraints-<image>.txt) from the ranges in
# setup.py, then review the diff, rebuild and rerun the image's checks before committing:
#   scripts/container/refresh-constraints.sh cpu      # default; needs podman (make-base.sh)
#   scripts/container/refresh-constraints.sh jetson   # JetPack 6: Python 3.10, aarch64
#   scripts/container/refresh-constraints.sh jp5      # JetPack 5: Python 3.8, aarch64
#   scripts/container/refresh-constraints.sh x86      # NGC TensorRT 24.08: Python 3.10, x86_64
#   git diff docker/constraints-*.txt
#   nice python -m pytest -m container tests/docker/test_container.py
# cpu: pip installs the project ([ort,service,track]) into a fresh venv inside the image's base and the
# result is frozen. jetson / jp5 / x86: their bases cannot be pulled here, so pip resolves the
# Dockerfile's requirements for that Python and platform (--dry-run, wheels only) without
# installing; on the device, `pip freeze` inside the built image is the final word.
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

# resolve PYTHON_VERSION ARCH REQUIREMENT...: pip's choice for that platform, as name==version.
resolve() {
    local py=$1 arch=$2 report
    shift 2
    report=$(mktemp)
    header "resolved by pip for Python $py on $arch (not installed here)."
    python3 -m pip install --quiet --disable-pip-version-check --dry-run --ignore-installed \
        --only-binary=:all: --python-version "$py" --target "$(mktemp -d)" \
        --platform "manylinux2014_$arch" --platform "manylinux_2_28_$arch" \
        --platform "manylinux_2_34_$arch" --report "$report" "$@" >&2
    python3 -c 'import json, sys
for item in json.load(open(sys.argv[1]))["install"]:
    print(item["metadata"]["name"] + "==" + item["metadata"]["version"])' "$report" | sort -f
    rm -f "$report"
}

# What each Dockerfile installs with pip (besides the project itself): setup.py's ranges, with
# cuda-python held to the CUDA minor release of the base image.
COMMON=("paho-mqtt>=1.6" "tqdm>=4.60" "packaging>=20" "tomli>=1.2")
case "$TARGET" in
    cpu) frozen=$(freeze_cpu) ;;
    jetson) frozen=$(resolve 3.10 aarch64 "numpy<2" "cuda-python>=12.6,<12.7" "scipy>=1.6" \
                         "${COMMON[@]}") ;;
    jp5) frozen=$(resolve 3.8 aarch64 "numpy<2" "cuda-python>=11.8,<11.8.3" "scipy>=1.6,<1.11" \
                      "${COMMON[@]}") ;;
    x86) frozen=$(resolve 3.10 x86_64 "numpy>=1.20" "opencv-python-headless>=4.5" \
                      "cuda-python>=12.6,<12.7" "scipy>=1.6" "${COMMON[@]}") ;;
    *) echo "usage: $0 [cpu|jetson|jp5|x86]" >&2; exit 2 ;;
esac
printf '%s\n' "$frozen" > "$OUT"
echo "wrote $OUT ($(grep -vc '^#' "$OUT") pins)"
