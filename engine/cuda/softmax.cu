// softmax.cu — CUDA twins of engine/cpu/softmax.cpp: a warp per row for rows up to 1024 long (8 rows per block), a
// 256-thread block per row beyond, each row read three times (max, sum, write). Not an online (one-pass) softmax.
#include <cuda_runtime.h>

#include <limits>

#include "engine/cuda/launch.cuh"
#include "engine/ops/scalar_ops.h"
#include "engine/ops/softmax_kernels.h"

namespace ep {

namespace {

constexpr int64_t kWarpRowMax = 1024;  // rows up to this long get a warp, longer ones a whole block

template <class T> __device__ __forceinline__ T sm_max(T a, T b) { return a > b ? a : b; }

// Reduces v over the threads that share a row (a warp, or the block when kBlockRow); every thread gets the result.
// `smem` holds 32 partials; the leading barrier lets a caller reuse it for consecutive reductions.
template <bool kBlockRow, bool kMax, class T>
__device__ __forceinline__ T row_reduce(T v, T* smem) {
  for (int off = 16; off > 0; off >>= 1) {
    T o = __shfl_xor_sync(0xffffffffu, v, off);
    v = kMax ? sm_max(v, o) : v + o;
  }
  if constexpr (kBlockRow) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0) smem[warp] = v;
    __syncthreads();
    v = lane < nwarps ? smem[lane] : (kMax ? -std::numeric_limits<T>::infinity() : T(0));
    for (int off = 16; off > 0; off >>= 1) {
      T o = __shfl_xor_sync(0xffffffffu, v, off);
      v = kMax ? sm_max(v, o) : v + o;
    }
  }
  return v;
}

// The rows this thread's group handles: row0, row0 + step, ...; tid/group index the columns within a row.
template <bool kBlockRow> struct RowGroup {
  int tid, group;
  int64_t row0, step;
  __device__ RowGroup() {
    tid = kBlockRow ? int(threadIdx.x) : int(threadIdx.x & 31);
    group = kBlockRow ? int(blockDim.x) : 32;
    row0 = kBlockRow ? int64_t(blockIdx.x) : int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
    step = kBlockRow ? int64_t(gridDim.x) : int64_t(gridDim.x) * (blockDim.x >> 5);
  }
};

template <bool kBlockRow, bool kLog, class T>
__global__ void softmax_forward_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t rows, int64_t cols) {
  __shared__ T smem[32];
  RowGroup<kBlockRow> g;
  for (int64_t r = g.row0; r < rows; r += g.step) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    T m = -std::numeric_limits<T>::infinity();
    for (int64_t c = g.tid; c < cols; c += g.group) m = sm_max(m, xr[c]);
    m = row_reduce<kBlockRow, true>(m, smem);
    T s = 0;
    for (int64_t c = g.tid; c < cols; c += g.group) s += m_exp(xr[c] - m);
    s = row_reduce<kBlockRow, false>(s, smem);
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
    s = row_reduce<kBlockRow, false>(s, smem);
    for (int64_t c = g.tid; c < cols; c += g.group) dr[c] = kLog ? gr[c] - m_exp(yr[c]) * s : yr[c] * (gr[c] - s);
  }
}

// Calls launch(kBlockRow constant, grid) with the row mapping picked for `cols`.
template <class F> void launch_rows(int64_t rows, int64_t cols, F&& launch) {
  if (cols <= kWarpRowMax)
    launch(std::false_type{}, grid_for(rows * 32));
  else
    launch(std::true_type{}, unsigned(std::min<int64_t>(rows, 65536)));
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
