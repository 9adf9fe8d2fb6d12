"""``trt-pose-td`` as the container entrypoint calls it, on a machine without TensorRT or a GPU.

THIS IS A TEST DOUBLE for exactly the two things this machine lacks; everything else is the real
command line and library:

- ``build``: the real ``trt-pose-td build`` (``--from-config`` mapping, jobs, ``--skip-existing``
  and the sidecar comparison, calibration tensors from the real preprocessing, the Q/DQ quantizer
  through onnx + ONNX Runtime, engine files and sidecars). Two calls are answered here: the
  TensorRT/GPU probe (``$STANDIN_TRT``: "VERSION,GPU,CC", default "8.5.2.2,Xavier,7.2") and
  TensorRT's build call, which records what TensorRT would have been given (one JSON line per
  engine in ``$STANDIN_LOG``: ONNX, role, size, the real optimisation profiles for that ONNX, Q/DQ
  nodes, calibration tensors) and returns placeholder plan bytes.
- ``serve`` without ``--print-config``: records its arguments and exits 0 (serving engines needs
  the GPU; ``--print-config`` runs for real).

Run as ``python -m tests.docker.standin_cli ARGS...`` (a ``trt-pose-td`` on PATH in the tests).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

PLAN = b"stand-in plan: no TensorRT here"


def record(event: Dict[str, Any]) -> None:
    with open(os.environ["STANDIN_LOG"], "a") as log:
        log.write(json.dumps(event) + "\n")


def network_inputs(onnx_path: Path) -> Dict[str, List[int]]:
    """Image inputs of an ONNX graph as TensorRT's parser reports them (-1: dynamic)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    weights = {init.name for init in graph.initializer}
    return {i.name: [d.dim_value if d.HasField("dim_value") else -1
                     for d in i.type.tensor_type.shape.dim]
            for i in graph.input if i.name not in weights}


def install_build_standin() -> None:
    from trt_pose_td.build import builder, inspect, run
    from trt_pose_td.build.env import BuildEnv
    from trt_pose_td.build.jobs import has_qdq_nodes
    from trt_pose_td.build.profiles import engine_profiles
    from trt_pose_td.engines.trt_api import TrtFeatures

    version, gpu, cc = os.environ.get("STANDIN_TRT", "8.5.2.2,Xavier,7.2").split(",")
    env = BuildEnv(TrtFeatures.parse(version), gpu, cc, 2)

    def build_plan(request: Any, opts: Any, env: Any) -> Any:
        inputs = network_inputs(request.onnx)
        profiles = engine_profiles(inputs, opts.batches(request.role), request.size)
        data: Optional[Any] = request.calib_data
        record({"event": "build_plan", "role": request.role, "onnx": str(request.onnx),
                "size": list(request.size) if request.size else None,
                "qdq": has_qdq_nodes(request.onnx), "precision": opts.precision,
                "int8": opts.int8, "profiles": profiles,
                "calib_shape": list(data.shape) if data is not None else None,
                "calib_cache": str(request.calib_cache) if request.calib_cache else None})
        return builder.BuiltPlan(PLAN, inputs, profiles)

    run.detect_build_env = lambda: env
    builder.build_plan = build_plan
    inspect.inspect_plan = lambda plan, meta, features: json.dumps({"Layers": []})


def main(argv: List[str]) -> int:
    if argv[:1] == ["serve"] and "--print-config" not in argv:
        record({"event": "serve", "argv": argv})
        return 0
    if argv[:1] == ["build"]:
        install_build_standin()
    from trt_pose_td.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
