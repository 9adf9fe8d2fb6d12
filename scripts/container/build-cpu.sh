#!/usr/bin/env bash
# Build docker/Dockerfile.cpu with podman, the way CI does, and report time, size and layers.
#   scripts/container/build-cpu.sh            # image trt-pose-td:ci
#   IMAGE=trt-pose-td:cpu scripts/container/build-cpu.sh
# Without podman (or without root to set it up) it says so and exits 0: the container checks
# (tests/docker/test_container.py) skip with the same reason. Makes the registry-less base first
# (make-base.sh, once per machine). Layers are cached in podman's storage: a rebuild with the
# same constraints reuses the dependency layer and only reinstalls the project. The build stage
# is tagged (IMAGE-build) so that pruning the images this leaves behind keeps that cache.
# --format docker keeps HEALTHCHECK (OCI drops it); --network=host for pip in RUN steps; the host's
# CA bundle is mounted read-only for pip behind a TLS-inspecting proxy, never baked in.
set -euo pipefail
cd "$(dirname "$0")/../.."

IMAGE=${IMAGE:-trt-pose-td:ci}
if ! command -v podman >/dev/null; then
    echo "== container: skipped (podman is not installed: apt-get install podman)"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "== container: skipped (needs root to set podman up: sudo $0)"
    exit 0
fi
scripts/container/make-base.sh

CA=/etc/ssl/certs/ca-certificates.crt
ca_mount=()
[ -f "$CA" ] && ca_mount=(-v "$CA:$CA:ro")
build() {
    nice -n 10 podman build --quiet --format docker --network=host "${ca_mount[@]}" \
        -f docker/Dockerfile.cpu "$@" . >/dev/null
}
start=$(date +%s)
build --target build -t "$IMAGE-build"
build -t "$IMAGE"
seconds=$(( $(date +%s) - start ))
podman image prune --force >/dev/null  # earlier builds' untagged images
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
echo "== container: built $IMAGE in ${seconds} s, $((size / 1000000)) MB"
podman history --format '{{.Size}}\t{{.CreatedBy}}' "$IMAGE" \
    | awk -F'\t' '$1 != "0 B" {printf "   %10s  %s\n", $1, substr($2, 1, 90)}'
