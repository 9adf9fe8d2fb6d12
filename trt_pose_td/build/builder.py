"""ONNX -> serialized TensorRT engine (needs TensorRT and a GPU; type-checked against the 8.5,
10.3 and 10.16 API stubs, see :mod:`trt_pose_td.engines.trt_api` for the ``TRT10_API`` convention).

One call of :func:`build_plan` per engine, one engine after the other: parse the ONNX (the
parser's own messages on failure), add the optimisation profiles, configure precision / memory
pool / tactic sources / timing cache / DLA / version compatibility / INT8 calibrator, build, save
the timing cache. The workspace pool is sized from the device memory free at that moment
(:func:`~.options.workspace_limit_mib`), and a build that runs out of memory (TensorRT's
"Could not find any implementation", an out-of-memory error, or no engine and no reason) is one
line saying so, with the free memory, the workspace and what to do (:func:`build_failure`).
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..engine_meta import Profile
from ..engines.trt_api import init_plugins, trt_logger
from ..errors import ConfigError, EngineError
from .calibrator import (
    CalibrationCache,
    CalibrationFeed,
    CalibratorCore,
    device_staging,
    make_entropy_calibrator,
)
from .env import BuildEnv, device_memory
from .options import (
    TACTIC_SOURCES,
    BuildOptions,
    LayerPrecision,
    smaller_workspace,
    tactic_mask,
    workspace_limit_mib,
)
from .profiles import calibration_shapes, engine_profiles

if TYPE_CHECKING:  # the real API for mypy (against the stubs); never imported at run time here
    import tensorrt as trt

log = logging.getLogger(__name__)


#: What TensorRT says (lower case) when a build ran out of memory; "could not find any
#: implementation" is how TensorRT 8.5 - 10 report a build OOM (jetson-first-run A7).
OOM_SIGNS = ("could not find any implementation", "out of memory", "outofmemory",
             "insufficient memory", "memory allocation", "could not be allocated", "bad_alloc")


@dataclass
class BuiltPlan:
    """A serialized engine and what it was built for. inputs: network input dims (-1 dynamic);
    free_mib / workspace_mib: device memory free before the build, workspace pool it was given."""

    plan: bytes
    inputs: Dict[str, List[int]]
    profiles: List[Profile]
    free_mib: int = 0
    workspace_mib: int = 0


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
                   stack: ExitStack, trt_version: Optional[str] = None
                   ) -> Tuple[CalibratorCore, Dict[str, List[int]]]:
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
    cache = CalibrationCache(request.calib_cache, trt_version)
    return CalibratorCore(feed, cache, upload), shapes


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


def set_device(config: trt.IBuilderConfig, opts: BuildOptions, env: BuildEnv,
               workspace_mib: int) -> None:
    """Workspace pool, DLA (with GPU fallback), version compatibility, profiling verbosity."""
    import tensorrt as trt

    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mib) << 20)
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
              env: BuildEnv, request: PlanRequest, profiles: Sequence[Profile],
              workspace_mib: int) -> trt.IBuilderConfig:
    """Profiles, precision (flags and pinned layers), tactic sources, device (workspace
    ``workspace_mib``), timing cache."""
    config = builder.create_builder_config()
    add_profiles(builder, config, profiles)
    set_precision(config, opts, env)
    pinned = keep_layer_precisions(network, config, opts.layer_precisions)
    if pinned:
        log.info("%d layers pinned by --layer-precision", pinned)
    set_tactic_sources(config, opts.tactic_sources)
    set_device(config, opts, env, workspace_mib)
    attach_timing_cache(config, request.timing_cache)
    return config


def build_failure(what: str, errors: Sequence[str], free_mib: int, workspace_mib: int
                  ) -> EngineError:
    """The one-line error of a build that gave no engine: out of memory when TensorRT's last
    errors (or the exception) say so, else TensorRT's own last errors; always with the memory
    that was free and the workspace the build had."""
    last = "; ".join(list(errors)[-3:])
    memory = f"free {free_mib} MiB, workspace {workspace_mib} MiB"
    advice = (f"close other GPU processes, add swap, or pass --workspace "
              f"{smaller_workspace(workspace_mib)}")
    if any(sign in last.lower() for sign in OOM_SIGNS):
        hint = (" (TensorRT reports a build out of memory this way; with memory to spare it means "
                "no tactic supports a layer)") if "implementation" in last.lower() else ""
        return EngineError(f"out of GPU memory while building {what} ({memory}): {advice}. "
                           f"TensorRT: {last}{hint}")
    if not last:
        return EngineError(f"TensorRT could not build {what} and gave no reason ({memory}); a "
                           f"build that runs out of memory can end like this: {advice}; run with "
                           "-v for TensorRT's log")
    return EngineError(f"TensorRT could not build {what} ({memory}): {last}")


def build_plan(request: PlanRequest, opts: BuildOptions, env: BuildEnv) -> BuiltPlan:
    """Parse, configure and build one engine with a workspace sized from the memory free now;
    :class:`EngineError` with TensorRT's errors (:func:`build_failure`)."""
    import tensorrt as trt

    logger = trt_logger(opts.verbose)
    logger.errors.clear()
    init_plugins()
    builder = trt.Builder(logger)
    free_mib = device_memory()[0] >> 20  # after the builder took its own share
    workspace = workspace_limit_mib(free_mib << 20, opts.workspace_mib)
    what = f"the {request.role} engine from {request.onnx.name}"
    log.info("building %s: %d MiB free, workspace %d MiB", what, free_mib, workspace)
    network = create_network(builder, env, opts.strongly_typed)
    parser = parse_onnx(network, logger, request.onnx)  # owns the weights until the build
    inputs = network_inputs(network)
    profiles = engine_profiles(inputs, opts.batches(request.role), request.size)
    config = configure(builder, network, opts, env, request, profiles, workspace)
    core, calibrator = None, None
    with ExitStack() as stack:
        if opts.int8 == "calibrator":
            core, shapes = calibrator_for(inputs, request, opts.calib_batch, stack,
                                          str(env.trt.version))
            calibrator = set_calibrator(builder, config, core, shapes)
        try:
            plan = builder.build_serialized_network(network, config)
        except MemoryError as exc:  # std::bad_alloc: the host side of a shared-memory Jetson
            raise build_failure(what, [*logger.errors, f"bad_alloc ({exc})"], free_mib,
                                workspace) from None
    del parser, calibrator  # TensorRT is done with the weights and the calibration data
    if core is not None and core.error is not None:
        raise core.error
    if plan is None:
        raise build_failure(what, list(logger.errors), free_mib, workspace)
    save_timing_cache(config, request.timing_cache)
    return BuiltPlan(host_bytes(plan), inputs, profiles, free_mib, workspace)
