"""Compile one ``kernels/*.cu`` file with g++ through ``cuda_shim.h`` into a shared library.

The .cu text is compiled as it ships, with two additions the shim needs and nothing else:

- inline PTX (``asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));``) cannot be C++; each ``asm``
  statement is replaced, on the same lines, by a call of the shim function that implements that
  instruction (:data:`PTX`), with a ``static_assert`` that every operand has its constraint's
  size. An instruction the shim does not implement stops the build with its name;
- one ``SHIM_KERNEL(name)`` line per ``extern "C" __global__`` function, after the text: the
  ctypes entry points ``shim_launch_<name>`` / ``shim_nparams_<name>``.

``#line`` keeps g++'s messages (and the shim's barrier reports) on the .cu file's own lines.
Libraries are cached by a hash of the header, the translated text, the flags and the compiler.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

HEADER = Path(__file__).resolve().parent / "cuda_shim.h"
#: Every file of the shim (their text is part of the cache key).
SHIM_FILES = (HEADER, HEADER.with_name("shim_runtime.h"))
CXX = os.environ.get("CXX", "g++")
#: IEEE float and double as the kernels are compiled (--fmad=false, no fast math).
FLAGS = ("-std=c++20", "-O2", "-fPIC", "-shared", "-pthread", "-fvisibility=hidden",
         "-ffp-contract=off", "-fno-fast-math", "-Wall", "-Wno-unused-function")
SANITIZERS = {"address": ("-fsanitize=address", "-fno-omit-frame-pointer"),
              "thread": ("-fsanitize=thread",)}
#: Thread schedules of cuda_shim.h (see its header comment).
SCHEDULES = ("free", "forward", "reverse")
#: Inline PTX the shim implements: mnemonic -> C++ function taking the operands %0, %1, ...
PTX: Dict[str, str] = {"cvt.rn.f16.f32": "::shim::ptx_cvt_rn_f16_f32"}
_CONSTRAINT_BYTES = {"h": 2, "r": 4, "l": 8, "f": 4, "d": 8}
_KERNEL = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(')
_ASM = re.compile(r"\b(?:asm|__asm__)\b(?:\s+(?:volatile|__volatile__)\b)?\s*\(")


class BuildError(RuntimeError):
    """The .cu file cannot be compiled through the shim (the message says why and where)."""


def _skip_literal(text: str, i: int) -> int:
    """Index after the string / char literal or comment starting at ``i`` (else ``i``)."""
    if text.startswith("//", i):
        end = text.find("\n", i)
        return len(text) if end < 0 else end
    if text.startswith("/*", i):
        end = text.find("*/", i + 2)
        return len(text) if end < 0 else end + 2
    if text[i] in "\"'":
        j = i + 1
        while j < len(text) and text[j] != text[i]:
            j += 2 if text[j] == "\\" else 1
        return j + 1
    return i


def _code_only(text: str) -> str:
    """``text`` with comments blanked (same length, newlines kept) so regexes skip them."""
    out, i = [], 0
    while i < len(text):
        j = _skip_literal(text, i)
        if j == i:
            out.append(text[i])
            i += 1
        else:
            chunk = text[i:j]
            out.append(chunk if chunk[0] in "\"'" else re.sub(r"[^\n]", " ", chunk))
            i = j
    return "".join(out)


def _split_top(text: str, sep: str) -> List[str]:
    """Split on ``sep`` outside parentheses and literals (``::`` is never a ':' separator)."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(text):
        j = _skip_literal(text, i)
        if j != i:
            i = j
            continue
        c = text[i]
        if c == ":" and text.startswith("::", i):
            i += 2
            continue
        depth += c == "("
        depth -= c == ")"
        if c == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def _close_paren(text: str, i: int) -> int:
    """Index of the ')' matching the '(' at ``i``."""
    depth = 0
    while i < len(text):
        j = _skip_literal(text, i)
        if j != i:
            i = j
            continue
        depth += text[i] == "("
        depth -= text[i] == ")"
        if depth == 0:
            return i
        i += 1
    raise BuildError("unbalanced parentheses in an asm statement")


def _operand(spec: str, where: str) -> Tuple[str, str]:
    m = re.fullmatch(r'\s*"([=+&]*)([a-z])"\s*\((.*)\)\s*', spec, re.S)
    if not m or m.group(2) not in _CONSTRAINT_BYTES:
        raise BuildError(f"{where}: asm operand {spec.strip()!r} not understood by the shim")
    return m.group(2), m.group(3)


def _translate_asm(statement: str, where: str) -> str:
    """``asm(...)`` (without the trailing ';') -> the shim call, on as many lines."""
    inner = statement[statement.index("(") + 1:-1]
    parts = _split_top(inner, ":")
    template = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', parts[0]))
    instr = [s.strip() for s in template.split(";") if s.strip()]
    if len(instr) != 1:
        raise BuildError(f"{where}: the shim takes one PTX instruction per asm, not {template!r}")
    mnemonic, _, rest = instr[0].partition(" ")
    if mnemonic not in PTX:
        raise BuildError(f"{where}: inline PTX {mnemonic!r} is not implemented by the shim; add "
                         f"it to cuda_shim.h and PTX in {Path(__file__).name} (known: "
                         f"{sorted(PTX)})")
    specs = [s for p in parts[1:3] for s in _split_top(p, ",") if s.strip()]
    ops = [_operand(s, where) for s in specs]
    order = [int(n) for n in re.findall(r"%(\d+)", rest)]
    if sorted(order) != list(range(len(ops))):
        raise BuildError(f"{where}: operands {rest!r} do not use each of the {len(ops)} given")
    checks = "".join(f'static_assert(sizeof({e}) == {_CONSTRAINT_BYTES[c]}, "asm operand '
                     f'%{i} ({c}) has the wrong size"); ' for i, (c, e) in enumerate(ops))
    call = f"{PTX[mnemonic]}({', '.join(ops[n][1] for n in order)});"
    return "do { " + checks + call + " } while (0)" + "\n" * statement.count("\n")


def translate(text: str, name: str) -> Tuple[str, List[str]]:
    """(.cu text with inline PTX translated, names of its extern "C" __global__ kernels)."""
    code = _code_only(text)
    if re.search(r"\bextern\s+__shared__\b", code):
        raise BuildError(f"{name}: dynamic shared memory (extern __shared__) is not in the shim "
                         "(nor in Kernels._launch, which passes 0 bytes); size it statically")
    out, pos = [], 0
    for m in _ASM.finditer(code):
        end = _close_paren(code, m.end() - 1)
        where = f"{name}:{code.count(chr(10), 0, m.start()) + 1}"
        out.append(text[pos:m.start()])
        out.append(_translate_asm(text[m.start():end + 1], where))
        pos = end + 1
    out.append(text[pos:])
    return "".join(out), _KERNEL.findall(code)


def compiler_version() -> str:
    try:
        return subprocess.run([CXX, "--version"], capture_output=True, text=True,
                              check=True).stdout.splitlines()[0]
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BuildError(f"no C++ compiler ({CXX}: {exc}); install g++ (apt-get install g++) "
                         "or set CXX") from None


def default_cache() -> Path:
    from trt_pose_td.assets import cache_dir

    return cache_dir() / "cpu_cuda"


def build(source: Path, cache: Optional[Path] = None, sanitize: Optional[str] = None) -> Path:
    """The shared library of ``source`` (a .cu file), compiled unless cached. Returns its path."""
    if not source.is_file():
        raise BuildError(f"no kernel source {source}")
    translated, kernels = translate(source.read_text(), source.name)
    if not kernels:
        raise BuildError(f"{source}: no extern \"C\" __global__ kernel to export")
    flags = list(FLAGS) + list(SANITIZERS[sanitize] if sanitize else ())
    unit = (f'#line 1 "{source}"\n{translated}\n#line 1 "<shim exports>"\n'
            + "".join(f"SHIM_KERNEL({k})\n" for k in kernels))
    key = hashlib.sha256("\0".join([*(f.read_text() for f in SHIM_FILES), unit, " ".join(flags),
                                    compiler_version()]).encode()).hexdigest()[:16]
    out_dir = Path(cache or default_cache())
    lib = out_dir / f"{source.stem}.{sanitize or 'plain'}.{key}.so"
    if lib.is_file():
        return lib
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=str(out_dir)) as tmp:
        cpp = Path(tmp) / f"{source.stem}.shim.cpp"
        cpp.write_text(unit)
        so = Path(tmp) / lib.name
        proc = subprocess.run([CXX, *flags, "-include", str(HEADER), str(cpp), "-o", str(so)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise BuildError(f"g++ failed on {source} through the shim:\n{proc.stderr[-4000:]}")
        os.replace(so, lib)
    return lib


class ShimLibrary:
    """A built library: launch its kernels, read the shim's reports, the half conversions."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lib = ctypes.CDLL(str(self.path))
        self._lib.shim_errors.restype = ctypes.c_long
        self._lib.shim_errors.argtypes = [ctypes.c_char_p, ctypes.c_long,
                                          ctypes.POINTER(ctypes.c_long)]
        self._lib.shim_set_math_ulps.argtypes = [ctypes.c_int, ctypes.c_longlong]
        self._lib.shim_set_schedule.argtypes = [ctypes.c_int]
        for fn in (self._lib.shim_f32_to_f16, self._lib.shim_f16_to_f32):
            fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long]

    def has_kernel(self, name: str) -> bool:
        return hasattr(self._lib, f"shim_launch_{name}")

    def nparams(self, name: str) -> int:
        return int(getattr(self._lib, f"shim_nparams_{name}")())

    def launch(self, name: str, grid: Tuple[int, int, int], block: Tuple[int, int, int],
               params: int) -> int:
        """Run kernel ``name`` (params: address of its void* array); 0 or a CUresult code."""
        fn = getattr(self._lib, f"shim_launch_{name}")
        fn.argtypes = [ctypes.POINTER(ctypes.c_uint)] * 2 + [ctypes.c_void_p]
        return int(fn((ctypes.c_uint * 3)(*grid), (ctypes.c_uint * 3)(*block), params))

    def errors(self) -> Tuple[int, int, str]:
        """(reports, divergent-barrier reports, the first ones' text) since the last call."""
        buf = ctypes.create_string_buffer(8192)
        div = ctypes.c_long(0)
        count = self._lib.shim_errors(buf, len(buf), ctypes.byref(div))
        return int(count), int(div.value), buf.value.decode(errors="replace")

    def set_schedule(self, schedule: str) -> None:
        """How the threads of a block run: free (concurrently) | forward | reverse (in turns)."""
        self._lib.shim_set_schedule(SCHEDULES.index(schedule))

    def set_math_ulps(self, mode: str, ulps: int = 1) -> None:
        """Move every transcendental's result by ``ulps``: mode exact | up | down | random."""
        codes = {"exact": 0, "up": 1, "down": 2, "random": 3}
        self._lib.shim_set_math_ulps(codes[mode], int(ulps))

    def f32_to_f16(self, values: np.ndarray) -> np.ndarray:
        """float32 array -> uint16 half bits, as the shim's cvt.rn.f16.f32 rounds."""
        src = np.ascontiguousarray(values, np.float32)
        out = np.empty(src.shape, np.uint16)
        self._lib.shim_f32_to_f16(src.ctypes.data, out.ctypes.data, src.size)
        return out

    def f16_to_f32(self, halves: np.ndarray) -> np.ndarray:
        """uint16 half bits -> float32, as the shim's __half2float."""
        src = np.ascontiguousarray(halves, np.uint16)
        out = np.empty(src.shape, np.float32)
        self._lib.shim_f16_to_f32(src.ctypes.data, out.ctypes.data, src.size)
        return out
