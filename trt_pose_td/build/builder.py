"""ONNX -> serialized TensorRT engine (needs TensorRT and a GPU; type-checked against the 8.5,
10.3 and 10.16 API stubs, see :mod:`trt_pose_td.trt_api` for the ``TRT10_API`` convention).

One call of :func:`build_plan` per engine: parse the ONNX (the parser's own messages on failure),
add the optimisation profiles, configure precision / memory pool / tactic sources / timing cache
/ DLA / version compatibility / INT8 calibrator, build, save the timing cache.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..engine_meta import Profile
from ..errors import ConfigError, EngineError
from ..trt_api import init_plugins, trt_logger
from .calibrator import (
    CalibrationCache,
    CalibrationFeed,
    CalibratorCore,
    device_staging,
    make_entropy_calibrator,
)
from .env import BuildEnv
from .options import TACTIC_SOURCES, BuildOptions, LayerPrecision, tactic_mask
from .profiles import calibration_shapes, engine_profiles

if TYPE_CHECKING:  # the real API for mypy (against the stubs); never imported at run time here
    import tensorrt as trt

log = logging.getLogger(__name__)


@dataclass
class BuiltPlan:
    """A serialized engine and what it was built for. inputs: network input dims (-1 dynamic)."""

    plan: bytes
    inputs: Dict[str, List[int]]
    profiles: List[Profile]


@dataclass(frozen=True)
class PlanRequest:
    """One engine to build. onnx: what TensorRT parses; size: (W, H) of the image input;
    calib_data: (N, 3, H, W) float32 for the implicit calibrator, with its cache file."""

    onnx: Path
    role: str
    size: Optional[Tuple[int, int]]
    calib_data: Optional[np.ndarray] = None
    calib_cache: Optional[Path] = None
    timing_cache: Optional[Path] = None


def host_bytes(memory: Any) -> bytes:
    """Bytes of an ``IHostMemory`` (buffer protocol; the stubs do not declare it)."""
    return bytes(memory)


def create_network(builder: trt.Builder, env: BuildEnv, strongly_typed: bool
                   ) -> trt.INetworkDefinition:
    import tensorrt as trt

    TRT10_API = env.trt.api10
    if TRT10_API:
        flags = 0
        if strongly_typed or not env.trt.weak_typing:
            flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    else:
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    return builder.create_network(flags)


def parse_onnx(network: trt.INetworkDefinition, logger: trt.ILogger, path: Path
               ) -> trt.OnnxParser:
    """Fill ``network`` from ``path``; :class:`EngineError` with the parser's messages. The
    parser owns the network's weights: keep it alive until the engine is built."""
    import tensorrt as trt

    if not Path(path).is_file():
        raise EngineError(f"ONNX file not found: {path}")
    parser = trt.OnnxParser(network, logger)
    if parser.parse_from_file(str(path)):
        return parser
    messages = [" ".join(str(parser.get_error(i)).split()) for i in range(parser.num_errors)]
    raise EngineError(f"TensorRT's ONNX parser rejected {Path(path).name}: "
                      f"{'; '.join(messages) or 'no message (see the log above)'}")


def network_inputs(network: trt.INetworkDefinition) -> Dict[str, List[int]]:
    out = {}
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        out[tensor.name] = [int(tensor.shape[j]) for j in range(len(tensor.shape))]
    return out


def add_profiles(builder: trt.Builder, config: trt.IBuilderConfig,
                 profiles: Sequence[Profile]) -> None:
    import tensorrt as trt

    for shapes in profiles:
        profile = builder.create_optimization_profile()
        for name, s in shapes.items():
            profile.set_shape(name, trt.Dims(s["min"]), trt.Dims(s["opt"]), trt.Dims(s["max"]))
        config.add_optimization_profile(profile)


def set_calibrator(builder: trt.Builder, config: trt.IBuilderConfig, core: CalibratorCore,
                   shapes: Dict[str, List[int]]) -> Any:
    """Attach the implicit INT8 calibrator and its min = opt = max calibration profile; returns
    the calibrator, which must stay referenced until the build ends."""
    import tensorrt as trt

    profile = builder.create_optimization_profile()
    for name, shape in shapes.items():
        profile.set_shape(name, trt.Dims(shape), trt.Dims(shape), trt.Dims(shape))
    calibrator = make_entropy_calibrator(core)
    config.int8_calibrator = calibrator
    if not config.set_calibration_profile(profile):
        raise EngineError(f"TensorRT refused the calibration profile {shapes}")
    return calibrator


def calibrator_for(inputs: Dict[str, List[int]], request: PlanRequest, batch: int,
                   stack: ExitStack) -> Tuple[CalibratorCore, Dict[str, List[int]]]:
    """Feed, cache and device staging (closed with ``stack``) of the implicit calibrator for a
    single-input network."""
    if request.calib_data is None:
        raise EngineError("the INT8 calibrator needs calibration data")
    if len(inputs) != 1:
        raise ConfigError(f"implicit INT8 calibration feeds single-input networks; this one has "
                          f"{sorted(inputs)}: use --int8-mode qdq")
    shapes = calibration_shapes(inputs, batch, request.size)
    (name, shape), = shapes.items()
    feed = CalibrationFeed(request.calib_data, shape[0], name, shape)
    upload = stack.enter_context(device_staging(feed.batch_nbytes))
    return CalibratorCore(feed, CalibrationCache(request.calib_cache), upload), shapes


def set_precision(config: trt.IBuilderConfig, opts: BuildOptions, env: BuildEnv) -> None:
    """Precision flags. fp32 clears TF32 (on by default: from Ampere on, float32 convolutions and
    matrix products would round their inputs to 10-bit mantissas, so an "fp32" engine would not
    be FP32). fp16 / int8 set FP16 (+ INT8) on a weakly typed network; a strongly typed one takes
    the ONNX's types."""
    import tensorrt as trt

    if opts.precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)
        return
    if opts.strongly_typed or not env.trt.weak_typing:
        return
    config.set_flag(trt.BuilderFlag.FP16)  # int8 too: layers left unquantized run in FP16
    if opts.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)


def keep_layer_precisions(network: trt.INetworkDefinition, config: trt.IBuilderConfig,
                          rules: Sequence[LayerPrecision]) -> int:
    """Pin float layers matching ``rules`` (first match wins) to FP32/FP16; the count pinned."""
    import tensorrt as trt

    if not rules:
        return 0
    dtypes = {"fp32": trt.float32, "fp16": trt.float16}
    used, pinned = set(), 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        rule = next((r for r in rules if r.matches(layer.name, layer.type.name)), None)
        outputs = [layer.get_output(j) for j in range(layer.num_outputs)]
        if rule is None or any(t.dtype not in (trt.float32, trt.float16) for t in outputs):
            continue
        layer.precision = dtypes[rule.precision]
        for j in range(layer.num_outputs):
            layer.set_output_type(j, dtypes[rule.precision])
        used.add(rule)
        pinned += 1
    unused = [str(r) for r in rules if r not in used]
    if unused:
        raise ConfigError(f"--layer-precision {', '.join(unused)} matched no float layer; run "
                          "with -v to see the engine's layer names and types")
    config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    return pinned


def set_tactic_sources(config: trt.IBuilderConfig, spec: Optional[str]) -> None:
    import tensorrt as trt

    if not spec:
        return
    bits = {name: int(getattr(trt.TacticSource, name)) for name in TACTIC_SOURCES}
    if not config.set_tactic_sources(tactic_mask(spec, config.get_tactic_sources(), bits)):
        raise ConfigError(f"TensorRT refused the tactic sources {spec!r}")


def set_device(config: trt.IBuilderConfig, opts: BuildOptions, env: BuildEnv) -> None:
    """Memory pool, DLA (with GPU fallback), version compatibility, profiling verbosity."""
    import tensorrt as trt

    if opts.workspace_mib:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, opts.workspace_mib << 20)
    if opts.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = opts.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    TRT10_API = env.trt.api10
    if TRT10_API and opts.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # for the inspector summary


def attach_timing_cache(config: trt.IBuilderConfig, path: Optional[Path]) -> None:
    """Start from the timing cache file when there is one (a mismatched one is replaced)."""
    if path is None:
        return
    data = Path(path).read_bytes() if Path(path).is_file() else b""
    cache = config.create_timing_cache(data)
    if not config.set_timing_cache(cache, False):
        log.warning("timing cache %s does not fit this TensorRT/GPU; starting a new one", path)
        config.set_timing_cache(config.create_timing_cache(b""), False)
    elif data:
        log.info("timing cache %s (%d bytes)", path, len(data))


def save_timing_cache(config: trt.IBuilderConfig, path: Optional[Path]) -> None:
    if path is None:
        return
    data = host_bytes(config.get_timing_cache().serialize())
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(str(path) + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def configure(builder: trt.Builder, network: trt.INetworkDefinition, opts: BuildOptions,
              env: BuildEnv, request: PlanRequest, profiles: Sequence[Profile]
              ) -> trt.IBuilderConfig:
    """Profiles, precision (flags and pinned layers), tactic sources, device, timing cache."""
    config = builder.create_builder_config()
    add_profiles(builder, config, profiles)
    set_precision(config, opts, env)
    pinned = keep_layer_precisions(network, config, opts.layer_precisions)
    if pinned:
        log.info("%d layers pinned by --layer-precision", pinned)
    set_tactic_sources(config, opts.tactic_sources)
    set_device(config, opts, env)
    attach_timing_cache(config, request.timing_cache)
    return config


def build_plan(request: PlanRequest, opts: BuildOptions, env: BuildEnv) -> BuiltPlan:
    """Parse, configure and build one engine; :class:`EngineError` with TensorRT's errors."""
    import tensorrt as trt

    logger = trt_logger(opts.verbose)
    logger.errors.clear()
    init_plugins()
    builder = trt.Builder(logger)
    network = create_network(builder, env, opts.strongly_typed)
    parser = parse_onnx(network, logger, request.onnx)  # owns the weights until the build
    inputs = network_inputs(network)
    profiles = engine_profiles(inputs, opts.batches(request.role), request.size)
    config = configure(builder, network, opts, env, request, profiles)
    core, calibrator = None, None
    with ExitStack() as stack:
        if opts.int8 == "calibrator":
            core, shapes = calibrator_for(inputs, request, opts.calib_batch, stack)
            calibrator = set_calibrator(builder, config, core, shapes)
        plan = builder.build_serialized_network(network, config)
    del parser, calibrator  # TensorRT is done with the weights and the calibration data
    if core is not None and core.error is not None:
        raise core.error
    if plan is None:
        raise EngineError(f"TensorRT could not build {request.onnx.name}: "
                          f"{'; '.join(list(logger.errors)[-3:]) or 'see the log above (-v)'}")
    save_timing_cache(config, request.timing_cache)
    return BuiltPlan(host_bytes(plan), inputs, profiles)
