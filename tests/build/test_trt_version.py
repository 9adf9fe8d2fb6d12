import pytest

from trt_pose_td.build.trt_version import TrtFeatures, import_tensorrt
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
