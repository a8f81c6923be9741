// dropout_kernels.h — the fused inverted-dropout kernel: the keep-mask is recomputed from Philox (seed, offset) on
// the fly, so neither pass stores a mask. CPU and CUDA. Not autograd (engine/ops/dropout.cpp).
#pragma once
#include <cstdint>

#include "engine/device.h"
#include "engine/dispatch.h"

namespace ep {

// out[i] = bernoulli_keep(seed, offset, i, p_keep) ? x[i] * scale : 0 (dt f32 or f64). The forward applies it to x,
// the backward to dout with the same (seed, offset): the same mask, bit for bit.
void dropout_cpu(DType dt, const void* x, void* out, int64_t n, double p_keep, double scale, uint64_t seed,
                 uint64_t offset);

EP_CUDA_API void dropout_cuda(DType dt, const void* x, void* out, int64_t n, double p_keep, double scale,
                              uint64_t seed, uint64_t offset, cudaStream_t st) EP_CUDA_BODY("dropout")

}  // namespace ep
