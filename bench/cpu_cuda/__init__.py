"""The package's CUDA kernel source executed on the CPU (``bench/kernels_on_cpu.py``).

- ``cuda_shim.h`` + :mod:`.build`: the .cu files compiled by g++ into a shared library;
- :mod:`.host_driver`: host memory as device memory, the package's real ``Kernels`` on top;
- :mod:`.inputs` + :mod:`.cases`: the edge cases, as data; :mod:`.harness`: run and compare.

A test harness, not a GPU: docs/gpu-runtime.md says what it proves and what only a GPU can.
"""
