"""Value checks of the pipeline configuration (pure): one :class:`ConfigError` line per mistake.

:class:`~trt_pose_td.config.PipelineConfig` runs :func:`check_pipeline_config` in its
``__post_init__``, so the CLI, the service's TOML and the Python API all get the same checks. A
message names the flag (the TOML key is the same without dashes):
``--box-padding must be in (0, 10], not 0.0``.
"""

from __future__ import annotations

import difflib
import math
import numbers
from typing import Any, Collection, Dict, Mapping, Optional, Sequence, Tuple

from .decode import REFINEMENTS
from .engine_meta import INT8_MODES, PRECISIONS
from .errors import ConfigError
from .models import is_model_path

#: Inference backends (``auto``: TensorRT when it, a GPU and both engines are here).
BACKENDS = ("auto", "onnxruntime", "tensorrt")
#: CPU warp implementations (``PipelineConfig.preprocessor``): OpenCV, or the numpy twin of the
#: GPU crop kernel.
PREPROCESSORS = ("cv2", "twin")

def _fail(field: str, what: str) -> ConfigError:
    """``--max-batch must be >= 1, not 0``: the flag (the field and TOML key without dashes)."""
    return ConfigError(f"--{field.replace('_', '-')} must be {what}")


def check_number(field: str, value: Any, low: Optional[float] = None,
                 high: Optional[float] = None, integer: bool = False,
                 low_open: bool = False) -> None:
    """``value`` is a finite number (an int when ``integer``) within [low, high] ((low, high]
    when ``low_open``); else :class:`ConfigError` naming ``field`` and its flag."""
    kind = numbers.Integral if integer else numbers.Real  # numpy scalars too
    if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value):
        raise _fail(field, f"{'an integer' if integer else 'a number'}, not {value!r}")
    number = float(value)
    too_low = low is not None and (number <= low if low_open else number < low)
    too_high = high is not None and number > high
    if too_low or too_high:
        if low is not None and high is not None:
            span = f"in {'(' if low_open else '['}{low:g}, {high:g}]"
        elif low is not None:
            span = f"{'>' if low_open else '>='} {low:g}"
        else:
            span = f"<= {high:g}"
        raise _fail(field, f"{span}, not {value!r}")


def check_choice(field: str, value: Any, choices: Sequence[Any], optional: bool = False) -> None:
    if optional and value is None:
        return
    if value not in choices:
        raise _fail(field, f"one of {', '.join(map(str, choices))}, not {value!r}")


def check_pipeline_config(cfg: Any) -> None:
    """Every field of a :class:`~trt_pose_td.config.PipelineConfig` in range."""
    for name in ("detector", "pose", "detector_like", "pose_like"):
        value = getattr(cfg, name)
        if not isinstance(value, str) or not value.strip():
            raise _fail(name, f"a model name or an .onnx path, not {value!r}")
    for name in ("score_threshold", "iou_threshold"):
        check_number(name, getattr(cfg, name), 0.0, 1.0)
    check_number("max_persons", cfg.max_persons, 1, integer=True)
    check_number("max_batch", cfg.max_batch, 1, integer=True)
    # the crop is box x padding: 0 divides by zero (NaN keypoints), 10x is no longer a person
    check_number("box_padding", cfg.box_padding, 0.0, 10.0, low_open=True)
    if cfg.threads is not None:
        check_number("threads", cfg.threads, 1, integer=True)
    if cfg.det_size is not None:
        size = cfg.det_size
        if not isinstance(size, (tuple, list)) or len(size) != 2:
            raise _fail("det_size", f"(W, H), not {size!r}")
        for side in size:
            check_number("det_size", side, 32, 8192, integer=True)
            if side % 32:
                raise _fail("det_size", f"multiples of 32, not {size[0]}x{size[1]}")
    check_choice("refine", cfg.refine, REFINEMENTS)
    check_choice("backend", cfg.backend, BACKENDS)
    check_choice("preprocessor", cfg.preprocessor, PREPROCESSORS)
    check_choice("precision", cfg.precision, PRECISIONS, optional=True)
    check_choice("int8_mode", cfg.int8_mode, INT8_MODES, optional=True)
    check_number("det_every", cfg.det_every, 1, 10_000, integer=True)
    for name in ("flip", "recrop", "track", "smooth"):
        if not isinstance(getattr(cfg, name), bool):
            raise _fail(name, f"true or false, not {getattr(cfg, name)!r}")


def expected_models(cfg: Any) -> Tuple[Optional[str], Optional[str]]:
    """What the detector / keypoint files of ``cfg`` must look like, for messages: None for a
    registry name (its own name says it), else the registry model ``*_like`` names."""

    def want(name: str, like: str, role: str, flag: str) -> Optional[str]:
        return f"a {role} like {like} (--{flag}-like)" if is_model_path(name) else None

    return (want(cfg.detector, cfg.detector_like, "detector", "detector"),
            want(cfg.pose, cfg.pose_like, "keypoint model", "pose"))


# --- a [pipeline] table (TOML, --set, JSON) -> field values ----------------------------------
def parse_size(text: str) -> Tuple[int, int]:
    """``"320"`` -> (320, 320); ``"416x320"`` -> (416, 320) as (W, H); ValueError otherwise."""
    try:
        parts = [int(p) for p in str(text).lower().split("x")]
    except ValueError:
        raise ValueError(f"size must be N or WxH, not {text!r}") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) <= 0:
        raise ValueError(f"size must be N or WxH, not {text!r}")
    return parts[0], parts[1]


def unknown_key(what: str, name: str, known: Collection[str]) -> ConfigError:
    """``what: unknown key 'detsize' (did you mean 'det_size'?)``."""
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(sorted(known))})"
    return ConfigError(f"{what}: unknown key {name!r}{hint}")


def coerce(where: str, value: Any, kind: Any) -> Any:
    """A table value of type ``kind`` (bool, int, float, str), or :class:`ConfigError` naming
    ``where``: no silent conversions (an int is a float, nothing else changes type)."""
    ok = {bool: lambda v: isinstance(v, bool),
          int: lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool),
          float: lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool),
          str: lambda v: isinstance(v, str)}
    what = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if kind not in ok:
        return value
    if not ok[kind](value):
        raise ConfigError(f"{where} must be {what[kind]}, not {value!r}")
    return float(value) if kind is float else int(value) if kind is int else value


def pipeline_values(table: Mapping[str, Any], where: str, kinds: Mapping[str, Any]
                    ) -> Dict[str, Any]:
    """Field values of a ``[pipeline]`` table (keys = ``run`` flags without dashes); ``kinds``:
    each field's type (bool, int, float, str, or tuple for ``det_size``: N, "WxH" or [W, H]).
    Unknown keys and wrong types are one-line :class:`ConfigError` s naming ``where``; ranges
    and choices are checked when the config is built (:func:`check_pipeline_config`)."""
    out: Dict[str, Any] = {}
    for key, value in table.items():
        name = str(key).replace("-", "_")
        if name not in kinds:
            raise unknown_key(where, name, kinds)
        kind = kinds[name]
        if kind is tuple:
            out[name] = _size_value(f"{where} {name}", value)
        else:
            out[name] = None if value is None else coerce(f"{where} {name}", value, kind)
    return out


def _size_value(where: str, value: Any) -> Optional[Tuple[int, int]]:
    if value is None:
        return None
    if isinstance(value, (list, tuple)) and len(value) == 2 and \
            all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value):
        return int(value[0]), int(value[1])
    if isinstance(value, (str, numbers.Integral)) and not isinstance(value, bool):
        try:
            return parse_size(str(value))
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    raise ConfigError(f"{where}: size must be N, \"WxH\" or [W, H], not {value!r}")
