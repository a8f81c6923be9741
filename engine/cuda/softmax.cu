// softmax.cu — CUDA twins of engine/cpu/softmax.cpp: a warp per row for rows up to 1024 long (8 rows per block), a
// 256-thread block per row beyond, each row read three times (max, sum, write). Not an online (one-pass) softmax.
#include <cuda_runtime.h>

#include <limits>

#include "engine/cuda/row_reduce.cuh"
#include "engine/ops/scalar_ops.h"
#include "engine/ops/softmax_kernels.h"

namespace ep {

namespace {

template <bool kBlockRow, bool kLog, class T>
__global__ void softmax_forward_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t rows, int64_t cols) {
  __shared__ T smem[32];
  RowGroup<kBlockRow> g;
  for (int64_t r = g.row0; r < rows; r += g.step) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    T m = -std::numeric_limits<T>::infinity();
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
      if (log)
        softmax_forward_kernel<B, true><<<grid, kBlock, 0, st>>>(static_cast<const T*>(x), static_cast<T*>(y), rows,
                                                                 cols);
      else
        softmax_forward_kernel<B, false><<<grid, kBlock, 0, st>>>(static_cast<const T*>(x), static_cast<T*>(y), rows,
                                                                  cols);
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
