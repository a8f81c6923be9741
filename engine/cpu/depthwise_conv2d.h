// depthwise_conv2d.h — the CPU depthwise convolution (groups == C, K = C * multiplier), called by conv2d.cpp for
// f32 and f64. Not the im2col path and not the CUDA one (cuDNN).
#pragma once
#include "engine/ops/conv2d_kernels.h"

namespace ep {

// y = conv(x, w) + b (b may be null); every element of y is written.
template <class T> void depthwise_forward(const Conv2dGeom& g, const T* x, const T* w, const T* b, T* y);
// dx, fully overwritten.
template <class T> void depthwise_backward_input(const Conv2dGeom& g, const T* w, const T* dy, T* dx);
// dw, fully overwritten.
template <class T> void depthwise_backward_weight(const Conv2dGeom& g, const T* x, const T* dy, T* dw);

}  // namespace ep
