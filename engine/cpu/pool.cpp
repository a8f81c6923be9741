// pool.cpp (cpu) — the reference max/avg/adaptive-avg pooling, one OpenMP task per (n, c) plane.
// Not vectorized by hand. Backward gathers per input element (as the CUDA twin does), so no two threads write the
// same element and results do not depend on the thread count.
#include <algorithm>

#include "engine/ops/pool_kernels.h"

namespace ep {

namespace {

constexpr int64_t kPoolParallelMin = 16384;  // elements below which threads cost more than they save

// y[o] = at(plane, oh, ow, o) for every output o = (nc * OH + oh) * OW + ow, where plane is input plane nc; one
// OpenMP task per plane once `work` (the elements the pass touches) is large enough.
template <class T, class F> void pool_outputs(const Pool2dGeom& g, const void* x, void* y, int64_t work, F&& at) {
  const T* xp = static_cast<const T*>(x);
  T* yp = static_cast<T*>(y);
#pragma omp parallel for schedule(static) if (work > kPoolParallelMin)
  for (int64_t nc = 0; nc < g.NC; ++nc) {
    const T* plane = xp + nc * g.H * g.W;
    for (int64_t oh = 0; oh < g.OH; ++oh)
      for (int64_t ow = 0; ow < g.OW; ++ow) {
        const int64_t o = (nc * g.OH + oh) * g.OW + ow;
        yp[o] = at(plane, oh, ow, o);
      }
  }
}

// dx[nc, ih, iw] = at(nc * OH * OW, ih, iw) for every input element: the gather form of backward, where at's first
// argument is the offset of the element's plane in dy (and in max pool's indices). One OpenMP task per plane.
template <class T, class F> void gather_inputs(const Pool2dGeom& g, void* dx, F&& at) {
  T* dxp = static_cast<T*>(dx);
#pragma omp parallel for schedule(static) if (g.NC * g.H * g.W > kPoolParallelMin)
  for (int64_t nc = 0; nc < g.NC; ++nc)
    for (int64_t ih = 0; ih < g.H; ++ih)
      for (int64_t iw = 0; iw < g.W; ++iw) dxp[(nc * g.H + ih) * g.W + iw] = at(nc * g.OH * g.OW, ih, iw);
}

}  // namespace

void max_pool2d_forward_cpu(DType dt, const Pool2dGeom& g, const void* x, void* y, int32_t* idx) {
  dispatch_float(dt, "max_pool2d", [&](auto tag) {
    using T = EP_TYPE(tag);
    pool_outputs<T>(g, x, y, g.NC * g.OH * g.OW, [&](const T* plane, int64_t oh, int64_t ow, int64_t o) {
      return max_pool_at(g, plane, oh, ow, idx[o]);
    });
  });
}

void max_pool2d_backward_cpu(DType dt, const Pool2dGeom& g, const void* dy, const int32_t* idx, void* dx) {
  dispatch_float(dt, "max_pool2d backward", [&](auto tag) {
    using T = EP_TYPE(tag);
    const T* dyp = static_cast<const T*>(dy);
    gather_inputs<T>(g, dx, [&](int64_t plane, int64_t ih, int64_t iw) {
      return max_pool_grad_at(g, dyp + plane, idx + plane, ih, iw);
    });
  });
}

void avg_pool2d_forward_cpu(DType dt, const Pool2dGeom& g, const void* x, void* y) {
  dispatch_float(dt, "avg_pool2d", [&](auto tag) {
    using T = EP_TYPE(tag);
    // count_include_pad: without ceil_mode every window lies inside the padded input, so the divisor is kh*kw.
    const T inv = T(1) / T(g.kh * g.kw);
    pool_outputs<T>(g, x, y, g.NC * g.OH * g.OW, [&](const T* plane, int64_t oh, int64_t ow, int64_t) {
      return window_sum(plane, g.W, pool_window(g, oh, ow)) * inv;
    });
  });
}

void avg_pool2d_backward_cpu(DType dt, const Pool2dGeom& g, const void* dy, void* dx) {
  dispatch_float(dt, "avg_pool2d backward", [&](auto tag) {
    using T = EP_TYPE(tag);
    const T* dyp = static_cast<const T*>(dy);
    const T inv = T(1) / T(g.kh * g.kw);
    gather_inputs<T>(g, dx, [&](int64_t plane, int64_t ih, int64_t iw) {
      return window_sum(dyp + plane, g.OW, pool_covering(g, ih, iw)) * inv;
    });
  });
}

void adaptive_avg_pool2d_forward_cpu(DType dt, const Pool2dGeom& g, const void* x, void* y) {
  dispatch_float(dt, "adaptive_avg_pool2d", [&](auto tag) {
    using T = EP_TYPE(tag);
    pool_outputs<T>(g, x, y, g.NC * g.H * g.W, [&](const T* plane, int64_t oh, int64_t ow, int64_t) {
      const PoolWindow w = adaptive_window(g, oh, ow);
      return window_sum(plane, g.W, w) / T(w.size());
    });
  });
}

void adaptive_avg_pool2d_backward_cpu(DType dt, const Pool2dGeom& g, const void* dy, void* dx) {
  dispatch_float(dt, "adaptive_avg_pool2d backward", [&](auto tag) {
    using T = EP_TYPE(tag);
    const T* dyp = static_cast<const T*>(dy);
    if (g.OH == 1 && g.OW == 1) {
      // Global average pooling (MobileNetV2's and ResNet's heads): one bin, the whole plane, so every element gets
      // adaptive_avg_pool_grad_at's value 0 + dy / (H * W) without its per-element bin search (six integer
      // divisions each, 3% of a CPU training step).
      T* dxp = static_cast<T*>(dx);
      const T count = T(g.H * g.W);
#pragma omp parallel for schedule(static) if (g.NC * g.H * g.W > kPoolParallelMin)
      for (int64_t nc = 0; nc < g.NC; ++nc) std::fill_n(dxp + nc * g.H * g.W, g.H * g.W, T(0) + dyp[nc] / count);
      return;
    }
    gather_inputs<T>(g, dx, [&](int64_t plane, int64_t ih, int64_t iw) {
      return adaptive_avg_pool_grad_at(g, dyp + plane, ih, iw);
    });
  });
}

}  // namespace ep
