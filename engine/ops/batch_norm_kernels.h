// batch_norm_kernels.h — batch normalization kernels, CPU and CUDA: per-channel statistics (with the running-stat
// update), the normalizing forward, and the backward reduction plus the dx pass. Not autograd (engine/ops/batch_norm.cpp).
// x is viewed as [N, C, S] (S = product of the spatial dims, 1 for [N, C]); per-channel vectors are [C]; `dt` is f32
// or f64 for every buffer. Sums accumulate in double on both backends.
#pragma once
#include <cstdint>

#include "engine/device.h"
#include "engine/dispatch.h"
#include "engine/dtype.h"  // EP_HD
#include "engine/ops/scalar_ops.h"  // mul_add_exact

namespace ep {

// The activation a fused batch_norm_relu / batch_norm_relu6 applies to the normalized value y, and its gradient (0
// or 1): ReluOp and Relu6Op themselves, the gradient applied as unary_backward does (dy * grad), so the fused op's
// values and gradients are the unfused ones bit for bit. The backward takes the gradient at the output z = act(y):
// it is the gradient at y (0 where y <= 0, and for relu6 where y >= 6, which is where z <= 0 or z >= 6; NaN passes
// in both), and z is kept anyway as the next layer's input.
enum class BnAct : uint8_t { none, relu, relu6 };
template <class T> EP_HD T bn_activate(BnAct act, T y) {
  return act == BnAct::relu ? ReluOp{}(y, y) : act == BnAct::relu6 ? Relu6Op{}(y, y) : y;
}
template <class T> EP_HD T bn_act_grad(BnAct act, T y) {
  return act == BnAct::relu ? ReluOp{}.grad(y, y, y) : act == BnAct::relu6 ? Relu6Op{}.grad(y, y, y) : T(1);
}
// The normalized value of x in a channel with scale = invstd * weight and shift = bias - mean * scale (in double).
template <class T> EP_HD T bn_normalized(T x, double scale, double shift) { return T(double(x) * scale + shift); }

// Training forward: batch statistics over N*S values per channel (two passes: mean, then the centred sum of
// squares), mean[c], invstd[c] = 1/sqrt(var_biased + eps), then y as batch_norm_forward_cpu with them. When
// running_mean/running_var are non-null they are updated in place: running = (1 - momentum) * running + momentum *
// stat, with the variance made unbiased (times n/(n-1)) as PyTorch. Needs N*S >= 1 (the op checks N*S > 1).
// The CUDA twin is batch_norm_stats_cuda followed by batch_norm_forward_cuda.
// With act, y is bn_activate(act, ...) of it.
void batch_norm_train_forward_cpu(DType dt, const void* x, const void* weight, const void* bias, void* y, int64_t N,
                                  int64_t C, int64_t S, double eps, void* mean, void* invstd, void* running_mean,
                                  void* running_var, double momentum, BnAct act = BnAct::none);
// Eval mode: invstd[c] = 1/sqrt(running_var[c] + eps).
void batch_norm_invstd_cpu(DType dt, const void* running_var, double eps, void* invstd, int64_t C);
// y = (x - mean[c]) * invstd[c] * weight[c] + bias[c]; weight/bias may be null (1 and 0); then bn_activate(act, y).
void batch_norm_forward_cpu(DType dt, const void* x, const void* mean, const void* invstd, const void* weight,
                            const void* bias, void* y, int64_t N, int64_t C, int64_t S, BnAct act = BnAct::none);
// The backward kernels below take, with act, the gradient of the activation's output z (act_out, the forward's y):
// they use dy * bn_act_grad(act, z).
// Per channel: sum_dy[c] = sum dy, sum_dy_xhat[c] = sum dy * (x - mean) * invstd. These are dbias and dweight.
void batch_norm_backward_reduce_cpu(DType dt, const void* x, const void* dy, const void* mean, const void* invstd,
                                    void* sum_dy, void* sum_dy_xhat, int64_t N, int64_t C, int64_t S,
                                    BnAct act = BnAct::none, const void* act_out = nullptr);
// dx. training (batch statistics, n = N*S):  dx = w * invstd * (dy - sum_dy/n - xhat * sum_dy_xhat/n);
// eval (running statistics are constants):  dx = w * invstd * dy (sum_dy / sum_dy_xhat unused, may be null).
// weight may be null (1).
void batch_norm_backward_cpu(DType dt, const void* x, const void* dy, const void* mean, const void* invstd,
                             const void* weight, const void* sum_dy, const void* sum_dy_xhat, void* dx, int64_t N,
                             int64_t C, int64_t S, bool training, BnAct act = BnAct::none,
                             const void* act_out = nullptr);
// Training backward in one call: batch_norm_backward_reduce_cpu's sums (written to sum_dy, sum_dy_xhat), then
// batch_norm_backward_cpu's training dx with them, channel by channel.
void batch_norm_train_backward_cpu(DType dt, const void* x, const void* dy, const void* mean, const void* invstd,
                                   const void* weight, void* sum_dy, void* sum_dy_xhat, void* dx, int64_t N,
                                   int64_t C, int64_t S, BnAct act = BnAct::none, const void* act_out = nullptr);

// ---- deferred (micro-batched) statistics: one channel's arithmetic, shared by both backends -------------------------
// Every product is rounded before its add (mul_add_exact), so the CPU and CUDA accumulators agree bit for bit.
// Chan et al.'s merge of a group of nb values (batch mean mean_b, unbiased variance var_b) into the accumulators
// (mean, m2 = centred sum of squares) over na values before it; na == 0 starts them.
EP_HD void bn_merge_channel(double na, double nb, double mean_b, double var_b, double& mean, double& m2) {
  if (na == 0.0) {
    mean = mean_b;
    m2 = var_b * (nb - 1.0);
    return;
  }
  const double nt = na + nb, delta = mean_b - mean;
  mean = mul_add_exact(delta, nb / nt, mean);
  m2 = mul_add_exact(delta * delta, na * nb / nt, mul_add_exact(var_b, nb - 1.0, m2));
}
// PyTorch's running update from the accumulators over `count` values: running = (1 - momentum) * running + momentum *
// stat, the variance unbiased (m2 / (count - 1)).
template <class T>
EP_HD void bn_commit_channel(double count, double momentum, double mean, double m2, T& running_mean, T& running_var) {
  const double var = m2 / (count > 1.0 ? count - 1.0 : 1.0);
  running_mean = T(mul_add_exact(1.0 - momentum, double(running_mean), mul_exact(momentum, mean)));
  running_var = T(mul_add_exact(1.0 - momentum, double(running_var), mul_exact(momentum, var)));
}
// Per channel c < C: bn_merge_channel into mean[c], m2[c] (f64) from mean_b[c], var_b[c] (dt).
void batch_norm_merge_stats_cpu(DType dt, double na, double nb, const void* mean_b, const void* var_b, double* mean,
                                double* m2, int64_t C);
// Per channel c < C: bn_commit_channel into running_mean[c], running_var[c] (dt).
void batch_norm_commit_stats_cpu(DType dt, double count, double momentum, const double* mean, const double* m2,
                                 void* running_mean, void* running_var, int64_t C);

// CUDA twins: one block per channel for the reductions, grid-stride loops for the element-wise passes.
EP_CUDA_API void batch_norm_stats_cuda(DType dt, const void* x, int64_t N, int64_t C, int64_t S, double eps,
                                       void* mean, void* invstd, void* running_mean, void* running_var,
                                       double momentum, cudaStream_t st) EP_CUDA_BODY("batch_norm")
EP_CUDA_API void batch_norm_invstd_cuda(DType dt, const void* running_var, double eps, void* invstd, int64_t C,
                                        cudaStream_t st) EP_CUDA_BODY("batch_norm")
EP_CUDA_API void batch_norm_forward_cuda(DType dt, const void* x, const void* mean, const void* invstd,
                                         const void* weight, const void* bias, void* y, int64_t N, int64_t C,
                                         int64_t S, cudaStream_t st) EP_CUDA_BODY("batch_norm")
EP_CUDA_API void batch_norm_merge_stats_cuda(DType dt, double na, double nb, const void* mean_b, const void* var_b,
                                             double* mean, double* m2, int64_t C, cudaStream_t st)
    EP_CUDA_BODY("batch_norm_merge_stats_")
EP_CUDA_API void batch_norm_commit_stats_cuda(DType dt, double count, double momentum, const double* mean,
                                              const double* m2, void* running_mean, void* running_var, int64_t C,
                                              cudaStream_t st) EP_CUDA_BODY("batch_norm_commit_stats_")
EP_CUDA_API void batch_norm_backward_reduce_cuda(DType dt, const void* x, const void* dy, const void* mean,
                                                 const void* invstd, void* sum_dy, void* sum_dy_xhat, int64_t N,
                                                 int64_t C, int64_t S, cudaStream_t st)
    EP_CUDA_BODY("batch_norm backward")
EP_CUDA_API void batch_norm_backward_cuda(DType dt, const void* x, const void* dy, const void* mean,
                                          const void* invstd, const void* weight, const void* sum_dy,
                                          const void* sum_dy_xhat, void* dx, int64_t N, int64_t C, int64_t S,
                                          bool training, cudaStream_t st) EP_CUDA_BODY("batch_norm backward")

}  // namespace ep
