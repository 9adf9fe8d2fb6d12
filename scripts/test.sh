#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh Debian/Ubuntu machine, then run it.
#   ./scripts/test.sh            # full suite (what CI runs)
#   ./scripts/test.sh -k assets  # extra arguments go to pytest
# Installs: the Debian packages below (apt-get, when missing), a virtualenv in .venv with the
# package and its [dev] extra. Uses ../shared as the data mirror when TRT_POSE_TD_MIRROR is unset.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use for real: an MQTT broker, a headless browser, systemd-analyze,
# podman, runc and mmdebstrap (scripts/container/) build and run the CPU image.
APT_PACKAGES=(mosquitto chromium chromium-driver systemd podman runc mmdebstrap)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "== apt-get install ${missing[*]}"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "== creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi
echo "== pip install -e '.[dev]'"
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 \
    | { grep -v "^WARNING: Location" || true; }

if [ -z "${TRT_POSE_TD_MIRROR:-}" ] && [ -d ../shared/models ]; then
    TRT_POSE_TD_MIRROR="$(cd ../shared && pwd)"
    export TRT_POSE_TD_MIRROR
fi
echo "== data mirror: ${TRT_POSE_TD_MIRROR:-(none: tests needing real models will skip)}"

echo "== ruff"
.venv/bin/ruff check .
# The CPU image with podman: build time, size, layers (its checks: tests/docker/test_container.py).
if [ $# -eq 0 ]; then
    scripts/container/build-cpu.sh
fi
echo "== pytest"
.venv/bin/python -m pytest -q "$@"

# A newcomer's machine: a copy of this checkout with no mirror, no cache, an empty HOME runs
# demo.sh, and the wheel built from it runs from a fresh venv (scripts/fresh_check.sh).
if [ $# -eq 0 ]; then
    ./scripts/fresh_check.sh
fi

# JetPack 5 ships Python 3.8: run the CPU suite there too when an interpreter is available.
PY38=""
for candidate in python3.8 "$HOME"/.pyenv/versions/3.8*/bin/python3.8; do
    if "$candidate" -c "import sys; assert sys.version_info[:2] == (3, 8)" 2>/dev/null; then
        PY38=$candidate
        break
    fi
done
if [ -n "$PY38" ] && [ $# -eq 0 ]; then
    echo "== Python 3.8 ($PY38): package + CPU tests"
    [ -x .venv38/bin/python ] || "$PY38" -m venv .venv38
    .venv38/bin/python -m pip install -q --disable-pip-version-check -e '.[ort,eval,service]' \
        pytest prometheus-client 2>&1 | { grep -v "^WARNING: Location" || true; }
    .venv38/bin/python -m pytest -q -p no:cacheprovider -m "not slow" \
        --ignore=tests/test_typecheck.py
elif [ $# -eq 0 ]; then
    echo "== no Python 3.8 interpreter here: skipped the 3.8 run"
fi
