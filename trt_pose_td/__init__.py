"""trt_pose_td: TensorRT-optimised top-down multi-person pose estimation for Jetson.

A person detector, then every person cropped in one batched warp and the keypoint model run once
on the whole batch. ONNX Runtime on CPU machines (the default and the accuracy reference);
TensorRT engines with CUDA kernels on NVIDIA GPUs.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
