// Band-pass: a cascade of second-order sections (direct form II transposed, as scipy.signal.sosfilt),
// causal, with its state carried between chunks like emgpose.preprocess.signal.CausalChain.
//
// x and y are (n_samples, columns) row-major; a column is one channel of one session, so a launch filters
// many sessions at once (columns = sessions x channels). zi is (sections, 2, columns) and is updated in
// place, so the next chunk continues where this one stopped. One thread per column runs the recurrence
// over time. (The time-blocked parallel scan that lets one long session fill a device is still to come.)
#include "common.cuh"

template <typename T>
__global__ void sosfilt(const T* __restrict__ sos, int sections, const T* __restrict__ x, T* __restrict__ y,
                        T* __restrict__ zi, long long n, int columns) {
    int column = blockIdx.x * blockDim.x + threadIdx.x;
    if (column >= columns) return;
    for (long long i = 0; i < n; ++i) {
        T v = x[i * columns + column];
        for (int s = 0; s < sections; ++s) {
            const T* c = sos + 6 * s;  // b0 b1 b2 a0 a1 a2 (a0 == 1)
            T* z = zi + static_cast<long long>(2 * s) * columns + column;
            T out = c[0] * v + z[0];
            z[0] = c[1] * v - c[4] * out + z[columns];
            z[columns] = c[2] * v - c[5] * out;
            v = out;
        }
        y[i * columns + column] = v;
    }
}

EMU_EXPORT(sosfilt_f64, sosfilt<double>)
EMU_EXPORT(sosfilt_f32, sosfilt<float>)
