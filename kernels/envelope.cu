// Envelope: rectify + causal moving average + z-score, fused in one pass over (n_samples, n_channels).
//
// Twin: emgpose.preprocess.signal.CausalChain._smooth followed by NormStats.scale_envelope. The moving
// average over `ma` samples reaches back into `history`, the last (ma - 1) rectified samples of the
// previous chunk ((ma - 1) x channels, row-major), so a stream in chunks equals one call. One thread per
// output element; consecutive threads read consecutive channels of a sample (coalesced rows).
#include "common.cuh"

template <typename T>
__global__ void envelope(const T* __restrict__ y, const T* __restrict__ history, const T* __restrict__ mean,
                         const T* __restrict__ inv_std, T* __restrict__ out, long long n, int channels, int ma,
                         int rectify) {
    long long index = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
    long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
    for (; index < n * channels; index += stride) {
        long long i = index / channels;
        int c = static_cast<int>(index - i * channels);
        T sum = 0;
        for (int k = 0; k < ma; ++k) {
            long long j = i - k;
            T v = j >= 0 ? y[j * channels + c] : history[(static_cast<long long>(ma - 1) + j) * channels + c];
            sum += rectify ? (v < 0 ? -v : v) : v;
        }
        out[index] = (sum / static_cast<T>(ma) - mean[c]) * inv_std[c];
    }
}

EMU_EXPORT(envelope_f64, envelope<double>)
EMU_EXPORT(envelope_f32, envelope<float>)
