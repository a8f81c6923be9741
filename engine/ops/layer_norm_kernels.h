// layer_norm_kernels.h — LayerNorm over the last dim of a [rows, D] view, forward (saving mean and rstd per row) and
// backward for x, weight and bias, CPU and CUDA launchers. Not autograd (engine/ops/layer_norm.cpp); not RMSNorm.
#pragma once
#include <cstdint>

#include "engine/device.h"
#include "engine/dispatch.h"

namespace ep {

// mean_r = sum(x_r) / D, var_r = sum((x_r - mean_r)^2) / D (biased), rstd_r = 1 / sqrt(var_r + eps),
// y = (x - mean) * rstd * w + b. w and b may be null (1 and 0).
void layer_norm_forward_cpu(DType dt, const void* x, const void* w, const void* b, void* y, void* mean, void* rstd,
                            int64_t rows, int64_t d, double eps);
// With xhat = (x - mean) * rstd and g = dy * w:
//   dx = rstd * (g - mean_D(g) - xhat * mean_D(g * xhat)),  dw = sum_rows(dy * xhat),  db = sum_rows(dy).
// Any of dx, dw, db may be null (not wanted). dw/db sums run in a fixed order (deterministic, no atomics).
void layer_norm_backward_cpu(DType dt, const void* x, const void* w, const void* mean, const void* rstd,
                             const void* dy, void* dx, void* dw, void* db, int64_t rows, int64_t d);

EP_CUDA_API void layer_norm_forward_cuda(DType dt, const void* x, const void* w, const void* b, void* y, void* mean,
                                         void* rstd, int64_t rows, int64_t d, double eps, cudaStream_t st)
    EP_CUDA_BODY("layer_norm")
EP_CUDA_API void layer_norm_backward_cuda(DType dt, const void* x, const void* w, const void* mean, const void* rstd,
                                          const void* dy, void* dx, void* dw, void* db, int64_t rows, int64_t d,
                                          cudaStream_t st) EP_CUDA_BODY("layer_norm backward")

}  // namespace ep
