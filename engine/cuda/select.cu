// select.cu — CUDA twin of engine/cpu/select.cpp: the broadcasting select behind where and masked_fill, with 32-bit
// index math when every offset fits. Not fused with anything else.
#include <cuda_runtime.h>

#include "engine/cuda/launch.cuh"
#include "engine/ops/select_kernels.h"

namespace ep {

template <class I> struct WhereIndexT {
  int ndim;
  I size[kMaxDims];
  I stride_c[kMaxDims];
  I stride_a[kMaxDims];
  I stride_b[kMaxDims];
};

template <class U, class I>
__global__ void where_kernel(const uint8_t* __restrict__ cond, const U* __restrict__ a, const U* __restrict__ b,
                             U* __restrict__ out, I n, WhereIndexT<I> idx, U av, U bv) {
  for (I i = I(blockIdx.x) * I(blockDim.x) + I(threadIdx.x); i < n; i += I(gridDim.x) * I(blockDim.x)) {
    I oc = 0, oa = 0, ob = 0, j = i;
    for (int d = idx.ndim - 1; d >= 0; --d) {
      I q = j / idx.size[d], r = j - q * idx.size[d];
      oc += r * idx.stride_c[d];
      oa += r * idx.stride_a[d];
      ob += r * idx.stride_b[d];
      j = q;
    }
    out[i] = cond[oc] ? (a ? a[oa] : av) : (b ? b[ob] : bv);
  }
}

template <class I> static WhereIndexT<I> narrow(const WhereIndex& idx) {
  WhereIndexT<I> t{};
  t.ndim = idx.ndim;
  for (int d = 0; d < idx.ndim; ++d) {
    t.size[d] = I(idx.size[d]);
    t.stride_c[d] = I(idx.stride_c[d]);
    t.stride_a[d] = I(idx.stride_a[d]);
    t.stride_b[d] = I(idx.stride_b[d]);
  }
  return t;
}

void where_cuda(size_t elem, const uint8_t* cond, const void* a, const void* b, void* out, int64_t n,
                const WhereIndex& idx, uint64_t a_bits, uint64_t b_bits, cudaStream_t st) {
  if (n == 0) return;
  // Input offsets never exceed the output index (strides are those of the broadcast-down inputs), so n decides.
  const bool small = n < (int64_t(1) << 31);
  dispatch_elem_size(elem, "where", [&](auto tag_) {
    using U = EP_TYPE(tag_);
    const U* ap = static_cast<const U*>(a);
    const U* bp = static_cast<const U*>(b);
    U* o = static_cast<U*>(out);
    if (small)
      where_kernel<U, uint32_t><<<grid_for(n), kBlock, 0, st>>>(cond, ap, bp, o, uint32_t(n), narrow<uint32_t>(idx),
                                                                U(a_bits), U(b_bits));
    else
      where_kernel<U, int64_t><<<grid_for(n), kBlock, 0, st>>>(cond, ap, bp, o, n, narrow<int64_t>(idx), U(a_bits),
                                                               U(b_bits));
  });
  CUDA_CHECK_LAUNCH();
}

}  // namespace ep
