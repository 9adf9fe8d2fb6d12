#!/usr/bin/env bash
# Re-resolve the CPU image's pinned dependencies (docker/constraints-cpu.txt): pip resolves
# setup.py's ranges ([ort,service]) afresh inside the image's base, and the result is written
# with a header. Review the diff, build the image and run its checks before committing:
#   scripts/container/refresh-constraints.sh
#   git diff docker/constraints-cpu.txt
#   nice python -m pytest -m container tests/docker/test_container.py
# The Jetson and x86 images pin the same way on their own hardware (docker/README.md).
set -euo pipefail
cd "$(dirname "$0")/../.."

OUT=docker/constraints-cpu.txt
BASE=$(awk 'toupper($1) == "FROM" {print $2; exit}' docker/Dockerfile.cpu)
CA=/etc/ssl/certs/ca-certificates.crt
ca_mount=()
[ -f "$CA" ] && ca_mount=(-v "$CA:$CA:ro")

frozen=$(podman run --rm --network=host "${ca_mount[@]}" -v "$PWD:/src:ro" "$BASE" sh -ec '
    mkdir /tmp/src && cp -r /src/setup.py /src/pyproject.toml /src/README.md /src/trt_pose_td /tmp/src
    python3 -m venv /tmp/venv
    /tmp/venv/bin/pip install --quiet --disable-pip-version-check --no-cache-dir \
        "/tmp/src[ort,service]" --upgrade setuptools wheel >&2
    /tmp/venv/bin/pip freeze --all --exclude pip --exclude trt-pose-td')
{
    echo "# The CPU image's dependencies, exactly (docker/Dockerfile.cpu installs these, then the"
    echo "# project with --no-deps). Resolved by scripts/container/refresh-constraints.sh on $(date -u +%F)"
    echo "# in $BASE. setuptools and wheel only build the project; the image drops them."
    printf '%s\n' "$frozen"
} > "$OUT"
echo "wrote $OUT ($(grep -vc '^#' "$OUT") pins)"
