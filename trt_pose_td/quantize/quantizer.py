"""Writing a Q/DQ ONNX: ONNX Runtime's static quantizer with TensorRT's constraints.

:func:`quantize_model` prepares the float graph (opset >= 13, ONNX Runtime's pre-processing,
unique node names), calibrates activation ranges on the given tensors, keeps Q/DQ in front of the
weighted layers only, optionally refines the ranges (``mse``, :mod:`.mse`) and records the
provenance in the file's ``metadata_props``. :func:`quantize_registry_model` does the same for a
registry model with its measured recipe (:mod:`trt_pose_td.int8_recipes`).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..assets import model_path, sha256_file
from ..errors import CalibrationError, ConfigError, require
from ..int8_recipes import (
    DEFAULT_EXCLUDES,
    DEFAULT_METHOD,
    METHODS,
    MSE_SAMPLES,
    OP_SETS,
    default_method,
    int8_source,
    quantized_path,
)
from ..models import ModelSpec, get_spec
from .calibration import batches, load_or_make
from .graph import opset, resolve_excludes, unquantize_other_consumers
from .mse import conv_inputs, refine_scales
from .simulate import float_values

log = logging.getLogger(__name__)
MIN_OPSET = 13


class _Reader:
    """ONNX Runtime CalibrationDataReader over (N, 3, H, W) float32 tensors."""

    def __init__(self, input_name: str, data: np.ndarray, batch_size: int) -> None:
        self.input_name, self.data, self.batch_size = input_name, data, batch_size
        self._it: Iterator[np.ndarray] = iter(())
        self.rewind()

    def rewind(self) -> None:
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


def _prepared(onnx_path: Path, work: Path) -> Tuple[Path, Any]:
    """Opset >= 13, ONNX Runtime's pre-quantization clean-up (shape inference, constant
    folding, Conv + bias Add fusion; standard ONNX ops only) and unique node names."""
    onnx = require("onnx", "eval")
    from onnx import version_converter
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model = onnx.load(str(onnx_path))
    version = opset(model)
    if version < MIN_OPSET:
        try:
            model = version_converter.convert_version(model, MIN_OPSET)
        except Exception as exc:  # the converter raises bare RuntimeErrors
            raise ConfigError(f"{onnx_path}: cannot convert opset {version} to {MIN_OPSET} for "
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


def quantize_model(spec: ModelSpec, onnx_path: Path, calib_data: np.ndarray, out_path: Path,
                   method: str = DEFAULT_METHOD, per_channel: bool = True,
                   exclude_nodes: Sequence[str] = (), op_set: str = "conv",
                   percentile: float = 99.999, batch_size: int = 8,
                   calibration_key: str = "") -> Path:
    """Write a Q/DQ ONNX of ``onnx_path`` calibrated on ``calib_data`` to ``out_path``.

    spec: the registry contract (input name, static batch); calib_data: (N, 3, H, W) float32
    network inputs from :func:`trt_pose_td.quantize.calibration.load_or_make`; method: a key of
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
    props = {"trt_pose_td.source_sha256": sha256_file(Path(onnx_path)),
             "trt_pose_td.quantize.calibration": calibration_key, "trt_pose_td.method": method,
             "trt_pose_td.per_channel": str(per_channel), "trt_pose_td.op_set": op_set,
             "trt_pose_td.excluded": ",".join(excluded),
             "trt_pose_td.quantize.calibration_samples": str(len(data))}
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
    pick = np.linspace(0, len(data) - 1, min(MSE_SAMPLES, len(data))).round().astype(int)
    values = float_values(float_model, input_name, data[pick], conv_inputs(qmodel))
    factors = refine_scales(qmodel, values)
    clipped = sum(f < 1.0 for f in factors.values())
    log.info("mse calibration: %d of %d activation ranges clipped below MinMax", clipped,
             len(factors))


def quantize_registry_model(name: str, images_dir: Path, annotations: Optional[Path],
                            method: Optional[str] = None, out_path: Optional[Path] = None,
                            input_size: Optional[Tuple[int, int]] = None,
                            exclude_nodes: Optional[Sequence[str]] = None,
                            per_channel: bool = True, op_set: str = "conv",
                            quiet: bool = False) -> Path:
    """Fetch registry model ``name``, make (or reuse) its calibration tensors from
    ``images_dir`` (+ COCO ``annotations`` for keypoint models) and write its Q/DQ model
    (default :func:`quantized_path`). ``exclude_nodes`` None = the measured default."""
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
