// softmax.cu — CUDA twins of engine/cpu/softmax.cpp: a warp per row for rows up to 1024 long (8 rows per block), a
// 256-thread block per row beyond; rows up to 8192 are held in registers (one read, one write), longer ones read
// three times. Not an online (one-pass over memory with a running max) softmax.
#include <cuda_runtime.h>

#include <limits>

#include "engine/cuda/row_reduce.cuh"
#include "engine/ops/scalar_ops.h"
#include "engine/ops/softmax_kernels.h"

namespace ep {

namespace {

// kVpt > 0: the row is read once into registers (kVpt values per thread, -inf past the end) and written once; rows
// longer than 32 values per thread use kVpt = 0, which reads the row three times. Both sum in the same order, so
// they give the same bits.
template <bool kBlockRow, bool kLog, int kVpt, class T>
__global__ void softmax_forward_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t rows, int64_t cols) {
  __shared__ T smem[32];
  RowGroup<kBlockRow> g;
  for (int64_t r = g.row0; r < rows; r += g.step) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    T m = -std::numeric_limits<T>::infinity();
    if constexpr (kVpt > 0) {
      T v[kVpt];
#pragma unroll
      for (int j = 0; j < kVpt; ++j) {
        const int64_t c = g.tid + int64_t(j) * g.group;
        v[j] = c < cols ? xr[c] : -std::numeric_limits<T>::infinity();
        m = larger(m, v[j]);
      }
      m = row_max<kBlockRow>(m, smem);
      T s = 0;
#pragma unroll
      for (int j = 0; j < kVpt; ++j)
        if (g.tid + int64_t(j) * g.group < cols) {
          const T e = m_exp(v[j] - m);
          s += e;
          if constexpr (!kLog) v[j] = e;
        }
      s = row_sum<kBlockRow>(s, smem);
      const T shift = kLog ? m + m_log(s) : T(1) / s;
#pragma unroll
      for (int j = 0; j < kVpt; ++j) {
        const int64_t c = g.tid + int64_t(j) * g.group;
        if (c < cols) yr[c] = kLog ? v[j] - shift : v[j] * shift;
      }
    } else {
      for (int64_t c = g.tid; c < cols; c += g.group) m = larger(m, xr[c]);
      m = row_max<kBlockRow>(m, smem);
      T s = 0;
      for (int64_t c = g.tid; c < cols; c += g.group) s += m_exp(xr[c] - m);
      s = row_sum<kBlockRow>(s, smem);
      if constexpr (kLog) {
        const T lse = m + m_log(s);
        for (int64_t c = g.tid; c < cols; c += g.group) yr[c] = xr[c] - lse;
      } else {
        const T inv = T(1) / s;
        for (int64_t c = g.tid; c < cols; c += g.group) yr[c] = m_exp(xr[c] - m) * inv;
      }
    }
  }
}

template <bool kBlockRow, bool kLog, class T>
__global__ void softmax_backward_kernel(const T* __restrict__ y, const T* __restrict__ dy, T* __restrict__ dx,
                                        int64_t rows, int64_t cols) {
  __shared__ T smem[32];
  RowGroup<kBlockRow> g;
  for (int64_t r = g.row0; r < rows; r += g.step) {
    const T* yr = y + r * cols;
    const T* gr = dy + r * cols;
    T* dr = dx + r * cols;
    T s = 0;
    for (int64_t c = g.tid; c < cols; c += g.group) s += kLog ? gr[c] : gr[c] * yr[c];
    s = row_sum<kBlockRow>(s, smem);
    for (int64_t c = g.tid; c < cols; c += g.group) dr[c] = kLog ? gr[c] - m_exp(yr[c]) * s : yr[c] * (gr[c] - s);
  }
}

}  // namespace

void softmax_forward_cuda(DType dt, bool log, const void* x, void* y, int64_t rows, int64_t cols, cudaStream_t st) {
  if (rows * cols == 0) return;
  dispatch_float(dt, log ? "log_softmax" : "softmax", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    launch_rows(rows, cols, [&](auto block_row, unsigned grid) {
      constexpr bool B = decltype(block_row)::value;
      const int64_t per_thread = (cols + (B ? kBlock : 32) - 1) / (B ? kBlock : 32);
      auto go = [&](auto vpt) {
        constexpr int V = decltype(vpt)::value;
        if (log)
          softmax_forward_kernel<B, true, V><<<grid, kBlock, 0, st>>>(static_cast<const T*>(x), static_cast<T*>(y),
                                                                      rows, cols);
        else
          softmax_forward_kernel<B, false, V><<<grid, kBlock, 0, st>>>(static_cast<const T*>(x), static_cast<T*>(y),
                                                                       rows, cols);
      };
      if (per_thread <= 1) go(std::integral_constant<int, 1>{});
      else if (per_thread <= 4) go(std::integral_constant<int, 4>{});
      else if (per_thread <= 8) go(std::integral_constant<int, 8>{});
      else if (per_thread <= 16) go(std::integral_constant<int, 16>{});
      else if (per_thread <= 32) go(std::integral_constant<int, 32>{});
      else go(std::integral_constant<int, 0>{});
    });
  });
  CUDA_CHECK_LAUNCH();
}

void softmax_backward_cuda(DType dt, bool log, const void* y, const void* dy, void* dx, int64_t rows, int64_t cols,
                           cudaStream_t st) {
  if (rows * cols == 0) return;
  dispatch_float(dt, log ? "log_softmax backward" : "softmax backward", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    launch_rows(rows, cols, [&](auto block_row, unsigned grid) {
      constexpr bool B = decltype(block_row)::value;
      const T* yp = static_cast<const T*>(y);
      const T* gp = static_cast<const T*>(dy);
      T* dp = static_cast<T*>(dx);
      if (log)
        softmax_backward_kernel<B, true><<<grid, kBlock, 0, st>>>(yp, gp, dp, rows, cols);
      else
        softmax_backward_kernel<B, false><<<grid, kBlock, 0, st>>>(yp, gp, dp, rows, cols);
    });
  });
  CUDA_CHECK_LAUNCH();
}

}  // namespace ep
