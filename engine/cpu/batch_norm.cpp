// batch_norm.cpp — CPU batch normalization kernels (OpenMP over channels or over [N, C] planes), the float64-capable
// reference for engine/cuda/batch_norm.cu. Not the autograd wrapper (engine/ops/batch_norm.cpp).
// N = batch, C = channels, S = spatial size per plane; x is viewed as [N, C, S]. Sums and element math use double.
#include <cmath>

#include "engine/ops/batch_norm_kernels.h"

namespace ep {

constexpr int64_t kParallelMin = 32768;  // below this, threads cost more than they save

void batch_norm_stats_cpu(DType dt, const void* x, int64_t N, int64_t C, int64_t S, double eps, void* mean,
                          void* invstd, void* running_mean, void* running_var, double momentum) {
  dispatch_float(dt, "batch_norm", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    const T* xp = static_cast<const T*>(x);
    T* mp = static_cast<T*>(mean);
    T* ip = static_cast<T*>(invstd);
    T* rm = static_cast<T*>(running_mean);
    T* rv = static_cast<T*>(running_var);
    const double n = double(N * S);
#pragma omp parallel for if (N * C * S > kParallelMin)
    for (int64_t c = 0; c < C; ++c) {
      double sum = 0;
      for (int64_t i = 0; i < N; ++i) {
        const T* p = xp + (i * C + c) * S;
        for (int64_t s = 0; s < S; ++s) sum += double(p[s]);
      }
      const double mu = sum / n;
      double sq = 0;  // centred second pass: no cancellation when |mean| >> std
      for (int64_t i = 0; i < N; ++i) {
        const T* p = xp + (i * C + c) * S;
        for (int64_t s = 0; s < S; ++s) {
          double d = double(p[s]) - mu;
          sq += d * d;
        }
      }
      const double var = sq / n;
      mp[c] = T(mu);
      ip[c] = T(1.0 / std::sqrt(var + eps));
      if (rm) rm[c] = T((1.0 - momentum) * double(rm[c]) + momentum * mu);
      if (rv) rv[c] = T((1.0 - momentum) * double(rv[c]) + momentum * (n > 1 ? sq / (n - 1) : var));
    }
  });
}

void batch_norm_invstd_cpu(DType dt, const void* running_var, double eps, void* invstd, int64_t C) {
  dispatch_float(dt, "batch_norm", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    const T* rv = static_cast<const T*>(running_var);
    T* ip = static_cast<T*>(invstd);
    for (int64_t c = 0; c < C; ++c) ip[c] = T(1.0 / std::sqrt(double(rv[c]) + eps));
  });
}

void batch_norm_forward_cpu(DType dt, const void* x, const void* mean, const void* invstd, const void* weight,
                            const void* bias, void* y, int64_t N, int64_t C, int64_t S) {
  dispatch_float(dt, "batch_norm", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    const T* xp = static_cast<const T*>(x);
    const T* mp = static_cast<const T*>(mean);
    const T* ip = static_cast<const T*>(invstd);
    const T* wp = static_cast<const T*>(weight);
    const T* bp = static_cast<const T*>(bias);
    T* yp = static_cast<T*>(y);
#pragma omp parallel for if (N * C * S > kParallelMin)
    for (int64_t plane = 0; plane < N * C; ++plane) {
      const int64_t c = plane % C;
      // y = x * scale + shift, with scale/shift folded per channel in double.
      const double scale = double(ip[c]) * (wp ? double(wp[c]) : 1.0);
      const double shift = (bp ? double(bp[c]) : 0.0) - double(mp[c]) * scale;
      const T* xs = xp + plane * S;
      T* ys = yp + plane * S;
      for (int64_t s = 0; s < S; ++s) ys[s] = T(double(xs[s]) * scale + shift);
    }
  });
}

void batch_norm_backward_reduce_cpu(DType dt, const void* x, const void* dy, const void* mean, const void* invstd,
                                    void* sum_dy, void* sum_dy_xhat, int64_t N, int64_t C, int64_t S) {
  dispatch_float(dt, "batch_norm backward", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    const T* xp = static_cast<const T*>(x);
    const T* gp = static_cast<const T*>(dy);
    const T* mp = static_cast<const T*>(mean);
    const T* ip = static_cast<const T*>(invstd);
    T* sd = static_cast<T*>(sum_dy);
    T* sdx = static_cast<T*>(sum_dy_xhat);
#pragma omp parallel for if (N * C * S > kParallelMin)
    for (int64_t c = 0; c < C; ++c) {
      const double mu = double(mp[c]);
      double a = 0, b = 0;  // sum dy, sum dy * (x - mean)
      for (int64_t i = 0; i < N; ++i) {
        const int64_t off = (i * C + c) * S;
        for (int64_t s = 0; s < S; ++s) {
          double g = double(gp[off + s]);
          a += g;
          b += g * (double(xp[off + s]) - mu);
        }
      }
      sd[c] = T(a);
      sdx[c] = T(b * double(ip[c]));
    }
  });
}

void batch_norm_backward_cpu(DType dt, const void* x, const void* dy, const void* mean, const void* invstd,
                             const void* weight, const void* sum_dy, const void* sum_dy_xhat, void* dx, int64_t N,
                             int64_t C, int64_t S, bool training) {
  dispatch_float(dt, "batch_norm backward", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    const T* xp = static_cast<const T*>(x);
    const T* gp = static_cast<const T*>(dy);
    const T* mp = static_cast<const T*>(mean);
    const T* ip = static_cast<const T*>(invstd);
    const T* wp = static_cast<const T*>(weight);
    const T* sd = static_cast<const T*>(sum_dy);
    const T* sdx = static_cast<const T*>(sum_dy_xhat);
    T* dxp = static_cast<T*>(dx);
    const double n = double(N * S);
#pragma omp parallel for if (N * C * S > kParallelMin)
    for (int64_t plane = 0; plane < N * C; ++plane) {
      const int64_t c = plane % C;
      const double inv = double(ip[c]);
      const double k = inv * (wp ? double(wp[c]) : 1.0);
      const int64_t off = plane * S;
      if (!training) {
        for (int64_t s = 0; s < S; ++s) dxp[off + s] = T(k * double(gp[off + s]));
        continue;
      }
      const double mu = double(mp[c]), mean_dy = double(sd[c]) / n, mean_dy_xhat = double(sdx[c]) / n;
      for (int64_t s = 0; s < S; ++s) {
        double xhat = (double(xp[off + s]) - mu) * inv;
        dxp[off + s] = T(k * (double(gp[off + s]) - mean_dy - xhat * mean_dy_xhat));
      }
    }
  });
}

}  // namespace ep
