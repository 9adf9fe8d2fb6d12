"""The builder's workspace from free memory, one engine after the other, and out-of-memory
builds as one line (jetson-first-run A7), on a CPU.

TensorRT is replaced by a RECORDING FAKE (what ``build_plan`` calls: builder, network from the
real ONNX's inputs, config, parser; no engine is really built) and the device-memory query by a
scripted one; everything between them is the product's code: ``run_build`` and the CLI.
"""

from __future__ import annotations

import sys
import types
from typing import Any, List, Optional

import pytest

from trt_pose_td.build import builder as build_builder
from trt_pose_td.build import run as build_run
from trt_pose_td.build.options import BuildOptions, smaller_workspace, workspace_limit_mib
from trt_pose_td.cli import main
from trt_pose_td.engines import trt_api

from .conftest import make_env

MIB = 1 << 20


class FakeTensorRT:
    """A ``tensorrt`` module that records, in ``events``, builders made and freed, memory
    queries and builds (with the workspace the config had). ``outcomes``: per build, None
    (an engine), ``("log", message)`` (TensorRT logs an error and returns None) or
    ``("raise", exception)``."""

    def __init__(self, free_mib: List[int]) -> None:
        self.events: List[tuple] = []
        self.free_mib = list(free_mib)
        self.outcomes: List[Optional[tuple]] = []
        self.module = self._module()

    def device_memory(self, ordinal: int = 0):
        free = self.free_mib.pop(0)
        self.events.append(("query", free))
        return free * MIB, 8192 * MIB

    def _module(self) -> types.ModuleType:
        fake = self

        class ILogger:
            def __init__(self) -> None:
                pass

        class Network:
            def __init__(self) -> None:
                self.inputs: List[Any] = []

            @property
            def num_inputs(self):
                return len(self.inputs)

            def get_input(self, i):
                return self.inputs[i]

            num_layers = 0

        class OnnxParser:
            num_errors = 0

            def __init__(self, network, logger) -> None:
                self.network = network

            def parse_from_file(self, path):
                import onnx

                graph = onnx.load(path, load_external_data=False).graph
                weights = {t.name for t in graph.initializer}
                for value in graph.input:
                    if value.name not in weights:
                        dims = [d.dim_value or -1 for d in value.type.tensor_type.shape.dim]
                        self.network.inputs.append(types.SimpleNamespace(name=value.name,
                                                                         shape=dims))
                return True

        class TimingCache:
            def serialize(self):
                return b"timing"

        class Config:
            def __init__(self) -> None:
                self.pools, self.flags = {}, set()
                self.profiling_verbosity = None

            def add_optimization_profile(self, profile):
                return 0

            def set_flag(self, flag):
                self.flags.add(flag)

            def clear_flag(self, flag):
                self.flags.discard(flag)

            def set_memory_pool_limit(self, pool, size):
                self.pools[pool] = size

            def create_timing_cache(self, data):
                return TimingCache()

            def set_timing_cache(self, cache, ignore_mismatch):
                return True

            def get_timing_cache(self):
                return TimingCache()

        class Builder:
            count = 0

            def __init__(self, logger) -> None:
                Builder.count += 1
                self.id, self.logger = Builder.count, logger
                fake.events.append(("builder", self.id))

            def __del__(self):
                fake.events.append(("builder freed", self.id))

            def create_network(self, flags):
                return Network()

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return types.SimpleNamespace(set_shape=lambda *a: None)

            def build_serialized_network(self, network, config):
                fake.events.append(("build", config.pools["WORKSPACE"] // MIB))
                outcome = fake.outcomes.pop(0) if fake.outcomes else None
                if outcome is None:
                    return b"serialized engine"
                kind, value = outcome
                if kind == "raise":
                    raise value
                self.logger.log(1, value)   # kINTERNAL_ERROR .. kERROR: kept by the logger
                return None

        trt = types.ModuleType("tensorrt")
        trt.__version__ = "8.5.3.1"
        trt.ILogger, trt.Builder, trt.OnnxParser = ILogger, Builder, OnnxParser
        trt.init_libnvinfer_plugins = lambda logger, namespace: True
        trt.Dims = tuple
        trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(EXPLICIT_BATCH=0,
                                                                  STRONGLY_TYPED=1)
        trt.BuilderFlag = types.SimpleNamespace(FP16="FP16", INT8="INT8", TF32="TF32")
        trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
        trt.ProfilingVerbosity = types.SimpleNamespace(DETAILED="DETAILED")
        return trt


@pytest.fixture
def fake(monkeypatch):
    """A build machine with the fake TensorRT 8.5 on an Orin; set ``fake.free_mib`` (one value
    per engine) and ``fake.outcomes``."""
    trt = FakeTensorRT([3000, 1200])
    monkeypatch.setitem(sys.modules, "tensorrt", trt.module)
    monkeypatch.setattr(trt_api, "_LOGGER", None)
    monkeypatch.setattr(trt_api, "_PLUGINS", False)
    monkeypatch.setattr(build_builder, "device_memory", trt.device_memory)
    monkeypatch.setattr(build_run, "detect_build_env", lambda: make_env("8.5.2.2", "Orin"))
    return trt


def test_workspace_rule():
    assert workspace_limit_mib(3000 * MIB) == 1500          # half of what is free
    assert workspace_limit_mib(3000 * MIB, 1024) == 1024    # --workspace caps it
    assert workspace_limit_mib(300 * MIB, 1024) == 150      # ... never raises it
    assert workspace_limit_mib(1 * MIB) == 1                # at least 1 MiB
    assert [smaller_workspace(m) for m in (1500, 256, 100, 1)] == [256, 128, 50, 1]


@pytest.mark.parametrize("limit, workspaces", [(None, [1500, 600]), (1024, [1024, 600])])
def test_each_engine_gets_half_the_memory_free_just_before_it(fake, tmp_path, limit,
                                                              workspaces):
    opts = BuildOptions(precision="fp16", output=str(tmp_path), workspace_mib=limit)
    reports = build_run.run_build(opts, progress=False)
    assert [r.job.role for r in reports] == ["detector", "pose"]
    assert [(r.free_mib, r.workspace_mib) for r in reports] == list(zip([3000, 1200],
                                                                        workspaces))
    # one after the other: the first builder is gone before the second exists, and the memory
    # is asked again after it is gone
    assert fake.events == [("builder", 1), ("query", 3000), ("build", workspaces[0]),
                           ("builder freed", 1),
                           ("builder", 2), ("query", 1200), ("build", workspaces[1]),
                           ("builder freed", 2)]
    assert all(r.job.engine.read_bytes() == b"serialized engine" for r in reports)
    # the automatic workspace is not an engine option: a rebuild with other free memory is
    # not "stale"
    assert reports[0].meta.options["workspace_mib"] == limit


def one_line_error(capsys, argv) -> str:
    assert main(["build", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("trt-pose-td build: error: ") and "\n" not in err, err
    return err


IMPLEMENTATION = ("[optimizer.cpp::computeCosts::3728] Error Code 10: Internal Error (Could not "
                  "find any implementation for node /backbone/conv1/Conv.)")


def test_could_not_find_any_implementation_is_named_an_out_of_memory(fake, capsys, tmp_path):
    fake.free_mib = [700]
    fake.outcomes = [("log", IMPLEMENTATION)]
    err = one_line_error(capsys, ["--only", "pose", "--output", str(tmp_path)])
    assert err == (
        "trt-pose-td build: error: out of GPU memory while building the pose engine from "
        "pp_tinypose_256x192.onnx (free 700 MiB, workspace 350 MiB): close other GPU processes, "
        "add swap, or pass --workspace 256. TensorRT: " + IMPLEMENTATION + " (TensorRT reports "
        "a build out of memory this way; with memory to spare it means no tactic supports a "
        "layer)")
    assert not any(tmp_path.iterdir())   # nothing written


@pytest.mark.parametrize("outcome, expect", [
    (("log", "[defaultAllocator.cpp::allocate::20] Error Code 1: Cuda Runtime (out of memory)"),
     "out of GPU memory while building the pose engine from pp_tinypose_256x192.onnx (free 300 "
     "MiB, workspace 150 MiB): close other GPU processes, add swap, or pass --workspace 75. "
     "TensorRT: [defaultAllocator.cpp::allocate::20] Error Code 1: Cuda Runtime (out of memory)"),
    (("raise", MemoryError("std::bad_alloc")),
     "out of GPU memory while building the pose engine from pp_tinypose_256x192.onnx (free 300 "
     "MiB, workspace 150 MiB): close other GPU processes, add swap, or pass --workspace 75. "
     "TensorRT: bad_alloc (std::bad_alloc)"),
    (("log", ""),   # None, and nothing logged but an empty line
     "TensorRT could not build the pose engine from pp_tinypose_256x192.onnx and gave no reason "
     "(free 300 MiB, workspace 150 MiB); a build that runs out of memory can end like this: "
     "close other GPU processes, add swap, or pass --workspace 75; run with -v"),
    (("log", "Error Code 4: Network has dynamic or shape inputs, but no optimization profile"),
     "TensorRT could not build the pose engine from pp_tinypose_256x192.onnx (free 300 MiB, "
     "workspace 150 MiB): Error Code 4: Network has dynamic or shape inputs, but no optimization "
     "profile"),
])
def test_failed_builds_say_why_with_the_memory_they_had(fake, capsys, tmp_path, outcome,
                                                        expect):
    fake.free_mib = [300]
    fake.outcomes = [outcome]
    err = one_line_error(capsys, ["--only", "pose", "--output", str(tmp_path)])
    assert err.startswith(f"trt-pose-td build: error: {expect}"), err


def test_the_cli_table_shows_the_workspace(fake, capsys, tmp_path):
    assert main(["build", "--output", str(tmp_path), "--workspace", "1024"]) == 0
    out = capsys.readouterr().out
    assert "(workspace 1024 of 3000 MiB free)" in out and "(workspace 600 of 1200 MiB free)" in out


def test_cuda_module_loading_is_lazy_unless_chosen(monkeypatch):
    """Set before the build's first CUDA call (detect_env, device_memory); a user's choice
    stays."""
    import os

    from trt_pose_td.build.env import lazy_module_loading

    monkeypatch.delenv("CUDA_MODULE_LOADING", raising=False)
    lazy_module_loading()
    assert os.environ["CUDA_MODULE_LOADING"] == "LAZY"
    monkeypatch.setenv("CUDA_MODULE_LOADING", "EAGER")
    lazy_module_loading()
    assert os.environ["CUDA_MODULE_LOADING"] == "EAGER"


@pytest.mark.gpu
def test_device_memory_on_a_gpu(cuda_device):
    from trt_pose_td.build.env import device_memory

    free, total = device_memory()
    assert 0 < free <= total
