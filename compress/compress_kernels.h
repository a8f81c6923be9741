// compress_kernels.h — CUDA launchers of the compressors with GPU twins (quant per tensor, fp8, sampled sortquant;
// f32 inputs; plus the sortquant decoder),
// computing codes bit-identical to the CPU encoders through the shared EP_HD math (bitpack.h, quant_math.h, fp8.h).
// Not the host logic: compress/quant.cpp and compress/fp8.cpp decide when to use them; a CPU-only build gets
// throwing stubs. Payloads stay host-resident: the launchers take device buffers, the callers copy codes across.
#pragma once
#include <cstdint>

#include "engine/device.h"
#include "engine/dispatch.h"
#include "engine/dtype.h"

namespace ep::compress {

constexpr int kReduceBlocks = 256;

// Per-block partial reductions of x[0..n): out[3*b + 0] = min, [3*b + 1] = max, [3*b + 2] = max |x| over the values
// block b saw (+inf/-inf/0 for none), and *nonfinite set to 1 when any value is NaN or infinite. out holds
// 3 * kReduceBlocks floats.
EP_CUDA_API void minmax_partial_cuda(const float* x, int64_t n, float* out, int* nonfinite, cudaStream_t st)
    EP_CUDA_BODY("compress minmax")

// codes (packed_bytes(n, bits) bytes) = quant levels of x for one (mn, st) pair; stochastic draws
// philox_uniform(seed, offset, i) for element i as the CPU does.
EP_CUDA_API void quant_encode_cuda(const float* x, int64_t n, int bits, float mn, float step, bool stochastic,
                                   uint64_t seed, uint64_t offset, uint8_t* codes, cudaStream_t st)
    EP_CUDA_BODY("quant")
EP_CUDA_API void quant_decode_cuda(const uint8_t* codes, uint64_t nbytes, int64_t n, int bits, float mn, float step,
                                   float* out, cudaStream_t st) EP_CUDA_BODY("quant")

// codes[i] = fp8_encode_f32(x[i] / scale, ...), rbits = philox_block(seed, offset, i).v[0] when stochastic.
EP_CUDA_API void fp8_encode_cuda(const float* x, int64_t n, bool e5m2, float scale, bool stochastic, uint64_t seed,
                                 uint64_t offset, uint8_t* codes, cudaStream_t st) EP_CUDA_BODY("fp8")
EP_CUDA_API void fp8_decode_cuda(const uint8_t* codes, int64_t n, bool e5m2, float scale, float* out,
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
// hi_key[b] (pre-filled with INT32_MAX / INT32_MIN) receive the order keys of bucket b's min and max.
EP_CUDA_API void bucket_minmax_cuda(const float* x, int64_t n, const double* thresholds, int K, int32_t* lo_key,
                                    int32_t* hi_key, cudaStream_t st) EP_CUDA_BODY("sortquant")
// codes = bucket << bits | level against table (min, step) per bucket, packed at bits + split.
EP_CUDA_API void sortquant_encode_cuda(const float* x, int64_t n, const double* thresholds, const float* table,
                                       int bits, int split, uint8_t* codes, cudaStream_t st) EP_CUDA_BODY("sortquant")
// Any sortquant payload (exact or sampled, any split): table in device memory.
EP_CUDA_API void sortquant_decode_cuda(const uint8_t* codes, uint64_t nbytes, int64_t n, int bits, int split,
                                       const float* table, float* out, cudaStream_t st) EP_CUDA_BODY("sortquant")

}  // namespace ep::compress
