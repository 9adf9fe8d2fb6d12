"""Optimisation profiles of a TensorRT engine (pure): which profile covers a run, and whether the
engine was built for the input size the pipeline is configured with.

A TensorRT engine has one or more optimisation profiles, each a (min, max) shape range per input
(``trt-pose-td build --pose-batch 1,8,32 --pose-batch 1,1,4`` builds two). An execution context
runs one profile at a time; :meth:`ProfileSet.select` picks the tightest one covering the shapes
of a run, so a small batch takes the profile tuned for it and a large one the profile that
reaches it.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..errors import EngineError

Shape = Tuple[int, ...]
#: (min shape, max shape) of one input in one profile.
Range = Tuple[Shape, Shape]


def as_shape(dims: Any) -> Shape:
    """A TensorRT ``Dims`` (or any sequence) -> tuple of ints."""
    return tuple(int(dims[i]) for i in range(len(dims)))


def volume(shape: Sequence[int]) -> int:
    """Elements of ``shape`` (1 for a scalar)."""
    return int(np.prod(shape, dtype=np.int64)) if len(shape) else 1


def within(shape: Sequence[int], lo: Sequence[int], hi: Sequence[int]) -> bool:
    """True when ``shape`` has the rank of ``lo``/``hi`` and lies between them on every axis."""
    return len(shape) == len(hi) == len(lo) and all(
        a <= int(d) <= b for d, a, b in zip(shape, lo, hi))


def _text(shapes: Mapping[str, Sequence[int]]) -> str:
    return ", ".join(f"{n} {list(s)}" for n, s in shapes.items())


@dataclass(frozen=True)
class ProfileSet:
    """Every optimisation profile of one engine: ``profiles[i][input name] = (min, max)``."""

    source: str
    profiles: Tuple[Dict[str, Range], ...]

    def __post_init__(self) -> None:
        if not self.profiles or not self.profiles[0]:
            raise EngineError(f"{self.source}: the engine has no input profile")

    def covering(self, shapes: Mapping[str, Sequence[int]]) -> Tuple[int, ...]:
        """Indices of the profiles in which every named shape fits."""
        return tuple(i for i, p in enumerate(self.profiles)
                     if all(n in p and within(s, *p[n]) for n, s in shapes.items()))

    def select(self, shapes: Mapping[str, Sequence[int]]) -> int:
        """The tightest profile (smallest maximum volume) covering ``shapes``;
        :class:`EngineError` saying what the engine takes when none does."""
        found = self.covering(shapes)
        if not found:
            raise EngineError(f"{self.source}: input {_text(shapes)} is outside the engine's "
                              f"profiles ({self.describe()}); rebuild with a larger profile or "
                              "lower --max-batch")
        return min(found, key=lambda i: (sum(volume(hi) for _, hi in
                                             self.profiles[i].values()), i))

    def describe(self) -> str:
        """``"image [1, 3, 256, 192]..[8, 3, 256, 192]"`` per profile, ``" | "``-separated."""
        return " | ".join(", ".join(f"{n} {list(lo)}..{list(hi)}" for n, (lo, hi) in p.items())
                          for p in self.profiles)

    def bounds(self, name: str) -> Range:
        """Smallest min and largest max of input ``name`` over all profiles."""
        ranges = [p[name] for p in self.profiles]
        return (tuple(min(r[0][i] for r in ranges) for i in range(len(ranges[0][0]))),
                tuple(max(r[1][i] for r in ranges) for i in range(len(ranges[0][1]))))

    @property
    def max_batch(self) -> int:
        """The largest batch of the first input any profile takes."""
        first = next(iter(self.profiles[0]))
        return int(self.bounds(first)[1][0])


def size_mismatch(profiles: ProfileSet, input_name: str, size: Tuple[int, int],
                  model: str, role: str, build_command: str) -> Optional[str]:
    """Why an engine cannot run ``input_name`` at ``size`` = (W, H) (None: some profile takes
    that H and W; batch limits are checked per run): one line with the command that rebuilds it
    for the configured size."""
    w, h = size
    if any(within((h, w), p[input_name][0][2:], p[input_name][1][2:]) for p in profiles.profiles):
        return None
    lo, hi = profiles.bounds(input_name)
    fixed = (lo[2], lo[3]) == (hi[2], hi[3])
    built = f"{hi[3]}x{hi[2]}" if fixed else f"{lo[3]}x{lo[2]}..{hi[3]}x{hi[2]}"
    hint = f" (or run with --det-size {built})" if role == "detector" and fixed else ""
    return (f"{profiles.source}: the engine takes {model} input {input_name} at {built}, the "
            f"pipeline runs it at {w}x{h}; rebuild it: {rebuild_at(build_command, role, size)}"
            f"{hint}")


def rebuild_at(build_command: str, role: str, size: Tuple[int, int]) -> str:
    """The sidecar's rebuild command, for a detector with ``--det-size`` set to ``size``."""
    if role != "detector" or not build_command.startswith("trt-pose-td build"):
        return build_command
    args = shlex.split(build_command)
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg == "--det-size":
            skip = True
            continue
        if not arg.startswith("--det-size="):
            out.append(arg)
    return " ".join(shlex.quote(a) for a in out) + f" --det-size {size[0]}x{size[1]}"
