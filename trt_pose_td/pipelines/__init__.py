"""The pipelines: what runs a detector and a keypoint model over frames (internal; the public
entry point is :func:`trt_pose_td.open_pipeline`, in :mod:`trt_pose_td.api`).

- :mod:`.base`: the :class:`~.base.Pipeline` protocol every pipeline satisfies, and what they
  share (the check of given boxes, ``batch`` as one call per frame);
- :mod:`.plan`: a :class:`~trt_pose_td.config.PipelineConfig` resolved once into what runs
  (backend, precision, model specs, files); the builder and ``eval`` use it too;
- :mod:`.stages`: the detector and keypoint stages on the host (crop affines, batched warp,
  chunked inference, decoding, flip, re-crop), run by the CPU pipeline and reused by the GPU one;
- :mod:`.cpu`: :class:`~.cpu.CpuPipeline` (ONNX Runtime);
- :mod:`.gpu`: :class:`~.gpu.GpuPipeline` (TensorRT, CUDA kernels), with its stages by concern:
  :mod:`.gpu_detect` (letterbox launch, detector runs, host decoding), :mod:`.gpu_keypoints`
  (one crop launch, keypoint runs, flip average, GPU decode, re-crop) and :mod:`.gpu_memory`
  (frame slots and launch-table staging);
- :mod:`.tracked`: :class:`~.tracked.TrackedPipeline`, tracking around either pipeline.

Nothing is imported here, so ``import trt_pose_td.pipelines.plan`` stays as light as the plan.
"""
