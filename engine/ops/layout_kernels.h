// layout_kernels.h — data-movement kernels behind transpose/permute/slice/concat/split: a strided gather and scatter
// over a merged index, and a tiled batched 2-D transpose. CPU and CUDA. Not autograd (engine/ops/layout.cpp).
// Kernels move bytes, so they dispatch on the element size and serve every dtype.
#pragma once
#include <cstddef>
#include <cstdint>

#include "engine/device.h"
#include "engine/dispatch.h"
#include "engine/ops/scalar_ops.h"  // kMaxDims

namespace ep {

// Element i of a row-major index space of `size` maps to offset sum_d i_d * stride[d] in the strided tensor.
// Callers merge dims first (make_strided_index in layout.cpp), so ndim <= kMaxDims covers every real case.
struct StridedIndex {
  int ndim = 0;
  int64_t size[kMaxDims];
  int64_t stride[kMaxDims];
  EP_HD int64_t offset(int64_t i) const {
    int64_t o = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      int64_t q = i / size[d];
      o += (i - q * size[d]) * stride[d];
      i = q;
    }
    return o;
  }
};

// Calls f(type_tag<U>) with an unsigned type of `elem` bytes (1, 2, 4 or 8).
template <class F> auto dispatch_elem_size(size_t elem, const char* op, F&& f) {
  switch (elem) {
    case 1: return f(type_tag<uint8_t>{});
    case 2: return f(type_tag<uint16_t>{});
    case 4: return f(type_tag<uint32_t>{});
    case 8: return f(type_tag<uint64_t>{});
    default: break;
  }
  EP_THROW(DTypeError, "[", op, "] unsupported element size ", elem);
}

// out[i] = in[base + idx.offset(i)] for i < n (out contiguous).
void strided_gather_cpu(size_t elem, const void* in, void* out, int64_t n, int64_t base, const StridedIndex& idx);
// out[base + idx.offset(i)] = in[i] for i < n (in contiguous). Targets must be distinct (they are for every caller).
void strided_scatter_cpu(size_t elem, const void* in, void* out, int64_t n, int64_t base, const StridedIndex& idx);
// in [batch, rows, cols] -> out [batch, cols, rows].
void transpose_cpu(size_t elem, const void* in, void* out, int64_t batch, int64_t rows, int64_t cols);

EP_CUDA_API void strided_gather_cuda(size_t elem, const void* in, void* out, int64_t n, int64_t base,
                                     const StridedIndex& idx, cudaStream_t st) EP_CUDA_BODY("strided gather")
EP_CUDA_API void strided_scatter_cuda(size_t elem, const void* in, void* out, int64_t n, int64_t base,
                                      const StridedIndex& idx, cudaStream_t st) EP_CUDA_BODY("strided scatter")
EP_CUDA_API void transpose_cuda(size_t elem, const void* in, void* out, int64_t batch, int64_t rows, int64_t cols,
                                cudaStream_t st) EP_CUDA_BODY("transpose")

}  // namespace ep
