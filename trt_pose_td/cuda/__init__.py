"""GPU runtime pieces on cuda-python (``cuda.bindings``), all imported lazily.

- :mod:`.driver`: checked driver calls, :class:`~.driver.Device` (compute capability,
  ``integrated``), :class:`~.driver.Stream`, :class:`~.driver.Event`, device / pinned / mapped
  (zero-copy) buffers — every resource closeable, every transfer on an explicit stream.
- :mod:`.nvrtc`: NVRTC compile of ``kernels/*.cu`` with an on-disk cubin/PTX cache.
- :mod:`.launchers`: host-side launch wrappers of the ``kernels/*.cu`` sources (argument checks,
  explicit stream) and :class:`~.launchers.CudaPreprocessor`.
- :mod:`.twins`: numpy twins of the kernels' exact arithmetic (pure numpy; the reference of the GPU
  tests and a CPU :class:`~trt_pose_td.preprocess.Preprocessor`).

Importing this package (or :mod:`.twins`) needs no GPU and no cuda-python.
"""
