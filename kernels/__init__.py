"""emgpose_kernels: our CUDA kernels (``*.cu`` beside thin loaders) and the way they run.

Every kernel runs on one of two backends, chosen by :func:`emgpose_kernels.launch.backend`:

* ``cuda``: CuPy compiles the source (one ``RawModule`` per file, one template instance per dtype via
  ``name_expressions``) and launches it on the device; arrays are CuPy arrays.
* ``emulate``: g++ compiles the same source for the host with ``emu/cuda_host.h`` force-included (a
  block's threads are host threads, ``__syncthreads`` a barrier) and ctypes calls it on NumPy arrays.
  This is how CI runs every kernel's logic without a GPU; it is slow and meant for tests only.

Each kernel has a CPU twin in :mod:`emgpose.preprocess` and is tested against it on both backends.
"""
