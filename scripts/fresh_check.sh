#!/usr/bin/env bash
# What a newcomer gets on a fresh machine, checked (CI runs it through ./scripts/test.sh):
#   this checkout's files as git sees them (tracked + untracked-not-ignored: exactly what a clone
#   of the committed tree holds) copied into an empty folder with no ../shared beside it, no
#   TRT_POSE_TD_MIRROR, an empty HOME and asset cache, then
#   1. ./scripts/demo.sh there: out/poses.jsonl must hold >= 8 persons (box score >= 0.3, 17
#      keypoints) on the packaged photo, with nothing fetched;
#   2. the sdist and a wheel built from that sdist both carry the default models and the photo;
#      the wheel installed into a fresh venv runs `trt-pose-td run` on the packaged sample.
# pip's own download cache is shared with this machine (it holds PyPI wheels, not our assets).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
PYTHON=$("$PYTHON" -c 'import sys; print(sys.executable)')
PIP_CACHE=$("$PYTHON" -m pip cache dir 2>/dev/null || echo "$HOME/.cache/pip")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/trt-pose-td-fresh.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/home" "$WORK/clone" "$WORK/elsewhere"

"$PYTHON" - "$REPO" "$WORK/clone" <<'EOF'
import os, shutil, subprocess, sys
repo, dest = sys.argv[1:]
files = subprocess.run(["git", "-C", repo, "ls-files", "-z", "--cached", "--others",
                        "--exclude-standard"], check=True, capture_output=True).stdout
for rel in filter(None, files.decode().split("\0")):
    src = os.path.join(repo, rel)
    if os.path.isfile(src):  # tracked files deleted in the working tree are gone in a commit too
        os.makedirs(os.path.dirname(os.path.join(dest, rel)) or dest, exist_ok=True)
        shutil.copy2(src, os.path.join(dest, rel))
EOF

fresh() {  # a newcomer's environment: no mirror, no cache, an empty HOME
    env -u TRT_POSE_TD_MIRROR -u TRT_POSE_TD_CACHE -u XDG_CACHE_HOME -u VIRTUAL_ENV \
        HOME="$WORK/home" PIP_CACHE_DIR="$PIP_CACHE" PYTHON="$PYTHON" "$@"
}

check_poses() {  # check_poses FILE: >= 8 confident persons with 17 keypoints on one frame
    "$PYTHON" - "$1" <<'EOF'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) == 1, f"{len(lines)} lines"
persons = json.loads(lines[0])["persons"]
good = [p for p in persons if p["score"] >= 0.3 and len(p["keypoints"]) == 17]
assert len(good) >= 8, f"only {len(good)} confident persons"
print(f"   {sys.argv[1]}: {len(persons)} persons, {len(good)} with box score >= 0.3")
EOF
}

echo "== fresh checkout (no ../shared, no mirror, empty HOME): ./scripts/demo.sh"
(cd "$WORK/clone" && fresh ./scripts/demo.sh > "$WORK/demo.log" 2>&1) \
    || { cat "$WORK/demo.log"; echo "demo.sh failed on a fresh checkout"; exit 1; }
check_poses "$WORK/clone/out/poses.jsonl"
[ -s "$WORK/clone/out/000000001000.jpg" ] || { echo "no annotated photo"; exit 1; }
if [ -e "$WORK/home/.cache/trt_pose_td/models" ]; then
    echo "demo.sh fetched models although they ship in the package"; exit 1
fi

echo "== sdist + wheel (from the sdist), installed into a fresh venv"
fresh "$WORK/clone/.venv/bin/python" -m pip install -q build >/dev/null
(cd "$WORK/clone" && fresh .venv/bin/python -m build -q --outdir "$WORK/dist" . \
    > "$WORK/build.log" 2>&1) || { cat "$WORK/build.log"; exit 1; }
"$PYTHON" - "$WORK/dist" <<'EOF'
import pathlib, sys, tarfile, zipfile
dist = pathlib.Path(sys.argv[1])
need = ("trt_pose_td/data/models/rtmdet_nano_person_rawhead.onnx",
        "trt_pose_td/data/models/pp_tinypose_256x192.onnx",
        "trt_pose_td/data/samples/000000001000.jpg", "trt_pose_td/data/NOTICE.md")
(wheel,) = dist.glob("*.whl"); (sdist,) = dist.glob("*.tar.gz")
names = {"wheel": zipfile.ZipFile(wheel).namelist(),
         "sdist": ["/".join(n.split("/")[1:]) for n in tarfile.open(sdist).getnames()]}
for kind, listed in names.items():
    missing = [n for n in need if n not in listed]
    assert not missing, f"{kind} lacks {missing}"
print(f"   {wheel.name} {wheel.stat().st_size / 2**20:.1f} MiB, "
      f"{sdist.name} {sdist.stat().st_size / 2**20:.1f} MiB: both carry the models and photo")
EOF
fresh "$PYTHON" -m venv "$WORK/wheelenv"
wheel=$(ls "$WORK"/dist/*.whl)
fresh "$WORK/wheelenv/bin/python" -m pip install -q "${wheel}[ort]" > "$WORK/pip.log" 2>&1 \
    || { cat "$WORK/pip.log"; exit 1; }
(cd "$WORK/elsewhere" && fresh "$WORK/wheelenv/bin/trt-pose-td" run -o out -q) \
    || { echo "trt-pose-td run from the installed wheel failed"; exit 1; }
check_poses "$WORK/elsewhere/out/poses.jsonl"
echo "== fresh machine: OK"
