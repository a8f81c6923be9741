// reduce_minmax.cu — CUDA twins of engine/cpu/reduce_minmax.cpp. inner == 1: a warp (short rows) or a block (long
// rows) per row, tree-combining (value, index) pairs with minmax_better so ties still pick the first index;
// inner > 1: one thread per output scanning k (coalesced along inner). Not a general segmented reduction.
#include <cuda_runtime.h>

#include <type_traits>

#include "engine/cuda/launch.cuh"
#include "engine/ops/reduce_minmax_kernels.h"

namespace ep {

constexpr int64_t kWarpRowMax = 1024;  // rows up to this long get a warp, longer ones a whole block

// __shfl_down_sync has no `long` overload on every toolkit: move 64-bit integers as long long.
template <class T> __device__ __forceinline__ T shfl_down(T v, int off) {
  if constexpr (std::is_same_v<T, int64_t>)
    return T(__shfl_down_sync(0xffffffffu, static_cast<long long>(v), off));
  else
    return __shfl_down_sync(0xffffffffu, v, off);
}

template <bool M, class T>
__device__ __forceinline__ void minmax_combine_warp(T& best, int64_t& bi) {
  for (int off = 16; off > 0; off >>= 1) {
    T v = shfl_down(best, off);
    int64_t j = shfl_down(bi, off);
    if (minmax_better<M>(v, j, best, bi)) {
      best = v;
      bi = j;
    }
  }
}

// Rows are contiguous (inner == 1). kBlockRow: a block per row, else a warp per row.
template <bool M, bool kBlockRow, class T>
__global__ void minmax_rows_kernel(const T* __restrict__ x, T* __restrict__ values, int64_t* __restrict__ indices,
                                   int64_t rows, int64_t r) {
  __shared__ T s_val[32];
  __shared__ int64_t s_idx[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int tid = kBlockRow ? threadIdx.x : lane;
  const int group = kBlockRow ? blockDim.x : 32;
  const int64_t row0 = kBlockRow ? int64_t(blockIdx.x) : int64_t(blockIdx.x) * (blockDim.x >> 5) + warp;
  const int64_t step = kBlockRow ? int64_t(gridDim.x) : int64_t(gridDim.x) * (blockDim.x >> 5);
  for (int64_t row = row0; row < rows; row += step) {
    const T* xr = x + row * r;
    T best = T(0);
    int64_t bi = -1;
    for (int64_t k = tid; k < r; k += group)  // increasing k: a later equal value never replaces
      if (minmax_better<M>(xr[k], k, best, bi)) {
        best = xr[k];
        bi = k;
      }
    minmax_combine_warp<M>(best, bi);
    if constexpr (kBlockRow) {
      __syncthreads();  // s_val/s_idx may still be read from the previous row
      if (lane == 0) {
        s_val[warp] = best;
        s_idx[warp] = bi;
      }
      __syncthreads();
      const int nwarps = blockDim.x >> 5;
      best = lane < nwarps ? s_val[lane] : T(0);
      bi = lane < nwarps ? s_idx[lane] : -1;
      minmax_combine_warp<M>(best, bi);
    }
    if (tid == 0) {
      if (values) values[row] = best;
      indices[row] = bi;
    }
  }
}

template <bool M, class T>
__global__ void minmax_strided_kernel(const T* __restrict__ x, T* __restrict__ values, int64_t* __restrict__ indices,
                                      int64_t outer, int64_t r, int64_t inner) {
  const int64_t n = outer * inner;
  for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < n; j += int64_t(gridDim.x) * blockDim.x) {
    const int64_t o = j / inner, i = j - o * inner;
    const T* base = x + o * r * inner + i;
    T best = base[0];
    int64_t bi = 0;
    for (int64_t k = 1; k < r; ++k)
      if (minmax_better<M>(base[k * inner], k, best, bi)) {
        best = base[k * inner];
        bi = k;
      }
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

void minmax_forward_cuda(DType dt, bool is_max, const void* x, void* values, int64_t* indices, int64_t outer,
                         int64_t r, int64_t inner, cudaStream_t st) {
  if (outer * inner == 0) return;
  dispatch_minmax(dt, is_max ? "max" : "min", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    const T* xp = static_cast<const T*>(x);
    T* vp = static_cast<T*>(values);
    auto launch = [&](auto is_max_c) {
      constexpr bool M = decltype(is_max_c)::value;
      if (inner != 1) {
        minmax_strided_kernel<M><<<grid_for(outer * inner), kBlock, 0, st>>>(xp, vp, indices, outer, r, inner);
      } else if (r <= kWarpRowMax) {
        minmax_rows_kernel<M, false><<<grid_for(outer * 32), kBlock, 0, st>>>(xp, vp, indices, outer, r);
      } else {
        unsigned blocks = unsigned(std::min<int64_t>(outer, 65536));
        minmax_rows_kernel<M, true><<<blocks, kBlock, 0, st>>>(xp, vp, indices, outer, r);
      }
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
