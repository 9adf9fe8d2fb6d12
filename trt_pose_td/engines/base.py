"""The Engine seam: named inputs/outputs, ``infer(feeds) -> outputs``, ``close()`` (pure).

A template method, as Polygraphy's runners do it: :meth:`Engine.infer` checks the engine is open
and the feeds are exactly its inputs (names, dtypes, shapes), then calls the backend's
:meth:`Engine._infer`. A backend implements ``_infer`` and :attr:`Engine.closed`; no backend
repeats those checks, and every backend refuses the same feeds with the same message.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Tuple

import numpy as np

from ..errors import EngineError
from ..models import ModelSpec


@dataclass(frozen=True)
class TensorSpec:
    """A named tensor: shape with -1 for dynamic axes, numpy dtype."""

    name: str
    shape: Tuple[int, ...]
    dtype: np.dtype

    def accepts(self, shape: Tuple[int, ...]) -> bool:
        return len(shape) == len(self.shape) and all(
            d < 0 or d == s for d, s in zip(self.shape, shape))


class Engine(abc.ABC):
    """One loaded network. Owns its resources: call :meth:`close` or use ``with``.

    Backends implement :meth:`_infer` (the run itself, on feeds already checked) and
    :attr:`closed`; :meth:`infer` is the same for all of them.
    """

    #: Path or description of what was loaded (for messages).
    source: str = ""

    @property
    @abc.abstractmethod
    def inputs(self) -> Dict[str, TensorSpec]: ...

    @property
    @abc.abstractmethod
    def outputs(self) -> Dict[str, TensorSpec]: ...

    @property
    def max_batch(self) -> int:
        """Largest batch one :meth:`infer` call takes (0 = unbounded, 1 = static batch)."""
        first = next(iter(self.inputs.values()))
        return 0 if first.shape[0] < 0 else int(first.shape[0])

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran: nothing can run any more."""
        return False

    def infer(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Run once: outputs by name. ``feeds`` maps every input name to an array of its dtype
        and shape; :class:`EngineError` (one line, what was expected and what came) for a closed
        engine or feeds that do not match :attr:`inputs`, before the backend sees them."""
        self.check_open()
        self.check_feeds(feeds)
        return self._infer(feeds)

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """The backend's run on checked feeds (the engine is open, the feeds are its inputs)."""
        raise NotImplementedError(f"{type(self).__name__} must implement _infer (its run on "
                                  "checked feeds), or override infer")

    def close(self) -> None:  # noqa: B027 - engines without resources need not override it
        """Release the engine's resources (idempotent)."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check_open(self) -> None:
        """Raise :class:`EngineError` when the engine is :attr:`closed`."""
        if self.closed:
            raise EngineError(f"{self.source}: engine is closed")

    def check_feeds(self, feeds: Mapping[str, np.ndarray]) -> None:
        """Raise :class:`EngineError` unless ``feeds`` match :attr:`inputs` exactly."""
        missing = set(self.inputs) - set(feeds)
        extra = set(feeds) - set(self.inputs)
        if missing or extra:
            raise EngineError(f"{self.source}: inputs {sorted(self.inputs)} expected, got "
                              f"{sorted(feeds)}")
        for name, spec in self.inputs.items():
            arr = feeds[name]
            if arr.dtype != spec.dtype or not spec.accepts(tuple(arr.shape)):
                raise EngineError(f"{self.source}: input {name} wants {spec.dtype} "
                                  f"{list(spec.shape)}, got {arr.dtype} {list(arr.shape)}")


def check_contract(engine: Engine, spec: ModelSpec, expected: Optional[str] = None) -> None:
    """Refuse an engine whose tensors do not match the registry contract of ``spec``.

    Catches the wrong model passed for a role (a detector as the keypoint model, a different
    export): the message names what was expected (``expected``, default the spec's name) and
    what the file has.
    """
    problems = []
    if spec.input_name not in engine.inputs:
        problems.append(f"no input {spec.input_name!r} (has {sorted(engine.inputs)})")
    else:
        shape = engine.inputs[spec.input_name].shape
        w, h = spec.preprocess.input_size
        if len(shape) != 4 or shape[1] not in (-1, 3):
            problems.append(f"input {spec.input_name!r} is {list(shape)}, not [N, 3, H, W]")
        elif not spec.variable_input and (shape[2], shape[3]) not in ((h, w), (-1, -1)):
            problems.append(f"input {spec.input_name!r} is {shape[2]}x{shape[3]}, "
                            f"expected {h}x{w}")
    missing = [n for n in spec.outputs.values() if n not in engine.outputs]
    if missing:
        problems.append(f"no output(s) {missing} (has {sorted(engine.outputs)})")
    if problems:
        raise EngineError(f"{engine.source} does not look like {expected or spec.name} "
                          f"({spec.task}, decoder {spec.decoder}): {'; '.join(problems)}")


def check_pair(detector: Engine, det_spec: ModelSpec, pose: Engine, pose_spec: ModelSpec,
               expected: Tuple[Optional[str], Optional[str]] = (None, None)) -> None:
    """:func:`check_contract` for both roles; says so when the two files were swapped."""
    for engine, spec, want, other in ((detector, det_spec, expected[0], pose_spec),
                                      (pose, pose_spec, expected[1], det_spec)):
        try:
            check_contract(engine, spec, want)
        except EngineError as exc:
            try:
                check_contract(engine, other)
            except EngineError:
                raise exc from None
            raise EngineError(f"{exc}. It is a {other.task} model: were the detector and "
                              "keypoint files swapped (--detector / --pose)?") from None
