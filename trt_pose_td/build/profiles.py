"""Optimisation-profile shapes (pure): network input dims (-1 = dynamic) + batch ranges + the
image size -> min/opt/max shapes, in the sidecar's ``Profile`` format.

Image inputs are NCHW: the batch axis takes each :class:`~.options.BatchRange`, H and W take the
requested input size; fixed axes must agree with what is requested.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from ..engine_meta import Profile
from ..errors import ConfigError
from .options import BatchRange


def _image_shape(name: str, dims: Sequence[int], batch: int,
                 size: Optional[Tuple[int, int]]) -> List[int]:
    """One concrete NCHW shape for input ``name``; size: (W, H) or None."""
    dims = [int(d) for d in dims]
    if len(dims) != 4:
        raise ConfigError(f"input {name!r} has shape {dims}: only NCHW image inputs are supported")
    if dims[1] < 0:
        raise ConfigError(f"input {name!r} has a dynamic channel axis {dims}: export the ONNX with "
                          "3 channels")
    shape = [batch, dims[1], dims[2], dims[3]]
    for axis, want in ((2, size[1] if size else None), (3, size[0] if size else None)):
        if dims[axis] < 0:
            if want is None:
                raise ConfigError(f"input {name!r} has a dynamic {'HW'[axis - 2]} axis {dims}: "
                                  "give the input size (--det-size)")
            shape[axis] = want
        elif want is not None and dims[axis] != want:
            raise ConfigError(f"input {name!r} is fixed at {dims[3]}x{dims[2]} (WxH); it cannot be "
                              f"built at {size[0] if size else 0}x{size[1] if size else 0}")
    return shape


def engine_profiles(inputs: Mapping[str, Sequence[int]], batches: Sequence[BatchRange],
                    size: Optional[Tuple[int, int]] = None) -> List[Profile]:
    """One profile per batch range for network ``inputs`` (name -> dims with -1).

    A fixed batch axis (e.g. 1) only accepts ranges equal to it, or takes its own batch for a
    range that ``follows_static`` (the default detector profile); a dynamic H/W needs ``size``.
    """
    if not inputs:
        raise ConfigError("the network has no inputs")
    profiles: List[Profile] = []
    for rng in batches:
        profile: Profile = {}
        for name, dims in inputs.items():
            batch = (rng.min, rng.opt, rng.max)
            if int(dims[0]) >= 0 and batch != (dims[0],) * 3:
                if not rng.follows_static:
                    raise ConfigError(f"input {name!r} has a fixed batch of {dims[0]}: its batch "
                                      f"profile must be {dims[0]} (got {rng})")
                batch = (int(dims[0]),) * 3
            profile[name] = {key: _image_shape(name, dims, b, size)
                             for key, b in zip(("min", "opt", "max"), batch)}
        profiles.append(profile)
    return profiles


def calibration_shapes(inputs: Mapping[str, Sequence[int]], batch: int,
                       size: Optional[Tuple[int, int]] = None) -> Dict[str, List[int]]:
    """The implicit calibrator's profile (min = opt = max): ``batch`` images per call, or the
    fixed batch of a static-batch input."""
    out = {}
    for name, dims in inputs.items():
        b = int(dims[0]) if int(dims[0]) >= 0 else batch
        out[name] = _image_shape(name, dims, b, size)
    return out


def timing_cache_path(folder: Path, trt_version: str, compute_capability: str) -> Path:
    """The timing cache shared by every build with this TensorRT on this GPU architecture."""
    return Path(folder) / f"timing-trt{trt_version}-sm{compute_capability.replace('.', '')}.cache"
