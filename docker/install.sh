#!/usr/bin/env bash
# Install the trt-pose-td camera service as a systemd unit.
#
#   sudo docker/install.sh                         # native: runs `trt-pose-td serve` (pip-installed)
#   sudo docker/install.sh --container IMAGE       # runs the Docker image (trt-pose-td-docker unit)
#   options: --no-start (install and enable, do not start), --bin PATH (trt-pose-td executable)
#   DESTDIR=/tmp/stage docker/install.sh ...       # stage the files only: no user, no systemctl
#
# Writes /etc/trt-pose-td/config.toml from config.example.toml unless one exists (edit [source]
# uri and [mqtt] host), the unit under /etc/systemd/system, and the docs under /usr/share/doc.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DESTDIR=${DESTDIR:-}
MODE=native
IMAGE=""
START=1
BIN=""

usage() { sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

while [ "$#" -gt 0 ]; do
    case "$1" in
        --container) MODE=container; IMAGE=${2:?--container needs an image name}; shift 2 ;;
        --no-start) START=0; shift ;;
        --bin) BIN=${2:?--bin needs a path}; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "install.sh: unknown option $1" >&2; usage 2 ;;
    esac
done

if [ -z "$DESTDIR" ] && [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root (sudo), or set DESTDIR to stage the files" >&2
    exit 2
fi

etc="$DESTDIR/etc/trt-pose-td"
units="$DESTDIR/etc/systemd/system"
docs="$DESTDIR/usr/share/doc/trt-pose-td"
install -d -m 0755 "$etc" "$units" "$docs"
if [ -e "$etc/config.toml" ]; then
    echo "keeping existing $etc/config.toml"
else
    install -m 0644 "$HERE/config.example.toml" "$etc/config.toml"
    echo "wrote $etc/config.toml: set [source] uri and [mqtt] host"
fi
install -m 0644 "$HERE/README.md" "$docs/README.md"

if [ "$MODE" = native ]; then
    unit=trt-pose-td.service
    BIN=${BIN:-$(command -v trt-pose-td || true)}
    if [ -z "$BIN" ]; then
        echo "install.sh: trt-pose-td is not on PATH: pip install 'trt-pose-td[service]' first," \
             "or pass --bin /path/to/trt-pose-td" >&2
        exit 2
    fi
    sed "s#^ExecStart=/usr/local/bin/trt-pose-td #ExecStart=$BIN #" \
        "$HERE/systemd/$unit" > "$units/$unit"
else
    unit=trt-pose-td-docker.service
    sed "s#^Environment=IMAGE=.*#Environment=IMAGE=$IMAGE#" \
        "$HERE/systemd/$unit" > "$units/$unit"
fi
chmod 0644 "$units/$unit"
echo "wrote $units/$unit"

if [ -n "$DESTDIR" ]; then
    echo "DESTDIR set: skipping user creation and systemctl"
    exit 0
fi

if [ "$MODE" = native ] && ! id trt-pose-td >/dev/null 2>&1; then
    groups=video
    getent group render >/dev/null && groups=video,render
    useradd --system --user-group --no-create-home --home-dir /var/lib/trt-pose-td \
        --shell /usr/sbin/nologin --groups "$groups" trt-pose-td
    echo "created system user trt-pose-td (groups: $groups)"
fi
systemd-analyze verify "$units/$unit"
systemctl daemon-reload
if [ "$START" = 1 ]; then
    systemctl enable --now "$unit"
    echo "started $unit: journalctl -u ${unit%.service} -f"
else
    systemctl enable "$unit"
    echo "enabled $unit (not started)"
fi
