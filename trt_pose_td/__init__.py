"""trt_pose_td: TensorRT-optimised top-down multi-person pose estimation for Jetson.

A person detector, then every person cropped in one batched warp and the keypoint model run once
on the whole batch. ONNX Runtime on CPU machines (the default and the accuracy reference);
TensorRT engines with CUDA kernels on NVIDIA GPUs.

The stable public API is exactly :data:`__all__` (documented in docs/api.md)::

    import trt_pose_td as tpt
    with tpt.open_pipeline() as pipeline:
        result = pipeline(tpt.sample_image())

Every other module and name is internal and may change without notice. Names load lazily
(PEP 562): ``import trt_pose_td`` imports neither numpy's users nor ONNX Runtime, TensorRT, CUDA
or OpenCV; they load when a pipeline is opened or an image drawn.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Dict, List

__version__ = "0.1.0"

#: public name -> (module, attribute in it)
_EXPORTS: Dict[str, tuple] = {
    "open_pipeline": ("api", "open_pipeline"),
    "Pipeline": ("api", "Pipeline"),
    "draw": ("api", "draw"),
    "sample_image": ("api", "sample_image"),
    "PipelineConfig": ("config", "PipelineConfig"),
    "Frame": ("types", "Frame"),
    "FrameResult": ("types", "FrameResult"),
    "Poses": ("types", "Poses"),
    "Detections": ("types", "Detections"),
    "KEYPOINT_NAMES": ("skeleton", "KEYPOINT_NAMES"),
    "SKELETON": ("skeleton", "EDGES"),
    "TrtPoseError": ("errors", "TrtPoseError"),
    "ConfigError": ("errors", "ConfigError"),
    "AssetError": ("errors", "AssetError"),
    "SourceError": ("errors", "SourceError"),
    "EngineError": ("errors", "EngineError"),
    "DependencyError": ("errors", "DependencyError"),
}

#: The stable API: exactly the names docs/api.md documents (tests/test_api.py checks both).
__all__ = [
    "__version__", "open_pipeline", "Pipeline", "PipelineConfig", "Frame", "FrameResult",
    "Poses", "Detections", "draw", "KEYPOINT_NAMES", "SKELETON", "sample_image", "TrtPoseError",
    "ConfigError", "AssetError", "SourceError", "EngineError", "DependencyError",
]

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time the names load on first use
    from .api import Pipeline, draw, open_pipeline, sample_image
    from .config import PipelineConfig
    from .errors import (
        AssetError,
        ConfigError,
        DependencyError,
        EngineError,
        SourceError,
        TrtPoseError,
    )
    from .skeleton import EDGES as SKELETON
    from .skeleton import KEYPOINT_NAMES
    from .types import Detections, Frame, FrameResult, Poses
else:

    def __getattr__(name: str) -> Any:
        """PEP 562: import a public name's module on first access, then cache the name."""
        try:
            module, attr = _EXPORTS[name]
        except KeyError:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(f".{module}", __name__), attr)
        globals()[name] = value
        return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_EXPORTS))
