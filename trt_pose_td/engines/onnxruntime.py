"""ONNX Runtime engine: the CPU default and the accuracy reference."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Union

import numpy as np

from ..errors import EngineError, require
from .base import Engine, TensorSpec

log = logging.getLogger(__name__)

_ORT_TYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8, "tensor(bool)": np.bool_,
}


def _shape(dims: Sequence[object]) -> tuple:
    return tuple(d if isinstance(d, int) and d >= 0 else -1 for d in dims)


class OrtEngine(Engine):
    """An ONNX model in an ``onnxruntime.InferenceSession``.

    threads: intra-op threads (None = ONNX Runtime's default, one per physical core);
    providers: ONNX Runtime providers (default CPU).
    """

    def __init__(self, path: Union[str, Path], threads: Optional[int] = None,
                 providers: Optional[Sequence[str]] = None) -> None:
        ort = require("onnxruntime", "ort")
        self.source = str(path)
        if not Path(path).is_file():
            raise EngineError(f"model file not found: {path}")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
        # Q/DQ (INT8) models run as simulated int8 (int8-rounded values, float arithmetic),
        # which is what TensorRT computes; ONNX Runtime's own x86 int8 kernels (u8s8,
        # VPMADDUBSW) saturate and would not. No effect on float models.
        opts.add_session_config_entry("session.disable_quant_qdq", "1")
        try:
            self._session = ort.InferenceSession(
                str(path), opts, providers=list(providers or ["CPUExecutionProvider"]))
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EngineError(f"cannot load ONNX model {path}: {msg}") from exc
        self._inputs = {i.name: TensorSpec(i.name, _shape(i.shape), np.dtype(_ORT_TYPES.get(
            i.type, np.float32))) for i in self._session.get_inputs()}
        self._outputs = {o.name: TensorSpec(o.name, _shape(o.shape), np.dtype(_ORT_TYPES.get(
            o.type, np.float32))) for o in self._session.get_outputs()}
        self._names = list(self._outputs)

    @property
    def inputs(self) -> Dict[str, TensorSpec]:
        return self._inputs

    @property
    def outputs(self) -> Dict[str, TensorSpec]:
        return self._outputs

    @property
    def closed(self) -> bool:
        return getattr(self, "_session", None) is None  # None also when it never opened

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        try:
            values = self._session.run(self._names, dict(feeds))
        except Exception as exc:
            raise EngineError(f"{self.source}: inference failed: {exc}") from exc
        return dict(zip(self._names, values))

    def close(self) -> None:
        self._session = None
