// conv2d_kernels.h — 2-D convolution kernels: CPU (im2col + OpenBLAS GEMM, direct depthwise) and CUDA (cuDNN 9).
// Not autograd and not argument checking: engine/ops/conv2d.cpp validates shapes and wraps these. `dt` is f32 or f64.
// N = batch, C = input channels, K = output channels, H/W = input size, OH/OW = output size, kh/kw = kernel size.
#pragma once
#include <cstdint>

#include "engine/device.h"
#include "engine/dispatch.h"

namespace ep {

// Everything a kernel needs to know about one convolution (all sizes already validated, N >= 1).
struct Conv2dGeom {
  int64_t N = 0, C = 0, H = 0, W = 0;  // input x [N, C, H, W]
  int64_t K = 0, kh = 0, kw = 0;       // weight [K, C / groups, kh, kw]
  int64_t sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1, groups = 1;
  int64_t OH = 0, OW = 0;              // output y [N, K, OH, OW]
  int64_t cin_per_group() const { return C / groups; }
  int64_t cout_per_group() const { return K / groups; }
  // groups == C (one input channel per group, K = C * multiplier): MobileNetV2's 3x3 convs, done directly on the
  // CPU instead of through im2col (a [kh*kw, OH*OW] column buffer per channel for a 9-term dot product is waste).
  bool depthwise() const { return groups > 1 && groups == C; }
  // 1x1, stride 1, no padding: the input plane already is the column matrix, so im2col/col2im are skipped.
  bool pointwise() const { return kh == 1 && kw == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0; }
};

// y = conv(x, w) + b (b may be null). Every element of y is written.
void conv2d_forward_cpu(DType dt, const Conv2dGeom& g, const void* x, const void* w, const void* b, void* y);
// Gradients for the non-null outputs, each fully overwritten: dx needs w, dw needs x (either input may be null when
// the gradient that needs it is not requested), db needs only dy.
void conv2d_backward_cpu(DType dt, const Conv2dGeom& g, const void* x, const void* w, const void* dy, void* dx,
                         void* dw, void* db);

// Same contracts on CUDA through cuDNN (engine/cuda/cudnn_conv.cpp). `device` is the CUDA device index of all buffers.
EP_CUDA_API void conv2d_forward_cuda(DType dt, const Conv2dGeom& g, int device, const void* x, const void* w,
                                     const void* b, void* y, cudaStream_t st) EP_CUDA_BODY("conv2d")
EP_CUDA_API void conv2d_backward_cuda(DType dt, const Conv2dGeom& g, int device, const void* x, const void* w,
                                      const void* dy, void* dx, void* dw, void* db, cudaStream_t st)
    EP_CUDA_BODY("conv2d backward")

// Restricts cuDNN to deterministic algorithms (bit-identical reruns). Starts as EP_DETERMINISTIC=1 in the
// environment; the CPU kernels give the same bits for any thread count either way.
void set_conv_deterministic(bool on);
bool conv_deterministic();

}  // namespace ep
