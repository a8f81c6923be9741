// layout.cu — CUDA twins of engine/cpu/layout.cpp: strided gather/scatter (32-bit index math when everything fits,
// since 64-bit division is slow on the GPU) and a shared-memory tiled batched transpose. Not a view system.
#include <cuda_runtime.h>

#include "engine/cuda/launch.cuh"
#include "engine/ops/layout_kernels.h"

namespace ep {

template <class I> struct StridedIndexT {
  int ndim;
  I size[kMaxDims];
  I stride[kMaxDims];
  __device__ __forceinline__ I offset(I i) const {
    I o = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      I q = i / size[d];
      o += (i - q * size[d]) * stride[d];
      i = q;
    }
    return o;
  }
};

template <class U, class I, bool kScatter>
__global__ void strided_kernel(const U* __restrict__ in, U* __restrict__ out, I n, I base, StridedIndexT<I> idx) {
  for (I i = I(blockIdx.x) * I(blockDim.x) + I(threadIdx.x); i < n; i += I(gridDim.x) * I(blockDim.x)) {
    I o = base + idx.offset(i);
    if (kScatter) out[o] = in[i];
    else out[i] = in[o];
  }
}

template <bool kScatter>
static void strided_copy_cuda(size_t elem, const void* in, void* out, int64_t n, int64_t base,
                              const StridedIndex& idx, cudaStream_t st, const char* op) {
  if (n == 0) return;
  if (idx.ndim == 1 && idx.stride[0] == 1) {  // contiguous on both sides
    char* dst = static_cast<char*>(out) + (kScatter ? base * int64_t(elem) : 0);
    const char* src = static_cast<const char*>(in) + (kScatter ? 0 : base * int64_t(elem));
    CUDA_CHECK(cudaMemcpyAsync(dst, src, size_t(n) * elem, cudaMemcpyDeviceToDevice, st));
    return;
  }
  // Largest offset touched on the strided side decides whether 32-bit index math is safe (with headroom for the
  // grid-stride increment).
  int64_t max_off = base;
  for (int d = 0; d < idx.ndim; ++d) max_off += (idx.size[d] - 1) * idx.stride[d];
  const bool small = n < (int64_t(1) << 31) && max_off < (int64_t(1) << 31);
  dispatch_elem_size(elem, op, [&](auto tag_) {
    using U = EP_TYPE(tag_);
    const U* src = static_cast<const U*>(in);
    U* dst = static_cast<U*>(out);
    if (small) {
      StridedIndexT<uint32_t> i32{};
      i32.ndim = idx.ndim;
      for (int d = 0; d < idx.ndim; ++d) {
        i32.size[d] = uint32_t(idx.size[d]);
        i32.stride[d] = uint32_t(idx.stride[d]);
      }
      strided_kernel<U, uint32_t, kScatter><<<grid_for(n), kBlock, 0, st>>>(src, dst, uint32_t(n), uint32_t(base),
                                                                           i32);
    } else {
      StridedIndexT<int64_t> i64{};
      i64.ndim = idx.ndim;
      for (int d = 0; d < idx.ndim; ++d) {
        i64.size[d] = idx.size[d];
        i64.stride[d] = idx.stride[d];
      }
      strided_kernel<U, int64_t, kScatter><<<grid_for(n), kBlock, 0, st>>>(src, dst, n, base, i64);
    }
  });
  CUDA_CHECK_LAUNCH();
}

void strided_gather_cuda(size_t elem, const void* in, void* out, int64_t n, int64_t base, const StridedIndex& idx,
                         cudaStream_t st) {
  strided_copy_cuda<false>(elem, in, out, n, base, idx, st, "strided gather");
}

void strided_scatter_cuda(size_t elem, const void* in, void* out, int64_t n, int64_t base, const StridedIndex& idx,
                          cudaStream_t st) {
  strided_copy_cuda<true>(elem, in, out, n, base, idx, st, "strided scatter");
}

constexpr int kTile = 32, kTileRows = 8;  // 32x8 threads move a 32x32 tile, 4 elements each

// Reads a tile with threads along columns (coalesced), writes it transposed with threads along rows (coalesced);
// the +1 column of padding keeps the transposed shared-memory reads free of bank conflicts.
template <class U>
__global__ void transpose_kernel(const U* __restrict__ in, U* __restrict__ out, int64_t batch, int64_t rows,
                                 int64_t cols) {
  __shared__ U tile[kTile][kTile + 1];
  const int64_t tiles_r = (rows + kTile - 1) / kTile;
  const int64_t c0 = int64_t(blockIdx.x) * kTile;
  for (int64_t b = blockIdx.z; b < batch; b += gridDim.z) {
    const U* s = in + b * rows * cols;
    U* d = out + b * rows * cols;
    for (int64_t ty = blockIdx.y; ty < tiles_r; ty += gridDim.y) {  // uniform per block: __syncthreads is safe
      const int64_t r0 = ty * kTile;
      for (int j = threadIdx.y; j < kTile; j += kTileRows) {
        int64_t r = r0 + j, c = c0 + threadIdx.x;
        if (r < rows && c < cols) tile[j][threadIdx.x] = s[r * cols + c];
      }
      __syncthreads();
      for (int j = threadIdx.y; j < kTile; j += kTileRows) {
        int64_t c = c0 + j, r = r0 + threadIdx.x;
        if (r < rows && c < cols) d[c * rows + r] = tile[threadIdx.x][j];
      }
      __syncthreads();
    }
  }
}

void transpose_cuda(size_t elem, const void* in, void* out, int64_t batch, int64_t rows, int64_t cols,
                    cudaStream_t st) {
  if (batch * rows * cols == 0) return;
  const int64_t tiles_c = (cols + kTile - 1) / kTile, tiles_r = (rows + kTile - 1) / kTile;
  EP_CHECK(tiles_c < (int64_t(1) << 31), ShapeError, "[transpose] ", cols, " columns is too many for one launch");
  const unsigned gx = unsigned(tiles_c);
  const unsigned gy = unsigned(std::min<int64_t>(tiles_r, 65535));
  const unsigned gz = unsigned(std::min<int64_t>(batch, 65535));
  const dim3 grid(gx, gy, gz);
  const dim3 block(kTile, kTileRows, 1);
  dispatch_elem_size(elem, "transpose", [&](auto tag_) {
    using U = EP_TYPE(tag_);
    transpose_kernel<U><<<grid, block, 0, st>>>(static_cast<const U*>(in), static_cast<U*>(out), batch, rows, cols);
  });
  CUDA_CHECK_LAUNCH();
}

}  // namespace ep
