// layer_norm.cpp — CPU reference for LayerNorm forward/backward (OpenMP across rows, sums in double). The weight and
// bias gradients sum fixed 64-row chunks, then the chunks in order: bit-identical for any thread count.
// Not blocked or vectorized by hand; the CUDA twin is engine/cuda/layer_norm.cu.
#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/cpu/row_kernels.h"
#include "engine/ops/layer_norm_kernels.h"

namespace ep {

constexpr int64_t kChunkRows = 64;  // rows per partial sum of dw/db

void layer_norm_forward_cpu(DType dt, const void* x, const void* w, const void* b, void* y, void* mean, void* rstd,
                            int64_t rows, int64_t d, double eps) {
  if (rows * d == 0) return;
  dispatch_float(dt, "layer_norm", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    const T* wp = typed<T>(w);
    const T* bp = typed<T>(b);
    for_each_row(rows, d, [&](int64_t r) {
      const T* xr = typed<T>(x) + r * d;
      T* yr = typed<T>(y) + r * d;
      double s = 0;
      for (int64_t c = 0; c < d; ++c) s += double(xr[c]);
      const double mu = s / double(d);
      double v = 0;
      for (int64_t c = 0; c < d; ++c) v += (double(xr[c]) - mu) * (double(xr[c]) - mu);
      const double rs = 1.0 / std::sqrt(v / double(d) + eps);
      typed<T>(mean)[r] = T(mu);
      typed<T>(rstd)[r] = T(rs);
      for (int64_t c = 0; c < d; ++c) {
        double o = (double(xr[c]) - mu) * rs;
        if (wp) o *= double(wp[c]);
        if (bp) o += double(bp[c]);
        yr[c] = T(o);
      }
    });
  });
}

void layer_norm_backward_cpu(DType dt, const void* x, const void* w, const void* mean, const void* rstd,
                             const void* dy, void* dx, void* dw, void* db, int64_t rows, int64_t d) {
  if (d == 0) return;
  dispatch_float(dt, "layer_norm backward", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    const T* wp = typed<T>(w);
    const T* mp = typed<T>(mean);
    const T* rp = typed<T>(rstd);
    if (dx)
      for_each_row(rows, d, [&](int64_t r) {
        const T* xr = typed<T>(x) + r * d;
        const T* gr = typed<T>(dy) + r * d;
        T* dr = typed<T>(dx) + r * d;
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
      });
    if (!dw && !db) return;
    const int64_t chunks = (rows + kChunkRows - 1) / kChunkRows;
    std::vector<double> pw(size_t(chunks * d), 0.0), pb(size_t(chunks * d), 0.0);
#pragma omp parallel for if (rows * d > kRowParallelMin)
    for (int64_t ch = 0; ch < chunks; ++ch) {
      double* pwr = pw.data() + ch * d;
      double* pbr = pb.data() + ch * d;
      const int64_t end = std::min(rows, (ch + 1) * kChunkRows);
      for (int64_t r = ch * kChunkRows; r < end; ++r) {
        const T* xr = typed<T>(x) + r * d;
        const T* gr = typed<T>(dy) + r * d;
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
      if (dw) typed<T>(dw)[c] = T(sw);
      if (db) typed<T>(db)[c] = T(sb);
    }
  });
}

}  // namespace ep
