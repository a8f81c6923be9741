// conv2d.cpp (cpu) — the reference convolution: im2col + OpenBLAS GEMM per sample and group (samples spread over
// threads, each with its own column buffer); depthwise ones are in depthwise_conv2d.cpp. Not Winograd/FFT, no NHWC.
// The same bits for any thread count: every output element is owned by one thread, and the weight gradient sums
// fixed runs of samples in a fixed order (weight_grad_runs).
#include <cblas.h>

#include <algorithm>
#include <vector>

#include "engine/cpu/conv2d_taps.h"
#include "engine/cpu/depthwise_conv2d.h"
#include "engine/cpu/openmp.h"
#include "engine/ops/conv2d_kernels.h"

namespace ep {
namespace {

using namespace conv2d_taps;

// Row-major GEMM: C[M,N] = alpha * op(A) op(B) + beta * C. Sizes were checked to fit an int in engine/ops/conv2d.cpp.
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(M), int(N), int(K),
              alpha, A, int(lda), B, int(ldb), beta, C, int(ldc));
}
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
          const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(M), int(N), int(K),
              alpha, A, int(lda), B, int(ldb), beta, C, int(ldc));
}

// col[(c*kh + i)*kw + j, oh*OW + ow] = x[c, oh*sh - ph + i*dh, ow*sw - pw + j*dw] (0 outside), c < cin.
// `par`: spread the rows over OpenMP threads (when the caller is not already one thread of many).
template <class T>
void im2col(const Conv2dGeom& g, int64_t cin, const T* x, T* col, bool par) {
  const int64_t ohw = g.OH * g.OW;
#pragma omp parallel for collapse(3) schedule(static) if (par && cin * g.kh * g.kw * ohw > 16384)
  for (int64_t c = 0; c < cin; ++c)
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j) {
        T* row = col + ((c * g.kh + i) * g.kw + j) * ohw;
        const int64_t ih0 = i * g.dh - g.ph, iw0 = j * g.dw - g.pw;
        int64_t lo, hi;
        valid_range(iw0, g.sw, g.W, g.OW, lo, hi);
        for (int64_t oh = 0; oh < g.OH; ++oh) {
          T* r = row + oh * g.OW;
          const int64_t ih = oh * g.sh + ih0;
          if (ih < 0 || ih >= g.H) {
            std::fill(r, r + g.OW, T(0));
            continue;
          }
          const T* xr = x + (c * g.H + ih) * g.W + iw0;
          std::fill(r, r + lo, T(0));
#pragma omp simd
          for (int64_t ow = lo; ow < hi; ++ow) r[ow] = xr[ow * g.sw];
          std::fill(r + hi, r + g.OW, T(0));
        }
      }
}

// The adjoint of im2col: x[c, ...] += col[...] (x must be zeroed first). Taps of one channel overlap in x, so
// only channels are spread over threads.
template <class T>
void col2im(const Conv2dGeom& g, int64_t cin, const T* col, T* x, bool par) {
  const int64_t ohw = g.OH * g.OW;
#pragma omp parallel for schedule(static) if (par && cin * g.kh * g.kw * ohw > 16384)
  for (int64_t c = 0; c < cin; ++c)
    for_each_tap(g, [&](const Tap& t) {
      const T* row = col + (c * g.kh * g.kw + t.index) * ohw;
      T* xc = x + c * g.H * g.W;
      for (int64_t oh = t.olo; oh < t.ohi; ++oh) {
        const T* r = row + oh * g.OW;
        T* xr = xc + t.in_offset(g, oh);
#pragma omp simd
        for (int64_t ow = t.lo; ow < t.hi; ++ow) xr[ow * g.sw] += r[ow];
      }
    });
}

// ---- general path: im2col + GEMM ----------------------------------------------------------------------------------
// Per sample n and group: y[n, grp] [Kg, OH*OW] = w[grp] [Kg, Cg*kh*kw] @ col [Cg*kh*kw, OH*OW].
// Samples are spread over OpenMP threads, each with its own column buffer, when the BLAS does not thread itself
// (sequential or OpenMP OpenBLAS, which runs single-threaded inside a parallel region). Debian's default pthread
// OpenBLAS does: calling it from every OpenMP thread at once oversubscribes the cores (the MobileNetV2 stem's backward
// took 500 ms instead of 40 ms on 2 cores), so then the samples run in order, each GEMM uses OpenBLAS's threads and
// only im2col/col2im use OpenMP.
bool per_sample_threads(const Conv2dGeom& g) {
  static const bool blas_threads_itself = openblas_get_parallel() == 1 && openblas_get_num_threads() > 1;
  return g.N > 1 && !blas_threads_itself && omp_get_max_threads() > 1;
}

template <class T>
void gemm_forward(const Conv2dGeom& g, const T* x, const T* w, const T* b, T* y) {
  const int64_t cg = g.cin_per_group(), kg = g.cout_per_group(), ckk = cg * g.kh * g.kw, ohw = g.OH * g.OW;
  const bool direct = g.pointwise(), by_sample = per_sample_threads(g);
#pragma omp parallel if (by_sample)
  {
    std::vector<T> col(direct ? 0 : size_t(ckk * ohw));
#pragma omp for schedule(static)
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t grp = 0; grp < g.groups; ++grp) {
        const T* xg = x + (n * g.C + grp * cg) * g.H * g.W;
        const T* cols = xg;
        if (!direct) {
          im2col(g, cg, xg, col.data(), !by_sample);
          cols = col.data();
        }
        T* yg = y + (n * g.K + grp * kg) * ohw;
        gemm(false, false, kg, ohw, ckk, T(1), w + grp * kg * ckk, ckk, cols, ohw, T(0), yg, ohw);
        if (b)
          for (int64_t k = 0; k < kg; ++k) {
            const T bv = b[grp * kg + k];
            T* yr = yg + k * ohw;
            for (int64_t p = 0; p < ohw; ++p) yr[p] += bv;
          }
      }
  }
}

// How the weight gradient groups the samples: into runs of consecutive samples, each summed in sample order, and the
// runs then added in run order. The grouping depends on the shapes only, never on the thread count, so the bits are
// the same on any machine (a run resumed elsewhere, a pipeline stage in a process of its own). Up to 16 runs, for
// parallelism; fewer where a sample's GEMM is small against the weight, so that adding the runs' partials (memory
// bound, in order) stays a few percent of the products (about 2 * OH*OW flops per weight element and sample).
int64_t weight_grad_runs(const Conv2dGeom& g) {
  constexpr int64_t kMaxRuns = 16, kFlopsPerAdd = 160;
  const int64_t min_samples = std::max<int64_t>(1, (kFlopsPerAdd + 2 * g.OH * g.OW - 1) / (2 * g.OH * g.OW));
  return std::clamp<int64_t>(g.N / min_samples, 1, std::min(g.N, kMaxRuns));
}

// dx[n, grp] = col2im(w[grp]^T @ dy[n, grp]); dw[grp] = sum over runs (sum over n in the run of
// dy[n, grp] @ col(x[n, grp])^T). The runs spread over the threads; each sums into its thread's buffer, which is
// added into dw under `ordered`, in run order. A sample's two products run back to back, while its dy is in cache.
template <class T>
void gemm_backward(const Conv2dGeom& g, const T* x, const T* w, const T* dy, T* dx, T* dw) {
  const int64_t cg = g.cin_per_group(), kg = g.cout_per_group(), ckk = cg * g.kh * g.kw, ohw = g.OH * g.OW;
  const int64_t wsize = g.K * ckk, runs = g.N > 0 ? weight_grad_runs(g) : 0;
  const bool direct = g.pointwise();
  const int nthreads =
      per_sample_threads(g) ? int(std::min<int64_t>(omp_get_max_threads(), std::max<int64_t>(runs, 1))) : 1;
  const bool by_sample = nthreads > 1;  // else im2col/col2im use the threads
  std::vector<T> dw_part(dw ? size_t(nthreads) * size_t(wsize) : 0);
  if (dw) std::fill(dw, dw + wsize, T(0));
#pragma omp parallel num_threads(nthreads) if (by_sample)
  {
    std::vector<T> col(direct ? 0 : size_t(ckk * ohw));
    T* part = dw ? dw_part.data() + size_t(omp_get_thread_num()) * size_t(wsize) : nullptr;
#pragma omp for ordered schedule(static, 1)
    for (int64_t run = 0; run < runs; ++run) {
      const int64_t first = run * g.N / runs, end = (run + 1) * g.N / runs;
      for (int64_t n = first; n < end; ++n)
        for (int64_t grp = 0; grp < g.groups; ++grp) {
          const T* dyg = dy + (n * g.K + grp * kg) * ohw;
          if (dw) {
            const T* xg = x + (n * g.C + grp * cg) * g.H * g.W;
            const T* cols = xg;
            if (!direct) {
              im2col(g, cg, xg, col.data(), !by_sample);
              cols = col.data();
            }
            gemm(false, true, kg, ckk, ohw, T(1), dyg, ohw, cols, ohw, T(n == first ? 0 : 1), part + grp * kg * ckk,
                 ckk);
          }
          if (dx) {
            const T* wg = w + grp * kg * ckk;
            T* dxg = dx + (n * g.C + grp * cg) * g.H * g.W;
            if (direct) {
              gemm(true, false, ckk, ohw, kg, T(1), wg, ckk, dyg, ohw, T(0), dxg, ohw);
            } else {
              gemm(true, false, ckk, ohw, kg, T(1), wg, ckk, dyg, ohw, T(0), col.data(), ohw);
              std::fill(dxg, dxg + cg * g.H * g.W, T(0));
              col2im(g, cg, col.data(), dxg, !by_sample);
            }
          }
        }
#pragma omp ordered
      if (dw)
        for (int64_t i = 0; i < wsize; ++i) dw[i] += part[i];
    }
  }
}

// db[k] = sum over n, oh, ow of dy[n, k, oh, ow], accumulated in double.
template <class T>
void bias_backward(const Conv2dGeom& g, const T* dy, T* db) {
  const int64_t ohw = g.OH * g.OW;
#pragma omp parallel for schedule(static) if (g.N * g.K * ohw > 32768)
  for (int64_t k = 0; k < g.K; ++k) {
    double acc = 0;
    for (int64_t n = 0; n < g.N; ++n) {
      const T* p = dy + (n * g.K + k) * ohw;
      for (int64_t i = 0; i < ohw; ++i) acc += double(p[i]);
    }
    db[k] = T(acc);
  }
}

}  // namespace

void conv2d_forward_cpu(DType dt, const Conv2dGeom& g, const void* x, const void* w, const void* b, void* y) {
  dispatch_float(dt, "conv2d", [&](auto tag) {
    using T = EP_TYPE(tag);
    const T *xp = static_cast<const T*>(x), *wp = static_cast<const T*>(w), *bp = static_cast<const T*>(b);
    T* yp = static_cast<T*>(y);
    if (g.depthwise())
      depthwise_forward(g, xp, wp, bp, yp);
    else
      gemm_forward(g, xp, wp, bp, yp);
  });
}

void conv2d_backward_cpu(DType dt, const Conv2dGeom& g, const void* x, const void* w, const void* dy, void* dx,
                         void* dw, void* db) {
  dispatch_float(dt, "conv2d backward", [&](auto tag) {
    using T = EP_TYPE(tag);
    const T *xp = static_cast<const T*>(x), *wp = static_cast<const T*>(w), *dyp = static_cast<const T*>(dy);
    T *dxp = static_cast<T*>(dx), *dwp = static_cast<T*>(dw), *dbp = static_cast<T*>(db);
    if (dbp) bias_backward(g, dyp, dbp);
    if (!dxp && !dwp) return;
    if (g.depthwise()) {
      if (dxp) depthwise_backward_input(g, wp, dyp, dxp);
      if (dwp) depthwise_backward_weight(g, xp, dyp, dwp);
    } else {
      gemm_backward(g, xp, wp, dyp, dxp, dwp);
    }
  });
}

}  // namespace ep
