// Host emulation of the CUDA execution model, so that the kernels in kernels/*.cu run on a CPU in CI.
//
// The same .cu source is compiled by g++ with this header force-included (-include) and loaded with
// ctypes (emgpose_kernels.emulate). A launch runs the grid's blocks one after another; the threads of a
// block run as real host threads, so __syncthreads() is a std::barrier and a missing barrier shows up as
// a wrong result, as on a device. What is emulated:
//   - threadIdx, blockIdx, blockDim, gridDim (thread-local, set per emulated thread);
//   - __syncthreads(), __syncwarp() and the warp shuffles __shfl_sync / __shfl_down_sync /
//     __shfl_xor_sync (every lane of the warp must take part, as with a full mask on a device);
//   - __shared__ (static storage: blocks run one at a time, so one copy serves each block in turn) and
//     dynamic shared memory through EMU_DYNAMIC_SHARED;
//   - atomicAdd / atomicMax on int, unsigned, float and double (std::atomic_ref);
//   - the math functions kernels use (sqrt, fabs, ...) come from <cmath>.
// Not emulated: memory spaces (pointers are host pointers), streams, timing, texture memory.
#pragma once

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#define EMGPOSE_HOST_EMULATION 1
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__
#define __shared__ static
#define __launch_bounds__(...)

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace emu {

constexpr unsigned kWarp = 32;

struct Block {
    explicit Block(unsigned threads)
        : barrier(threads), warps((threads + kWarp - 1) / kWarp), exchange(warps.size() * kWarp) {
        for (unsigned w = 0; w < warps.size(); ++w) {
            unsigned lanes = std::min(kWarp, threads - w * kWarp);
            warps[w] = std::make_unique<std::barrier<>>(lanes);
        }
    }
    std::barrier<> barrier;
    std::vector<std::unique_ptr<std::barrier<>>> warps;
    std::vector<unsigned long long> exchange;  // one slot per lane for the shuffles
    std::vector<unsigned char> dynamic_shared;
};

inline thread_local dim3 thread_idx, block_idx, block_dim, grid_dim;
inline thread_local Block* block = nullptr;

template <typename... P>
constexpr std::size_t arity(void (*)(P...)) {
    return sizeof...(P);
}

inline unsigned linear_thread() { return thread_idx.x + block_dim.x * (thread_idx.y + block_dim.y * thread_idx.z); }

template <typename T>
T shuffle(T value, unsigned source_lane_of(unsigned lane, unsigned arg), unsigned arg) {
    static_assert(sizeof(T) <= sizeof(unsigned long long), "shuffle of a value wider than 64 bits");
    unsigned me = linear_thread();
    unsigned warp = me / kWarp, lane = me % kWarp;
    auto& sync = *block->warps[warp];
    unsigned long long bits = 0;
    std::memcpy(&bits, &value, sizeof(T));
    block->exchange[me] = bits;
    sync.arrive_and_wait();
    unsigned source = source_lane_of(lane, arg);
    unsigned lanes = std::min(kWarp, block_dim.x * block_dim.y * block_dim.z - warp * kWarp);
    T out = value;
    if (source < lanes) std::memcpy(&out, &block->exchange[warp * kWarp + source], sizeof(T));
    sync.arrive_and_wait();
    return out;
}

inline unsigned lane_down(unsigned lane, unsigned delta) { return lane + delta; }
inline unsigned lane_xor(unsigned lane, unsigned mask) { return lane ^ mask; }
inline unsigned lane_fixed(unsigned, unsigned source) { return source; }

// Runs kernel(args...) over the grid: blocks in order, each block's threads in parallel.
template <typename Kernel, typename... Args>
void launch(dim3 grid, dim3 threads, std::size_t shared_bytes, Kernel kernel, Args... args) {
    unsigned n = threads.x * threads.y * threads.z;
    for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
            for (unsigned bx = 0; bx < grid.x; ++bx) {
                Block state(n);
                state.dynamic_shared.assign(shared_bytes, 0);
                std::vector<std::thread> pool;
                pool.reserve(n);
                for (unsigned t = 0; t < n; ++t) {
                    pool.emplace_back([&, t] {
                        thread_idx = dim3(t % threads.x, (t / threads.x) % threads.y, t / (threads.x * threads.y));
                        block_idx = dim3(bx, by, bz);
                        block_dim = threads;
                        grid_dim = grid;
                        block = &state;
                        kernel(args...);
                    });
                }
                for (auto& thread : pool) thread.join();
            }
}

// A launch with its arguments packed as CUDA packs them: args[i] points to argument i.
template <typename... P, std::size_t... I>
void launch_packed(dim3 grid, dim3 threads, void (*kernel)(P...), void** args, std::index_sequence<I...>) {
    launch(grid, threads, 0, kernel, *static_cast<std::remove_cv_t<std::remove_reference_t<P>>*>(args[I])...);
}

}  // namespace emu

// The C entry point ctypes calls for one template instance: name(grid_x, grid_y, block, args).
#define EMU_EXPORT(name, ...)                                                                          \
    extern "C" void name(unsigned grid_x, unsigned grid_y, unsigned block, void** args) {              \
        emu::launch_packed(dim3(grid_x, grid_y), dim3(block), &__VA_ARGS__, args,                     \
                           std::make_index_sequence<emu::arity(&__VA_ARGS__)>());                     \
    }

#define threadIdx (emu::thread_idx)
#define blockIdx (emu::block_idx)
#define blockDim (emu::block_dim)
#define gridDim (emu::grid_dim)
#define warpSize (emu::kWarp)

#define EMU_DYNAMIC_SHARED(type, name) type* name = reinterpret_cast<type*>(emu::block->dynamic_shared.data())

inline void __syncthreads() { emu::block->barrier.arrive_and_wait(); }
inline void __syncwarp(unsigned = 0xffffffffu) {
    emu::block->warps[emu::linear_thread() / emu::kWarp]->arrive_and_wait();
}

template <typename T>
T __shfl_down_sync(unsigned, T value, unsigned delta, int = 32) {
    return emu::shuffle(value, emu::lane_down, delta);
}
template <typename T>
T __shfl_xor_sync(unsigned, T value, int mask, int = 32) {
    return emu::shuffle(value, emu::lane_xor, static_cast<unsigned>(mask));
}
template <typename T>
T __shfl_sync(unsigned, T value, int source, int = 32) {
    return emu::shuffle(value, emu::lane_fixed, static_cast<unsigned>(source));
}

template <typename T>
T atomicAdd(T* address, T value) {
    return std::atomic_ref<T>(*address).fetch_add(value);
}
template <typename T>
T atomicMax(T* address, T value) {
    std::atomic_ref<T> ref(*address);
    T old = ref.load();
    while (old < value && !ref.compare_exchange_weak(old, value)) {
    }
    return old;
}
