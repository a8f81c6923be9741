// elementwise_kernels.h — launchers for unary, broadcast-binary, in-place and sum-reduction kernels, CPU and CUDA.
// Not autograd: engine/ops/unary.cpp, binary.cpp and reduce.cpp wrap these. `dt` is f32 or f64.
#pragma once
#include <cstdint>

#include "engine/device.h"
#include "engine/dispatch.h"
#include "engine/ops/scalar_ops.h"

namespace ep {

// y = f(x)
void unary_forward_cpu(UnaryOp op, DType dt, const void* x, void* y, int64_t n, double s);
// dx = dy * f'(x, y)
void unary_backward_cpu(UnaryOp op, DType dt, const void* x, const void* y, const void* dy, void* dx, int64_t n,
                        double s);
// out = a (op) b with broadcasting described by idx (n output elements)
void binary_forward_cpu(BinaryOp op, DType dt, const void* a, const void* b, void* out, int64_t n,
                        const BroadcastIndex& idx);
// a += alpha * b (same size)
void axpy_cpu(DType dt, void* a, const void* b, double alpha, int64_t n);
// out[o, i] = sum_r x[o, r, i]  (x viewed as [outer, r, inner])
void sum_dim_cpu(DType dt, const void* x, void* out, int64_t outer, int64_t r, int64_t inner);

EP_CUDA_API void unary_forward_cuda(UnaryOp op, DType dt, const void* x, void* y, int64_t n, double s,
                                    cudaStream_t st) EP_CUDA_BODY("unary")
EP_CUDA_API void unary_backward_cuda(UnaryOp op, DType dt, const void* x, const void* y, const void* dy, void* dx,
                                     int64_t n, double s, cudaStream_t st) EP_CUDA_BODY("unary backward")
EP_CUDA_API void binary_forward_cuda(BinaryOp op, DType dt, const void* a, const void* b, void* out, int64_t n,
                                     const BroadcastIndex& idx, cudaStream_t st) EP_CUDA_BODY("binary")
EP_CUDA_API void axpy_cuda(DType dt, void* a, const void* b, double alpha, int64_t n, cudaStream_t st)
    EP_CUDA_BODY("add_")
EP_CUDA_API void sum_dim_cuda(DType dt, const void* x, void* out, int64_t outer, int64_t r, int64_t inner,
                              cudaStream_t st) EP_CUDA_BODY("sum")

}  // namespace ep
