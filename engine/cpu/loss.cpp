// loss.cpp — CPU reference for cross entropy's fused forward and backward (OpenMP across rows, sums in double).
// Not a general NLL loss: no class weights, mean reduction only. The CUDA twin is engine/cuda/loss.cu.
#include <cmath>
#include <limits>

#include "engine/cpu/row_kernels.h"
#include "engine/ops/loss_kernels.h"

namespace ep {

void cross_entropy_forward_cpu(DType dt, DType it, const void* logits, const void* targets, int64_t n, int64_t k,
                               double eps, int64_t ignore_index, void* loss_rows, void* lse, void* out, void* count,
                               int64_t* bad_row) {
  dispatch_float(dt, "cross_entropy", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    dispatch_index(it, "cross_entropy", [&](auto itag_) {
      using I = EP_TYPE(itag_);
      const I* tp = typed<I>(targets);
      T* lp = typed<T>(loss_rows);
      // Range check first and serially, so the reported row is the first bad one.
      *bad_row = -1;
      for (int64_t i = 0; i < n; ++i) {
        const int64_t t = int64_t(tp[i]);
        if (t != ignore_index && (t < 0 || t >= k)) {
          *bad_row = i;
          return;
        }
      }
      for_each_row(n, k, [&](int64_t i) {
        const int64_t t = int64_t(tp[i]);
        if (t == ignore_index) {
          lp[i] = T(0);
          typed<T>(lse)[i] = T(0);
          return;
        }
        const T* xr = typed<T>(logits) + i * k;
        double m = -std::numeric_limits<double>::infinity(), s = 0, sd = 0;
        for (int64_t c = 0; c < k; ++c) m = double(xr[c]) > m ? double(xr[c]) : m;
        for (int64_t c = 0; c < k; ++c) {
          s += std::exp(double(xr[c]) - m);
          sd += m - double(xr[c]);
        }
        const double ls = std::log(s);
        typed<T>(lse)[i] = T(m + ls);
        // A term whose weight is 0 is left out, not multiplied: a -inf logit (a masked class) makes its distance
        // inf, and 0 * inf would turn PyTorch's finite loss into NaN.
        lp[i] = T(ls + (eps != 1 ? (1 - eps) * (m - double(xr[t])) : 0.0) + (eps != 0 ? eps / double(k) * sd : 0.0));
      });
      double total = 0;
      int64_t kept = 0;
      for (int64_t i = 0; i < n; ++i) {
        if (int64_t(tp[i]) == ignore_index) continue;
        total += double(lp[i]);
        ++kept;
      }
      typed<T>(out)[0] = T(kept == 0 ? std::numeric_limits<double>::quiet_NaN() : total / double(kept));
      typed<T>(count)[0] = T(kept);
    });
  });
}

void cross_entropy_backward_cpu(DType dt, DType it, const void* logits, const void* targets, const void* lse,
                                const void* dout, const void* count, void* dlogits, int64_t n, int64_t k, double eps,
                                int64_t ignore_index) {
  dispatch_float(dt, "cross_entropy backward", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    dispatch_index(it, "cross_entropy backward", [&](auto itag_) {
      using I = EP_TYPE(itag_);
      const double scale = double(typed<T>(dout)[0]) / double(typed<T>(count)[0]);
      const double smooth = eps / double(k);
      for_each_row(n, k, [&](int64_t i) {
        const int64_t t = int64_t(typed<I>(targets)[i]);
        T* dr = typed<T>(dlogits) + i * k;
        if (t == ignore_index) {
          for (int64_t c = 0; c < k; ++c) dr[c] = T(0);
          return;
        }
        const T* xr = typed<T>(logits) + i * k;
        const double l = double(typed<T>(lse)[i]);
        for (int64_t c = 0; c < k; ++c)
          dr[c] = T((std::exp(double(xr[c]) - l) - smooth - (c == t ? 1 - eps : 0.0)) * scale);
      });
    });
  });
}

}  // namespace ep
