// compress.cu — CUDA twins of the per-tensor quant, fp8 and sampled sortquant encoders and their decoders, plus the
// reductions they start from and the statistics sums of compute_stats. Not new table math: quant's table, fp8's scale
// and sampled sortquant's table are computed on the GPU by the CPU path's rules (quant_math.h, fp8.h), so both
// devices quantize against the same f32 table and emit the same codes.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "compress/bitpack.h"
#include "compress/compress_kernels.h"
#include "compress/fp8.h"
#include "compress/quant_math.h"
#include "compress/stats_math.h"
#include "engine/check.h"
#include "engine/cuda/launch.cuh"
#include "engine/philox.h"

// __reduce_min/max_sync (bucket_minmax_kernel) exist from sm_80 on; the Makefile builds sm_80 and sm_90.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#error "compress.cu needs sm_80 or newer (__reduce_min_sync); set CUDA_ARCHS accordingly"
#endif

namespace ep::compress {

namespace {

// Merges every thread's (lo, hi, amax) over a block of kBlock threads in a fixed tree and gives each thread the
// block's; min and max are exact, so the order cannot change the result.
__device__ void block_range(float& lo, float& hi, float& amax) {
  __shared__ float s_lo[kBlock], s_hi[kBlock], s_abs[kBlock];
  s_lo[threadIdx.x] = lo;
  s_hi[threadIdx.x] = hi;
  s_abs[threadIdx.x] = amax;
  __syncthreads();
  for (int w = kBlock / 2; w > 0; w >>= 1) {
    if (int(threadIdx.x) < w) {
      s_lo[threadIdx.x] = fminf(s_lo[threadIdx.x], s_lo[threadIdx.x + w]);
      s_hi[threadIdx.x] = fmaxf(s_hi[threadIdx.x], s_hi[threadIdx.x + w]);
      s_abs[threadIdx.x] = fmaxf(s_abs[threadIdx.x], s_abs[threadIdx.x + w]);
    }
    __syncthreads();
  }
  lo = s_lo[0];
  hi = s_hi[0];
  amax = s_abs[0];
  __syncthreads();  // every thread has read the result before a second call may overwrite it
}

// The whole tensor's (lo, hi, amax) from minmax_partial_kernel's per-block partials, in every thread of one block.
__device__ void merge_range_partials(const float* __restrict__ partial, float& lo, float& hi, float& amax) {
  lo = INFINITY, hi = -INFINITY, amax = 0.0f;
  for (int b = threadIdx.x; b < kReduceBlocks; b += kBlock) {
    lo = fminf(lo, partial[3 * b]);
    hi = fmaxf(hi, partial[3 * b + 1]);
    amax = fmaxf(amax, partial[3 * b + 2]);
  }
  block_range(lo, hi, amax);
}

__global__ void minmax_partial_kernel(const float* __restrict__ x, int64_t n, float* __restrict__ out,
                                      int* __restrict__ nonfinite) {
  float lo = INFINITY, hi = -INFINITY, amax = 0.0f;
  bool bad = false;
  auto visit = [&](float v) {
    if (!isfinite(v)) {
      bad = true;
      return;
    }
    lo = fminf(lo, v);
    hi = fmaxf(hi, v);
    amax = fmaxf(amax, fabsf(v));
  };
  const int64_t stride = int64_t(gridDim.x) * kBlock, first = int64_t(blockIdx.x) * kBlock + threadIdx.x;
  int64_t tail = 0;
  if ((reinterpret_cast<uintptr_t>(x) & 15) == 0) {  // 16-byte loads: 4x the bytes in flight per thread
    const auto* x4 = reinterpret_cast<const float4*>(x);
    for (int64_t i = first; i < n / 4; i += stride) {
      const float4 v = x4[i];
      visit(v.x);
      visit(v.y);
      visit(v.z);
      visit(v.w);
    }
    tail = n / 4 * 4;
  }
  for (int64_t i = tail + first; i < n; i += stride) visit(x[i]);  // min and max are exact: any visiting order
  if (bad) atomicExch(nonfinite, 1);
  block_range(lo, hi, amax);
  if (threadIdx.x == 0) {
    out[3 * blockIdx.x + 0] = lo;
    out[3 * blockIdx.x + 1] = hi;
    out[3 * blockIdx.x + 2] = amax;
  }
}

// Statistics sums: each thread walks a grid-strided range in index order, then the block merges its threads' sums
// in a fixed tree (not atomics), so a rerun gives the same partials.
template <class A, class B>
__global__ void stats_partial_kernel(const A* __restrict__ x, const B* __restrict__ y, int64_t n,
                                     StatsSums* __restrict__ out) {
  __shared__ StatsSums s[kBlock];
  StatsSums t = stats_zero();
  for (int64_t i = int64_t(blockIdx.x) * kBlock + threadIdx.x; i < n; i += int64_t(gridDim.x) * kBlock)
    stats_add(t, double(x[i]), double(y[i]));
  s[threadIdx.x] = t;
  __syncthreads();
  for (int w = kBlock / 2; w > 0; w >>= 1) {
    if (int(threadIdx.x) < w) stats_merge(s[threadIdx.x], s[threadIdx.x + w]);
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = s[0];
}

// The per-tensor (min, step): one block merges the partial extremes (exact, so in any order) and applies the CPU's
// rule (quant_math.h); quant_entry has no product and sum to contract into an FMA.
__global__ void quant_table_kernel(const float* __restrict__ partial, int bits, bool zero_exact,
                                   float* __restrict__ table) {
  float lo, hi, amax;
  merge_range_partials(partial, lo, hi, amax);
  if (threadIdx.x == 0) quant_entry(double(lo), double(hi), (1u << bits) - 1, zero_exact, &table[0], &table[1]);
}

// Min-max quantization codes with one range, packed group by group (encode_groups, bitpack.h).
__global__ void quant_encode_kernel(const float* __restrict__ x, int64_t n, int bits, const float* __restrict__ table,
                                    bool stochastic, uint64_t seed, uint64_t offset, uint8_t* __restrict__ codes) {
  const uint32_t levels = (1u << bits) - 1;
  const double mn = double(table[0]), step = double(table[1]);
  encode_groups(n, bits, codes, [&](int64_t i) {
    const double u = stochastic ? double(philox_uniform(seed, offset, uint64_t(i))) : -1.0;
    return quant_level(double(x[i]), mn, step, levels, u);
  });
}

__global__ void quant_decode_kernel(const uint8_t* __restrict__ codes, uint64_t nbytes, int64_t n, int bits,
                                    const float* __restrict__ table, float* __restrict__ out) {
  const double mn = double(table[0]), step = double(table[1]);
  // Explicit round-to-nearest multiply and add: nvcc would otherwise fuse them into an FMA, whose single rounding
  // can differ from the CPU's two in the last bit.
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = float(__dadd_rn(mn, __dmul_rn(double(unpack_code(codes, nbytes, uint64_t(i), bits)), step)));
}

// The fp8 scale from the partial max |x| (exact, so merged in any order) by the CPU's rule (fp8.h).
__global__ void fp8_scale_kernel(const float* __restrict__ partial, double fmax, float* __restrict__ scale) {
  float lo, hi, amax;
  merge_range_partials(partial, lo, hi, amax);
  if (threadIdx.x == 0) scale[0] = fp8_power_of_two_scale(double(amax), fmax);
}

__global__ void fp8_encode_kernel(const float* __restrict__ x, int64_t n, bool e5m2, const float* __restrict__ scale,
                                  bool stochastic, uint64_t seed, uint64_t offset, uint8_t* __restrict__ codes) {
  const float s = scale[0];
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const uint32_t rbits = stochastic ? philox_block(seed, offset, uint64_t(i)).v[0] : 0u;
    codes[i] = fp8_encode_f32(x[i] / s, e5m2, stochastic, rbits);
  }
}

__global__ void fp8_decode_kernel(const uint8_t* __restrict__ codes, int64_t n, bool e5m2,
                                  const float* __restrict__ scale, float* __restrict__ out) {
  const double s = double(scale[0]);
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = float(fp8_decode(codes[i], e5m2) * s);
}

// Bucket of x: the number of thresholds below it (std::lower_bound's index on the CPU).
__device__ __forceinline__ int bucket_of(float x, const double* t, int K) {
  int lo = 0, hi = K - 1;
  const double v = double(x);
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (t[mid] < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

__global__ void gather_sample_kernel(const float* __restrict__ x, int64_t n, int64_t m, uint64_t seed,
                                     uint64_t offset, float* __restrict__ out) {
  for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < m; j += int64_t(gridDim.x) * blockDim.x)
    out[j] = x[sample_index(seed, offset, uint64_t(j), uint64_t(n))];
}

__global__ void bucket_minmax_kernel(const float* __restrict__ x, int64_t n, const double* __restrict__ thresholds,
                                     int K, int32_t* __restrict__ lo_key, int32_t* __restrict__ hi_key,
                                     int* __restrict__ nonfinite) {
  __shared__ double s_t[kMaxDeviceBuckets];
  __shared__ int32_t s_lo[kMaxDeviceBuckets], s_hi[kMaxDeviceBuckets];
  for (int b = threadIdx.x; b < K; b += blockDim.x) {
    if (b + 1 < K) s_t[b] = thresholds[b];
    s_lo[b] = INT32_MAX;
    s_hi[b] = INT32_MIN;
  }
  __syncthreads();
  bool bad = false;
  // Every lane of a warp runs the same number of iterations (the loop steps by whole blocks), so the lanes holding one
  // bucket can be grouped (__match_any_sync), reduced in registers and merged by one shared atomic each: with a few
  // buckets, one atomic per lane would serialize on them.
  for (int64_t base = int64_t(blockIdx.x) * blockDim.x; base < n; base += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = base + threadIdx.x;
    int b = -1;  // past the end: in no bucket
    int32_t k = 0;
    if (i < n) {
      const float v = x[i];
      bad |= !isfinite(v);  // in bounds either way: a NaN lands in some bucket; the deferred check reports it
      b = bucket_of(v, s_t, K);
      k = float_order_key(v);
    }
    const unsigned peers = __match_any_sync(0xffffffffu, b);
    if (b >= 0) {
      const int32_t lo = __reduce_min_sync(peers, k), hi = __reduce_max_sync(peers, k);
      if (int(threadIdx.x & 31) == __ffs(peers) - 1) {
        atomicMin(&s_lo[b], lo);
        atomicMax(&s_hi[b], hi);
      }
    }
  }
  if (bad) atomicExch(nonfinite, 1);
  __syncthreads();
  for (int b = threadIdx.x; b < K; b += blockDim.x)
    if (s_lo[b] <= s_hi[b]) {  // min and max are exact, so the merge order cannot change the result
      atomicMin(&lo_key[b], s_lo[b]);
      atomicMax(&hi_key[b], s_hi[b]);
    }
}

// The sampled mode's table: bucket b's (min, step) from its exact extremes by the CPU's rule; an empty bucket (no
// element seen) gets lo > hi, so min_step_entry writes (0, 0), as sortquant.cpp does on the host.
__global__ void bucket_table_kernel(const int32_t* __restrict__ lo_key, const int32_t* __restrict__ hi_key, int K,
                                    int bits, float* __restrict__ table) {
  const uint32_t levels = (1u << bits) - 1;
  for (int b = threadIdx.x; b < K; b += blockDim.x) {
    const bool seen = lo_key[b] <= hi_key[b];
    const double lo = seen ? double(float_from_order_key(lo_key[b])) : 1.0;
    const double hi = seen ? double(float_from_order_key(hi_key[b])) : 0.0;
    min_step_entry(lo, hi, levels, &table[2 * b], &table[2 * b + 1]);
  }
}

__global__ void sortquant_encode_kernel(const float* __restrict__ x, int64_t n, const double* __restrict__ thresholds,
                                        const float* __restrict__ table, int bits, int split,
                                        uint8_t* __restrict__ codes) {
  __shared__ double s_t[kMaxDeviceBuckets];
  __shared__ float s_table[2 * kMaxDeviceBuckets];
  const int K = 1 << split;
  for (int b = threadIdx.x; b < K; b += blockDim.x) {
    if (b + 1 < K) s_t[b] = thresholds[b];
    s_table[2 * b] = table[2 * b];
    s_table[2 * b + 1] = table[2 * b + 1];
  }
  __syncthreads();
  const uint32_t levels = (1u << bits) - 1;
  encode_groups(n, bits + split, codes, [&](int64_t i) {
    const float v = x[i];
    const int b = bucket_of(v, s_t, K);
    return (uint32_t(b) << bits) |
           quant_level(double(v), double(s_table[2 * b]), double(s_table[2 * b + 1]), levels, -1.0);
  });
}

__global__ void sortquant_decode_kernel(const uint8_t* __restrict__ codes, uint64_t nbytes, int64_t n, int bits,
                                        int split, const float* __restrict__ table, float* __restrict__ out) {
  const uint32_t mask = (1u << bits) - 1;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const uint32_t c = unpack_code(codes, nbytes, uint64_t(i), bits + split);
    const uint32_t b = c >> bits;
    out[i] = float(__dadd_rn(double(table[2 * b]), __dmul_rn(double(c & mask), double(table[2 * b + 1]))));
  }
}

}  // namespace

void gather_sample_cuda(const float* x, int64_t n, int64_t m, uint64_t seed, uint64_t offset, float* out,
                        cudaStream_t st) {
  if (m == 0) return;
  gather_sample_kernel<<<grid_for(m), kBlock, 0, st>>>(x, n, m, seed, offset, out);
  CUDA_CHECK_LAUNCH();
}

void bucket_table_cuda(const int32_t* lo_key, const int32_t* hi_key, int K, int bits, float* table, cudaStream_t st) {
  bucket_table_kernel<<<1, kBlock, 0, st>>>(lo_key, hi_key, K, bits, table);
  CUDA_CHECK_LAUNCH();
}

void bucket_minmax_cuda(const float* x, int64_t n, const double* thresholds, int K, int32_t* lo_key, int32_t* hi_key,
                        int* nonfinite, cudaStream_t st) {
  EP_CHECK(K >= 1 && K <= kMaxDeviceBuckets, ValueError, "[sortquant] the GPU path takes 1..", kMaxDeviceBuckets,
           " buckets, got ", K);
  if (n == 0) return;
  // At most kReduceBlocks blocks: each merges its K extremes into global memory with atomics once, at the end.
  const unsigned blocks = std::min(grid_for(n), unsigned(kReduceBlocks));
  bucket_minmax_kernel<<<blocks, kBlock, 0, st>>>(x, n, thresholds, K, lo_key, hi_key, nonfinite);
  CUDA_CHECK_LAUNCH();
}

void sortquant_encode_cuda(const float* x, int64_t n, const double* thresholds, const float* table, int bits,
                           int split, uint8_t* codes, cudaStream_t st) {
  EP_CHECK((1 << split) <= kMaxDeviceBuckets, ValueError, "[sortquant] the GPU path takes split <= 8, got ", split);
  if (n == 0) return;
  sortquant_encode_kernel<<<grid_for((n + 7) / 8), kBlock, 0, st>>>(x, n, thresholds, table, bits, split, codes);
  CUDA_CHECK_LAUNCH();
}

void sortquant_decode_cuda(const uint8_t* codes, uint64_t nbytes, int64_t n, int bits, int split, const float* table,
                           float* out, cudaStream_t st) {
  if (n == 0) return;
  sortquant_decode_kernel<<<grid_for(n), kBlock, 0, st>>>(codes, nbytes, n, bits, split, table, out);
  CUDA_CHECK_LAUNCH();
}

void minmax_partial_cuda(const float* x, int64_t n, float* out, int* nonfinite, cudaStream_t st) {
  minmax_partial_kernel<<<kReduceBlocks, kBlock, 0, st>>>(x, n, out, nonfinite);
  CUDA_CHECK_LAUNCH();
}

void stats_partial_cuda(const void* x, bool x_f64, const void* x_hat, bool x_hat_f64, int64_t n, StatsSums* out,
                        cudaStream_t st) {
  auto launch = [&](auto* a, auto* b) {
    stats_partial_kernel<<<kReduceBlocks, kBlock, 0, st>>>(a, b, n, out);
    CUDA_CHECK_LAUNCH();
  };
  if (x_f64 && x_hat_f64) launch(static_cast<const double*>(x), static_cast<const double*>(x_hat));
  else if (x_f64) launch(static_cast<const double*>(x), static_cast<const float*>(x_hat));
  else if (x_hat_f64) launch(static_cast<const float*>(x), static_cast<const double*>(x_hat));
  else launch(static_cast<const float*>(x), static_cast<const float*>(x_hat));
}

void quant_table_cuda(const float* partial, int bits, bool zero_exact, float* table, cudaStream_t st) {
  quant_table_kernel<<<1, kBlock, 0, st>>>(partial, bits, zero_exact, table);
  CUDA_CHECK_LAUNCH();
}

void quant_encode_cuda(const float* x, int64_t n, int bits, const float* table, bool stochastic, uint64_t seed,
                       uint64_t offset, uint8_t* codes, cudaStream_t st) {
  if (n == 0) return;
  quant_encode_kernel<<<grid_for((n + 7) / 8), kBlock, 0, st>>>(x, n, bits, table, stochastic, seed, offset, codes);
  CUDA_CHECK_LAUNCH();
}

void quant_decode_cuda(const uint8_t* codes, uint64_t nbytes, int64_t n, int bits, const float* table, float* out,
                       cudaStream_t st) {
  if (n == 0) return;
  quant_decode_kernel<<<grid_for(n), kBlock, 0, st>>>(codes, nbytes, n, bits, table, out);
  CUDA_CHECK_LAUNCH();
}

void fp8_scale_cuda(const float* partial, bool e5m2, float* scale, cudaStream_t st) {
  fp8_scale_kernel<<<1, kBlock, 0, st>>>(partial, fp8_format(e5m2).max, scale);
  CUDA_CHECK_LAUNCH();
}

void fp8_encode_cuda(const float* x, int64_t n, bool e5m2, const float* scale, bool stochastic, uint64_t seed,
                     uint64_t offset, uint8_t* codes, cudaStream_t st) {
  if (n == 0) return;
  fp8_encode_kernel<<<grid_for(n), kBlock, 0, st>>>(x, n, e5m2, scale, stochastic, seed, offset, codes);
  CUDA_CHECK_LAUNCH();
}

void fp8_decode_cuda(const uint8_t* codes, int64_t n, bool e5m2, const float* scale, float* out, cudaStream_t st) {
  if (n == 0) return;
  fp8_decode_kernel<<<grid_for(n), kBlock, 0, st>>>(codes, n, e5m2, scale, out);
  CUDA_CHECK_LAUNCH();
}

}  // namespace ep::compress
