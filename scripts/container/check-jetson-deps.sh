#!/usr/bin/env bash
# CI: can the Jetson images install their pinned dependencies? Asks PyPI (pip --dry-run, isolated
# from pip.conf and local indexes) for the install set of docker/Dockerfile.jetson per JetPack,
# for the image's own Python and platform, wheels only:
#   JetPack 5: docker/constraints-jp5.txt,    Python 3.8,  aarch64, manylinux <= 2_31
#   JetPack 6: docker/constraints-jetson.txt, Python 3.10, aarch64, manylinux <= 2_35
# Fails (exit 1) naming each pin that has no wheel there (Requires-Python, wheels for other tags
# only, a source distribution the image would have to compile), lies outside the install line's
# own ranges (numpy<1.24 on JetPack 5) or is missing. Exit 3: PyPI cannot be reached.
#   scripts/container/check-jetson-deps.sh        # both JetPacks, the committed files
#   scripts/container/check-jetson-deps.sh -v     # and list every wheel
# One run takes about 10 s (metadata through pip's cache); tests/docker/test_image_deps.py runs it.
set -euo pipefail
cd "$(dirname "$0")/../.."

# The checkout's virtualenv (packaging, a recent pip) unless PYTHON names another interpreter.
if [ -z "${PYTHON:-}" ]; then
    PYTHON=python3
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; fi
fi
exec "$PYTHON" scripts/container/image_deps.py check jp5 jetson "$@"
