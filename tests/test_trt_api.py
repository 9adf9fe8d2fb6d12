import sys
from dataclasses import replace

import pytest

from trt_pose_td.errors import DependencyError, EngineError
from trt_pose_td.trt_api import TrtFeatures, import_tensorrt


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

    from trt_pose_td import trt_api

    calls = []
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_tensorrt(calls))
    monkeypatch.setattr(trt_api, "_LOGGER", None)
    monkeypatch.setattr(trt_api, "_PLUGINS", False)
    logger = trt_api.trt_logger()
    assert trt_api.trt_logger() is logger and calls == ["ILogger.__init__"]
    caplog.set_level(logging.DEBUG, logger="trt_pose_td.trt_api")
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
    from trt_pose_td import trt_api
    from trt_pose_td.engine_meta import EngineMetadata

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
