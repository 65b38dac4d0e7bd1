// Shared by every kernel source: what differs between nvcc and the host emulation (kernels/emu).
#pragma once

#ifndef EMGPOSE_HOST_EMULATION
// Entry points of the host emulation (kernels/emu/cuda_host.h); nothing on a device, where CuPy
// launches the template instances by name. scripts/test compiles with EMGPOSE_INSTANTIATE so that nvcc
// builds every exported instance (taking its address instantiates it), as CuPy will.
#ifdef EMGPOSE_INSTANTIATE
#define EMU_EXPORT(name, ...) void* name##_instance = reinterpret_cast<void*>(&__VA_ARGS__);
#else
#define EMU_EXPORT(name, ...)
#endif
// Dynamic shared memory (the launch's shared_bytes), typed.
#define EMU_DYNAMIC_SHARED(type, name)            \
    extern __shared__ unsigned char name##_raw[]; \
    type* name = reinterpret_cast<type*>(name##_raw)
#endif
