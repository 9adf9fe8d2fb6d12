"""Per-layer precision of a built engine, from TensorRT's engine inspector.

:func:`layer_precisions` parses the inspector's JSON (pure; TensorRT 8.x/10.x write
``"Format/Datatype": "Row major linear FP16 format (kLINEAR)"`` per tensor, 11.x a separate
``"DataType": "Half"``); :func:`inspect_plan` asks TensorRT for it. A layer's precision is the type
of its first input (what its kernel reads: an INT8 convolution reads Int8), else of its output.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Union

from ..errors import EngineError

if TYPE_CHECKING:
    from ..engine_meta import EngineMetadata
    from ..engines.trt_api import TrtFeatures

log = logging.getLogger(__name__)

_TYPE_WORDS = {
    "FP32": "fp32", "Float": "fp32", "FP16": "fp16", "Half": "fp16", "BF16": "bf16",
    "BFloat16": "bf16", "FP8": "fp8", "Int8": "int8", "UInt8": "uint8", "Int32": "int32",
    "Int64": "int64", "Bool": "bool", "Int4": "int4", "FP4": "fp4",
}
_TYPE_RE = re.compile(r"\b(" + "|".join(sorted(_TYPE_WORDS, key=len, reverse=True)) + r")\b")


@dataclass(frozen=True)
class LayerPrecisionInfo:
    """One engine layer: its name, TensorRT layer type and precision (``"?"`` when unknown)."""

    name: str
    layer_type: str
    precision: str


def tensor_precision(tensor: Dict[str, Any]) -> str:
    """Precision of one inspector tensor entry (``"?"`` when it does not say)."""
    for key in ("DataType", "Format/Datatype", "Format/DataType"):
        text = tensor.get(key)
        if isinstance(text, str):
            match = _TYPE_RE.search(text)
            if match:
                return _TYPE_WORDS[match.group(1)]
    return "?"


def layer_precisions(info: Union[str, Dict[str, Any]]) -> List[LayerPrecisionInfo]:
    """Layers of an ``get_engine_information(JSON)`` document, in engine order. Engines built
    without detailed profiling verbosity list names only (precision ``"?"``)."""
    doc = json.loads(info) if isinstance(info, str) else info
    layers = doc.get("Layers") if isinstance(doc, dict) else None
    if not isinstance(layers, list):
        raise EngineError("engine inspector output has no 'Layers' list")
    out = []
    for layer in layers:
        if isinstance(layer, str):
            out.append(LayerPrecisionInfo(layer, "?", "?"))
            continue
        precision = "?"
        for key in ("Inputs", "Outputs"):
            tensors = layer.get(key) or []
            if tensors and isinstance(tensors[0], dict):
                precision = tensor_precision(tensors[0])
                if precision != "?":
                    break
        out.append(LayerPrecisionInfo(str(layer.get("Name", "?")),
                                      str(layer.get("LayerType", "?")), precision))
    return out


def precision_counts(layers: Sequence[LayerPrecisionInfo]) -> Dict[str, int]:
    """Layer count per precision, most common first (reformatting layers excluded)."""
    counts = Counter(layer.precision for layer in layers if layer.layer_type != "Reformat")
    return dict(counts.most_common())


def summary_line(layers: Sequence[LayerPrecisionInfo]) -> str:
    """``"58 layers: 41 int8, 17 fp16"``."""
    counts = precision_counts(layers)
    total = sum(counts.values())
    return f"{total} layers: " + ", ".join(f"{n} {p}" for p, n in counts.items())


def int8_collapse(layers: Sequence[LayerPrecisionInfo], precision: str) -> Optional[str]:
    """A warning when an INT8 build runs no layer in INT8 (None otherwise or when unknown)."""
    counts = precision_counts(layers)
    if precision != "int8" or not counts or set(counts) == {"?"} or counts.get("int8"):
        return None
    return ("no layer of this INT8 engine runs in INT8 (" + summary_line(layers) + "): the "
            "calibration or the Q/DQ placement did not take")


def inspect_plan(plan: bytes, meta: EngineMetadata, features: TrtFeatures) -> str:
    """The engine inspector's JSON for a serialized engine (deserializes it on this GPU, with the
    runtime its sidecar ``meta`` asks for: DLA core, and host code allowed for a
    version-compatible plan, whose embedded lean runtime TensorRT refuses to load otherwise).

    The engine is already written when this runs: an inspector TensorRT does not provide
    (``create_engine_inspector`` returning None), that raises, or that returns nothing gives
    ``{"Layers": []}`` and a warning, not a failed build."""
    import tensorrt as trt

    from ..engines.trt_api import make_runtime

    runtime = make_runtime(meta, features)
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        raise EngineError("TensorRT could not deserialize the engine it just built")
    try:
        inspector: Optional[trt.EngineInspector] = engine.create_engine_inspector()
        text = "" if inspector is None else \
            str(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    except RuntimeError as exc:  # TensorRT's C++ errors arrive as RuntimeError
        log.warning("engine inspector failed (%s): layer precisions unknown", exc)
        text = ""
    if not text.strip():
        log.warning("TensorRT gave no engine inspector output for this %sengine: layer "
                    "precisions unknown", "version-compatible " if meta.version_compatible else "")
        return json.dumps({"Layers": []})
    return text
