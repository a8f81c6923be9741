// batch_norm.cpp — CPU batch normalization kernels (OpenMP over channels or over [N, C] planes), the float64-capable
// reference for engine/cuda/batch_norm.cu. Not the autograd wrapper (engine/ops/batch_norm.cpp).
// N = batch, C = channels, S = spatial size per plane; x is viewed as [N, C, S]. Sums (in LaneSum lanes) and element
// math use double.
#include <cmath>

#include "engine/cpu/row_kernels.h"
#include "engine/ops/batch_norm_kernels.h"

namespace ep {

void batch_norm_stats_cpu(DType dt, const void* x, int64_t N, int64_t C, int64_t S, double eps, void* mean,
                          void* invstd, void* running_mean, void* running_var, double momentum) {
  dispatch_float(dt, "batch_norm", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    const T* xp = typed<T>(x);
    T* rm = typed<T>(running_mean);
    T* rv = typed<T>(running_var);
    const double n = double(N * S);
    for_each_row(C, N * S, [&](int64_t c) {
      LaneSum sum, sq;
      for (int64_t i = 0; i < N; ++i) {
        const T* p = xp + (i * C + c) * S;
        add_lanes(sum, [&](int64_t s) { return double(p[s]); }, S);
      }
      const double mu = sum.total() / n;
      for (int64_t i = 0; i < N; ++i) {  // centred second pass: no cancellation when |mean| >> std
        const T* p = xp + (i * C + c) * S;
        add_lanes(sq, [&](int64_t s) { return (double(p[s]) - mu) * (double(p[s]) - mu); }, S);
      }
      const double m2 = sq.total(), var = m2 / n;
      typed<T>(mean)[c] = T(mu);
      typed<T>(invstd)[c] = T(1.0 / std::sqrt(var + eps));
      if (rm) rm[c] = T((1.0 - momentum) * double(rm[c]) + momentum * mu);
      if (rv) rv[c] = T((1.0 - momentum) * double(rv[c]) + momentum * (n > 1 ? m2 / (n - 1) : var));
    });
  });
}

void batch_norm_invstd_cpu(DType dt, const void* running_var, double eps, void* invstd, int64_t C) {
  dispatch_float(dt, "batch_norm", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    for (int64_t c = 0; c < C; ++c) typed<T>(invstd)[c] = T(1.0 / std::sqrt(double(typed<T>(running_var)[c]) + eps));
  });
}

void batch_norm_forward_cpu(DType dt, const void* x, const void* mean, const void* invstd, const void* weight,
                            const void* bias, void* y, int64_t N, int64_t C, int64_t S) {
  dispatch_float(dt, "batch_norm", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    const T* wp = typed<T>(weight);
    const T* bp = typed<T>(bias);
    for_each_row(N * C, S, [&](int64_t plane) {
      const int64_t c = plane % C;
      // y = x * scale + shift, with scale/shift folded per channel in double.
      const double scale = double(typed<T>(invstd)[c]) * (wp ? double(wp[c]) : 1.0);
      const double shift = (bp ? double(bp[c]) : 0.0) - double(typed<T>(mean)[c]) * scale;
      const T* xs = typed<T>(x) + plane * S;
      T* ys = typed<T>(y) + plane * S;
      for (int64_t s = 0; s < S; ++s) ys[s] = T(double(xs[s]) * scale + shift);
    });
  });
}

void batch_norm_backward_reduce_cpu(DType dt, const void* x, const void* dy, const void* mean, const void* invstd,
                                    void* sum_dy, void* sum_dy_xhat, int64_t N, int64_t C, int64_t S) {
  dispatch_float(dt, "batch_norm backward", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    const T* xp = typed<T>(x);
    const T* gp = typed<T>(dy);
    for_each_row(C, N * S, [&](int64_t c) {
      const double mu = double(typed<T>(mean)[c]);
      LaneSum a, b;  // sum dy, sum dy * (x - mean)
      for (int64_t i = 0; i < N; ++i) {
        const T* g = gp + (i * C + c) * S;
        const T* xs = xp + (i * C + c) * S;
        add_lanes(a, [&](int64_t s) { return double(g[s]); }, b,
                  [&](int64_t s) { return double(g[s]) * (double(xs[s]) - mu); }, S);
      }
      typed<T>(sum_dy)[c] = T(a.total());
      typed<T>(sum_dy_xhat)[c] = T(b.total() * double(typed<T>(invstd)[c]));
    });
  });
}

void batch_norm_backward_cpu(DType dt, const void* x, const void* dy, const void* mean, const void* invstd,
                             const void* weight, const void* sum_dy, const void* sum_dy_xhat, void* dx, int64_t N,
                             int64_t C, int64_t S, bool training) {
  dispatch_float(dt, "batch_norm backward", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    const T* wp = typed<T>(weight);
    const double n = double(N * S);
    for_each_row(N * C, S, [&](int64_t plane) {
      const int64_t c = plane % C;
      const double inv = double(typed<T>(invstd)[c]);
      const double k = inv * (wp ? double(wp[c]) : 1.0);
      const T* xs = typed<T>(x) + plane * S;
      const T* gs = typed<T>(dy) + plane * S;
      T* dxs = typed<T>(dx) + plane * S;
      if (!training) {
        for (int64_t s = 0; s < S; ++s) dxs[s] = T(k * double(gs[s]));
        return;
      }
      const double mu = double(typed<T>(mean)[c]), mean_dy = double(typed<T>(sum_dy)[c]) / n,
                   mean_dy_xhat = double(typed<T>(sum_dy_xhat)[c]) / n;
      for (int64_t s = 0; s < S; ++s) {
        double xhat = (double(xs[s]) - mu) * inv;
        dxs[s] = T(k * (double(gs[s]) - mean_dy - xhat * mean_dy_xhat));
      }
    });
  });
}

}  // namespace ep
