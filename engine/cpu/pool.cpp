// pool.cpp (cpu) — the reference max/avg/adaptive-avg pooling, one OpenMP task per (n, c) plane.
// Not vectorized by hand. Backward gathers per input element (as the CUDA twin does), so no two threads write the
// same element and results do not depend on the thread count.
#include <algorithm>
#include <cmath>

#include "engine/ops/pool_kernels.h"

namespace ep {

constexpr int64_t kPoolParallelMin = 16384;  // output elements below which threads cost more than they save

void max_pool2d_forward_cpu(DType dt, const Pool2dGeom& g, const void* x, void* y, int32_t* idx) {
  dispatch_float(dt, "max_pool2d", [&](auto tag) {
    using T = EP_TYPE(tag);
    const T* xp = static_cast<const T*>(x);
    T* yp = static_cast<T*>(y);
#pragma omp parallel for schedule(static) if (g.NC * g.OH * g.OW > kPoolParallelMin)
    for (int64_t nc = 0; nc < g.NC; ++nc) {
      const T* plane = xp + nc * g.H * g.W;
      for (int64_t oh = 0; oh < g.OH; ++oh)
        for (int64_t ow = 0; ow < g.OW; ++ow) {
          const int64_t hs = oh * g.sh - g.ph, ws = ow * g.sw - g.pw;
          const int64_t h0 = std::max<int64_t>(hs, 0), h1 = std::min(hs + g.kh, g.H);
          const int64_t w0 = std::max<int64_t>(ws, 0), w1 = std::min(ws + g.kw, g.W);
          // Padding is -inf, so only real elements compete; padding <= kernel/2 guarantees one exists.
          int64_t best_i = h0 * g.W + w0;
          T best = plane[best_i];
          for (int64_t ih = h0; ih < h1; ++ih)
            for (int64_t iw = w0; iw < w1; ++iw) {
              const T v = plane[ih * g.W + iw];
              // strict > keeps the first maximum; a NaN wins once and then stays (PyTorch propagates NaN)
              if (v > best || (std::isnan(v) && !std::isnan(best))) {
                best = v;
                best_i = ih * g.W + iw;
              }
            }
          const int64_t o = (nc * g.OH + oh) * g.OW + ow;
          yp[o] = best;
          idx[o] = int32_t(best_i);
        }
    }
  });
}

void max_pool2d_backward_cpu(DType dt, const Pool2dGeom& g, const void* dy, const int32_t* idx, void* dx) {
  dispatch_float(dt, "max_pool2d backward", [&](auto tag) {
    using T = EP_TYPE(tag);
    const T* dyp = static_cast<const T*>(dy);
    T* dxp = static_cast<T*>(dx);
#pragma omp parallel for schedule(static) if (g.NC * g.H * g.W > kPoolParallelMin)
    for (int64_t nc = 0; nc < g.NC; ++nc) {
      const T* dyplane = dyp + nc * g.OH * g.OW;
      const int32_t* iplane = idx + nc * g.OH * g.OW;
      for (int64_t ih = 0; ih < g.H; ++ih) {
        int64_t oh0, oh1;
        pool_windows_covering(ih, g.kh, g.sh, g.ph, g.OH, oh0, oh1);
        for (int64_t iw = 0; iw < g.W; ++iw) {
          int64_t ow0, ow1;
          pool_windows_covering(iw, g.kw, g.sw, g.pw, g.OW, ow0, ow1);
          const int32_t me = int32_t(ih * g.W + iw);
          T acc = 0;
          for (int64_t oh = oh0; oh < oh1; ++oh)
            for (int64_t ow = ow0; ow < ow1; ++ow)
              if (iplane[oh * g.OW + ow] == me) acc += dyplane[oh * g.OW + ow];
          dxp[nc * g.H * g.W + ih * g.W + iw] = acc;
        }
      }
    }
  });
}

void avg_pool2d_forward_cpu(DType dt, const Pool2dGeom& g, const void* x, void* y) {
  dispatch_float(dt, "avg_pool2d", [&](auto tag) {
    using T = EP_TYPE(tag);
    const T* xp = static_cast<const T*>(x);
    T* yp = static_cast<T*>(y);
    // count_include_pad: without ceil_mode every window lies inside the padded input, so the divisor is kh*kw.
    const T inv = T(1) / T(g.kh * g.kw);
#pragma omp parallel for schedule(static) if (g.NC * g.OH * g.OW > kPoolParallelMin)
    for (int64_t nc = 0; nc < g.NC; ++nc) {
      const T* plane = xp + nc * g.H * g.W;
      for (int64_t oh = 0; oh < g.OH; ++oh)
        for (int64_t ow = 0; ow < g.OW; ++ow) {
          const int64_t hs = oh * g.sh - g.ph, ws = ow * g.sw - g.pw;
          const int64_t h0 = std::max<int64_t>(hs, 0), h1 = std::min(hs + g.kh, g.H);
          const int64_t w0 = std::max<int64_t>(ws, 0), w1 = std::min(ws + g.kw, g.W);
          T acc = 0;
          for (int64_t ih = h0; ih < h1; ++ih)
            for (int64_t iw = w0; iw < w1; ++iw) acc += plane[ih * g.W + iw];
          yp[(nc * g.OH + oh) * g.OW + ow] = acc * inv;
        }
    }
  });
}

void avg_pool2d_backward_cpu(DType dt, const Pool2dGeom& g, const void* dy, void* dx) {
  dispatch_float(dt, "avg_pool2d backward", [&](auto tag) {
    using T = EP_TYPE(tag);
    const T* dyp = static_cast<const T*>(dy);
    T* dxp = static_cast<T*>(dx);
    const T inv = T(1) / T(g.kh * g.kw);
#pragma omp parallel for schedule(static) if (g.NC * g.H * g.W > kPoolParallelMin)
    for (int64_t nc = 0; nc < g.NC; ++nc) {
      const T* dyplane = dyp + nc * g.OH * g.OW;
      for (int64_t ih = 0; ih < g.H; ++ih) {
        int64_t oh0, oh1;
        pool_windows_covering(ih, g.kh, g.sh, g.ph, g.OH, oh0, oh1);
        for (int64_t iw = 0; iw < g.W; ++iw) {
          int64_t ow0, ow1;
          pool_windows_covering(iw, g.kw, g.sw, g.pw, g.OW, ow0, ow1);
          T acc = 0;
          for (int64_t oh = oh0; oh < oh1; ++oh)
            for (int64_t ow = ow0; ow < ow1; ++ow) acc += dyplane[oh * g.OW + ow];
          dxp[nc * g.H * g.W + ih * g.W + iw] = acc * inv;
        }
      }
    }
  });
}

void adaptive_avg_pool2d_forward_cpu(DType dt, const Pool2dGeom& g, const void* x, void* y) {
  dispatch_float(dt, "adaptive_avg_pool2d", [&](auto tag) {
    using T = EP_TYPE(tag);
    const T* xp = static_cast<const T*>(x);
    T* yp = static_cast<T*>(y);
#pragma omp parallel for schedule(static) if (g.NC * g.H * g.W > kPoolParallelMin)
    for (int64_t nc = 0; nc < g.NC; ++nc) {
      const T* plane = xp + nc * g.H * g.W;
      for (int64_t oh = 0; oh < g.OH; ++oh) {
        const int64_t h0 = adaptive_start(oh, g.H, g.OH), h1 = adaptive_end(oh, g.H, g.OH);
        for (int64_t ow = 0; ow < g.OW; ++ow) {
          const int64_t w0 = adaptive_start(ow, g.W, g.OW), w1 = adaptive_end(ow, g.W, g.OW);
          T acc = 0;
          for (int64_t ih = h0; ih < h1; ++ih)
            for (int64_t iw = w0; iw < w1; ++iw) acc += plane[ih * g.W + iw];
          yp[(nc * g.OH + oh) * g.OW + ow] = acc / T((h1 - h0) * (w1 - w0));
        }
      }
    }
  });
}

void adaptive_avg_pool2d_backward_cpu(DType dt, const Pool2dGeom& g, const void* dy, void* dx) {
  dispatch_float(dt, "adaptive_avg_pool2d backward", [&](auto tag) {
    using T = EP_TYPE(tag);
    const T* dyp = static_cast<const T*>(dy);
    T* dxp = static_cast<T*>(dx);
#pragma omp parallel for schedule(static) if (g.NC * g.H * g.W > kPoolParallelMin)
    for (int64_t nc = 0; nc < g.NC; ++nc) {
      const T* dyplane = dyp + nc * g.OH * g.OW;
      for (int64_t ih = 0; ih < g.H; ++ih) {
        int64_t oh0, oh1;
        adaptive_bins_covering(ih, g.H, g.OH, oh0, oh1);
        for (int64_t iw = 0; iw < g.W; ++iw) {
          int64_t ow0, ow1;
          adaptive_bins_covering(iw, g.W, g.OW, ow0, ow1);
          T acc = 0;
          for (int64_t oh = oh0; oh < oh1; ++oh) {
            const int64_t h0 = adaptive_start(oh, g.H, g.OH), h1 = adaptive_end(oh, g.H, g.OH);
            if (ih < h0 || ih >= h1) continue;
            for (int64_t ow = ow0; ow < ow1; ++ow) {
              const int64_t w0 = adaptive_start(ow, g.W, g.OW), w1 = adaptive_end(ow, g.W, g.OW);
              if (iw < w0 || iw >= w1) continue;
              acc += dyplane[oh * g.OW + ow] / T((h1 - h0) * (w1 - w0));
            }
          }
          dxp[nc * g.H * g.W + ih * g.W + iw] = acc;
        }
      }
    }
  });
}

}  // namespace ep
