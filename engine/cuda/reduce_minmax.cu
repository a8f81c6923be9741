// reduce_minmax.cu — CUDA twins of engine/cpu/reduce_minmax.cpp. inner == 1: a warp (short rows) or a block (long
// rows) per row, tree-combining (value, index) pairs with minmax_better so ties still pick the first index;
// inner > 1: one thread per output scanning k (coalesced along inner). Not a general segmented reduction.
#include <cuda_runtime.h>

#include <type_traits>

#include "engine/cuda/row_reduce.cuh"
#include "engine/ops/reduce_minmax_kernels.h"

namespace ep {

namespace {

// __shfl_down_sync has no `long` overload on every toolkit: move 64-bit integers as long long.
template <class T> __device__ __forceinline__ T shfl_down(T v, int off) {
  if constexpr (std::is_same_v<T, int64_t>)
    return T(__shfl_down_sync(0xffffffffu, static_cast<long long>(v), off));
  else
    return __shfl_down_sync(0xffffffffu, v, off);
}

// The best (value, index) pair seen so far; index -1 means none (as minmax_better reads it).
template <class T> struct Best {
  T val;
  int64_t idx;
};

// Shift-down tree over a warp: lane 0 ends with the warp's best pair.
template <bool M, class T> __device__ __forceinline__ Best<T> minmax_combine_warp(Best<T> b) {
  for (int off = 16; off > 0; off >>= 1) {
    const Best<T> o{shfl_down(b.val, off), shfl_down(b.idx, off)};
    if (minmax_better<M>(o.val, o.idx, b.val, b.idx)) b = o;
  }
  return b;
}

// Rows are contiguous (inner == 1). kBlockRow: a block per row, else a warp per row.
template <bool M, bool kBlockRow, class T>
__global__ void minmax_rows_kernel(const T* __restrict__ x, T* __restrict__ values, int64_t* __restrict__ indices,
                                   int64_t rows, int64_t r) {
  __shared__ Best<T> smem[32];
  RowGroup<kBlockRow> g;
  for (int64_t row = g.row0; row < rows; row += g.step) {
    const T* xr = x + row * r;
    Best<T> b{T(0), -1};
    for (int64_t k = g.tid; k < r; k += g.group)  // increasing k: a later equal value never replaces
      if (minmax_better<M>(xr[k], k, b.val, b.idx)) b = Best<T>{xr[k], k};
    b = row_reduce<kBlockRow>(b, Best<T>{T(0), -1}, smem, [](Best<T> v) { return minmax_combine_warp<M>(v); });
    if (g.tid == 0) {
      if (values) values[row] = b.val;
      indices[row] = b.idx;
    }
  }
}

template <bool M, class T>
__global__ void minmax_strided_kernel(const T* __restrict__ x, T* __restrict__ values, int64_t* __restrict__ indices,
                                      int64_t outer, int64_t r, int64_t inner) {
  const int64_t n = outer * inner;
  for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < n; j += int64_t(gridDim.x) * blockDim.x) {
    const int64_t o = j / inner, i = j - o * inner;
    int64_t bi;
    const T best = minmax_scan<M>(x + o * r * inner + i, r, inner, bi);
    if (values) values[j] = best;
    indices[j] = bi;
  }
}

template <class T>
__global__ void minmax_backward_kernel(const T* __restrict__ dout, const int64_t* __restrict__ indices,
                                       T* __restrict__ dx, int64_t outer, int64_t r, int64_t inner) {
  const int64_t n = outer * r * inner;
  for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < n; j += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = j % inner, ok = j / inner, k = ok % r, o = ok / r;
    const int64_t out = o * inner + i;
    dx[j] = indices[out] == k ? dout[out] : T(0);
  }
}

}  // namespace

void minmax_forward_cuda(DType dt, bool is_max, const void* x, void* values, int64_t* indices, int64_t outer,
                         int64_t r, int64_t inner, cudaStream_t st) {
  if (outer * inner == 0) return;
  dispatch_minmax(dt, is_max ? "max" : "min", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    const T* xp = static_cast<const T*>(x);
    T* vp = static_cast<T*>(values);
    auto launch = [&](auto is_max_c) {
      constexpr bool M = decltype(is_max_c)::value;
      if (inner != 1)
        minmax_strided_kernel<M><<<grid_for(outer * inner), kBlock, 0, st>>>(xp, vp, indices, outer, r, inner);
      else
        launch_rows(outer, r, [&](auto block_row, unsigned grid) {
          minmax_rows_kernel<M, decltype(block_row)::value><<<grid, kBlock, 0, st>>>(xp, vp, indices, outer, r);
        });
    };
    if (is_max) launch(std::true_type{});
    else launch(std::false_type{});
  });
  CUDA_CHECK_LAUNCH();
}

void minmax_backward_cuda(DType dt, const void* dout, const int64_t* indices, void* dx, int64_t outer, int64_t r,
                          int64_t inner, cudaStream_t st) {
  const int64_t n = outer * r * inner;
  if (n == 0) return;
  dispatch_float(dt, "max/min backward", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    minmax_backward_kernel<<<grid_for(n), kBlock, 0, st>>>(static_cast<const T*>(dout), indices, static_cast<T*>(dx),
                                                           outer, r, inner);
  });
  CUDA_CHECK_LAUNCH();
}

}  // namespace ep
