// Column sums and sums of squares of a (rows, columns) row-major array, accumulated into `sums` and
// `squares` (both per column, zeroed by the caller): the statistics pass behind the z-score.
//
// Block (x, y) reduces a stride of rows of column y: each thread sums its rows, a warp reduces with
// shuffles, the warps' partials meet in shared memory after a barrier, and thread 0 adds the block's
// total with one atomic per column. Twin: numpy's x.sum(0) and (x * x).sum(0).
#include "common.cuh"

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
    for (int offset = warpSize / 2; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
    return v;
}

template <typename T>
__global__ void colstats(const T* __restrict__ x, long long rows, int columns, T* sums, T* squares) {
    __shared__ T partial[2][32];
    int column = blockIdx.y;
    T s = 0, q = 0;
    for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < rows;
         i += static_cast<long long>(gridDim.x) * blockDim.x) {
        T v = x[i * columns + column];
        s += v;
        q += v * v;
    }
    s = warp_sum(s);
    q = warp_sum(q);
    int lane = threadIdx.x % warpSize, warp = threadIdx.x / warpSize;
    if (lane == 0) {
        partial[0][warp] = s;
        partial[1][warp] = q;
    }
    __syncthreads();
    if (warp == 0) {
        int warps = (blockDim.x + warpSize - 1) / warpSize;
        s = lane < warps ? partial[0][lane] : T(0);
        q = lane < warps ? partial[1][lane] : T(0);
        s = warp_sum(s);
        q = warp_sum(q);
        if (lane == 0) {
            atomicAdd(sums + column, s);
            atomicAdd(squares + column, q);
        }
    }
}

EMU_EXPORT(colstats_f64, colstats<double>)
EMU_EXPORT(colstats_f32, colstats<float>)
