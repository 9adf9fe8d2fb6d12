import json

import pytest

from trt_pose_td.engine_meta import (
    EngineMetadata,
    check_runnable,
    engine_filename,
    mismatch_reasons,
    read_metadata,
    sidecar_path,
    write_metadata,
)
from trt_pose_td.errors import EngineError


def _meta(**kw):
    base = dict(model="pp_tinypose_256x192", role="pose", onnx_sha256="a" * 64,
                precision="fp16", tensorrt_version="8.5.2.2", gpu_name="Orin",
                compute_capability="8.7", build_command="trt-pose-td build --precision fp16",
                profiles=[{"image": {"min": [1, 3, 256, 192], "opt": [8, 3, 256, 192],
                                     "max": [32, 3, 256, 192]}}])
    base.update(kw)
    return EngineMetadata(**base)


def test_roundtrip_and_max_batch(tmp_path):
    engine = tmp_path / "pose.engine"
    path = write_metadata(_meta(), engine)
    assert path == sidecar_path(engine) and path.name == "pose.engine.json"
    meta = read_metadata(engine)
    assert meta == _meta() and meta.max_batch == 32


def test_missing_and_corrupt_sidecars(tmp_path):
    with pytest.raises(EngineError, match="no provenance file"):
        read_metadata(tmp_path / "x.engine")
    sidecar_path(tmp_path / "x.engine").write_text("{not json")
    with pytest.raises(EngineError, match="not a valid engine provenance"):
        read_metadata(tmp_path / "x.engine")


def test_mismatches_name_the_rebuild_command(tmp_path):
    engine = tmp_path / "pose.engine"
    write_metadata(_meta(), engine)
    assert check_runnable(engine, "8.5.2.2", "8.7", "Orin").precision == "fp16"
    with pytest.raises(EngineError) as exc:
        check_runnable(engine, "10.3.0", "8.7")
    assert "TensorRT 8.5.2.2" in str(exc.value) and "trt-pose-td build" in str(exc.value)
    with pytest.raises(EngineError, match="compute capability 8.7"):
        check_runnable(engine, "8.5.2.2", "7.2")
    with pytest.raises(EngineError, match="built from ONNX"):
        check_runnable(engine, "8.5.2.2", "8.7", onnx_sha256="b" * 64)


def test_version_compatible_rules():
    m = _meta(tensorrt_version="10.3.0", version_compatible=True)
    assert mismatch_reasons(m, "10.16.1", "8.7") == []
    assert mismatch_reasons(m, "10.2.0", "8.7")
    assert mismatch_reasons(m, "11.0.0", "8.7")
    assert mismatch_reasons(_meta(tensorrt_version="8.5.2.2"), "8.5.2.2.post1", "8.7") == []


def test_unknown_keys_are_ignored(tmp_path):
    engine = tmp_path / "e.engine"
    write_metadata(_meta(), engine)
    doc = json.loads(sidecar_path(engine).read_text())
    doc["future_field"] = 1
    sidecar_path(engine).write_text(json.dumps(doc))
    assert read_metadata(engine).model == "pp_tinypose_256x192"


def test_engine_filenames():
    assert engine_filename("m", "fp16") == "m.fp16.engine"
    assert engine_filename("m", "int8", "qdq") == "m.int8-qdq.engine"
    with pytest.raises(ValueError):
        engine_filename("m", "int8")
    with pytest.raises(ValueError):
        engine_filename("m", "bf16")
