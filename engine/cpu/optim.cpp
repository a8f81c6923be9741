// optim.cpp (cpu) — OpenMP loops over the shared SGD/AdamW element updates of optim_kernels.h, and the sum of squares
// for clip_grad_norm_. The reference for engine/cuda/optim.cu. Not the optimizer state (engine/optim.cpp).
#include <algorithm>

#include "engine/ops/optim_kernels.h"

namespace ep {

constexpr int64_t kParallelMin = 32768;  // below this, threads cost more than they save

void sgd_step_cpu(DType dt, void* p, const void* g, void* buf, int64_t n, const SgdHyper& h) {
  dispatch_float(dt, "sgd", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    T* pp = static_cast<T*>(p);
    const T* gp = static_cast<const T*>(g);
    T* bp = static_cast<T*>(buf);
    const T lr = T(h.lr), mom = T(h.momentum), omd = T(1.0 - h.dampening), wd = T(h.weight_decay);
    const bool nesterov = h.nesterov, init = h.init_buf;
#pragma omp parallel for if (n > kParallelMin)
    for (int64_t i = 0; i < n; ++i)
      sgd_update<T>(pp[i], gp[i], bp ? bp + i : nullptr, lr, mom, omd, wd, nesterov, init);
  });
}

void adamw_step_cpu(DType dt, void* p, const void* g, void* m, void* v, int64_t n, const AdamWHyper& h) {
  dispatch_float(dt, "adamw", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    T* pp = static_cast<T*>(p);
    const T* gp = static_cast<const T*>(g);
    T* mp = static_cast<T*>(m);
    T* vp = static_cast<T*>(v);
    const T decay = T(h.decay), b1 = T(h.beta1), omb1 = T(1.0 - h.beta1), b2 = T(h.beta2), omb2 = T(1.0 - h.beta2);
    const T step_size = T(h.step_size), bc2 = T(h.bc2_sqrt), eps = T(h.eps);
#pragma omp parallel for if (n > kParallelMin)
    for (int64_t i = 0; i < n; ++i)
      adamw_update<T>(pp[i], gp[i], mp[i], vp[i], decay, b1, omb1, b2, omb2, step_size, bc2, eps);
  });
}

double sumsq_cpu(DType dt, const void* x, int64_t n) {
  // A fixed number of contiguous chunks summed in order: the result does not depend on the thread count, unlike an
  // OpenMP reduction whose partials combine in arrival order.
  constexpr int64_t kChunks = 64;
  return dispatch_float(dt, "clip_grad_norm_", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    const T* xp = static_cast<const T*>(x);
    double part[kChunks] = {};
    const int64_t len = (n + kChunks - 1) / kChunks;
#pragma omp parallel for if (n > kParallelMin)
    for (int64_t c = 0; c < kChunks; ++c) {
      double acc = 0;
      const int64_t end = std::min(n, (c + 1) * len);
      for (int64_t i = c * len; i < end; ++i) acc += double(xp[i]) * double(xp[i]);
      part[c] = acc;
    }
    double total = 0;
    for (int64_t c = 0; c < kChunks; ++c) total += part[c];
    return total;
  });
}

void clip_scale_cpu(DType dt, void* x, int64_t n, double s) {
  dispatch_float(dt, "clip_grad_norm_", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    T* xp = static_cast<T*>(x);
    const T sv = T(s);
#pragma omp parallel for if (n > kParallelMin)
    for (int64_t i = 0; i < n; ++i) xp[i] *= sv;
  });
}

}  // namespace ep
