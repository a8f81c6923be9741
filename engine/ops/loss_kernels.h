// loss_kernels.h — cross entropy's fused kernels (log-softmax + label smoothing + ignore_index + mean), CPU and CUDA.
// Not autograd (engine/ops/loss.cpp). N = rows (batch), K = classes; `dt` is f32/f64, `it` (targets) i32/i64.
#pragma once
#include <cstdint>

#include "engine/device.h"
#include "engine/dispatch.h"

namespace ep {

// Per row i with target y_i != ignore_index:
//   loss_i = (1-eps)(-log p_{i,y_i}) + (eps/K) sum_k (-log p_ik)
// computed with m_i = max_k x_ik and s_i = sum_k exp(x_ik - m_i) as
//   loss_i = log s_i + (1-eps)(m_i - x_{i,y_i}) + (eps/K) sum_k (m_i - x_ik)
// (every term >= 0, so no cancellation between large logits and lse_i = m_i + log s_i). Writes loss_rows[N] (0 for ignored rows),
// lse[N], out[0] = sum(loss_rows) / count and count[0] = number of kept rows (out is NaN when count is 0).
// *bad_row = the first row whose target lies outside [0, K) and is not ignore_index, else -1; when it is set, the
// other outputs are unspecified. Every pointer lives on the kernel's device (bad_row too).
void cross_entropy_forward_cpu(DType dt, DType it, const void* logits, const void* targets, int64_t n, int64_t k,
                               double eps, int64_t ignore_index, void* loss_rows, void* lse, void* out, void* count,
                               int64_t* bad_row);
// dlogits_ik = dout[0] * (exp(x_ik - lse_i) - eps/K - (1-eps)[k == y_i]) / count[0] for kept rows, 0 for ignored.
// dout and count are one-element device tensors, so backward never waits for the host.
void cross_entropy_backward_cpu(DType dt, DType it, const void* logits, const void* targets, const void* lse,
                                const void* dout, const void* count, void* dlogits, int64_t n, int64_t k, double eps,
                                int64_t ignore_index);

EP_CUDA_API void cross_entropy_forward_cuda(DType dt, DType it, const void* logits, const void* targets, int64_t n,
                                            int64_t k, double eps, int64_t ignore_index, void* loss_rows, void* lse,
                                            void* out, void* count, int64_t* bad_row, cudaStream_t st)
    EP_CUDA_BODY("cross_entropy")
EP_CUDA_API void cross_entropy_backward_cuda(DType dt, DType it, const void* logits, const void* targets,
                                             const void* lse, const void* dout, const void* count, void* dlogits,
                                             int64_t n, int64_t k, double eps, int64_t ignore_index, cudaStream_t st)
    EP_CUDA_BODY("cross_entropy backward")

}  // namespace ep
