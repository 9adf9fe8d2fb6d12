"""INT8 Q/DQ ONNX models (explicit quantization) calibrated on the real preprocessing.

The output is what TensorRT's explicit-quantization path consumes (the only INT8 path TensorRT 11
keeps) and what ONNX Runtime runs on a CPU, which is how INT8 accuracy is measured without a GPU:

* ``QuantizeLinear``/``DequantizeLinear`` pairs (QDQ format, opset >= 13) on the inputs of the
  quantized operators (by default every ``Conv``: the activation and the weight);
* symmetric int8 everywhere (zero point 0; activations [-128, 127], weights [-127, 127]), as
  TensorRT requires; weights per output channel (axis 0) unless ``per_channel=False``;
* weights stay float behind a Q/DQ pair and biases stay float (TensorRT folds both; TensorRT
  8.5 on JetPack 5 needs no int8/int32 initializers);
* activation ranges from ONNX Runtime's calibrators: ``entropy`` (KL), ``minmax`` or
  ``percentile`` over calibration tensors from :mod:`trt_pose_td.calibration` (letterboxed
  frames for detectors, run-time person crops for keypoint models; train2017, never val).

Files: ``<cache>/quantized/<model>.int8-<method>.onnx`` (:func:`quantized_path`); the ONNX
``metadata_props`` record the source ONNX sha256, the calibration tensors' key, the method and the
nodes kept in float, so a builder can put them into the engine's provenance.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .errors import CalibrationError, ConfigError, require
from .models import ModelSpec, get_spec, is_model_path
from .qdq_sensitivity import unquantize_other_consumers

log = logging.getLogger(__name__)

METHODS = ("entropy", "minmax", "percentile", "mse")
#: Calibration tensors used by the ``mse`` refinement (evenly spaced over the set).
MSE_SAMPLES = 16
#: Operator sets to quantize: ``conv`` (weighted layers only, TensorRT's recommendation) or
#: ``all`` (every operator ONNX Runtime can quantize).
OP_SETS: Dict[str, Optional[Tuple[str, ...]]] = {
    "conv": ("Conv", "ConvTranspose", "Gemm", "MatMul"),
    "all": None,
}
DEFAULT_METHOD = "mse"
#: Registry models whose INT8 file is made from another registry model: the NMS-in-graph
#: RTMDet is quantized as its raw-head twin (same network; our NMS stays outside int8).
INT8_SOURCE = {"rtmdet_nano_person": "rtmdet_nano_person_raw"}


def _load_choices() -> Dict[str, Dict[str, Any]]:
    """Per-model calibration method and Convs kept in float, chosen by measurement
    (``data/int8_choices.json``; see docs/accuracy.md for the tables and commands)."""
    import json

    path = Path(__file__).with_name("data") / "int8_choices.json"
    return dict(json.loads(path.read_text())["models"])


CHOICES = _load_choices()
DEFAULT_METHODS: Dict[str, str] = {m: c["method"] for m, c in CHOICES.items()}
DEFAULT_EXCLUDES: Dict[str, Tuple[str, ...]] = {
    m: tuple(c["keep_float"]) for m, c in CHOICES.items()}
#: Aliases accepted in ``exclude_nodes``: the first / last Conv in graph order.
FIRST_CONV, LAST_CONV = "@first-conv", "@last-conv"
MIN_OPSET = 13


def int8_source(model: str) -> str:
    """The registry model whose Q/DQ file serves ``model`` at INT8."""
    return INT8_SOURCE.get(model, model)


def default_method(model: str) -> str:
    return DEFAULT_METHODS.get(int8_source(model), DEFAULT_METHOD)


def quantized_path(model: str, method: Optional[str] = None, cache: Optional[Path] = None
                   ) -> Path:
    """``<cache>/quantized/<model>.int8-<method>.onnx`` (method: the model's measured default)."""
    from .assets import cache_dir

    method = method or default_method(model)
    if method not in METHODS:
        raise ConfigError(f"calibration method must be one of {METHODS}, not {method!r}")
    return Path(cache or cache_dir()) / "quantized" / f"{int8_source(model)}.int8-{method}.onnx"


def int8_config(cfg: Any) -> Any:
    """A :class:`~.pipeline.PipelineConfig` whose registry models point at their Q/DQ files.

    Paths given by the user are kept (they may already be Q/DQ models). Raises
    :class:`ConfigError` with the command that makes a missing file.
    """
    changes: Dict[str, str] = {}
    for role, task in (("detector", "detector"), ("pose", "pose")):
        name = getattr(cfg, role)
        if is_model_path(name):
            continue
        get_spec(name, task)
        path = quantized_path(name)
        if not path.is_file():
            raise ConfigError(f"no INT8 model for {name} at {path}; make it with: "
                              f"trt-pose-td quantize {name}")
        changes[role] = str(path)
        changes[f"{role}_like"] = int8_source(name)
    return replace(cfg, **changes)


class _Reader:
    """ONNX Runtime CalibrationDataReader over (N, 3, H, W) float32 tensors."""

    def __init__(self, input_name: str, data: np.ndarray, batch_size: int) -> None:
        self.input_name, self.data, self.batch_size = input_name, data, batch_size
        self._it: Iterator[np.ndarray] = iter(())
        self.rewind()

    def rewind(self) -> None:
        from .calibration import batches

        self._it = batches(self.data, self.batch_size)

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        batch = next(self._it, None)
        return None if batch is None else {self.input_name: batch}

    def __iter__(self) -> _Reader:
        return self

    def __next__(self) -> Dict[str, np.ndarray]:
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item


def conv_nodes(model: Any) -> List[str]:
    """Names of the Conv nodes of an ``onnx.ModelProto`` in graph order."""
    return [n.name for n in model.graph.node if n.op_type == "Conv"]


def resolve_excludes(model: Any, exclude_nodes: Sequence[str]) -> List[str]:
    """Node names to keep in float; ``@first-conv`` / ``@last-conv`` name the first/last Conv."""
    convs = conv_nodes(model)
    names = {n.name for n in model.graph.node}
    out = []
    for name in exclude_nodes:
        if name in (FIRST_CONV, LAST_CONV):
            if not convs:
                raise ConfigError(f"{name}: the model has no Conv node")
            out.append(convs[0] if name == FIRST_CONV else convs[-1])
        elif name in names:
            out.append(name)
        else:
            raise ConfigError(f"no node named {name!r} to keep in float")
    return out


def _prepared(onnx_path: Path, work: Path) -> Tuple[Path, Any]:
    """Opset >= 13, ONNX Runtime's pre-quantization clean-up (shape inference, constant
    folding, Conv + bias Add fusion; standard ONNX ops only) and unique node names."""
    onnx = require("onnx", "eval")
    from onnx import version_converter
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model = onnx.load(str(onnx_path))
    opset = _opset(model)
    if opset < MIN_OPSET:
        try:
            model = version_converter.convert_version(model, MIN_OPSET)
        except Exception as exc:  # the converter raises bare RuntimeErrors
            raise ConfigError(f"{onnx_path}: cannot convert opset {opset} to {MIN_OPSET} for "
                              f"Q/DQ ({exc})") from exc
    converted = work / "converted.onnx"
    onnx.save(model, str(converted))
    quant_pre_process(str(converted), str(work / "pre.onnx"), skip_symbolic_shape=True)
    model = onnx.load(str(work / "pre.onnx"))
    used = {n.domain for n in model.graph.node} | {""}
    kept = [o for o in model.opset_import if o.domain in used or o.domain == "ai.onnx"]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    seen: Dict[str, int] = {}
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen[node.name] = i
    path = work / "prepared.onnx"
    onnx.save(model, str(path))
    return path, model


def prepared_float_model(onnx_path: Path, work: Path) -> Path:
    """The float model exactly as the quantizer sees it (node names included), in ``work``."""
    return _prepared(Path(onnx_path), Path(work))[0]


def _opset(model: Any) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def quantize_model(spec: ModelSpec, onnx_path: Path, calib_data: np.ndarray, out_path: Path,
                   method: str = DEFAULT_METHOD, per_channel: bool = True,
                   exclude_nodes: Sequence[str] = (), op_set: str = "conv",
                   percentile: float = 99.999, batch_size: int = 8,
                   calibration_key: str = "") -> Path:
    """Write a Q/DQ ONNX of ``onnx_path`` calibrated on ``calib_data`` to ``out_path``.

    spec: the registry contract (input name, static batch); calib_data: (N, 3, H, W) float32
    network inputs from :func:`trt_pose_td.calibration.load_or_make`; method: a key of
    :data:`METHODS`; exclude_nodes: node names (or ``@first-conv`` / ``@last-conv``) kept in
    float; op_set: a key of :data:`OP_SETS`. Returns ``out_path``.
    """
    onnx = require("onnx", "eval")
    if method not in METHODS:
        raise ConfigError(f"calibration method must be one of {METHODS}, not {method!r}")
    if op_set not in OP_SETS:
        raise ConfigError(f"op set must be one of {tuple(OP_SETS)}, not {op_set!r}")
    data = np.asarray(calib_data, np.float32)
    if data.ndim != 4 or len(data) == 0:
        raise CalibrationError(f"calibration data must be (N, 3, H, W) with N > 0, not "
                               f"{data.shape}")
    # ONNX Runtime's histogram calibrators stack every batch's tensors: batches must be equal.
    bs = 1 if spec.static_batch or method not in ("minmax", "mse") else batch_size
    ops = OP_SETS[op_set]
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="qdq-") as tmp:
        src, model = _prepared(Path(onnx_path), Path(tmp))
        excluded = resolve_excludes(model, exclude_nodes)
        tmp_out = Path(tmp) / "qdq.onnx"
        _quantize_static(src, tmp_out, _Reader(spec.input_name, data, bs), method, ops,
                         per_channel, excluded, percentile, bs)
        qmodel = onnx.load(str(tmp_out))
        if ops:
            unquantize_other_consumers(qmodel, ops, excluded)
        if method == "mse":
            _refine_mse(qmodel, model, spec.input_name, data)
    from .assets import sha256_file

    props = {"trt_pose_td.source_sha256": sha256_file(Path(onnx_path)),
             "trt_pose_td.calibration": calibration_key, "trt_pose_td.method": method,
             "trt_pose_td.per_channel": str(per_channel), "trt_pose_td.op_set": op_set,
             "trt_pose_td.excluded": ",".join(excluded),
             "trt_pose_td.calibration_samples": str(len(data))}
    for key, value in props.items():
        entry = qmodel.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(qmodel, str(out_path))
    log.info("wrote %s (%s, %d calibration tensors, %d nodes in float)", out_path, method,
             len(data), len(excluded))
    return out_path


def _quantize_static(src: Path, out: Path, reader: _Reader, method: str,
                     ops: Optional[Tuple[str, ...]], per_channel: bool, excluded: List[str],
                     percentile: float, batch_size: int) -> None:
    """ONNX Runtime's static QDQ quantizer with TensorRT's constraints (symmetric int8, float
    weights behind a Q/DQ pair, float bias, no Q/DQ on the weighted layers' outputs)."""
    require("onnxruntime", "ort")
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    calib = {"entropy": CalibrationMethod.Entropy, "minmax": CalibrationMethod.MinMax,
             "percentile": CalibrationMethod.Percentile, "mse": CalibrationMethod.MinMax}[method]
    extra: Dict[str, Any] = {"ActivationSymmetric": True, "WeightSymmetric": True,
                             "AddQDQPairToWeight": True, "QuantizeBias": False,
                             "CalibMaxIntermediateOutputs": max(1, 64 // batch_size),
                             "CalibPercentile": percentile,
                             "CalibTensorRangeSymmetric": True}
    if ops:
        # Q/DQ on the inputs of weighted layers only (TensorRT's placement): their outputs,
        # pre-activation with a range per channel, stay float
        extra["OpTypesToExcludeOutputQuantization"] = list(ops)
    quantize_static(str(src), str(out), reader, quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=list(ops) if ops else None,
                    per_channel=per_channel, reduce_range=False,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    nodes_to_exclude=excluded, calibrate_method=calib, extra_options=extra)


def _refine_mse(qmodel: Any, float_model: Any, input_name: str, data: np.ndarray) -> None:
    from .qdq_mse import conv_inputs, float_values, refine_scales

    pick = np.linspace(0, len(data) - 1, min(MSE_SAMPLES, len(data))).round().astype(int)
    values = float_values(float_model, input_name, data[pick], conv_inputs(qmodel))
    factors = refine_scales(qmodel, values)
    clipped = sum(f < 1.0 for f in factors.values())
    log.info("mse calibration: %d of %d activation ranges clipped below MinMax", clipped,
             len(factors))


def qdq_summary(path: Path) -> Dict[str, Any]:
    """What a Q/DQ file holds: counts of Q/DQ nodes, Convs with a DQ'd weight and activation,
    per-channel weight scales, nonzero zero points, and the provenance metadata."""
    onnx = require("onnx", "eval")
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    producers = {o: n for n in graph.node for o in n.output}
    inits = {i.name: i for i in graph.initializer}
    convs = [n for n in graph.node if n.op_type == "Conv"]

    def from_dq(name: str) -> bool:
        node = producers.get(name)
        return node is not None and node.op_type == "DequantizeLinear"

    quantized = [c for c in convs if from_dq(c.input[0]) and from_dq(c.input[1])]
    per_channel = 0
    for c in quantized:
        scale = inits.get(producers[c.input[1]].input[1])
        if scale is not None and numpy_helper.to_array(scale).size > 1:
            per_channel += 1
    zero_points = [numpy_helper.to_array(inits[n.input[2]]) for n in graph.node
                   if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2
                   and n.input[2] in inits]
    return {
        "quantize": sum(n.op_type == "QuantizeLinear" for n in graph.node),
        "dequantize": sum(n.op_type == "DequantizeLinear" for n in graph.node),
        "convs": len(convs), "quantized_convs": len(quantized),
        "per_channel_convs": per_channel,
        "nonzero_zero_points": int(sum(int(np.any(z != 0)) for z in zero_points)),
        "int8_zero_points": all(z.dtype == np.int8 for z in zero_points),
        "opset": _opset(model),
        "metadata": {p.key: p.value for p in model.metadata_props},
    }


def quantize_registry_model(name: str, images_dir: Path, annotations: Optional[Path],
                            method: Optional[str] = None, out_path: Optional[Path] = None,
                            input_size: Optional[Tuple[int, int]] = None,
                            exclude_nodes: Optional[Sequence[str]] = None,
                            per_channel: bool = True, op_set: str = "conv",
                            quiet: bool = False) -> Path:
    """Fetch registry model ``name``, make (or reuse) its calibration tensors from
    ``images_dir`` (+ COCO ``annotations`` for keypoint models) and write its Q/DQ model
    (default :func:`quantized_path`). ``exclude_nodes`` None = the measured default."""
    from .assets import model_path, sha256_file
    from .calibration import load_or_make

    name = int8_source(name)
    spec = get_spec(name).with_input_size(input_size)
    method = method or default_method(name)
    onnx_path = model_path(spec, not quiet)
    data, cache = load_or_make(spec, sha256_file(onnx_path), images_dir, annotations,
                               quiet=quiet)
    if exclude_nodes is None:
        exclude_nodes = DEFAULT_EXCLUDES.get(name, ())
    return quantize_model(spec, onnx_path, data, out_path or quantized_path(name, method),
                          method, per_channel, exclude_nodes, op_set,
                          calibration_key=cache.stem)
