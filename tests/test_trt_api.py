import sys
from dataclasses import replace
from types import SimpleNamespace
from typing import List

import numpy as np
import pytest

from trt_pose_td.engines.trt_api import TrtFeatures, import_tensorrt
from trt_pose_td.errors import DependencyError, EngineError


@pytest.mark.parametrize("text, api10, implicit_int8, weak, vc", [
    ("8.5.2.2", False, True, True, False),      # JetPack 5.1
    ("8.6.1.6", False, True, True, False),      # x86 8.6: takes the 8.x API branch
    ("10.3.0.30", True, True, True, True),      # JetPack 6.1
    ("10.16.1.11", True, True, True, True),     # JetPack 7.2
    ("11.0.0", True, False, False, True),       # no implicit INT8, strong typing only
])
def test_features_follow_the_version(text, api10, implicit_int8, weak, vc):
    f = TrtFeatures.parse(text)
    assert (f.api10, f.implicit_int8, f.weak_typing, f.version_compatible) == (
        api10, implicit_int8, weak, vc)
    assert f.strongly_typed == api10


def test_versions_compare_as_numbers_not_strings():
    assert TrtFeatures.parse("10.16.1").version > TrtFeatures.parse("10.3.0").version
    assert TrtFeatures.parse("10.16.1").release[:2] == (10, 16)


def test_unusable_versions_are_refused():
    with pytest.raises(EngineError, match="too old"):
        TrtFeatures.parse("8.4.3.1")
    with pytest.raises(EngineError, match="cannot parse"):
        TrtFeatures.parse("eight")


def test_missing_tensorrt_names_where_it_comes_from():
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(DependencyError, match="JetPack"):
            import_tensorrt()
    else:
        pytest.skip("TensorRT is installed here")


def _fake_tensorrt(calls):
    """A stand-in ``tensorrt`` module: what the accessor touches, recording the calls."""
    import types

    class ILogger:
        def __init__(self):
            calls.append("ILogger.__init__")

    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.3.0.26"
    trt.ILogger = ILogger
    trt.init_libnvinfer_plugins = lambda logger, ns: calls.append(("plugins", logger, ns)) or True
    return trt


def test_one_logger_keeps_errors_and_follows_the_verbosity(monkeypatch, caplog):
    import logging

    from trt_pose_td.engines import trt_api

    calls = []
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_tensorrt(calls))
    monkeypatch.setattr(trt_api, "_LOGGER", None)
    monkeypatch.setattr(trt_api, "_PLUGINS", False)
    logger = trt_api.trt_logger()
    assert trt_api.trt_logger() is logger and calls == ["ILogger.__init__"]
    caplog.set_level(logging.DEBUG, logger="trt_pose_td.engines.trt_api")
    logger.log(1, "Error Code 4:\n  network\tinvalid")
    logger.log(3, "built in 2 s")
    logger.log(4, "tactic 17 timing")
    assert list(logger.errors) == ["Error Code 4: network invalid"]
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.ERROR, "TensorRT: Error Code 4:\n  network\tinvalid"),
        (logging.DEBUG, "TensorRT: built in 2 s")]      # INFO quiet, VERBOSE dropped
    caplog.clear()
    assert trt_api.trt_logger(verbose=2) is logger
    logger.log(3, "built in 2 s")
    logger.log(4, "tactic 17 timing")
    assert [r.levelno for r in caplog.records] == [logging.INFO, logging.DEBUG]
    trt_api.init_plugins()
    trt_api.init_plugins()
    assert calls[1:] == [("plugins", logger, "")]         # once per process


def test_runtime_follows_the_sidecar(monkeypatch):
    """Plugins registered, the sidecar's DLA core set (refused beyond the device's cores), host
    code allowed only for a version-compatible engine on TensorRT >= 10."""
    from trt_pose_td.engine_meta import EngineMetadata
    from trt_pose_td.engines import trt_api

    calls = []
    trt = _fake_tensorrt(calls)

    class Runtime:
        num_DLA_cores = 2

        def __init__(self, logger):
            calls.append(("Runtime", logger))

    trt.Runtime = Runtime
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(trt_api, "_LOGGER", None)
    monkeypatch.setattr(trt_api, "_PLUGINS", False)
    meta = EngineMetadata("m", "pose", "0" * 64, "fp16", "10.3.0", "Orin", "8.7",
                          "trt-pose-td build --only pose")
    plain = trt_api.make_runtime(meta, TrtFeatures.parse("10.3.0"))
    assert [c[0] for c in calls[1:]] == ["plugins", "Runtime"]
    assert not hasattr(plain, "DLA_core") and not hasattr(plain, "engine_host_code_allowed")
    dla = replace(meta, dla_core=1, version_compatible=True)
    rt = trt_api.make_runtime(dla, TrtFeatures.parse("10.3.0"))
    assert rt.DLA_core == 1 and rt.engine_host_code_allowed is True
    rt = trt_api.make_runtime(replace(dla, version_compatible=False), TrtFeatures.parse("8.5.2"))
    assert rt.DLA_core == 1 and not hasattr(rt, "engine_host_code_allowed")
    with pytest.raises(EngineError, match=r"DLA core 2, this device has 2 DLA core\(s\); "
                                          "rebuild: trt-pose-td build"):
        trt_api.make_runtime(replace(meta, dla_core=2), TrtFeatures.parse("10.3.0"))


def stub_members(stub_set: str, cls: str) -> List[str]:
    """The members a stub set's ``class <cls>`` (a pybind11 enum) declares, in file order."""
    import ast

    from tests.build.test_trt_typecheck import stubs_root

    root = stubs_root()
    if root is None:
        pytest.skip("no TensorRT stubs: set TRT_POSE_TD_MIRROR to the data mirror")
    files = [p for p in (root / stub_set).rglob("tensorrt.pyi")]
    assert len(files) == 1, files
    tree = ast.parse(files[0].read_text())
    (node,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls]
    return [n.target.id for n in node.body if isinstance(n, ast.AnnAssign)
            and isinstance(n.target, ast.Name) and "ClassVar" in ast.dump(n.annotation)
            and not n.target.id.startswith("__")]


@pytest.mark.parametrize("stub_set", ["tensorrt-8.5", "tensorrt-10.3", "tensorrt-10.16"])
def test_every_data_type_of_every_stub_is_mapped_or_refused(stub_set):
    """Our own TensorRT -> numpy dtype map, against every DataType member each stub set lists:
    a member a new TensorRT adds fails here until it is mapped or refused."""
    from tests.engines.fake_trt import DATA_TYPES
    from trt_pose_td.engines.trt_api import NO_NUMPY_DTYPE, NUMPY_DTYPES, numpy_dtype

    members = stub_members(stub_set, "DataType")
    assert {"FLOAT", "HALF", "INT8", "INT32", "BOOL", "UINT8"} <= set(members)
    assert sorted(members) == sorted(DATA_TYPES[stub_set.split("-")[1]])  # the fakes agree
    unknown = [m for m in members if m not in NUMPY_DTYPES and m not in NO_NUMPY_DTYPE]
    assert not unknown, f"{stub_set}: DataType {unknown} neither mapped nor refused"
    assert not set(NUMPY_DTYPES) & set(NO_NUMPY_DTYPE)
    for name in members:
        member = SimpleNamespace(name=name)  # a pybind11 enum member: .name is the key
        if name in NUMPY_DTYPES:
            dtype = numpy_dtype(member)
            assert dtype == np.dtype(NUMPY_DTYPES[name]) and isinstance(dtype, np.dtype)
        else:
            with pytest.raises(EngineError, match=rf"^TensorRT type {name} \(.+\) has no numpy "
                                                  "equivalent; rebuild the engine with "
                                                  "float32/float16 inputs and outputs$"):
                numpy_dtype(member)


def test_dtype_map_values_and_names_from_str():
    from trt_pose_td.engines.trt_api import numpy_dtype

    expected = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32,
                "INT64": np.int64, "BOOL": np.bool_, "UINT8": np.uint8}
    for name, kind in expected.items():
        assert numpy_dtype(SimpleNamespace(name=name)).type is kind
    assert numpy_dtype("DataType.HALF") == np.float16  # str() of a member when .name is absent
    with pytest.raises(EngineError, match="unknown TensorRT data type 'FP2'"):
        numpy_dtype(SimpleNamespace(name="FP2"))


@pytest.mark.parametrize("stub_set", ["tensorrt-8.5", "tensorrt-10.3", "tensorrt-10.16"])
def test_tactic_sources_exist_in_every_stub(stub_set):
    """The builder reads tactic sources by name (``getattr(trt.TacticSource, name)``), which mypy
    cannot check: every name must be a member in each version."""
    from trt_pose_td.build.options import TACTIC_SOURCES

    assert set(TACTIC_SOURCES) <= set(stub_members(stub_set, "TacticSource"))
