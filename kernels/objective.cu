// Training on the device: the per-joint weighted pseudo-Huber objective (gradient and Hessian for
// XGBoost) and the per-joint sums of absolute errors behind the MAE metric.
//
// Layout: `pred`, `label`, `grad` and `hess` are (rows, joints) row-major; `joint_weight` is (joints),
// `sample_weight` (rows), read only when `has_sample_weight` is 1 (the loader passes a 1-element array
// otherwise); `delta` is a 1-element array (the pseudo-Huber slope, z-scored units).
//
// pseudo_huber: one thread per element, grid-stride; consecutive threads take consecutive elements of a
// row (coalesced). For r = pred - label and s = 1 + (r / delta)^2:
//   grad = w * r / sqrt(s),  hess = w / s^(3/2),  w = joint_weight[j] * sample_weight[i],
// XGBoost's reg:pseudohubererror (huber_slope = delta) when every weight is 1.
//
// abs_error_sums: grid-stride over rows; a row counts when every label in it is finite (the rows
// emgpose.train.metrics.regression_metrics keeps). Each thread sums |pred - label| per joint in double
// registers, a warp reduces with shuffles, the warps' partials meet in shared memory after a barrier, and
// warp 0 adds the block's totals with one atomicAdd per joint (and one for the row count). `sums` and
// `count` are zeroed by the caller.
//
// Twin: emgpose.train.objective.pseudo_huber_twin and mae_per_joint_twin (plain NumPy).
#include "common.cuh"

enum : int { kMaxJoints = 32 };  // accumulators per thread in abs_error_sums (the loader refuses more)

// The square root in the kernel's own precision (sqrtf for float, as NVRTC and the host both declare it).
__device__ __forceinline__ float square_root(float x) { return sqrtf(x); }
__device__ __forceinline__ double square_root(double x) { return sqrt(x); }

template <typename T>
__global__ void pseudo_huber(const T* __restrict__ pred, const T* __restrict__ label,
                             const T* __restrict__ joint_weight, const T* __restrict__ sample_weight,
                             const T* __restrict__ delta, T* __restrict__ grad, T* __restrict__ hess,
                             long long rows, int joints, int has_sample_weight) {
    const T slope = delta[0];
    long long index = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
    long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
    for (; index < rows * joints; index += stride) {
        long long i = index / joints;
        int j = static_cast<int>(index - i * joints);
        T w = joint_weight[j];
        if (has_sample_weight) w *= sample_weight[i];
        T r = pred[index] - label[index];
        T z = r / slope;
        T s = T(1) + z * z;
        T root = square_root(s);
        grad[index] = w * r / root;
        hess[index] = w / (s * root);
    }
}

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
    for (int offset = warpSize / 2; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
    return v;
}

// True for a finite value: inf - inf and NaN - NaN are NaN, which never equals 0.
template <typename T>
__device__ __forceinline__ bool is_finite_value(T v) {
    return v - v == T(0);
}

template <typename T>
__global__ void abs_error_sums(const T* __restrict__ pred, const T* __restrict__ label, long long rows, int joints,
                               double* sums, unsigned long long* count) {
    __shared__ double partial[32][kMaxJoints];
    __shared__ unsigned long long partial_count[32];
    double acc[kMaxJoints];
#pragma unroll
    for (int j = 0; j < kMaxJoints; ++j) acc[j] = 0.0;
    unsigned long long used = 0;
    for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < rows;
         i += static_cast<long long>(gridDim.x) * blockDim.x) {
        const T* p = pred + i * joints;
        const T* y = label + i * joints;
        bool keep = true;
        for (int j = 0; j < joints; ++j) keep = keep && is_finite_value(y[j]);
        if (!keep) continue;
        ++used;
#pragma unroll
        for (int j = 0; j < kMaxJoints; ++j) {
            if (j < joints) {
                T e = p[j] - y[j];
                acc[j] += static_cast<double>(e < T(0) ? -e : e);
            }
        }
    }
    int lane = threadIdx.x % warpSize, warp = threadIdx.x / warpSize;
#pragma unroll
    for (int j = 0; j < kMaxJoints; ++j) {
        if (j < joints) {  // the same for every thread: all lanes take part in the shuffles
            double s = warp_sum(acc[j]);
            if (lane == 0) partial[warp][j] = s;
        }
    }
    used = warp_sum(used);
    if (lane == 0) partial_count[warp] = used;
    __syncthreads();
    if (warp == 0) {
        int warps = (blockDim.x + warpSize - 1) / warpSize;
        for (int j = 0; j < joints; ++j) {
            double s = warp_sum(lane < warps ? partial[lane][j] : 0.0);
            if (lane == 0) atomicAdd(sums + j, s);
        }
        unsigned long long c = warp_sum(lane < warps ? partial_count[lane] : 0ull);
        if (lane == 0) atomicAdd(count, c);
    }
}

EMU_EXPORT(pseudo_huber_f64, pseudo_huber<double>)
EMU_EXPORT(pseudo_huber_f32, pseudo_huber<float>)
EMU_EXPORT(abs_error_sums_f64, abs_error_sums<double>)
EMU_EXPORT(abs_error_sums_f32, abs_error_sums<float>)
