// compress_kernels.h — CUDA launchers of the compressors' GPU twins (compress.cu: quant per tensor, fp8, sampled
// sortquant; sort_methods.cu: topk, exact sortquant, kmeans; channel_lowrank.cu: per-channel quant, lowrank's
// orthonormalization), computing codes bit-identical to the CPU encoders through the shared EP_HD math (bitpack.h,
// quant_math.h, fp8.h) wherever the method is free of float reductions.
// Not the host logic: compress/quant.cpp and compress/fp8.cpp decide when to use them; a CPU-only build gets
// throwing stubs. The launchers take device buffers; the callers leave codes there (compress/payload.h) or copy them.
#pragma once
#include <cstdint>

#include "engine/device.h"
#include "engine/dispatch.h"
#include "engine/dtype.h"

namespace ep::compress {

constexpr int kReduceBlocks = 1024;  // enough 256-thread blocks to keep an H100's 132 SMs fully occupied

// Per-block partial reductions of x[0..n): out[3*b + 0] = min, [3*b + 1] = max, [3*b + 2] = max |x| over the values
// block b saw (+inf/-inf/0 for none), and *nonfinite set to 1 when any value is NaN or infinite. out holds
// 3 * kReduceBlocks floats.
EP_CUDA_API void minmax_partial_cuda(const float* x, int64_t n, float* out, int* nonfinite, cudaStream_t st)
    EP_CUDA_BODY("compress minmax")

struct StatsSums;  // compress/stats_math.h
// Per-block partial statistics sums of x against x_hat (each f32, or f64 when its flag is set) over n elements:
// out[b] = the sums block b saw, kReduceBlocks of them, each block's in a fixed order (compute_stats merges them).
EP_CUDA_API void stats_partial_cuda(const void* x, bool x_f64, const void* x_hat, bool x_hat_f64, int64_t n,
                                    StatsSums* out, cudaStream_t st) EP_CUDA_BODY("compress stats")

// table (2 floats, device memory) = quant_entry of the exact extremes in minmax_partial_cuda's `partial` for
// 2^bits - 1 levels: the CPU's table, computed where the codes are, so the encoder never waits for the GPU.
EP_CUDA_API void quant_table_cuda(const float* partial, int bits, bool zero_exact, float* table, cudaStream_t st)
    EP_CUDA_BODY("quant")
// codes (packed_bytes(n, bits) bytes) = quant levels of x for the (mn, step) pair in `table` (device memory);
// stochastic draws philox_uniform(seed, offset, i) for element i as the CPU does.
EP_CUDA_API void quant_encode_cuda(const float* x, int64_t n, int bits, const float* table, bool stochastic,
                                   uint64_t seed, uint64_t offset, uint8_t* codes, cudaStream_t st)
    EP_CUDA_BODY("quant")
EP_CUDA_API void quant_decode_cuda(const uint8_t* codes, uint64_t nbytes, int64_t n, int bits, const float* table,
                                   float* out, cudaStream_t st) EP_CUDA_BODY("quant")

// scale (1 float, device memory) = fp8_power_of_two_scale of the max |x| in minmax_partial_cuda's `partial`: the
// CPU's scale, computed where the codes are, so the encoder never waits for the GPU.
EP_CUDA_API void fp8_scale_cuda(const float* partial, bool e5m2, float* scale, cudaStream_t st) EP_CUDA_BODY("fp8")
// codes[i] = fp8_encode_f32(x[i] / scale[0], ...), rbits = philox_block(seed, offset, i).v[0] when stochastic;
// `scale` is device memory, as in decode.
EP_CUDA_API void fp8_encode_cuda(const float* x, int64_t n, bool e5m2, const float* scale, bool stochastic,
                                 uint64_t seed, uint64_t offset, uint8_t* codes, cudaStream_t st) EP_CUDA_BODY("fp8")
EP_CUDA_API void fp8_decode_cuda(const uint8_t* codes, int64_t n, bool e5m2, const float* scale, float* out,
                                 cudaStream_t st) EP_CUDA_BODY("fp8")

// ---- sortquant, sampled mode (the exact mode sorts on the host) -------------------------------------------------
constexpr int kMaxDeviceBuckets = 256;  // thresholds and per-block extremes live in shared memory

// An order-preserving int key of a float (for integer atomicMin/atomicMax) and its inverse; -0 orders below +0.
EP_HD int32_t float_order_key(float f) {
  const int32_t i = int32_t(float_bits(f));
  return i >= 0 ? i : i ^ 0x7fffffff;
}
EP_HD float float_from_order_key(int32_t k) { return bits_float(uint32_t(k >= 0 ? k : k ^ 0x7fffffff)); }

// out[j] = x[sample_index(seed, offset, j, n)] for j < m.
EP_CUDA_API void gather_sample_cuda(const float* x, int64_t n, int64_t m, uint64_t seed, uint64_t offset, float* out,
                                    cudaStream_t st) EP_CUDA_BODY("sortquant")
// Element x goes to bucket #{i : thresholds[i] < x} (K - 1 sorted thresholds, K <= kMaxDeviceBuckets); lo_key[b] /
// hi_key[b] (pre-filled with INT32_MAX / INT32_MIN) receive the order keys of bucket b's min and max; *nonfinite
// (an int, pre-zeroed) is set to 1 when an element is NaN or infinite.
EP_CUDA_API void bucket_minmax_cuda(const float* x, int64_t n, const double* thresholds, int K, int32_t* lo_key,
                                    int32_t* hi_key, int* nonfinite, cudaStream_t st) EP_CUDA_BODY("sortquant")
// table[2b], table[2b+1] = min_step_entry of bucket b's extremes (lo_key/hi_key above; an empty bucket: (0, 0)).
EP_CUDA_API void bucket_table_cuda(const int32_t* lo_key, const int32_t* hi_key, int K, int bits, float* table,
                                   cudaStream_t st) EP_CUDA_BODY("sortquant")
// thresholds[i] = the value at position max(0, ((i + 1) * m + K - 1) / K - 1) of m sorted value keys (u32,
// value_keys_cuda order), i < K - 1: sample_thresholds() of the host, from a sample sorted on the GPU.
EP_CUDA_API void sample_thresholds_cuda(const void* sorted_keys, int64_t m, int K, double* thresholds,
                                        cudaStream_t st) EP_CUDA_BODY("sortquant")
// codes = bucket << bits | level against table (min, step) per bucket, packed at bits + split.
EP_CUDA_API void sortquant_encode_cuda(const float* x, int64_t n, const double* thresholds, const float* table,
                                       int bits, int split, uint8_t* codes, cudaStream_t st) EP_CUDA_BODY("sortquant")
// Any sortquant payload (exact or sampled, any split): table in device memory.
EP_CUDA_API void sortquant_decode_cuda(const uint8_t* codes, uint64_t nbytes, int64_t n, int bits, int split,
                                       const float* table, float* out, cudaStream_t st) EP_CUDA_BODY("sortquant")

// ---- radix selection and sorting (sort_methods.cu): topk, exact sortquant, kmeans ----------------------------------
// `x` is f32 or f64 (`f64`), n < 2^31 (CUB's item count). Keys are u32 for f32 input and u64 for f64 ("wide").
// The CUB calls follow CUB's two-phase idiom: temp == nullptr only stores the bytes needed in *temp_bytes.

// Any element non-finite -> *flag = 1 (f64 inputs; f32 inputs use minmax_partial_cuda).
EP_CUDA_API void nonfinite_f64_cuda(const double* x, int64_t n, int* flag, cudaStream_t st) EP_CUDA_BODY("compress")
// keys[i] = an unsigned key ordering like the value, with -0 keyed as +0 (the CPU's < sees them equal); iota[i] = i
// when iota is not null.
EP_CUDA_API void value_keys_cuda(const void* x, bool f64, int64_t n, void* keys, uint32_t* iota, cudaStream_t st)
    EP_CUDA_BODY("sortquant")
// Top-k by radix selection (sort_keys.h): kept[0..k) = the ascending positions of the k largest |x|, equal magnitudes
// taken lowest index first, which is the CPU encoder's set. 1 <= k <= n; the two-phase temp idiom. Four passes over x
// (eight for f64) find the k-th largest magnitude on the GPU, two more place the kept positions; nothing is sorted
// and nothing comes back to the host.
EP_CUDA_API void topk_select_cuda(void* temp, size_t* temp_bytes, const void* x, bool f64, int64_t n, int64_t k,
                                  uint32_t* kept, cudaStream_t st) EP_CUDA_BODY("topk")
// Stable ascending radix sort of (keys, values) pairs; ties keep their input (index) order.
EP_CUDA_API void sort_pairs_cuda(void* temp, size_t* temp_bytes, const void* keys_in, void* keys_out,
                                 const uint32_t* values_in, uint32_t* values_out, int64_t n, bool wide,
                                 cudaStream_t st) EP_CUDA_BODY("compress sort")
// Ascending radix sort of keys only (wide: u64, else u32) over the low `end_bit` bits.
EP_CUDA_API void sort_keys_cuda(void* temp, size_t* temp_bytes, const void* keys_in, void* keys_out, int64_t n,
                                bool wide, int end_bit, cudaStream_t st) EP_CUDA_BODY("compress sort")
// out[j] = float(x[idx[j]]) for j < k.
EP_CUDA_API void gather_values_cuda(const void* x, bool f64, const uint32_t* idx, int64_t k, float* out,
                                    cudaStream_t st) EP_CUDA_BODY("topk")
// codes (packed_bytes(k, bits)) = the k values packed at `bits` bits each.
EP_CUDA_API void pack_u32_cuda(const uint32_t* values, int64_t k, int bits, uint8_t* codes, cudaStream_t st)
    EP_CUDA_BODY("topk")
// bitmap (ceil(n/8) bytes, fully written) with bit idx[j] set, idx ascending and < n.
EP_CUDA_API void bitmap_of_sorted_cuda(const uint32_t* idx, int64_t k, int64_t n, uint8_t* bitmap, cudaStream_t st)
    EP_CUDA_BODY("topk")
// Exact sortquant: sorted position j goes to the equal-count bucket b with start(b) <= j < start(b+1) (the CPU's
// bucket_start); bucket[sorted_idx[j]] = b. Also lo_hi[2b], lo_hi[2b+1] = the value at start(b) and at start(b+1)-1
// from the sorted keys (lo > hi, 1 and 0, for an empty bucket). K <= 2^15.
EP_CUDA_API void exact_buckets_cuda(const void* sorted_keys, const uint32_t* sorted_idx, bool wide, int64_t n, int K,
                                    uint16_t* bucket, double* lo_hi, cudaStream_t st) EP_CUDA_BODY("sortquant")
// codes = bucket[i] << bits | level of x[i] against table (min, step) of its bucket, packed at bits + split.
EP_CUDA_API void sortquant_encode_buckets_cuda(const void* x, bool f64, int64_t n, const uint16_t* bucket,
                                               const float* table, int bits, int split, uint8_t* codes,
                                               cudaStream_t st) EP_CUDA_BODY("sortquant")
// Kmeans: sorted[i] = the value of sorted key i (as double); prefix[0] = 0, prefix[i+1] = sorted[0] + ... + sorted[i]
// (a CUB scan: its association differs from the CPU's serial sum, so the means may differ in the last bits).
EP_CUDA_API void keys_to_values_cuda(const void* keys, bool wide, int64_t n, double* out, cudaStream_t st)
    EP_CUDA_BODY("kmeans")
EP_CUDA_API void prefix_sum_cuda(void* temp, size_t* temp_bytes, const double* in, double* prefix, int64_t n,
                                 cudaStream_t st) EP_CUDA_BODY("kmeans")
// c[j] = float(sorted[min(n-1, floor((j + 0.5) / K * n))]) + 0, the quantile init of the CPU's lloyd().
EP_CUDA_API void kmeans_init_cuda(const double* sorted, int64_t n, int K, float* c, cudaStream_t st)
    EP_CUDA_BODY("kmeans")
// One Lloyd update: cluster j holds sorted values in (cut[j-1], cut[j]]; next[j] = its clamped mean, or c[j] when empty.
EP_CUDA_API void kmeans_update_cuda(const double* sorted, const double* prefix, int64_t n, const double* cuts,
                                    const float* c, int K, float* next, cudaStream_t st) EP_CUDA_BODY("kmeans")
// codes = nearest_centroid(cuts, bits, x) (sort_keys.h: the first of the 2^bits - 1 cuts >= x), packed at `bits`.
EP_CUDA_API void kmeans_assign_cuda(const void* x, bool f64, int64_t n, const double* cuts, int bits, uint8_t* codes,
                                    cudaStream_t st) EP_CUDA_BODY("kmeans")
EP_CUDA_API void kmeans_decode_cuda(const uint8_t* codes, uint64_t nbytes, int64_t n, int bits, const float* table,
                                    float* out, cudaStream_t st) EP_CUDA_BODY("kmeans")

// Top-k decode into out (n values, zero-filled by the caller) from a checked payload: index mode writes
// out[index j] = values[j]; bitmap mode counts each byte's set bits into counts, scans them into offsets (CUB, the
// two-phase temp idiom; temp == nullptr only sizes it) and writes the byte's values from there.
EP_CUDA_API void topk_scatter_indices_cuda(const uint8_t* codes, uint64_t nbytes, int64_t k, int index_bits,
                                           const float* values, float* out, cudaStream_t st) EP_CUDA_BODY("topk")
EP_CUDA_API void topk_scatter_bitmap_cuda(void* temp, size_t* temp_bytes, const uint8_t* bitmap, int64_t nbytes,
                                          const float* values, int32_t* counts, int32_t* offsets, float* out,
                                          cudaStream_t st) EP_CUDA_BODY("topk")

// ---- per-channel quant and lowrank (channel_lowrank.cu) ---------------------------------------------------------
// x viewed as [outer, channels, inner]; lo_key / hi_key [channels] (pre-filled INT32_MAX / INT32_MIN) receive the
// order keys (float_order_key of x + 0, so -0 counts as +0) of each channel's min and max.
EP_CUDA_API void channel_minmax_cuda(const float* x, int64_t outer, int64_t channels, int64_t inner, int32_t* lo_key,
                                     int32_t* hi_key, cudaStream_t st) EP_CUDA_BODY("quant")
// codes = quant levels of x, element i against table (min, step) of channel (i / inner) % channels.
EP_CUDA_API void quant_channel_encode_cuda(const float* x, int64_t n, int64_t channels, int64_t inner,
                                           const float* table, int bits, bool stochastic, uint64_t seed,
                                           uint64_t offset, uint8_t* codes, cudaStream_t st) EP_CUDA_BODY("quant")
EP_CUDA_API void quant_channel_decode_cuda(const uint8_t* codes, uint64_t nbytes, int64_t n, int64_t channels,
                                           int64_t inner, const float* table, int bits, float* out, cudaStream_t st)
    EP_CUDA_BODY("quant")
// batch matrices A [rows, r] (row-major, f64) in place: full = modified Gram-Schmidt applied twice with the CPU's
// drop rule (the thin QR's Q), else unit-norm columns only. One block per matrix.
EP_CUDA_API void orthonormalize_cuda(double* A, int64_t batch, int64_t rows, int64_t r, bool full, cudaStream_t st)
    EP_CUDA_BODY("lowrank")

}  // namespace ep::compress
