// pool_kernels.h — max/avg/adaptive-avg 2-D pooling kernels, CPU (engine/cpu/pool.cpp) and CUDA (engine/cuda/pool.cu),
// plus the window/bin index math both share (EP_HD), so the CPU really is the reference for the CUDA kernels.
// Not autograd and not argument checking (engine/ops/pool.cpp). No ceil_mode, no dilation. `dt` is f32 or f64.
// NC = batch * channels (pooling treats every plane alike), H/W = input size, OH/OW = output size.
#pragma once
#include <cstdint>

#include "engine/device.h"
#include "engine/dispatch.h"

namespace ep {

struct Pool2dGeom {
  int64_t NC = 0, H = 0, W = 0, OH = 0, OW = 0;
  int64_t kh = 1, kw = 1, sh = 1, sw = 1, ph = 0, pw = 0;  // unused by the adaptive pool
};

// Output rows o in [lo, hi) whose window (start o*s - p, size k) covers input row i: the gather form of backward.
EP_HD void pool_windows_covering(int64_t i, int64_t k, int64_t s, int64_t p, int64_t out, int64_t& lo,
                                 int64_t& hi) {
  const int64_t ip = i + p;  // position in padded coordinates; window o covers [o*s, o*s + k)
  lo = ip < k ? 0 : (ip - k) / s + 1;
  hi = ip / s + 1;
  if (hi > out) hi = out;
  if (lo > hi) lo = hi;
}

// PyTorch's adaptive bins: bin o of `out` over `in` covers [floor(o*in/out), ceil((o+1)*in/out)).
EP_HD int64_t adaptive_start(int64_t o, int64_t in, int64_t out) { return (o * in) / out; }
EP_HD int64_t adaptive_end(int64_t o, int64_t in, int64_t out) { return ((o + 1) * in + out - 1) / out; }
// Bins o in [lo, hi) that may contain input index i (the same formula with in and out swapped); callers still
// test start <= i < end, which keeps this a safe superset.
EP_HD void adaptive_bins_covering(int64_t i, int64_t in, int64_t out, int64_t& lo, int64_t& hi) {
  lo = (i * out) / in;
  hi = ((i + 1) * out + in - 1) / in;
  if (hi > out) hi = out;
}

// Max pool: y = window max (padding counts as -inf; NaN propagates), idx = flat h*W+w of the first maximum.
void max_pool2d_forward_cpu(DType dt, const Pool2dGeom& g, const void* x, void* y, int32_t* idx);
// dx (fully written) = sum of dy over the outputs whose idx points at each input element.
void max_pool2d_backward_cpu(DType dt, const Pool2dGeom& g, const void* dy, const int32_t* idx, void* dx);
// Avg pool with count_include_pad: every window divides by kh*kw.
void avg_pool2d_forward_cpu(DType dt, const Pool2dGeom& g, const void* x, void* y);
void avg_pool2d_backward_cpu(DType dt, const Pool2dGeom& g, const void* dy, void* dx);
void adaptive_avg_pool2d_forward_cpu(DType dt, const Pool2dGeom& g, const void* x, void* y);
void adaptive_avg_pool2d_backward_cpu(DType dt, const Pool2dGeom& g, const void* dy, void* dx);

EP_CUDA_API void max_pool2d_forward_cuda(DType dt, const Pool2dGeom& g, const void* x, void* y, int32_t* idx,
                                         cudaStream_t st) EP_CUDA_BODY("max_pool2d")
EP_CUDA_API void max_pool2d_backward_cuda(DType dt, const Pool2dGeom& g, const void* dy, const int32_t* idx,
                                          void* dx, cudaStream_t st) EP_CUDA_BODY("max_pool2d backward")
EP_CUDA_API void avg_pool2d_forward_cuda(DType dt, const Pool2dGeom& g, const void* x, void* y, cudaStream_t st)
    EP_CUDA_BODY("avg_pool2d")
EP_CUDA_API void avg_pool2d_backward_cuda(DType dt, const Pool2dGeom& g, const void* dy, void* dx, cudaStream_t st)
    EP_CUDA_BODY("avg_pool2d backward")
EP_CUDA_API void adaptive_avg_pool2d_forward_cuda(DType dt, const Pool2dGeom& g, const void* x, void* y,
                                                  cudaStream_t st) EP_CUDA_BODY("adaptive_avg_pool2d")
EP_CUDA_API void adaptive_avg_pool2d_backward_cuda(DType dt, const Pool2dGeom& g, const void* dy, void* dx,
                                                   cudaStream_t st) EP_CUDA_BODY("adaptive_avg_pool2d backward")

}  // namespace ep
