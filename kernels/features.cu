// Window features: every requested feature of evenly spaced windows, from prefix sums of per-sample terms.
//
// Twin: emgpose.preprocess.features.compute_stream_features (same terms, computed in T as NumPy computes
// them on a T array, summed in double; float32 output in the trainer's column order). features.py launches:
//   cell_sums         one thread per (row, term column): row r > 0 holds the sum of cell r - 1, `cell`
//                     consecutive terms from `base` on (cell divides the windows' length and stride, so
//                     every window starts and ends on a cell boundary); row 0 is zero, so an inclusive
//                     scan down each column turns the rows into prefix sums.
//   scan_tiles        one thread per (tile, column): an inclusive scan of `tile` rows in place, and the
//                     tile's total; features.py scans the totals the same way (recursively: any length),
//   add_tile_offsets  then one thread per (row past the first tile, column) adds the earlier tiles' total.
//   window_features   one thread per (window, output column): the window's terms start .. end - span are
//                     the prefix difference over its cells minus the `span` terms that reach past its end
//                     (terms past the end of the signal are zero), then finished (mean, root mean, total);
//                     env_last reads the envelope at the window's last sample.
// Layouts (row-major): signals (n, C); sums (rows, S * C), column slot * C + c for the S distinct term
// features; out (count, F * C) float32, column f * C + c. Consecutive threads take consecutive columns of a
// row, so rows are read and written coalesced. The scan kernels run on the double sums (instance <double>).
#include "common.cuh"

// Kernel ids of the features: the table in features.py, checked there against the Python registry.
namespace feature_id {
constexpr int kEnvMean = 0;
constexpr int kEnvLast = 1;
constexpr int kMav = 2;
constexpr int kRms = 3;
constexpr int kWl = 4;
constexpr int kZc = 5;
constexpr int kSsc = 6;
}  // namespace feature_id

// Term i of a feature covers samples i .. i + span.
__device__ __forceinline__ int span_of(int id) {
    return id == feature_id::kSsc ? 2 : (id == feature_id::kWl || id == feature_id::kZc) ? 1 : 0;
}

__device__ __forceinline__ bool reads_envelope(int id) {
    return id == feature_id::kEnvMean || id == feature_id::kEnvLast;
}

template <typename T>
__device__ __forceinline__ T magnitude(T v) {
    return v < T(0) ? -v : v;
}

// Term i of feature `id` on channel c of x ((n, channels)), computed in T; zero past the end of the signal.
template <typename T>
__device__ __forceinline__ double term(int id, const T* __restrict__ x, long long i, long long n, int channels,
                                       int c, T threshold) {
    if (i + span_of(id) >= n) return 0.0;
    const T* at = x + i * channels + c;
    switch (id) {
        case feature_id::kEnvMean:
            return static_cast<double>(at[0]);
        case feature_id::kMav:
            return static_cast<double>(magnitude(at[0]));
        case feature_id::kRms: {
            T square = at[0] * at[0];
            return static_cast<double>(square);
        }
        case feature_id::kWl: {
            T step = at[channels] - at[0];
            return static_cast<double>(magnitude(step));
        }
        case feature_id::kZc: {
            T a = at[0], b = at[channels];
            T product = a * b, step = a - b;
            return (product < T(0) && magnitude(step) >= threshold) ? 1.0 : 0.0;
        }
        case feature_id::kSsc: {
            T left = at[0], mid = at[channels], right = at[2 * channels];
            T product = (mid - left) * (mid - right);
            return product > threshold ? 1.0 : 0.0;
        }
        default:
            return 0.0;
    }
}

// The feature from the sum of a window's terms: mean, root mean (of a non-negative sum) or the total.
__device__ __forceinline__ double finish(int id, double total, long long length) {
    switch (id) {
        case feature_id::kEnvMean:
        case feature_id::kMav:
            return total / static_cast<double>(length);
        case feature_id::kRms:
            return sqrt((total < 0.0 ? 0.0 : total) / static_cast<double>(length));
        default:
            return total;
    }
}

template <typename T>
__global__ void cell_sums(const T* __restrict__ filtered, const T* __restrict__ envelope,
                          const int* __restrict__ slots, const T* __restrict__ threshold, double* __restrict__ sums,
                          long long n, int channels, int terms, long long base, int cell, long long rows) {
    int columns = terms * channels;
    T level = threshold[0];
    long long index = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
    long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
    for (; index < rows * columns; index += stride) {
        long long row = index / columns;
        int column = static_cast<int>(index - row * columns);
        int slot = column / channels, c = column - slot * channels;
        int id = slots[slot];
        const T* x = reads_envelope(id) ? envelope : filtered;
        double sum = 0.0;
        if (row > 0) {
            long long first = base + (row - 1) * cell;
            for (int k = 0; k < cell; ++k) sum += term(id, x, first + k, n, channels, c, level);
        }
        sums[index] = sum;
    }
}

template <typename T>
__global__ void scan_tiles(T* __restrict__ data, T* __restrict__ totals, long long rows, int columns, int tile) {
    long long tiles = (rows + tile - 1) / tile;
    long long index = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
    long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
    for (; index < tiles * columns; index += stride) {
        long long t = index / columns;
        int column = static_cast<int>(index - t * columns);
        long long lo = t * tile, hi = lo + tile < rows ? lo + tile : rows;
        T sum = 0;
        for (long long r = lo; r < hi; ++r) {
            sum += data[r * columns + column];
            data[r * columns + column] = sum;
        }
        totals[index] = sum;
    }
}

// `totals` ((tiles, columns)) already scanned: row t holds the sum of tiles 0 .. t.
template <typename T>
__global__ void add_tile_offsets(T* __restrict__ data, const T* __restrict__ totals, long long rows, int columns,
                                 int tile) {
    long long index = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
    long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
    for (; index < (rows - tile) * columns; index += stride) {
        long long r = tile + index / columns;
        int column = static_cast<int>(index % columns);
        data[r * columns + column] += totals[(r / tile - 1) * columns + column];
    }
}

// plan: (features, 2) ints, (kernel id, term slot) of each requested feature in output order.
template <typename T>
__global__ void window_features(const T* __restrict__ filtered, const T* __restrict__ envelope,
                                const int* __restrict__ plan, const T* __restrict__ threshold,
                                const double* __restrict__ prefix, float* __restrict__ out, long long n, int channels,
                                int features, int terms, long long first, long long stride, long long count,
                                long long length, int cell) {
    int width = features * channels, columns = terms * channels;
    T level = threshold[0];
    long long index = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
    long long step = static_cast<long long>(gridDim.x) * blockDim.x;
    for (; index < count * width; index += step) {
        long long w = index / width;
        int j = static_cast<int>(index - w * width);
        int f = j / channels, c = j - f * channels;
        int id = plan[2 * f], slot = plan[2 * f + 1];
        const T* x = reads_envelope(id) ? envelope : filtered;
        long long start = first + w * stride, end = start + length - 1;
        if (id == feature_id::kEnvLast) {
            out[index] = static_cast<float>(x[end * channels + c]);
            continue;
        }
        long long lo = (start - first) / cell, hi = lo + length / cell;
        int column = slot * channels + c;
        double total = prefix[hi * columns + column] - prefix[lo * columns + column];
        long long reach = span_of(id) < length ? span_of(id) : length;
        for (long long k = 0; k < reach; ++k) total -= term(id, x, end - k, n, channels, c, level);
        out[index] = static_cast<float>(finish(id, total, length));
    }
}

EMU_EXPORT(cell_sums_f64, cell_sums<double>)
EMU_EXPORT(cell_sums_f32, cell_sums<float>)
EMU_EXPORT(scan_tiles_f64, scan_tiles<double>)
EMU_EXPORT(scan_tiles_f32, scan_tiles<float>)
EMU_EXPORT(add_tile_offsets_f64, add_tile_offsets<double>)
EMU_EXPORT(add_tile_offsets_f32, add_tile_offsets<float>)
EMU_EXPORT(window_features_f64, window_features<double>)
EMU_EXPORT(window_features_f32, window_features<float>)
