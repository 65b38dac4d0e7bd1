// Band-pass: a cascade of second-order sections (direct form II transposed, as scipy.signal.sosfilt),
// causal, with its state carried between chunks like emgpose.preprocess.signal.CausalChain.
//
// x and y are (n_samples, columns) row-major; a column is one channel of one session, so a launch filters
// many sessions at once (columns = sessions x channels). zi is (sections, 2, columns). Twin:
// scipy.signal.sosfilt(sos, x, axis=0, zi=zi). Two forms of the same filter:
//
// Sequential (`sosfilt`): one thread per column runs the recurrence over all samples and updates zi in
// place, so the next chunk continues where this one stopped. Parallelism = columns.
//
// Time-blocked parallel scan (`sosfilt_block_states`, `sosfilt_scan_step`, `sosfilt_block_apply`), for a
// few long columns that alone cannot fill a device. The cascade is a linear recurrence with a state of
// 2 x sections per column, s[t+1] = A s[t] + B x[t]; split time into K blocks of L samples:
//   1. zero-state pass, one thread per (block k < K - 1, column): run block k from zero state; its final
//      state f_k (the zero-state response) goes to starts[k + 1]; starts[0] = zi (written by the loader).
//      No outputs are written here (step 3 produces them).
//   2. scan over blocks: the true start state of block k is S_k = P S_{k-1} + f_{k-1} with P = A^L,
//      S_0 = zi. Hillis-Steele inclusive scan with a constant matrix: launch d (offset o = 2^d) computes
//      starts'[k] = starts[k] + P^o starts[k - o] for k >= o (ping-pong buffers), one thread per (block,
//      state component, column); after ceil(log2 K) launches starts[k] = S_k. The powers P^(2^d) come
//      from the host, computed in float64 (emgpose_kernels.sosfilt.transition_powers). Cost: K log2 K
//      matrix-vector rows of 2 x sections terms per column in log2 K fully parallel launches, against the
//      K sequential dependent steps of a loop per column; its memory traffic is a small fraction of one
//      pass over x for L = 1024. Only full blocks are ever stepped over by P: the shorter last block is
//      handled by step 3.
//   3. apply, one thread per (block, column): re-run block k from S_k with the real input and write y;
//      the last block's thread writes its final state to zf, exactly what the sequential filter leaves.
//      Re-running (instead of adding the zero-input response C A^(t - t_k) S_k to zero-state outputs of
//      step 1) reads x twice and writes y once: 3 memory passes against 4 (write y in step 1, then read
//      and write it again), about the same arithmetic, the sequential kernel's arithmetic within a block,
//      and zf with no extra matrix for a shorter last block.
// Threads are numbered (block, column) with the column fastest, so a warp reads consecutive columns of
// one sample; with few columns a warp spans several blocks and each thread streams its own rows (cached).
// The blocked kernels keep the state in registers (no stack frame; 74 registers in double on sm_90) and
// take at most kMaxSections sections (the band-pass of order 4 plus a notch has 5).
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

// Most sections the time-blocked kernels take (emgpose_kernels.sosfilt.MAX_SECTIONS says the same).
constexpr int kMaxSections = 8;

// One sample v through the cascade; z = (z0, z1) per section. The unrolled loop indexes z with
// compile-time constants, so z stays in registers.
template <typename T>
__device__ __forceinline__ T cascade(const T* __restrict__ sos, int sections, T (&z)[2 * kMaxSections], T v) {
#pragma unroll
    for (int s = 0; s < kMaxSections; ++s) {
        if (s >= sections) break;
        const T* c = sos + 6 * s;  // b0 b1 b2 a0 a1 a2 (a0 == 1)
        T out = c[0] * v + z[2 * s];
        z[2 * s] = c[1] * v - c[4] * out + z[2 * s + 1];
        z[2 * s + 1] = c[2] * v - c[5] * out;
        v = out;
    }
    return v;
}

// Step 1: starts (blocks, sections, 2, columns) gets, at k + 1, the zero-state final state of block k.
template <typename T>
__global__ void sosfilt_block_states(const T* __restrict__ sos, int sections, const T* __restrict__ x,
                                     T* __restrict__ starts, long long n, int columns, long long block_len,
                                     long long blocks) {
    long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
    long long states = 2LL * sections;
    for (long long index = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
         index < (blocks - 1) * columns; index += stride) {
        long long k = index / columns;
        int column = static_cast<int>(index - k * columns);
        T z[2 * kMaxSections] = {};
        long long end = (k + 1) * block_len;  // k < blocks - 1: a full block, end <= n
        for (long long i = k * block_len; i < end; ++i) cascade(sos, sections, z, x[i * columns + column]);
        T* out = starts + (k + 1) * states * columns + column;
#pragma unroll
        for (int j = 0; j < 2 * kMaxSections; ++j) {
            if (j >= states) break;
            out[j * columns] = z[j];
        }
    }
}

// Step 2, one Hillis-Steele level: dst[k] = src[k] + P^offset src[k - offset] (src[k] alone for
// k < offset), with P^offset = powers[level] (states x states, row-major). One thread per element.
template <typename T>
__global__ void sosfilt_scan_step(const T* __restrict__ powers, int level, int states, const T* __restrict__ src,
                                  T* __restrict__ dst, long long blocks, int columns, long long offset) {
    long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
    long long per_block = static_cast<long long>(states) * columns;
    for (long long index = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; index < blocks * per_block;
         index += stride) {
        long long k = index / per_block;
        long long rest = index - k * per_block;
        int j = static_cast<int>(rest / columns);
        int column = static_cast<int>(rest - static_cast<long long>(j) * columns);
        T v = src[index];
        if (k >= offset) {
            const T* row = powers + (static_cast<long long>(level) * states + j) * states;
            const T* previous = src + (k - offset) * per_block + column;
            for (int m = 0; m < states; ++m) v += row[m] * previous[static_cast<long long>(m) * columns];
        }
        dst[index] = v;
    }
}

// Step 3: block k re-runs from starts[k] = S_k with the real input and writes y; the last block also
// writes its final state to zf (sections, 2, columns).
template <typename T>
__global__ void sosfilt_block_apply(const T* __restrict__ sos, int sections, const T* __restrict__ x,
                                    T* __restrict__ y, const T* __restrict__ starts, T* __restrict__ zf,
                                    long long n, int columns, long long block_len, long long blocks) {
    long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
    long long states = 2LL * sections;
    for (long long index = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; index < blocks * columns;
         index += stride) {
        long long k = index / columns;
        int column = static_cast<int>(index - k * columns);
        T z[2 * kMaxSections] = {};
        const T* start = starts + k * states * columns + column;
#pragma unroll
        for (int j = 0; j < 2 * kMaxSections; ++j) {
            if (j >= states) break;
            z[j] = start[j * columns];
        }
        long long end = (k + 1) * block_len < n ? (k + 1) * block_len : n;
        for (long long i = k * block_len; i < end; ++i) {
            y[i * columns + column] = cascade(sos, sections, z, x[i * columns + column]);
        }
        if (k == blocks - 1) {
#pragma unroll
            for (int j = 0; j < 2 * kMaxSections; ++j) {
                if (j >= states) break;
                zf[j * columns + column] = z[j];
            }
        }
    }
}

EMU_EXPORT(sosfilt_f64, sosfilt<double>)
EMU_EXPORT(sosfilt_f32, sosfilt<float>)
EMU_EXPORT(sosfilt_block_states_f64, sosfilt_block_states<double>)
EMU_EXPORT(sosfilt_block_states_f32, sosfilt_block_states<float>)
EMU_EXPORT(sosfilt_scan_step_f64, sosfilt_scan_step<double>)
EMU_EXPORT(sosfilt_scan_step_f32, sosfilt_scan_step<float>)
EMU_EXPORT(sosfilt_block_apply_f64, sosfilt_block_apply<double>)
EMU_EXPORT(sosfilt_block_apply_f32, sosfilt_block_apply<float>)
