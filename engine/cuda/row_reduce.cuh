// row_reduce.cuh — what the row kernels share (softmax, loss, layer_norm, reduce_minmax; batch_norm's channel blocks
// use row_sum): a warp per row up to kWarpRowMax elements or a kBlock-thread block per row (launch_rows, RowGroup), and
// reductions over such a group. Not a general reduction library: nothing spans blocks, nothing is segmented.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "engine/cuda/launch.cuh"

namespace ep {

inline constexpr int64_t kWarpRowMax = 1024;  // rows up to this long get a warp, longer ones a whole block

// a > b ? a : b rather than fmax, whose NaN rule differs: here a NaN in `b` is kept and a NaN in `a` dropped.
template <class T> __device__ __forceinline__ T larger(T a, T b) { return a > b ? a : b; }

// Reduces v over the threads that share a row: warp_step reduces within each warp and, when kBlockRow, the warps'
// results meet in `smem` (32 slots) and every warp reduces them again, lanes past the last warp starting from
// `identity`. warp_step decides which lanes end with the result: all of them for a butterfly (row_sum, row_max),
// lane 0 for a shift-down tree. The leading barrier lets a caller reuse smem for consecutive reductions.
template <bool kBlockRow, class V, class WarpStep>
__device__ __forceinline__ V row_reduce(V v, V identity, V* smem, WarpStep warp_step) {
  v = warp_step(v);
  if constexpr (kBlockRow) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    __syncthreads();  // smem may still be read by the previous reduction
    if (lane == 0) smem[warp] = v;
    __syncthreads();
    v = lane < nwarps ? smem[lane] : identity;
    v = warp_step(v);
  }
  return v;
}

// Butterfly over a warp: every lane ends with the sum (the max when kMax) of all 32.
template <bool kMax, class T> __device__ __forceinline__ T warp_butterfly(T v) {
  for (int off = 16; off > 0; off >>= 1) {
    T o = __shfl_xor_sync(0xffffffffu, v, off);
    v = kMax ? larger(v, o) : v + o;
  }
  return v;
}

// Sum / max over the threads that share a row (a warp, or the block when kBlockRow); every thread gets the result.
// Every lane ends with the same bits (+ is commutative), and lane 0's are those a shift-down tree would give.
template <bool kBlockRow, class T> __device__ __forceinline__ T row_sum(T v, T* smem) {
  return row_reduce<kBlockRow>(v, T(0), smem, [](T x) { return warp_butterfly<false>(x); });
}
template <bool kBlockRow, class T> __device__ __forceinline__ T row_max(T v, T* smem) {
  return row_reduce<kBlockRow>(v, -std::numeric_limits<T>::infinity(), smem,
                               [](T x) { return warp_butterfly<true>(x); });
}

// The rows this thread's group handles: row0, row0 + step, ...; tid/group index the elements within a row.
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

// Calls launch(kBlockRow as std::bool_constant, grid) for `rows` rows of `cols` elements, with kBlock threads a block:
// kBlock / 32 rows a block when a warp per row, else one row a block (grid-stride beyond 65536 rows).
template <class F> void launch_rows(int64_t rows, int64_t cols, F&& launch) {
  if (cols <= kWarpRowMax)
    launch(std::false_type{}, grid_for(rows * 32));
  else
    launch(std::true_type{}, unsigned(std::min<int64_t>(rows, 65536)));
}

}  // namespace ep
