"""Test-only TensorRT engine building (the product's builder is ``trt_pose_td.build``).

Builds an engine + provenance sidecar from an ONNX file so the runtime tests (TrtEngine, GPU
pipeline, conformance suite) do not depend on the builder. Works with TensorRT 8.5 to 10.x;
cuBLAS/cuDNN tactics are off, as the staged TensorRT 8.5 payload ships them as stand-ins only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import pytest

Shapes = Dict[str, Tuple[Sequence[int], Sequence[int], Sequence[int]]]


def require_gpu_tensorrt():
    """(tensorrt module, Device) or skip the calling test saying what is missing."""
    from trt_pose_td.errors import TrtPoseError

    try:
        from trt_pose_td.cuda.driver import Device

        device = Device(0)
    except (ImportError, TrtPoseError) as exc:
        pytest.skip(f"no usable CUDA GPU: {exc}")
    trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed")
    return trt, device


def default_shapes(network, batch: Tuple[int, int, int] = (1, 4, 8),
                   hw: Optional[Tuple[int, int]] = None) -> Shapes:
    """min/opt/max per network input: dynamic batch -> ``batch``, dynamic H, W -> ``hw``."""
    shapes = {}
    for i in range(network.num_inputs):
        inp = network.get_input(i)
        dims = [int(inp.shape[j]) for j in range(len(inp.shape))]
        per = []
        for level in range(3):
            s = list(dims)
            if s[0] < 0:
                s[0] = batch[level]
            if len(s) == 4 and (s[2] < 0 or s[3] < 0):
                if hw is None:
                    raise ValueError(f"input {inp.name} has dynamic H/W: pass hw")
                s[2], s[3] = hw
            per.append(s)
        shapes[inp.name] = (per[0], per[1], per[2])
    return shapes


def build_engine(onnx_path: Path, engine_path: Path, role: str = "pose", fp16: bool = False,
                 batch: Tuple[int, int, int] = (1, 4, 8), hw: Optional[Tuple[int, int]] = None,
                 model: Optional[str] = None) -> Path:
    """Build ``engine_path`` (+ ``.json`` sidecar) from ``onnx_path``; skips without TensorRT."""
    from trt_pose_td.assets import sha256_file
    from trt_pose_td.engine_meta import EngineMetadata, write_metadata
    from trt_pose_td.engines.trt_api import trt_logger

    trt, device = require_gpu_tensorrt()
    logger = trt_logger()
    builder = trt.Builder(logger)
    flags = 0
    if int(trt.__version__.split(".")[0]) < 10:
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)
    sources = 0
    for name, member in trt.TacticSource.__members__.items():
        if name not in ("CUBLAS", "CUBLAS_LT", "CUDNN"):
            sources |= 1 << int(member)
    config.set_tactic_sources(sources)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    else:  # true fp32 (TF32 convolutions are on by default on Ampere and newer)
        config.clear_flag(trt.BuilderFlag.TF32)
    shapes = default_shapes(network, batch, hw)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in shapes.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise RuntimeError(f"TensorRT could not build {onnx_path}")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    engine_path.write_bytes(bytes(blob))
    info = device.info
    write_metadata(EngineMetadata(
        model=model or Path(onnx_path).stem, role=role, onnx_sha256=sha256_file(Path(onnx_path)),
        precision="fp16" if fp16 else "fp32", tensorrt_version=trt.__version__,
        gpu_name=info.name, compute_capability=info.compute_capability,
        build_command=f"tests/engines/trt_build.py {onnx_path} (test fixture)",
        profiles=[{n: {"min": list(lo), "opt": list(o), "max": list(hi)}
                   for n, (lo, o, hi) in shapes.items()}]), engine_path)
    device.close()
    return engine_path
