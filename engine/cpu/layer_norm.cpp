// layer_norm.cpp — CPU reference for LayerNorm forward/backward (OpenMP across rows, sums in double). The weight and
// bias gradients sum fixed 64-row chunks, then the chunks in order: bit-identical for any thread count.
// Not blocked or vectorized by hand; the CUDA twin is engine/cuda/layer_norm.cu.
#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/ops/layer_norm_kernels.h"

namespace ep {

constexpr int64_t kParallelMin = 32768;  // below this many elements, threads cost more than they save
constexpr int64_t kChunkRows = 64;       // rows per partial sum of dw/db

void layer_norm_forward_cpu(DType dt, const void* x, const void* w, const void* b, void* y, void* mean, void* rstd,
                            int64_t rows, int64_t d, double eps) {
  if (rows * d == 0) return;
  dispatch_float(dt, "layer_norm", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    const T* xp = static_cast<const T*>(x);
    const T* wp = static_cast<const T*>(w);
    const T* bp = static_cast<const T*>(b);
    T* yp = static_cast<T*>(y);
#pragma omp parallel for if (rows * d > kParallelMin)
    for (int64_t r = 0; r < rows; ++r) {
      const T* xr = xp + r * d;
      T* yr = yp + r * d;
      double s = 0;
      for (int64_t c = 0; c < d; ++c) s += double(xr[c]);
      const double mu = s / double(d);
      double v = 0;
      for (int64_t c = 0; c < d; ++c) v += (double(xr[c]) - mu) * (double(xr[c]) - mu);
      const double rs = 1.0 / std::sqrt(v / double(d) + eps);
      static_cast<T*>(mean)[r] = T(mu);
      static_cast<T*>(rstd)[r] = T(rs);
      for (int64_t c = 0; c < d; ++c) {
        double o = (double(xr[c]) - mu) * rs;
        if (wp) o *= double(wp[c]);
        if (bp) o += double(bp[c]);
        yr[c] = T(o);
      }
    }
  });
}

void layer_norm_backward_cpu(DType dt, const void* x, const void* w, const void* mean, const void* rstd,
                             const void* dy, void* dx, void* dw, void* db, int64_t rows, int64_t d) {
  if (d == 0) return;
  dispatch_float(dt, "layer_norm backward", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    const T* xp = static_cast<const T*>(x);
    const T* wp = static_cast<const T*>(w);
    const T* mp = static_cast<const T*>(mean);
    const T* rp = static_cast<const T*>(rstd);
    const T* gp = static_cast<const T*>(dy);
    if (dx) {
      T* dp = static_cast<T*>(dx);
#pragma omp parallel for if (rows * d > kParallelMin)
      for (int64_t r = 0; r < rows; ++r) {
        const T* xr = xp + r * d;
        const T* gr = gp + r * d;
        T* dr = dp + r * d;
        const double mu = double(mp[r]), rs = double(rp[r]);
        double sg = 0, sgx = 0;
        for (int64_t c = 0; c < d; ++c) {
          const double g = double(gr[c]) * (wp ? double(wp[c]) : 1.0);
          sg += g;
          sgx += g * (double(xr[c]) - mu) * rs;
        }
        sg /= double(d);
        sgx /= double(d);
        for (int64_t c = 0; c < d; ++c) {
          const double g = double(gr[c]) * (wp ? double(wp[c]) : 1.0);
          dr[c] = T(rs * (g - sg - (double(xr[c]) - mu) * rs * sgx));
        }
      }
    }
    if (!dw && !db) return;
    const int64_t chunks = (rows + kChunkRows - 1) / kChunkRows;
    std::vector<double> pw(size_t(chunks * d), 0.0), pb(size_t(chunks * d), 0.0);
#pragma omp parallel for if (rows * d > kParallelMin)
    for (int64_t ch = 0; ch < chunks; ++ch) {
      double* pwr = pw.data() + ch * d;
      double* pbr = pb.data() + ch * d;
      const int64_t end = std::min(rows, (ch + 1) * kChunkRows);
      for (int64_t r = ch * kChunkRows; r < end; ++r) {
        const T* xr = xp + r * d;
        const T* gr = gp + r * d;
        const double mu = double(mp[r]), rs = double(rp[r]);
        for (int64_t c = 0; c < d; ++c) {
          pwr[c] += double(gr[c]) * (double(xr[c]) - mu) * rs;
          pbr[c] += double(gr[c]);
        }
      }
    }
    for (int64_t c = 0; c < d; ++c) {
      double sw = 0, sb = 0;
      for (int64_t ch = 0; ch < chunks; ++ch) {
        sw += pw[size_t(ch * d + c)];
        sb += pb[size_t(ch * d + c)];
      }
      if (dw) static_cast<T*>(dw)[c] = T(sw);
      if (db) static_cast<T*>(db)[c] = T(sb);
    }
  });
}

}  // namespace ep
