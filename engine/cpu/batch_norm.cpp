// batch_norm.cpp — CPU batch normalization kernels, the float64-capable reference for engine/cuda/batch_norm.cu.
// Not the autograd wrapper (engine/ops/batch_norm.cpp).
// N = batch, C = channels, S = spatial size per plane; x is viewed as [N, C, S]. Sums (in LaneSum lanes) and element
// math use double. Training's passes run channel by channel (statistics then normalizing; sums then dx) so a channel's
// N planes are read from memory once and from cache after; eval's element-wise passes go plane by plane.
// A fused activation (BnAct, batch_norm_relu6) is a pass of its own: after the normalizing in the forward, and in the
// backward over dy first, into a per-thread buffer; the BatchNorm routines between are the plain op's, never inlined.
#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "engine/cpu/row_kernels.h"
#include "engine/ops/batch_norm_kernels.h"

namespace ep {
namespace {

// The N planes of channel c: plane(i) is sample i's [S] values.
template <class T> struct Channel {
  const T* base;
  int64_t C, S, c;
  const T* plane(int64_t i) const { return base + (i * C + c) * S; }
  // How many planes ahead to ask for: about 4 KiB. A channel's planes are C * S values apart, each a short run that
  // the hardware prefetchers do not follow (they keep to a page and need a stride history), so each plane began with
  // a wait for memory, which at 4x4 or 8x8 is most of its time.
  int64_t ahead() const { return std::clamp<int64_t>(4096 / std::max<int64_t>(1, S * int64_t(sizeof(T))), 1, 16); }
  // Asks for plane i's cache lines (no effect on any value; nothing past plane N - 1 is touched).
  void prefetch(int64_t i, int64_t N) const {
    if (i >= N) return;
    const char* p = reinterpret_cast<const char*>(plane(i));
    for (int64_t b = 0; b < S * int64_t(sizeof(T)); b += 64) __builtin_prefetch(p + b);
  }
  void prefetch_first(int64_t N) const {
    for (int64_t i = 0; i < ahead(); ++i) prefetch(i, N);
  }
};

// Mean and centred sum of squares of channel c, in two passes: no cancellation when |mean| >> std.
template <class T> void moments(const Channel<T>& x, int64_t N, double& mean, double& m2) {
  LaneSum sum, sq;
  const int64_t ahead = x.ahead();
  x.prefetch_first(N);
  for (int64_t i = 0; i < N; ++i) {
    x.prefetch(i + ahead, N);
    const T* p = x.plane(i);
    add_lanes(sum, [&](int64_t s) { return double(p[s]); }, x.S);
  }
  mean = sum.total() / double(N * x.S);
  for (int64_t i = 0; i < N; ++i) {
    const T* p = x.plane(i);
    add_lanes(sq, [&](int64_t s) { return (double(p[s]) - mean) * (double(p[s]) - mean); }, x.S);
  }
  m2 = sq.total();
}

// mean[c], invstd[c] and the running statistics' update from channel c's moments (variance unbiased for the running
// value, as PyTorch).
template <class T>
void commit_stats(int64_t c, double n, double mu, double m2, double eps, double momentum, T* mean, T* invstd, T* rm,
                  T* rv) {
  const double var = m2 / n;
  mean[c] = T(mu);
  invstd[c] = T(1.0 / std::sqrt(var + eps));
  if (rm) rm[c] = T((1.0 - momentum) * double(rm[c]) + momentum * mu);
  if (rv) rv[c] = T((1.0 - momentum) * double(rv[c]) + momentum * (n > 1 ? m2 / (n - 1) : var));
}

// Channel c's y = x * scale + shift, with scale = invstd * weight and shift = bias - mean * scale folded in double.
struct Affine {
  double scale, shift;
};
template <class T> Affine channel_affine(int64_t c, const T* mean, const T* invstd, const T* w, const T* b) {
  const double scale = double(invstd[c]) * (w ? double(w[c]) : 1.0);
  return {scale, (b ? double(b[c]) : 0.0) - double(mean[c]) * scale};
}

// f(std::integral_constant<BnAct, act>{}): the activation as a compile-time constant, so each loop is specialized.
template <class F> void with_act(BnAct act, F&& f) {
  switch (act) {
    case BnAct::none: return f(std::integral_constant<BnAct, BnAct::none>{});
    case BnAct::relu: return f(std::integral_constant<BnAct, BnAct::relu>{});
    case BnAct::relu6: return f(std::integral_constant<BnAct, BnAct::relu6>{});
  }
}

// The fused ops compute exactly what the unfused ones do by running the same code: the normalizing and BatchNorm's
// backward are the activation-free routines below, never inlined, so that one machine code serves both (a build with
// fused multiply-adds may contract a copy inlined elsewhere differently); the activation is a pass of its own over
// values still in cache, before (forward) or after (backward) them.
template <class T> __attribute__((noinline)) void normalize_plane(const T* xs, T* ys, int64_t S, const Affine& a) {
  for (int64_t s = 0; s < S; ++s) ys[s] = bn_normalized(xs[s], a.scale, a.shift);
}
template <BnAct A, class T> void activate_plane(T* ys, int64_t S) {
  if constexpr (A != BnAct::none)
    for (int64_t s = 0; s < S; ++s) ys[s] = bn_activate(A, ys[s]);
}

// dy * the fused activation's gradient, taken at its output z (the same mask as at its input, see BnAct), as
// unary_backward computes it, for n values; a loop of its own so that it vectorizes (compares and a blend).
template <BnAct A, class T> void act_dy(const T* dy, const T* z, int64_t n, T* out) {
  for (int64_t s = 0; s < n; ++s) {
    const T g = bn_act_grad(A, z[s]);
    out[s] = dy[s] * g;
  }
}

// Channel c's N planes of dy with the activation's gradient applied, into a per-thread buffer (plane i at i * S)
// that stays in cache for the passes that read it; dy itself without an activation.
template <class T> Channel<T> masked_channel(BnAct act, const Channel<T>& dy, const T* act_out, int64_t N) {
  if (act == BnAct::none) return dy;
  thread_local std::vector<T> masked;
  masked.resize(size_t(N * dy.S));
  const Channel<T> z{act_out, dy.C, dy.S, dy.c};
  with_act(act, [&](auto act_) {
    if constexpr (act_.value != BnAct::none) {
      const int64_t ahead = z.ahead();
      dy.prefetch_first(N), z.prefetch_first(N);
      for (int64_t i = 0; i < N; ++i) {
        dy.prefetch(i + ahead, N), z.prefetch(i + ahead, N);
        act_dy<act_.value>(dy.plane(i), z.plane(i), dy.S, masked.data() + i * dy.S);
      }
    }
  });
  return Channel<T>{masked.data(), 1, dy.S, 0};
}

// Channel c's sum of dy and sum of dy * (x - mean).
template <class T>
__attribute__((noinline)) void backward_sums(const Channel<T>& x, const Channel<T>& dy, int64_t N, double mu,
                                             double& sum_dy, double& sum_dy_xmu) {
  LaneSum a, b;
  const int64_t ahead = x.ahead();
  x.prefetch_first(N);
  dy.prefetch_first(N);
  for (int64_t i = 0; i < N; ++i) {
    x.prefetch(i + ahead, N);
    dy.prefetch(i + ahead, N);
    const T* g = dy.plane(i);
    const T* xs = x.plane(i);
    add_lanes(a, [&](int64_t s) { return double(g[s]); }, b,
              [&](int64_t s) { return double(g[s]) * (double(xs[s]) - mu); }, x.S);
  }
  sum_dy = a.total();
  sum_dy_xmu = b.total();
}

// dx over one plane; see batch_norm_backward_cpu.
template <class T>
__attribute__((noinline)) void backward_plane(const T* xs, const T* gs, T* dxs, int64_t S, int64_t c, double n,
                                              const T* mean, const T* invstd, const T* w, const T* sum_dy,
                                              const T* sum_dy_xhat, bool training) {
  const double inv = double(invstd[c]);
  const double k = inv * (w ? double(w[c]) : 1.0);
  if (!training) {
    for (int64_t s = 0; s < S; ++s) dxs[s] = T(k * double(gs[s]));
    return;
  }
  const double mu = double(mean[c]), mean_dy = double(sum_dy[c]) / n, mean_dy_xhat = double(sum_dy_xhat[c]) / n;
  for (int64_t s = 0; s < S; ++s) {
    const double xhat = (double(xs[s]) - mu) * inv;
    dxs[s] = T(k * (double(gs[s]) - mean_dy - xhat * mean_dy_xhat));
  }
}

}  // namespace

void batch_norm_train_forward_cpu(DType dt, const void* x, const void* weight, const void* bias, void* y, int64_t N,
                                  int64_t C, int64_t S, double eps, void* mean, void* invstd, void* running_mean,
                                  void* running_var, double momentum, BnAct act) {
  dispatch_float(dt, "batch_norm", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    with_act(act, [&](auto act_) {
      for_each_row(C, N * S, [&](int64_t c) {
        const Channel<T> xc{typed<T>(x), C, S, c};
        double mu, m2;
        moments(xc, N, mu, m2);
        commit_stats(c, double(N * S), mu, m2, eps, momentum, typed<T>(mean), typed<T>(invstd),
                     typed<T>(running_mean), typed<T>(running_var));
        const Affine af = channel_affine(c, typed<T>(mean), typed<T>(invstd), typed<T>(weight), typed<T>(bias));
        for (int64_t i = 0; i < N; ++i) {
          T* ys = typed<T>(y) + (i * C + c) * S;
          normalize_plane(xc.plane(i), ys, S, af);
          activate_plane<act_.value>(ys, S);
        }
      });
    });
  });
}

void batch_norm_invstd_cpu(DType dt, const void* running_var, double eps, void* invstd, int64_t C) {
  dispatch_float(dt, "batch_norm", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    for (int64_t c = 0; c < C; ++c) typed<T>(invstd)[c] = T(1.0 / std::sqrt(double(typed<T>(running_var)[c]) + eps));
  });
}

void batch_norm_merge_stats_cpu(DType dt, double na, double nb, const void* mean_b, const void* var_b, double* mean,
                                double* m2, int64_t C) {
  dispatch_float(dt, "batch_norm_merge_stats_", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    for (int64_t c = 0; c < C; ++c)
      bn_merge_channel(na, nb, double(typed<T>(mean_b)[c]), double(typed<T>(var_b)[c]), mean[c], m2[c]);
  });
}

void batch_norm_commit_stats_cpu(DType dt, double count, double momentum, const double* mean, const double* m2,
                                 void* running_mean, void* running_var, int64_t C) {
  dispatch_float(dt, "batch_norm_commit_stats_", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    for (int64_t c = 0; c < C; ++c)
      bn_commit_channel(count, momentum, mean[c], m2[c], typed<T>(running_mean)[c], typed<T>(running_var)[c]);
  });
}

void batch_norm_forward_cpu(DType dt, const void* x, const void* mean, const void* invstd, const void* weight,
                            const void* bias, void* y, int64_t N, int64_t C, int64_t S, BnAct act) {
  dispatch_float(dt, "batch_norm", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    with_act(act, [&](auto act_) {
      for_each_row(N * C, S, [&](int64_t plane) {
        const Affine af =
            channel_affine(plane % C, typed<T>(mean), typed<T>(invstd), typed<T>(weight), typed<T>(bias));
        normalize_plane(typed<T>(x) + plane * S, typed<T>(y) + plane * S, S, af);
        activate_plane<act_.value>(typed<T>(y) + plane * S, S);
      });
    });
  });
}

void batch_norm_backward_reduce_cpu(DType dt, const void* x, const void* dy, const void* mean, const void* invstd,
                                    void* sum_dy, void* sum_dy_xhat, int64_t N, int64_t C, int64_t S, BnAct act,
                                    const void* act_out) {
  dispatch_float(dt, "batch_norm backward", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    for_each_row(C, N * S, [&](int64_t c) {
      const Channel<T> g = masked_channel(act, Channel<T>{typed<T>(dy), C, S, c}, typed<T>(act_out), N);
      double a, b;
      backward_sums(Channel<T>{typed<T>(x), C, S, c}, g, N, double(typed<T>(mean)[c]), a, b);
      typed<T>(sum_dy)[c] = T(a);
      typed<T>(sum_dy_xhat)[c] = T(b * double(typed<T>(invstd)[c]));
    });
  });
}

void batch_norm_backward_cpu(DType dt, const void* x, const void* dy, const void* mean, const void* invstd,
                             const void* weight, const void* sum_dy, const void* sum_dy_xhat, void* dx, int64_t N,
                             int64_t C, int64_t S, bool training, BnAct act, const void* act_out) {
  dispatch_float(dt, "batch_norm backward", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    for_each_row(N * C, S, [&](int64_t plane) {
      // One plane as a channel of one sample, so masked_channel's buffer holds just it.
      const Channel<T> g = masked_channel(act, Channel<T>{typed<T>(dy) + plane * S, 1, S, 0},
                                          act_out ? typed<T>(act_out) + plane * S : nullptr, 1);
      backward_plane(typed<T>(x) + plane * S, g.plane(0), typed<T>(dx) + plane * S, S, plane % C, double(N * S),
                     typed<T>(mean), typed<T>(invstd), typed<T>(weight), typed<T>(sum_dy), typed<T>(sum_dy_xhat),
                     training);
    });
  });
}

void batch_norm_train_backward_cpu(DType dt, const void* x, const void* dy, const void* mean, const void* invstd,
                                   const void* weight, void* sum_dy, void* sum_dy_xhat, void* dx, int64_t N,
                                   int64_t C, int64_t S, BnAct act, const void* act_out) {
  dispatch_float(dt, "batch_norm backward", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    for_each_row(C, N * S, [&](int64_t c) {
      // With an activation, the channel's masked dy is made once and stays in cache for both passes (the unfused
      // ops wrote it to memory as a whole tensor and read it back twice).
      const Channel<T> xc{typed<T>(x), C, S, c};
      const Channel<T> g = masked_channel(act, Channel<T>{typed<T>(dy), C, S, c}, typed<T>(act_out), N);
      double a, b;
      backward_sums(xc, g, N, double(typed<T>(mean)[c]), a, b);
      typed<T>(sum_dy)[c] = T(a);
      typed<T>(sum_dy_xhat)[c] = T(b * double(typed<T>(invstd)[c]));
      for (int64_t i = 0; i < N; ++i)
        backward_plane(xc.plane(i), g.plane(i), typed<T>(dx) + (i * C + c) * S, S, c, double(N * S), typed<T>(mean),
                       typed<T>(invstd), typed<T>(weight), typed<T>(sum_dy), typed<T>(sum_dy_xhat), true);
    });
  });
}

}  // namespace ep
