// softmax_kernels.h — softmax and log-softmax over the last dim of a [rows, cols] view, forward and backward, CPU and
// CUDA launchers. Not autograd (engine/ops/softmax.cpp) and not cross entropy's fused kernels (loss_kernels.h).
#pragma once
#include <cstdint>

#include "engine/device.h"
#include "engine/dispatch.h"

namespace ep {

// y = softmax(x) (or log_softmax when `log`), each row max-subtracted first so exp never overflows.
void softmax_forward_cpu(DType dt, bool log, const void* x, void* y, int64_t rows, int64_t cols);
// From the forward output y: softmax dx = y * (dy - sum(dy * y)); log_softmax dx = dy - exp(y) * sum(dy).
void softmax_backward_cpu(DType dt, bool log, const void* y, const void* dy, void* dx, int64_t rows, int64_t cols);

EP_CUDA_API void softmax_forward_cuda(DType dt, bool log, const void* x, void* y, int64_t rows, int64_t cols,
                                      cudaStream_t st) EP_CUDA_BODY(log ? "log_softmax" : "softmax")
EP_CUDA_API void softmax_backward_cuda(DType dt, bool log, const void* y, const void* dy, void* dx, int64_t rows,
                                       int64_t cols, cudaStream_t st)
    EP_CUDA_BODY(log ? "log_softmax backward" : "softmax backward")

}  // namespace ep
