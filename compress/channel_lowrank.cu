// channel_lowrank.cu — GPU kernels of per-channel quant (channel extremes, encode, decode) and of lowrank's
// orthonormalization (the power iteration's GEMMs run through the engine's matmul). Not the host logic: quant.cpp and
// lowrank.cpp build the tables and drive the iteration.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "compress/bitpack.h"
#include "compress/compress_kernels.h"
#include "compress/quant_math.h"
#include "engine/check.h"
#include "engine/cuda/launch.cuh"
#include "engine/philox.h"

namespace ep::compress {

namespace {

constexpr int kBlock = 256;
constexpr int kWarps = kBlock / 32;

unsigned grid_for(int64_t work) {
  const int64_t b = (work + kBlock - 1) / kBlock;
  return unsigned(b < 1 ? 1 : (b > 65535 ? 65535 : b));
}

// One warp per row of `inner` contiguous elements (all in one channel); lane 0 merges the row's extremes into the
// channel's. min/max are exact, so the merge order cannot change the result.
__global__ void channel_minmax_kernel(const float* __restrict__ x, int64_t rows, int64_t channels, int64_t inner,
                                      int32_t* __restrict__ lo_key, int32_t* __restrict__ hi_key) {
  const int lane = threadIdx.x & 31;
  const int64_t warp = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int64_t warps = (int64_t(gridDim.x) * blockDim.x) >> 5;
  for (int64_t row = warp; row < rows; row += warps) {
    int32_t lo = INT32_MAX, hi = INT32_MIN;
    const float* p = x + row * inner;
    for (int64_t k = lane; k < inner; k += 32) {
      const int32_t key = float_order_key(p[k] + 0.0f);  // + 0: -0 becomes +0, as the CPU's comparisons see it
      lo = min(lo, key);
      hi = max(hi, key);
    }
    for (int off = 16; off > 0; off >>= 1) {
      lo = min(lo, __shfl_down_sync(0xffffffffu, lo, off));
      hi = max(hi, __shfl_down_sync(0xffffffffu, hi, off));
    }
    if (lane == 0 && lo <= hi) {
      const int64_t c = row % channels;
      atomicMin(&lo_key[c], lo);
      atomicMax(&hi_key[c], hi);
    }
  }
}

__global__ void quant_channel_encode_kernel(const float* __restrict__ x, int64_t n, int64_t channels, int64_t inner,
                                            const float* __restrict__ table, int bits, bool stochastic,
                                            uint64_t seed, uint64_t offset, uint8_t* __restrict__ codes) {
  const uint32_t levels = (1u << bits) - 1;
  encode_groups(n, bits, codes, [&](int64_t i) {
    const int64_t ch = (i / inner) % channels;
    const double u = stochastic ? double(philox_uniform(seed, offset, uint64_t(i))) : -1.0;
    return quant_level(double(x[i]), double(table[2 * ch]), double(table[2 * ch + 1]), levels, u);
  });
}

__global__ void quant_channel_decode_kernel(const uint8_t* __restrict__ codes, uint64_t nbytes, int64_t n,
                                            int64_t channels, int64_t inner, const float* __restrict__ table,
                                            int bits, float* __restrict__ out) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ch = (i / inner) % channels;
    const double q = double(unpack_code(codes, nbytes, uint64_t(i), bits));
    // no FMA contraction: the CPU rounds the product and the sum separately
    out[i] = float(__dadd_rn(double(table[2 * ch]), __dmul_rn(q, double(table[2 * ch + 1]))));
  }
}

// Sum over the block of v (every thread receives it). Full-mask shuffles: all kBlock threads call it.
__device__ double block_sum(double v, double* shared) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  __syncthreads();  // `shared` may still be read from the previous call
  if (lane == 0) shared[w] = v;
  __syncthreads();
  double s = 0;
  for (int k = 0; k < kWarps; ++k) s += shared[k];  // the same order in every thread: one value for all
  return s;
}

__device__ double column_dot(const double* A, int64_t rows, int64_t r, int64_t i, int64_t j, double* shared) {
  double s = 0;
  for (int64_t k = threadIdx.x; k < rows; k += blockDim.x) s += A[k * r + i] * A[k * r + j];
  return block_sum(s, shared);
}

// The CPU's orthonormalize() / normalize_columns() with block-parallel dot products (their sums associate
// differently, so results agree with the CPU to rounding, not bit for bit).
__global__ void orthonormalize_kernel(double* __restrict__ A_all, int64_t batch, int64_t rows, int64_t r,
                                      bool full) {
  __shared__ double shared[kWarps];
  for (int64_t b = blockIdx.x; b < batch; b += gridDim.x) {
    double* A = A_all + b * rows * r;
    for (int64_t j = 0; j < r; ++j) {
      const double before = sqrt(column_dot(A, rows, r, j, j, shared));
      if (full) {
        for (int pass = 0; pass < 2; ++pass)
          for (int64_t i = 0; i < j; ++i) {
            const double d = column_dot(A, rows, r, i, j, shared);
            for (int64_t k = threadIdx.x; k < rows; k += blockDim.x) A[k * r + j] -= d * A[k * r + i];
            __syncthreads();
          }
        const double after = sqrt(column_dot(A, rows, r, j, j, shared));
        const bool keep = after > 1e-10 * before && after > 0;
        for (int64_t k = threadIdx.x; k < rows; k += blockDim.x) A[k * r + j] = keep ? A[k * r + j] / after : 0.0;
      } else if (before > 0) {
        for (int64_t k = threadIdx.x; k < rows; k += blockDim.x) A[k * r + j] /= before;
      }
      __syncthreads();
    }
  }
}

}  // namespace

void channel_minmax_cuda(const float* x, int64_t outer, int64_t channels, int64_t inner, int32_t* lo_key,
                         int32_t* hi_key, cudaStream_t st) {
  const int64_t rows = outer * channels;
  if (rows == 0 || inner == 0) return;
  channel_minmax_kernel<<<grid_for(rows * 32), kBlock, 0, st>>>(x, rows, channels, inner, lo_key, hi_key);
  CUDA_CHECK_LAUNCH();
}

void quant_channel_encode_cuda(const float* x, int64_t n, int64_t channels, int64_t inner, const float* table,
                               int bits, bool stochastic, uint64_t seed, uint64_t offset, uint8_t* codes,
                               cudaStream_t st) {
  if (n == 0) return;
  quant_channel_encode_kernel<<<grid_for((n + 7) / 8), kBlock, 0, st>>>(x, n, channels, inner, table, bits,
                                                                            stochastic, seed, offset, codes);
  CUDA_CHECK_LAUNCH();
}

void quant_channel_decode_cuda(const uint8_t* codes, uint64_t nbytes, int64_t n, int64_t channels, int64_t inner,
                               const float* table, int bits, float* out, cudaStream_t st) {
  if (n == 0) return;
  quant_channel_decode_kernel<<<grid_for(n), kBlock, 0, st>>>(codes, nbytes, n, channels, inner, table, bits,
                                                                  out);
  CUDA_CHECK_LAUNCH();
}

void orthonormalize_cuda(double* A, int64_t batch, int64_t rows, int64_t r, bool full, cudaStream_t st) {
  if (batch == 0 || rows == 0 || r == 0) return;
  const unsigned blocks = unsigned(batch < 65535 ? batch : 65535);
  orthonormalize_kernel<<<blocks, kBlock, 0, st>>>(A, batch, rows, r, full);
  CUDA_CHECK_LAUNCH();
}

}  // namespace ep::compress
