// optim_kernels.h — the fused optimizer updates (SGD, AdamW; per tensor on the CPU, many tensors per launch on CUDA)
// and the sum of squares behind clip_grad_norm_, CPU and CUDA. The per-element math is written once below as __host__ __device__ functions.
// Not an optimizer: engine/optim.cpp owns the state and the step counts; these only touch raw buffers. `dt` is f32/f64.
#pragma once
#include <cmath>
#include <cstdint>

#include "engine/device.h"
#include "engine/dispatch.h"
#include "engine/dtype.h"
#include "engine/ops/scalar_ops.h"  // m_sqrt: the right float/double overload on host and device

namespace ep {

// Hyper-parameters of one SGD step, as doubles; the kernels cast them to the parameter's type once.
struct SgdHyper {
  double lr = 0, momentum = 0, dampening = 0, weight_decay = 0;
  bool nesterov = false;
  bool init_buf = false;  // first step with momentum: the buffer is set to d (PyTorch clones the gradient)
};

// Hyper-parameters of one AdamW step; the bias corrections depend on the parameter's own step count.
struct AdamWHyper {
  double decay = 1;      // 1 - lr * weight_decay (decoupled weight decay)
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double step_size = 0;  // lr / (1 - beta1^t)
  double bc2_sqrt = 1;   // sqrt(1 - beta2^t)
};

// SGD for one element (torch.optim.SGD, single-tensor path):
//   d = g + wd*p;  buf = first ? d : momentum*buf + (1-dampening)*d;  d = nesterov ? d + momentum*buf : buf;
//   p -= lr*d.  `buf` is null when momentum == 0.
template <class T>
EP_HD void sgd_update(T& p, T g, T* buf, T lr, T momentum, T one_minus_damp, T wd, bool nesterov, bool init_buf) {
  T d = g;
  if (wd != T(0)) d = d + wd * p;
  if (buf) {
    T b = init_buf ? d : momentum * *buf + one_minus_damp * d;
    *buf = b;
    d = nesterov ? d + momentum * b : b;
  }
  p = p - lr * d;
}

// AdamW for one element (torch.optim.AdamW, single-tensor path):
//   p *= 1 - lr*wd;  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2;  p -= step_size * m / (sqrt(v)/bc2_sqrt + eps).
template <class T>
EP_HD void adamw_update(T& p, T g, T& m, T& v, T decay, T b1, T one_minus_b1, T b2, T one_minus_b2, T step_size,
                        T bc2_sqrt, T eps) {
  p = p * decay;
  m = b1 * m + one_minus_b1 * g;
  v = b2 * v + one_minus_b2 * g * g;
  T denom = m_sqrt(v) / bc2_sqrt + eps;
  p = p - step_size * (m / denom);
}

// In place on p (and buf / m, v); g is read only. n may be 0.
void sgd_step_cpu(DType dt, void* p, const void* g, void* buf, int64_t n, const SgdHyper& h);
void adamw_step_cpu(DType dt, void* p, const void* g, void* m, void* v, int64_t n, const AdamWHyper& h);
// sum_i x_i^2, accumulated in double over fixed chunks (bit-reproducible whatever the thread count).
double sumsq_cpu(DType dt, const void* x, int64_t n);
// x *= s (clip_grad_norm_'s scaling; the factor is cast to the grad's type, as PyTorch's mul_).
void clip_scale_cpu(DType dt, void* x, int64_t n, double s);

// Every CUDA launcher here first makes the stream's device current: one optimizer may own parameters on several GPUs
// (pipeline stages) and a launch into another device's stream fails.
// Most block partials sumsq_cuda writes for one tensor; `partials` must hold this many doubles.
constexpr int64_t kSumsqMaxPartials = 1024;

// One parameter tensor of a multi-tensor update: its buffers, its size, and what is its own (SGD: whether its
// momentum buffer starts now; AdamW: the hyper-parameters that depend on its step count and decay exemption).
struct SgdTensor {
  void* p;
  const void* g;
  void* buf;  // null without momentum
  int64_t n;
  bool init_buf;
};
struct AdamWTensor {
  void* p;
  const void* g;
  void* m;
  void* v;
  int64_t n;
  AdamWHyper h;
};
// The CUDA twins of sgd_step_cpu / adamw_step_cpu applied to each tensor: many tensors of one dtype on one stream in
// a few launches (the tensor list travels in the kernel arguments, as PyTorch's foreach path does), instead of one
// small launch per parameter. The element math is the same, so are the bits.
EP_CUDA_API void sgd_step_multi_cuda(DType dt, const SgdTensor* tensors, int64_t count, const SgdHyper& h,
                                     cudaStream_t st) EP_CUDA_BODY("sgd")
EP_CUDA_API void adamw_step_multi_cuda(DType dt, const AdamWTensor* tensors, int64_t count, cudaStream_t st)
    EP_CUDA_BODY("adamw")
// Writes sum_i x_i^2 to the device double *out (accumulated in T within a block, then in double across blocks in a
// fixed order, so repeated calls agree bit for bit). `partials` is device scratch of kSumsqMaxPartials doubles.
EP_CUDA_API void sumsq_cuda(DType dt, const void* x, int64_t n, double* out, double* partials, cudaStream_t st)
    EP_CUDA_BODY("clip_grad_norm_")
EP_CUDA_API void clip_scale_cuda(DType dt, void* x, int64_t n, double s, cudaStream_t st)
    EP_CUDA_BODY("clip_grad_norm_")

}  // namespace ep
