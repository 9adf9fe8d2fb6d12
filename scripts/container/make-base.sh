#!/usr/bin/env bash
# Make the CPU image's base without a container registry, and set podman up for this machine.
#   scripts/container/make-base.sh            # configure podman, import the base when missing
#   scripts/container/make-base.sh --force    # rebuild the base even when it exists
#
# The base is Debian bookworm (python3 3.11, like python:3.11-slim-bookworm) made by mmdebstrap
# from Debian's archive (the host's apt sources) and imported under the exact name the FROM of
# docker/Dockerfile.cpu gives, so `podman build` never pulls. Needs root, podman, mmdebstrap.
#
# Podman settings (a drop-in, rewritten on every run, so running twice changes nothing):
# - runtime runc: crun refuses a hybrid cgroup layout (cgroup v1 controllers + a v2 mount);
# - default_ulimits: nofile at this machine's hard limit and nproc 32768 (raising limits needs
#   CAP_SYS_RESOURCE, which a CI container lacks).
set -euo pipefail
cd "$(dirname "$0")/../.."

FORCE=0
[ "${1:-}" = "--force" ] && FORCE=1
DOCKERFILE=${DOCKERFILE:-docker/Dockerfile.cpu}
SUITE=${SUITE:-bookworm}
CONF_DIR=${CONTAINERS_CONF_DIR:-/etc/containers/containers.conf.d}

log() { echo "make-base: $*" >&2; }

for exe in podman mmdebstrap; do
    command -v "$exe" >/dev/null || { log "$exe is missing: apt-get install $exe"; exit 2; }
done

# The first FROM of the Dockerfile, with its ARG default when it is one (FROM ${BASE_IMAGE}).
base_name() {
    local from arg
    from=$(awk 'toupper($1) == "FROM" {print $2; exit}' "$DOCKERFILE")
    if [[ "$from" =~ ^\$\{?([A-Za-z_]+)\}?$ ]]; then
        arg=${BASH_REMATCH[1]}
        from=$(sed -n "s/^ARG $arg=//p" "$DOCKERFILE" | head -n1)
    fi
    printf '%s\n' "$from"
}

configure_podman() {
    local nofile runtime=runc
    nofile=$(ulimit -Hn)
    [ "$nofile" = unlimited ] && nofile=1048576
    command -v runc >/dev/null || { log "runc is missing: apt-get install runc"; exit 2; }
    mkdir -p "$CONF_DIR"
    cat > "$CONF_DIR/50-trt-pose-td.conf" <<CONF
# Written by trt-pose-td scripts/container/make-base.sh (rewritten on every run).
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=32768:32768"]

[engine]
runtime = "$runtime"
CONF
    log "podman: runtime $runtime, nofile $nofile, nproc 32768 ($CONF_DIR/50-trt-pose-td.conf)"
}

make_base() {
    local name=$1 work
    work=$(mktemp -d)
    trap 'rm -rf "$work"' RETURN
    log "mmdebstrap $SUITE -> $name"
    # merged-usr hook: /usr merged without the usrmerge package (which pulls in perl);
    # no manuals, translations or docs beyond the copyright files. Hooks get the root as $1.
    # shellcheck disable=SC2016
    mmdebstrap --quiet --variant=minbase \
        --include=ca-certificates,python3,python3-pip,python3-venv \
        --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
        --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --customize-hook='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED' \
        --customize-hook='ln -sf /usr/bin/python3 "$1"/usr/local/bin/python' \
        --customize-hook='ln -sf /usr/bin/pip3 "$1"/usr/local/bin/pip' \
        --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
        "$SUITE" "$work/base.tar" > "$work/log" 2>&1 || { cat "$work/log" >&2; exit 1; }
    podman import --quiet --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
        "$work/base.tar" "$name" >/dev/null
}

configure_podman
NAME=$(base_name)
[ -n "$NAME" ] || { log "no FROM in $DOCKERFILE"; exit 2; }
if [ "$FORCE" -eq 0 ] && podman image exists "$NAME"; then
    log "$NAME exists (--force to remake it)"
else
    make_base "$NAME"
fi
podman image inspect --format '{{.Id}} {{.Size}}' "$NAME" | {
    read -r id size
    log "$NAME ${id:0:12} $((size / 1000000)) MB"
}
