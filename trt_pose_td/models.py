"""Model registry: everything model-specific is data here, never a branch in the pipeline.

A :class:`ModelSpec` names the file (with sha256 and where to download it), the input contract
(:class:`Preprocess`) and the decoder that reads its outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Dict, Mapping, Optional, Tuple

from .errors import ConfigError

RGB_IMAGENET_MEAN = (123.675, 116.28, 103.53)
RGB_IMAGENET_STD = (58.395, 57.12, 57.375)
BGR_IMAGENET_MEAN = RGB_IMAGENET_MEAN[::-1]
BGR_IMAGENET_STD = RGB_IMAGENET_STD[::-1]


@dataclass(frozen=True)
class Preprocess:
    """How a frame (or a person crop) becomes the network input.

    input_size: (W, H); resize: ``letterbox`` | ``letterbox_center`` | ``stretch`` (detectors) or
    ``crop`` (keypoint models: box -> centre/size at the input aspect, x ``padding``);
    channel_order: ``bgr`` | ``rgb``; mean/std: per channel *in that order*, in 0..255 units;
    pad_value: raw pixel value outside the image.
    """

    input_size: Tuple[int, int]
    resize: str
    channel_order: str = "bgr"
    mean: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: Tuple[float, float, float] = (1.0, 1.0, 1.0)
    pad_value: float = 0.0
    padding: float = 1.25

    @property
    def aspect(self) -> float:
        """Input width / height."""
        return self.input_size[0] / self.input_size[1]


@dataclass(frozen=True)
class ModelSpec:
    """One registered model.

    task: ``detector`` or ``pose``; decoder: a key of :data:`.decode.DETECTOR_DECODERS` or
    ``heatmap`` / ``simcc``; outputs maps the decoder's roles to the graph's output names;
    variable_input: the input H/W may be changed (RTMDet); max_batch: 1 for static-batch graphs.
    """

    name: str
    task: str
    file: str
    sha256: Optional[str]
    preprocess: Preprocess
    decoder: str
    input_name: str
    outputs: Mapping[str, str] = field(default_factory=dict)
    urls: Tuple[str, ...] = ()
    archive_member: Optional[str] = None
    mirror_path: Optional[str] = None
    variable_input: bool = False
    max_batch: int = 0
    decoder_options: Mapping[str, float] = field(default_factory=dict)
    description: str = ""
    license: str = ""

    def with_input_size(self, size: Optional[Tuple[int, int]]) -> ModelSpec:
        """A copy running at ``size`` = (W, H); refuses sizes a static graph cannot take."""
        if size is None or tuple(size) == self.preprocess.input_size:
            return self
        if not self.variable_input:
            raise ConfigError(
                f"model {self.name} has a fixed input of {self.preprocess.input_size[0]}x"
                f"{self.preprocess.input_size[1]}; it cannot run at {size[0]}x{size[1]}")
        if size[0] % 32 or size[1] % 32:
            raise ConfigError(f"input size {size[0]}x{size[1]} must be a multiple of 32")
        return replace(self, preprocess=replace(self.preprocess, input_size=(size[0], size[1])))

    @property
    def is_local_file(self) -> bool:
        """True for a user's own file (``file`` is a path), False for a registry download."""
        return "/" in self.file or "\\" in self.file

    @property
    def static_batch(self) -> bool:
        return self.max_batch == 1


#: RTMDet runs at 416 by default: +0.7 keypoint AP over 320 for 1.6x the detector's time
#: (640: +0.3 more for 4x; docs/accuracy.md).
_RTMDET_PRE = Preprocess((416, 416), "letterbox", "bgr", (103.53, 116.28, 123.675),
                         (57.375, 57.12, 58.395), pad_value=114.0)
_TINYPOSE_MEAN = RGB_IMAGENET_MEAN
_TINYPOSE_STD = RGB_IMAGENET_STD
#: PP-TinyPose was trained with HRNet-style targets: heatmap cell j <-> input coordinate
#: j * stride, with no half-pixel terms (measured: +9 AP over the cell centre, docs/accuracy.md).
_HRNET_TARGETS = {"cell_offset": 0.0}
_OPENMMLAB = "https://download.openmmlab.com/mmpose/v1/projects/rtmposev1/onnx_sdk/"


def _rtmpose(size: str, tag: str, sha256: Optional[str]) -> ModelSpec:
    return ModelSpec(
        name=f"rtmpose_{size}", task="pose", file=f"rtmpose-{size}_body7_256x192.onnx",
        sha256=sha256,
        preprocess=Preprocess((192, 256), "crop", "rgb", RGB_IMAGENET_MEAN, RGB_IMAGENET_STD),
        decoder="simcc", input_name="input",
        outputs={"simcc_x": "simcc_x", "simcc_y": "simcc_y"},
        urls=(f"{_OPENMMLAB}rtmpose-{size}_simcc-body7_pt-body7_420e-256x192-{tag}.zip",),
        archive_member="end2end.onnx", decoder_options={"split_ratio": 2.0},
        description=f"RTMPose-{size} body7 256x192, SimCC (OpenMMLab ONNX SDK bundle)",
        license="Apache-2.0",
    )


REGISTRY: Dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add ``spec`` to the registry (a later registration under the same name replaces it)."""
    if spec.task not in ("detector", "pose"):
        raise ValueError(f"task must be 'detector' or 'pose', not {spec.task!r}")
    REGISTRY[spec.name] = spec
    return spec


for _spec in (
    ModelSpec(
        name="rtmdet_nano_person", task="detector", file="rtmdet_nano_person_nms.onnx",
        sha256="4720eda18a18402e7b76d85827d4bc60fba18111fc0b74b559e4d24da9ddc3d2",
        preprocess=_RTMDET_PRE, decoder="nms_in_graph", input_name="input",
        outputs={"dets": "dets", "labels": "labels"}, variable_input=True,
        urls=("https://modelscope.cn/models/wht0926/xedu-hub-models/resolve/master/"
              "bodydetect.onnx",),
        description="RTMDet-nano person (mmdeploy export, NMS in graph: IoU 0.6, score 0.05)",
        license="Apache-2.0",
    ),
    ModelSpec(
        name="rtmdet_nano_person_raw", task="detector", file="rtmdet_nano_person_rawhead.onnx",
        sha256="2342782216e0fad70b2732df20c35618f3f117427df2da9f51a1970a8e883b02",
        preprocess=_RTMDET_PRE, decoder="rtmdet_raw", input_name="input",
        outputs={f"{k}_s{s}": f"{k}_s{s}" for k in ("cls", "reg") for s in (8, 16, 32)},
        variable_input=True,
        description="RTMDet-nano person, raw head (our NMS; the graph INT8 quantizes cleanly)",
        license="Apache-2.0",
    ),
    ModelSpec(
        name="rtmdet_nano_person_official", task="detector",
        file="rtmdet_nano_person_official.onnx", sha256=None,
        preprocess=_RTMDET_PRE, decoder="nms_in_graph", input_name="input",
        outputs={"dets": "dets", "labels": "labels"}, variable_input=True,
        urls=(f"{_OPENMMLAB}rtmdet_nano_8xb32-100e_coco-obj365-person-05d8511e.zip",),
        archive_member="end2end.onnx",
        description="RTMDet-nano person, official OpenMMLab ONNX SDK bundle (NMS in graph)",
        license="Apache-2.0",
    ),
    ModelSpec(
        name="yolox_nano_416", task="detector", file="yolox_nano_416.onnx",
        sha256="695e750a5d5754bb5a8d5325643b59282191a7e7a564e435a415fd3c578eab14",
        preprocess=Preprocess((416, 416), "letterbox", "bgr", pad_value=114.0),
        decoder="yolox", input_name="images", outputs={"output": "output"}, max_batch=1,
        urls=("https://github.com/Megvii-BaseDetection/YOLOX/releases/download/0.1.1rc0/"
              "yolox_nano.onnx",),
        description="YOLOX-nano 416 (80 COCO classes; person = objectness x class 0)",
        license="Apache-2.0",
    ),
    ModelSpec(
        name="picodet_s_320_pedestrian", task="detector", file="picodet_s_320_pedestrian.onnx",
        sha256="33a8db1e0af335d7d85a184a81afa55599f82027662077cd52652aeb332017f6",
        preprocess=Preprocess((320, 320), "stretch", "rgb", RGB_IMAGENET_MEAN, RGB_IMAGENET_STD),
        decoder="boxes_scores", input_name="image",
        outputs={"scores": "transpose_8.tmp_0", "boxes": "concat_8.tmp_0"}, max_batch=1,
        description="PP-PicoDet-S LCNet pedestrian 320 (converted from PaddleDetection's IR)",
        license="Apache-2.0",
    ),
    ModelSpec(
        name="pp_tinypose_256x192", task="pose", file="pp_tinypose_256x192.onnx",
        sha256="2c86e0da4e93b46d5460e38ebadd5a180e5d894266860fd9b2922fcdd3d0294a",
        preprocess=Preprocess((192, 256), "crop", "rgb", _TINYPOSE_MEAN, _TINYPOSE_STD),
        decoder="heatmap", input_name="image", outputs={"heatmaps": "conv2d_441.tmp_1"},
        decoder_options=_HRNET_TARGETS,
        description="PP-TinyPose 256x192 heatmaps (68.8 COCO val AP with GT boxes)",
        license="Apache-2.0",
    ),
    ModelSpec(
        name="pp_tinypose_128x96", task="pose", file="pp_tinypose_128x96.onnx",
        sha256="39d325e9b50f82b558f63de0f385bbc5ca8b210c6ece2477cb1d81e29dea2895",
        preprocess=Preprocess((96, 128), "crop", "rgb", _TINYPOSE_MEAN, _TINYPOSE_STD),
        decoder="heatmap", input_name="image", outputs={"heatmaps": "conv2d_441.tmp_1"},
        decoder_options=_HRNET_TARGETS,
        description="PP-TinyPose 128x96 heatmaps (58.1 COCO val AP with GT boxes)",
        license="Apache-2.0",
    ),
    _rtmpose("t", "026a1439_20230504", None),
    _rtmpose("s", "acd4a1ef_20230504", None),
    _rtmpose("m", "e48f03d0_20230504", None),
):
    register(_spec)

#: The raw-head RTMDet (our NMS): same accuracy as the NMS-in-graph file, parses on TensorRT 8.5
#: (whose TopK cannot take K from a Shape chain), and ships inside the package.
DEFAULT_DETECTOR = "rtmdet_nano_person_raw"
DEFAULT_POSE = "pp_tinypose_256x192"


def get_spec(name: str, task: Optional[str] = None) -> ModelSpec:
    """Registry entry ``name``; ``task`` checks it is a detector / pose model."""
    try:
        spec = REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(sorted(REGISTRY))}"
                          ) from None
    if task is not None and spec.task != task:
        raise ConfigError(f"model {name!r} is a {spec.task} model, not a {task} model")
    return spec


def is_model_path(name_or_path: str) -> bool:
    """True when a --detector / --pose value names an ONNX file rather than a registry model."""
    return name_or_path.endswith(".onnx") or "/" in name_or_path


def spec_for_file(path: str, like: str) -> ModelSpec:
    """A spec for a user's own ONNX file with the contract of registry model ``like``."""
    import os

    base = get_spec(like)
    return replace(base, name=os.path.splitext(os.path.basename(path))[0],
                   file=os.path.abspath(path),
                   sha256=None, urls=(), archive_member=None, mirror_path=None)
