"""``trt-pose-td build`` (and ``python build_engines.py``): ONNX -> TensorRT engines + sidecars."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..build.options import NO_CUBLAS_CUDNN, BatchRange, BuildOptions, LayerPrecision
from ..config import PipelineConfig
from ..engine_meta import INT8_MODES, PRECISIONS
from ..errors import ConfigError
from ..io.paths import check_output_dir
from ..models import REGISTRY
from . import OneLineParser, exit_status, run_command, setup_logging
from .common import format_table, parse_size

DESCRIPTION = """\
Build the detector and keypoint TensorRT engines on the device that will run them (engines are
tied to one GPU and one TensorRT version; they are never shipped). Writes DIR/<model>.<precision>
.engine and its provenance DIR/<model>.<precision>.engine.json (TensorRT version, GPU, precision,
profiles, ONNX and calibration sha256, options, and the exact command that rebuilds it).

INT8, two ways:
  --int8-mode qdq         explicit Q/DQ ONNX (any TensorRT; the only way on TensorRT >= 11): a
                          float model is quantized on the calibration images first (cached), an
                          already quantized ONNX (--detector/--pose PATH) is used as it is
  --int8-mode calibrator  implicit IInt8EntropyCalibrator2 (TensorRT <= 10) with a cache file
Both calibrate on the same tensors, made by the run-time preprocessing from the calibration images
(default: $TRT_POSE_TD_MIRROR/coco/calib_train2017 and its person annotations).

--from-config FILE builds what `serve` will load: the models, det_size, precision, int8_mode,
max_batch and engine_dir of a service config (TOML) or of `serve --print-config` (JSON; - reads
stdin); the flags that set those are then refused, the builder flags still apply."""

EPILOG = """\
examples:
  trt-pose-td build --precision fp16                      # both default models, ~/.cache/...
  trt-pose-td build --precision int8 --output /engines --skip-existing
  trt-pose-td build --precision int8 --int8-mode calibrator --calib-images calib/
  trt-pose-td build --only pose --pose-batch 1,8,32 --pose-batch 1,1,4 --max-batch 32
  trt-pose-td build --only detector --det-size 416 --dla-core 0     # Jetson AGX/NX only
  trt-pose-td build --from-config /etc/trt-pose-td/config.toml --skip-existing
  trt-pose-td serve --det-size 320 --print-config | trt-pose-td build --from-config -
  trt-pose-td build --no-cublas-cudnn -v                  # TensorRT without cuBLAS/cuDNN libs
  trt-pose-td build --check-only --parser-check 8.5       # will JetPack 5's parser take them?
see docs/engines.md"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Every build flag (shared by ``trt-pose-td build`` and ``build_engines.py``)."""
    d = BuildOptions()
    dets = ", ".join(n for n, s in REGISTRY.items() if s.task == "detector")
    poses = ", ".join(n for n, s in REGISTRY.items() if s.task == "pose")
    g = p.add_argument_group("models")
    g.add_argument("--from-config", default=None, metavar="FILE|-",
                   help="build what this pipeline config runs: a service TOML or the JSON of "
                        "`serve --print-config` (- : stdin)")
    # Defaults None: filled in by options_from_args, so --from-config can tell a given flag.
    g.add_argument("--detector", default=None, metavar="NAME|PATH",
                   help=f"person detector: {dets}; or an .onnx path (default: {d.detector})")
    g.add_argument("--pose", default=None, metavar="NAME|PATH",
                   help=f"keypoint model: {poses}; or an .onnx path (default: {d.pose})")
    g.add_argument("--detector-like", default=None, metavar="NAME",
                   help="registry model whose input contract a --detector path follows")
    g.add_argument("--pose-like", default=None, metavar="NAME",
                   help="registry model whose input contract a --pose path follows")
    g.add_argument("--only", choices=("detector", "pose"), default=None,
                   help="build one of the two engines (default: both)")
    g = p.add_argument_group("precision")
    g.add_argument("--precision", choices=PRECISIONS, default=None,
                   help=f"engine precision (default: {d.precision})")
    g.add_argument("--int8-mode", choices=INT8_MODES, default=None,
                   help="INT8 path: qdq (explicit, any TensorRT) or calibrator (implicit, "
                        f"TensorRT <= 10) (default: {d.int8_mode})")
    g.add_argument("--strongly-typed", action="store_true",
                   help="TensorRT >= 10: take every tensor type from the ONNX (Q/DQ or FP16 "
                        "models); always on from TensorRT 11")
    g.add_argument("--layer-precision", action="append", default=[], metavar="PATTERN=fp32",
                   help="keep layers in fp32/fp16: PATTERN is a glob on layer names or "
                        "type:LAYERTYPE (e.g. 'type:SOFTMAX=fp32'); repeatable")
    _add_shape_args(p, d)
    _add_builder_args(p)
    _add_calibration_args(p, d)
    _add_parser_check_args(p)
    g = p.add_argument_group("output")
    g.add_argument("-o", "--output", default=None, metavar="DIR",
                   help="engine folder (default: ~/.cache/trt_pose_td/engines, or "
                        "$TRT_POSE_TD_CACHE/engines)")
    g.add_argument("--skip-existing", action="store_true",
                   help="keep an engine whose sidecar matches this TensorRT, GPU, ONNX and "
                        "options (what a container runs on every start)")
    g.add_argument("-v", "--verbose", dest="build_verbose", action="count", default=0,
                   help="log the build and print each layer's precision (-vv: TensorRT's "
                        "verbose log)")


def _add_shape_args(p: argparse.ArgumentParser, d: BuildOptions) -> None:
    g = p.add_argument_group("shapes")
    g.add_argument("--det-size", type=parse_size, default=None, metavar="N|WxH",
                   help="detector input size, multiple of 32 (RTMDet: 320, 416, 640; default: "
                        "the model's own)")
    g.add_argument("--det-batch", default=None, metavar="MIN,OPT,MAX",
                   help=f"detector batch profile: cameras per detector run (default: "
                        f"{d.det_batch}; a detector with a fixed batch keeps it)")
    g.add_argument("--pose-batch", action="append", default=None, metavar="MIN,OPT,MAX",
                   help="keypoint-engine batch profile, repeatable for several profiles "
                        f"(default: {d.pose_batches[0]}: a whole crowd in one call)")
    g.add_argument("--max-batch", type=int, default=None, metavar="N",
                   help="largest keypoint batch the runtime will use: refused when no profile "
                        "reaches it")


def _add_builder_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("builder")
    g.add_argument("--workspace", type=int, default=None, metavar="MIB",
                   help="upper bound of the workspace (TensorRT's tactic memory pool) in MiB; "
                        "each engine gets half the device memory free just before it is built, "
                        "at most this (lower it on 2/4 GB modules, e.g. 256)")
    g.add_argument("--timing-cache", default="auto", metavar="PATH|auto|none",
                   help="timing cache reused across builds (auto: one per TensorRT version and "
                        "GPU in the engine folder)")
    g.add_argument("--tactic-sources", default=None, metavar="SPEC",
                   help="change tactic sources: '-CUBLAS,-CUDNN' removes, '+JIT_CONVOLUTIONS' "
                        "adds, bare names give the exact set, 'none' disables all (use "
                        "--tactic-sources=-X for a leading '-')")
    g.add_argument("--no-cublas-cudnn", action="store_true",
                   help=f"shorthand for --tactic-sources={NO_CUBLAS_CUDNN} (TensorRT without "
                        "usable cuBLAS/cuDNN libraries)")
    g.add_argument("--dla-core", type=int, default=None, metavar="N",
                   help="build for DLA core N with GPU fallback (Jetson Xavier/Orin modules "
                        "with DLA; FP16/INT8 only)")
    g.add_argument("--version-compatible", action="store_true",
                   help="TensorRT >= 10: an engine later TensorRT 10.x runtimes also load")


def _add_calibration_args(p: argparse.ArgumentParser, d: BuildOptions) -> None:
    g = p.add_argument_group("INT8 calibration")
    g.add_argument("--calib-images", default=None, metavar="DIR",
                   help="calibration images (default: $TRT_POSE_TD_MIRROR/coco/calib_train2017; "
                        "never the evaluation images)")
    g.add_argument("--calib-annotations", default=None, metavar="FILE",
                   help="COCO person annotations of those images, for keypoint-model crops "
                        "(default: person_keypoints_train2017_calib_subset.json in DIR)")
    g.add_argument("--calib-batch", type=int, default=d.calib_batch, metavar="N",
                   help="images per calibrator batch (default: %(default)s)")
    g.add_argument("--qdq-method", default=None, metavar="NAME",
                   help="calibration method of the Q/DQ quantizer (default: its own)")


def _add_parser_check_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("ONNX parser check (docs/engines.md)")
    g.add_argument("--parser-check", default="auto", metavar="VERSION|auto|none",
                   help="before any TensorRT work, refuse a model whose nodes this TensorRT's "
                        "ONNX parser rejects per onnx-tensorrt's operator docs (auto: the "
                        "installed TensorRT, else 8.5, the oldest supported)")
    g.add_argument("--check-only", action="store_true",
                   help="only run that check: print every model's verdict per TensorRT "
                        "version and the nodes named, build nothing (needs no TensorRT)")


#: Flags whose value a pipeline config decides under --from-config: BuildOptions field -> flag.
PIPELINE_FLAGS = {"detector": "--detector", "pose": "--pose", "detector_like": "--detector-like",
                  "pose_like": "--pose-like", "precision": "--precision",
                  "int8_mode": "--int8-mode", "det_size": "--det-size", "max_batch": "--max-batch",
                  "output": "--output"}


def options_from_args(args: argparse.Namespace) -> BuildOptions:
    """The :class:`BuildOptions` of parsed build arguments (:class:`ConfigError` when invalid)."""
    given = {k: getattr(args, k) for k in PIPELINE_FLAGS if getattr(args, k) is not None}
    build = _builder_fields(args)
    if getattr(args, "from_config", None) is None:
        return BuildOptions(**given, **build)
    if given:
        flags = ", ".join(PIPELINE_FLAGS[k] for k in given)
        raise ConfigError(f"{flags}: with --from-config the pipeline config decides "
                          f"{'it' if len(given) == 1 else 'them'}; change the config (or the "
                          "serve flags it was printed with) instead")
    from ..build.jobs import pipeline_build_options

    return pipeline_build_options(read_pipeline_config(args.from_config), **build)


def _builder_fields(args: argparse.Namespace) -> Dict[str, Any]:
    """The BuildOptions fields of the builder flags (what no pipeline config holds)."""
    tactics = args.tactic_sources
    if args.no_cublas_cudnn:
        if tactics and tactics != NO_CUBLAS_CUDNN:
            raise ConfigError("give either --no-cublas-cudnn or --tactic-sources, not both")
        tactics = NO_CUBLAS_CUDNN
    fields: Dict[str, Any] = dict(
        only=args.only, workspace_mib=args.workspace, timing_cache=args.timing_cache,
        tactic_sources=tactics,
        layer_precisions=tuple(LayerPrecision.parse(t) for t in args.layer_precision),
        dla_core=args.dla_core, version_compatible=args.version_compatible,
        strongly_typed=args.strongly_typed, calib_images=args.calib_images,
        calib_annotations=args.calib_annotations, calib_batch=args.calib_batch,
        qdq_method=args.qdq_method, skip_existing=args.skip_existing,
        verbose=max(getattr(args, "verbose", 0) or 0, args.build_verbose))
    if args.det_batch:  # else the default profile (DLA: batch 1; a static detector: its own)
        fields["det_batch"] = BatchRange.parse(args.det_batch)
    if args.pose_batch:
        fields["pose_batches"] = tuple(BatchRange.parse(t) for t in args.pose_batch)
    return fields


def read_pipeline_config(source: str) -> PipelineConfig:
    """The pipeline config of ``--from-config``: a service TOML (resolved as ``serve --config``
    resolves it), or JSON: ``serve --print-config`` output or its ``pipeline`` object (``-``:
    stdin). :class:`ConfigError` in one line when unreadable or invalid."""
    import json

    if source != "-" and Path(source).suffix.lower() == ".toml":
        from . import serve

        parser = argparse.ArgumentParser(add_help=False)
        serve.add_parser(parser.add_subparsers())
        return serve.resolve(parser.parse_args(["serve", "--config", source])).pipeline
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
        doc = json.loads(text)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--from-config {source}: not a readable JSON pipeline config ({exc}); "
                          "give `serve --print-config` output or a .toml service config") from None
    table = doc.get("pipeline", doc) if isinstance(doc, dict) else None
    if not isinstance(table, dict):
        raise ConfigError(f"--from-config {source}: expected a JSON object with a pipeline object")
    return PipelineConfig.from_table(table, where=f"--from-config {source}")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build", help="build TensorRT engines (FP16/INT8) on this device",
                       description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..build.inspect import summary_line
    from ..build.run import run_build

    opts = options_from_args(args)
    if opts.output:
        check_output_dir(Path(opts.output), "--output")
    if opts.verbose and logging.getLogger().level > logging.INFO:
        logging.getLogger().setLevel(logging.INFO if opts.verbose == 1 else logging.DEBUG)
    if _parser_check(args, opts):
        return 0
    reports = run_build(opts)
    rows = []
    for r in reports:
        size = r.job.engine.stat().st_size / 2**20
        state = "kept (up to date)" if r.skipped else \
            f"built in {r.seconds:.0f} s (workspace {r.workspace_mib} of {r.free_mib} MiB free)"
        layers = summary_line(r.layers) if r.layers else ""
        rows.append((r.job.role, str(r.job.engine), f"{size:.1f} MiB", state, layers))
        if opts.verbose and r.layers:
            print(format_table(("layer", "type", "precision"),
                               [(lay.name, lay.layer_type, lay.precision) for lay in r.layers],
                               title=f"\n{r.job.engine.name}: per-layer precision"))
    print(format_table(("role", "engine", "size", "state", "layers"), rows))
    for r in reports:
        for warning in r.warnings:
            print(f"warning: {r.job.engine.name}: {warning}", file=sys.stderr)
    return 0


def _parser_check(args: argparse.Namespace, opts: BuildOptions) -> bool:
    """The ONNX parser check (one-line error when the target refuses a model); True when
    --check-only asked for nothing else."""
    from ..build.parser_gate import SUMMARY_HEADER, parser_gate

    gate = parser_gate(opts, args.parser_check, required=args.check_only)
    if gate is not None and args.check_only:
        print(format_table(SUMMARY_HEADER, gate.summary_rows(),
                           title=f"ONNX parser check, target {gate.label}"))
        for line in gate.finding_lines():
            print(line)
    if gate is not None:
        gate.raise_refused()
    return bool(args.check_only)


def main(argv: Optional[List[str]] = None, prog: str = "build_engines.py") -> int:
    """``python build_engines.py ...``: the same options as ``trt-pose-td build``."""
    parser = OneLineParser(prog=prog, description=DESCRIPTION,
                           epilog=f"{EPILOG}\n\n{exit_status('build')}",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging(0)
    return run_command(run, args, prog)
