// select_kernels.h — the broadcasting three-way select behind where and masked_fill, CPU and CUDA.
// Not autograd (engine/ops/select.cpp). Moves elements without arithmetic, so it dispatches on element size.
#pragma once
#include <cstddef>
#include <cstdint>

#include "engine/device.h"
#include "engine/ops/layout_kernels.h"  // dispatch_elem_size, kMaxDims

namespace ep {

// Output index i -> offsets into cond, a and b (stride 0 along broadcast dims); dims merged by the caller.
struct WhereIndex {
  int ndim = 0;
  int64_t size[kMaxDims];
  int64_t stride_c[kMaxDims];
  int64_t stride_a[kMaxDims];
  int64_t stride_b[kMaxDims];
  EP_HD void offsets(int64_t i, int64_t& oc, int64_t& oa, int64_t& ob) const {
    oc = oa = ob = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      int64_t q = i / size[d], r = i - q * size[d];
      oc += r * stride_c[d];
      oa += r * stride_a[d];
      ob += r * stride_b[d];
      i = q;
    }
  }
};

// out[i] = cond[oc] ? a[oa] : b[ob] for n output elements. A null a (or b) stands for the constant whose bit
// pattern is a_bits (b_bits), in the low `elem` bytes: that is how masked_fill's value and the zeros of the
// backward enter without a device allocation.
void where_cpu(size_t elem, const uint8_t* cond, const void* a, const void* b, void* out, int64_t n,
               const WhereIndex& idx, uint64_t a_bits, uint64_t b_bits);

EP_CUDA_API void where_cuda(size_t elem, const uint8_t* cond, const void* a, const void* b, void* out, int64_t n,
                            const WhereIndex& idx, uint64_t a_bits, uint64_t b_bits, cudaStream_t st)
    EP_CUDA_BODY("where")

}  // namespace ep
