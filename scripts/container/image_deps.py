#!/usr/bin/env python3
"""What a GPU image's pip installs, asked of the package index for the image's own Python and
platform (never this machine's): check the pinned constraints file, or resolve a new one.

  python3 scripts/container/image_deps.py check jp5 jetson     # CI: check-jetson-deps.sh
  python3 scripts/container/image_deps.py check jp5 --constraints /tmp/old-jp5.txt
  python3 scripts/container/image_deps.py resolve jp5          # refresh-constraints.sh jp5

The requirements are read from the image's Dockerfile: every ``pip install`` of a RUN line,
with the ARG defaults (or the target's build args) substituted, environment markers evaluated for
the target Python (pip itself would evaluate them for the Python running it), and the project
(``.[service,track]``) expanded into its own Requires-Dist. pip then resolves them with
``--dry-run --only-binary=:all: --python-version X --platform manylinux..._ARCH`` against the
index, in isolated mode: no pip.conf, no find-links, no local mirror without Requires-Python.

``check`` fails (exit 1), one line per problem, when a pin lies outside the install line's own
ranges (numpy<1.24 on JetPack 5), when pip cannot resolve the set, naming each pin that has no
wheel for that Python and platform (Requires-Python, wheels only for other tags, sdist only: a
source build the image does not do), or when the set holds a package the file does not pin.
Exit 3: the index cannot be reached (the test skips then). Metadata comes through pip's cache
(``$PIP_CACHE_DIR`` or pip's default), so a second run downloads next to nothing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import ssl
import subprocess
import sys
import tempfile
import textwrap
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import InvalidVersion, Version
except ImportError:  # a bare python3: pip carries its own copy
    from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef,assignment,unused-ignore]
    from pip._vendor.packaging.utils import canonicalize_name  # type: ignore[no-redef,assignment,unused-ignore]
    from pip._vendor.packaging.version import InvalidVersion, Version  # type: ignore[no-redef,assignment,unused-ignore]

REPO = Path(__file__).resolve().parents[2]
INDEX_ENV = "TRT_POSE_TD_INDEX_URL"
DEFAULT_INDEX = "https://pypi.org/simple"
EXIT_PROBLEM, EXIT_USAGE, EXIT_OFFLINE = 1, 2, 3


@dataclass(frozen=True)
class Image:
    """One image build: its Dockerfile and build args, the Python and platform it installs for.

    glibc: the base's C library (Ubuntu 20.04: 2.31, 22.04: 2.35); wheels up to manylinux_2_<that>
    install there (the image upgrades pip first, so PEP 600 tags are understood). holds: extra
    ranges the resolution keeps to (cuda-python at the base's CUDA minor release).
    """

    name: str
    title: str
    dockerfile: str
    constraints: str
    python: str
    arch: str
    glibc: Tuple[int, int]
    build_args: Dict[str, str] = field(default_factory=dict)
    holds: Tuple[str, ...] = ()

    @property
    def platforms(self) -> List[str]:
        major, minor = self.glibc
        return [f"manylinux2014_{self.arch}"] + [f"manylinux_{major}_{m}_{self.arch}"
                                                 for m in range(17, minor + 1)]

    @property
    def where(self) -> str:
        return f"Python {self.python} on {self.arch} (manylinux <= {self.glibc[0]}_{self.glibc[1]})"


#: The images whose dependencies are resolved rather than installed here (their bases cannot be
#: pulled). The JetPack 5 build args are the ones docker/README.md and Dockerfile.jetson give.
IMAGES: Dict[str, Image] = {i.name: i for i in (
    Image("jetson", "JetPack 6 (L4T r36, Ubuntu 22.04)", "docker/Dockerfile.jetson",
          "docker/constraints-jetson.txt", "3.10", "aarch64", (2, 35),
          holds=("cuda-python<12.7",)),
    Image("jp5", "JetPack 5 (L4T r35, Ubuntu 20.04)", "docker/Dockerfile.jetson",
          "docker/constraints-jp5.txt", "3.8", "aarch64", (2, 31),
          build_args={"BASE_IMAGE": "nvcr.io/nvidia/l4t-jetpack:r35.4.1",
                      "CUDA_PYTHON": "cuda-python>=11.8,<11.8.3", "CUDA_ARCH": "sm_72",
                      "CONSTRAINTS": "docker/constraints-jp5.txt"}),
    Image("x86", "NGC TensorRT 24.08 (Ubuntu 22.04)", "docker/Dockerfile.x86",
          "docker/constraints-x86.txt", "3.10", "x86_64", (2, 35),
          holds=("cuda-python<12.7",)),
)}
ALIASES = {"jp6": "jetson"}


class Offline(Exception):
    """The package index cannot be reached."""


# -- what the Dockerfile installs -----------------------------------------------------------------
def dockerfile_args(text: str, overrides: Dict[str, str]) -> Dict[str, str]:
    """ARG defaults of a Dockerfile (``ARG NAME=value``), then the build args."""
    args = {}
    for line in text.splitlines():
        found = re.match(r"\s*ARG\s+(\w+)=(.*)$", line)
        if found:
            value = found.group(2).strip()
            args[found.group(1)] = shlex.split(value)[0] if value else ""
    args.update(overrides)
    return args


def run_commands(text: str) -> List[str]:
    """The shell command of every RUN instruction, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    return [line.split(None, 1)[1] for line in joined.splitlines()
            if line.strip().upper().startswith("RUN ") and len(line.split(None, 1)) == 2]


#: pip install options that take a value (the next word), so it is not read as a requirement.
_VALUE_OPTIONS = {"-c", "--constraint", "-r", "--requirement", "-i", "--index-url", "-t",
                  "--extra-index-url", "-f", "--find-links", "--target", "--platform", "--root",
                  "--python-version", "--cache-dir", "--prefix", "--implementation", "--abi",
                  "--progress-bar", "--only-binary", "--no-binary", "--upgrade-strategy"}


def pip_install_requirements(text: str, args: Dict[str, str]) -> List[str]:
    """Every requirement the Dockerfile's ``pip install`` commands name, ARGs substituted."""
    def substitute(word: str) -> str:
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), ""),
                      word)

    out = []
    for command in run_commands(text):
        lexer = shlex.shlex(command, posix=True, punctuation_chars="&|;")
        lexer.whitespace_split = True
        segments: List[List[str]] = [[]]
        for token in lexer:
            if token in ("&&", "||", ";", "|", "&"):
                segments.append([])
            else:
                segments[-1].append(token)
        for words in segments:
            if "install" not in words or not any(w.split("/")[-1].startswith("pip")
                                                 for w in words[:words.index("install")]):
                continue
            rest, skip = words[words.index("install") + 1:], False
            for word in rest:
                if skip:
                    skip = False
                elif word.startswith("-"):
                    skip = word in _VALUE_OPTIONS
                else:
                    out.append(substitute(word))
    return out


def marker_env(image: Image, extra: str = "") -> Dict[str, str]:
    """PEP 508 marker values of the image's interpreter."""
    return {"python_version": image.python, "python_full_version": f"{image.python}.0",
            "platform_machine": image.arch, "sys_platform": "linux", "platform_system": "Linux",
            "os_name": "posix", "implementation_name": "cpython",
            "platform_python_implementation": "CPython", "extra": extra}


def applies(req: Requirement, image: Image, extras: Sequence[str] = ()) -> bool:
    if req.marker is None:
        return True
    return any(req.marker.evaluate(marker_env(image, e)) for e in ("", *extras))


def bare(req: Requirement) -> str:
    """The requirement without its marker (already evaluated for the target)."""
    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    return f"{req.name}{extras}{req.specifier}"


_PROJECT: Dict[str, List[str]] = {}


def project_requires(pip: Pip) -> List[str]:
    """The project's Requires-Dist, as pip builds its metadata from setup.py (markers kept;
    built once per run)."""
    if pip.index in _PROJECT:
        return _PROJECT[pip.index]
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        proc = pip.run(["install", "--dry-run", "--no-deps", "--ignore-installed", "--quiet",
                        "--report", str(report), str(REPO)])
        if proc.returncode != 0:
            raise SystemExit(f"image_deps: pip cannot read the project's metadata:\n"
                             f"{proc.stderr.strip()}")
        item = json.loads(report.read_text())["install"][0]
    _PROJECT[pip.index] = list(item["metadata"].get("requires_dist") or [])
    return _PROJECT[pip.index]


def image_requirements(image: Image, pip: Pip) -> List[Requirement]:
    """What the image's pip installs, for the image's Python: the Dockerfile's requirements
    (markers evaluated, the project expanded into its requirements with its extras) + holds."""
    text = (REPO / image.dockerfile).read_text()
    words = pip_install_requirements(text, dockerfile_args(text, image.build_args))
    out: List[Requirement] = []
    for word in words:
        if word.startswith((".", "/")):  # the project from the build context
            extras = re.findall(r"\w[\w-]*", word.partition("[")[2])
            out += [r for r in map(Requirement, project_requires(pip)) if applies(r, image, extras)]
        else:
            req = Requirement(word)
            if applies(req, image):
                out.append(req)
    return out + [Requirement(h) for h in image.holds]


# -- pins -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    line: int

    def __str__(self) -> str:
        return f"{self.name}=={self.version}"


def read_pins(path: Path) -> Dict[str, Pin]:
    """``name==version`` lines of a constraints file, by canonical name."""
    pins: Dict[str, Pin] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep:
            raise SystemExit(f"image_deps: {path}:{number}: not name==version: {raw!r}")
        pins[canonicalize_name(name.strip())] = Pin(name.strip(), version.strip(), number)
    return pins


def pins_outside_ranges(pins: Dict[str, Pin], reqs: Sequence[Requirement]) -> List[str]:
    """Pins the install line's own ranges refuse (numpy==1.24.4 against numpy<1.24)."""
    out = []
    for req in reqs:
        pin = pins.get(canonicalize_name(req.name))
        if pin is not None and req.specifier and not req.specifier.contains(pin.version,
                                                                             prereleases=True):
            out.append(f"{pin} (line {pin.line}) is outside {bare(req)}, which the image "
                       "installs")
    return out


# -- pip ------------------------------------------------------------------------------------------
def ca_bundle() -> Optional[str]:
    for candidate in (os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE"),
                      os.environ.get("REQUESTS_CA_BUNDLE"), "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and os.path.isfile(candidate):
            return candidate
    return None


@dataclass
class Pip:
    """``python -m pip`` in isolated mode against one index (pip.conf and PIP_* are ignored:
    a local mirror without Requires-Python is how packaging==26.3 got into the JetPack 5 file)."""

    index: str
    cache_dir: Optional[str] = os.environ.get("PIP_CACHE_DIR")

    def base(self) -> List[str]:
        cmd = [sys.executable, "-m", "pip", "--isolated", "--disable-pip-version-check",
               "--no-input", "--retries", "2", "--timeout", "30"]
        cert = ca_bundle()
        if cert:
            cmd += ["--cert", cert]
        if self.cache_dir:
            cmd += ["--cache-dir", self.cache_dir]
        return cmd

    def run(self, argv: Sequence[str]) -> subprocess.CompletedProcess:
        return subprocess.run(self.base() + list(argv) + ["--index-url", self.index],
                              capture_output=True, text=True, timeout=900)

    def dry_run(self, image: Image, reqs: Sequence[str], constraints: Optional[Path] = None,
                no_deps: bool = False, verbose: bool = False) -> Tuple[Optional[dict], str]:
        """pip's install report for ``image`` (None when it cannot resolve) and its output."""
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / "report.json"
            argv = ["install", "--dry-run", "--ignore-installed", "--only-binary=:all:",
                    "--python-version", image.python, "--target", str(Path(tmp) / "t"),
                    "--report", str(report)]
            for platform in image.platforms:
                argv += ["--platform", platform]
            if constraints is not None:
                argv += ["-c", str(constraints)]
            if no_deps:
                argv.append("--no-deps")
            if verbose:
                argv.append("-vv")
            proc = self.run(argv + list(reqs))
            output = proc.stdout + proc.stderr
            if proc.returncode == 0 and report.is_file():
                return json.loads(report.read_text()), output
            return None, output

    def reachable(self) -> None:
        """:class:`Offline` when the index does not answer."""
        context = ssl.create_default_context(cafile=ca_bundle())
        try:
            with urllib.request.urlopen(self.index.rstrip("/") + "/pip/", timeout=20,
                                        context=context) as reply:
                reply.read(1)
        except (urllib.error.URLError, OSError, ssl.SSLError) as exc:
            raise Offline(f"cannot reach the package index {self.index} ({exc}); set --index-url "
                          f"or ${INDEX_ENV} to a mirror that serves Requires-Python") from None


def resolved(report: dict) -> Dict[str, Tuple[str, str]]:
    """canonical name -> (name==version, wheel file) of a pip install report."""
    out: Dict[str, Tuple[str, str]] = {}
    for item in report["install"]:
        meta = item["metadata"]
        url = item.get("download_info", {}).get("url", "")
        out[canonicalize_name(meta["name"])] = (f"{meta['name']}=={meta['version']}",
                                                url.rsplit("/", 1)[-1])
    return out


# -- why a pin does not install -------------------------------------------------------------------
def _file_version(filename: str) -> Tuple[str, str]:
    """(canonical name, version) of a wheel or sdist file name ('' when not one)."""
    if filename.endswith(".whl"):
        parts = filename.split("-")
        return (canonicalize_name(parts[0]), parts[1]) if len(parts) >= 5 else ("", "")
    for ext in (".tar.gz", ".zip", ".tar.bz2"):
        if filename.endswith(ext):
            name, _, version = filename[:-len(ext)].rpartition("-")
            return canonicalize_name(name), version
    return "", ""


def _same_version(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def why_not(pin: Pin, image: Image, output: str) -> str:
    """Why pip (``-vv`` output of a ``--no-deps`` dry run of ``pin``) found nothing to install."""
    requires: Optional[str] = None
    wheel_tags: List[str] = []
    sdist = False
    for line in output.splitlines():
        url = re.search(r"(https?://\S+?)(?:#\S*)?(?:\s|\)|$)", line)
        if url is None:
            continue
        name, version = _file_version(url.group(1).rsplit("/", 1)[-1].split("#")[0])
        if name != canonicalize_name(pin.name) or not _same_version(version, pin.version):
            continue
        if "requires a different Python" in line:
            found = re.search(r"not in: '([^']*)'", line)
            requires = found.group(1) if found else "another Python"
        elif "No sources permitted" in line or "No binaries permitted" in line:
            sdist = True
        elif "none of the wheel's tags" in line:
            tags = re.search(r"tags \(([^)]*)\)", line)
            wheel_tags += tags.group(1).split(", ")[:1] if tags else []
    cp = "cp" + image.python.replace(".", "")
    if requires:
        return f"Requires-Python {requires} excludes Python {image.python}"
    if wheel_tags:
        why = (f"no {cp} wheel for {image.arch} up to manylinux_{image.glibc[0]}_"
               f"{image.glibc[1]} (wheels: {', '.join(sorted(set(wheel_tags))[:4])}")
        return why + (", and a source distribution the image would have to compile)" if sdist
                      else ")")
    if sdist:
        return ("no wheel at all, only a source distribution: a source build the image "
                "does not do (--only-binary=:all:)")
    return "no such release on the index"


def diagnose(pins: Dict[str, Pin], image: Image, pip: Pip, extra: Sequence[Requirement]
             ) -> List[str]:
    """One line per pin that cannot install on ``image`` by itself, with what would: the pins
    are tried together (``--no-deps``), each one pip names is explained and dropped, until the
    rest installs (one pip run per bad pin, plus one)."""
    out: List[str] = []
    left = dict(pins)
    while left:
        report, output = pip.dry_run(image, [str(p) for p in left.values()], no_deps=True,
                                     verbose=True)
        named = re.findall(r"No matching distribution found for (\S+)", output)
        key = canonicalize_name(Requirement(named[-1]).name) if named else ""
        if report is not None or key not in left:
            break
        pin = left.pop(key)
        ranges = [bare(r) for r in extra if canonicalize_name(r.name) == key] or [pin.name]
        newest, _ = pip.dry_run(image, ranges, no_deps=True)
        alternative = (f"; newest that installs: {resolved(newest)[key][0]}"
                       if newest and key in resolved(newest) else "")
        out.append(f"{pin} (line {pin.line}): {why_not(pin, image, output)}{alternative}")
    return out


def conflict_lines(output: str) -> str:
    keep = [ln.strip() for ln in output.splitlines()
            if ln.startswith("ERROR") or "requested" in ln or " depends on " in ln]
    return "; ".join(keep[:8]) or output.strip()[-400:]


# -- commands -------------------------------------------------------------------------------------
def check(image: Image, pip: Pip, constraints: Path, verbose: bool = False) -> List[str]:
    """Problems of ``constraints`` for ``image`` (empty: everything installs from wheels)."""
    pins = read_pins(constraints)
    reqs = image_requirements(image, pip)
    problems = pins_outside_ranges(pins, reqs)
    report, output = pip.dry_run(image, [bare(r) for r in reqs], constraints)
    if report is None:
        problems += diagnose(pins, image, pip, reqs) or [
            f"pip cannot resolve the install set: {conflict_lines(output)}"]
        return problems
    got = resolved(report)
    for key, (pinned, wheel) in sorted(got.items()):
        if key not in pins:
            problems.append(f"{pinned} is installed but not pinned (scripts/container/"
                            f"refresh-constraints.sh {image.name})")
        elif verbose:
            print(f"  {pinned:32s} {wheel}")
    unused = sorted(str(p) for k, p in pins.items() if k not in got)
    if unused:
        print(f"  note: pinned but not installed: {', '.join(unused)}")
    print(f"  {len(got)} packages, every one a wheel for {image.where}")
    return problems


def resolve(image: Image, pip: Pip) -> str:
    """A constraints file for ``image``: pip's choice, newest first, Requires-Python honoured."""
    reqs = [bare(r) for r in image_requirements(image, pip)]
    report, output = pip.dry_run(image, reqs)
    if report is None:
        raise SystemExit(f"image_deps: pip cannot resolve {image.name}: {conflict_lines(output)}")
    lines = sorted((pinned for pinned, _ in resolved(report).values()), key=str.lower)
    today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    header = textwrap.wrap(
        f"scripts/container/refresh-constraints.sh {image.name}, {today}: pip's resolution of "
        f"the install line of {image.dockerfile} for {image.title}: {image.where}, wheels only, "
        "Requires-Python honoured (not installed here).", 96)
    return "\n".join([
        f"# Pinned dependencies of the {image.name} image (docker/README.md, constraints).",
        *(f"# {line}" for line in header), *lines]) + "\n"


def target(name: str) -> Image:
    name = ALIASES.get(name, name)
    if name not in IMAGES:
        raise argparse.ArgumentTypeError(f"unknown image {name!r}: {', '.join(IMAGES)}")
    return IMAGES[name]


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="image_deps.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=("check", "resolve"))
    p.add_argument("images", nargs="+", type=target, metavar="IMAGE",
                   help=f"{', '.join(IMAGES)} (jp6 = jetson)")
    p.add_argument("--constraints", type=Path, default=None, metavar="FILE",
                   help="check this file instead of the image's own (one image only)")
    p.add_argument("--index-url", default=os.environ.get(INDEX_ENV, DEFAULT_INDEX),
                   help=f"package index (default: ${INDEX_ENV} or {DEFAULT_INDEX})")
    p.add_argument("-v", "--verbose", action="store_true", help="list every wheel")
    args = p.parse_args(argv)
    if args.constraints is not None and (len(args.images) != 1 or args.command != "check"):
        p.error("--constraints goes with `check` and one image")
    pip = Pip(args.index_url)
    try:
        pip.reachable()
    except Offline as exc:
        print(f"image_deps: {exc}", file=sys.stderr)
        return EXIT_OFFLINE
    if args.command == "resolve":
        if len(args.images) != 1:
            p.error("resolve takes one image")
        sys.stdout.write(resolve(args.images[0], pip))
        return 0
    failed = 0
    for image in args.images:
        constraints = args.constraints or REPO / image.constraints
        print(f"{image.name}: {constraints} for {image.title}, {image.where}")
        problems = check(image, pip, constraints, args.verbose)
        for line in problems:
            print(f"{image.name}: {line}", file=sys.stderr)
        sys.stdout.flush()
        failed += bool(problems)
        print(f"{image.name}: {'FAILED' if problems else 'ok'}")
    return EXIT_PROBLEM if failed else 0


if __name__ == "__main__":
    sys.exit(main())
