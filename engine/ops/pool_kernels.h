// pool_kernels.h — max/avg/adaptive-avg 2-D pooling kernels, CPU (engine/cpu/pool.cpp) and CUDA (engine/cuda/pool.cu),
// plus the window/bin index math both share (EP_HD), so the CPU really is the reference for the CUDA kernels.
// Not autograd and not argument checking (engine/ops/pool.cpp). No ceil_mode, no dilation. `dt` is f32 or f64.
// NC = batch * channels (pooling treats every plane alike), H/W = input size, OH/OW = output size.
#pragma once
#include <cstdint>

#include "engine/device.h"
#include "engine/dispatch.h"

namespace ep {

struct Pool2dGeom {
  int64_t NC = 0, H = 0, W = 0, OH = 0, OW = 0;
  int64_t kh = 1, kw = 1, sh = 1, sw = 1, ph = 0, pw = 0;  // unused by the adaptive pool
};

// Output rows o in [lo, hi) whose window (start o*s - p, size k) covers input row i: the gather form of backward.
EP_HD void pool_windows_covering(int64_t i, int64_t k, int64_t s, int64_t p, int64_t out, int64_t& lo,
                                 int64_t& hi) {
  const int64_t ip = i + p;  // position in padded coordinates; window o covers [o*s, o*s + k)
  lo = ip < k ? 0 : (ip - k) / s + 1;
  hi = ip / s + 1;
  if (hi > out) hi = out;
  if (lo > hi) lo = hi;
}

// PyTorch's adaptive bins: bin o of `out` over `in` covers [floor(o*in/out), ceil((o+1)*in/out)).
EP_HD int64_t adaptive_start(int64_t o, int64_t in, int64_t out) { return (o * in) / out; }
EP_HD int64_t adaptive_end(int64_t o, int64_t in, int64_t out) { return ((o + 1) * in + out - 1) / out; }
// Bins o in [lo, hi) that may contain input index i (the same formula with in and out swapped); callers still
// test start <= i < end, which keeps this a safe superset.
EP_HD void adaptive_bins_covering(int64_t i, int64_t in, int64_t out, int64_t& lo, int64_t& hi) {
  lo = (i * out) / in;
  hi = ((i + 1) * out + in - 1) / in;
  if (hi > out) hi = out;
}

// A rectangle of a plane: rows [h0, h1), columns [w0, w1).
struct PoolWindow {
  int64_t h0, h1, w0, w1;
  EP_HD int64_t size() const { return (h1 - h0) * (w1 - w0); }
};

// The part of output (oh, ow)'s window that lies inside the input (padding is never read).
EP_HD PoolWindow pool_window(const Pool2dGeom& g, int64_t oh, int64_t ow) {
  const int64_t hs = oh * g.sh - g.ph, ws = ow * g.sw - g.pw;
  const int64_t he = hs + g.kh, we = ws + g.kw;
  return {hs > 0 ? hs : 0, he < g.H ? he : g.H, ws > 0 ? ws : 0, we < g.W ? we : g.W};
}

// The outputs whose windows cover input (ih, iw).
EP_HD PoolWindow pool_covering(const Pool2dGeom& g, int64_t ih, int64_t iw) {
  PoolWindow o;
  pool_windows_covering(ih, g.kh, g.sh, g.ph, g.OH, o.h0, o.h1);
  pool_windows_covering(iw, g.kw, g.sw, g.pw, g.OW, o.w0, o.w1);
  return o;
}

EP_HD PoolWindow adaptive_window(const Pool2dGeom& g, int64_t oh, int64_t ow) {
  return {adaptive_start(oh, g.H, g.OH), adaptive_end(oh, g.H, g.OH), adaptive_start(ow, g.W, g.OW),
          adaptive_end(ow, g.W, g.OW)};
}

template <class T> EP_HD T window_sum(const T* plane, int64_t W, const PoolWindow& w) {
  T acc = 0;
  for (int64_t ih = w.h0; ih < w.h1; ++ih)
    for (int64_t iw = w.w0; iw < w.w1; ++iw) acc += plane[ih * W + iw];
  return acc;
}

// The per-element math both backends run. `plane` / `dy` / `idx` point at the element's (n, c) plane.
// Max pool output (oh, ow): the window max, and in best_i the flat h*W+w of the first maximum.
template <class T> EP_HD T max_pool_at(const Pool2dGeom& g, const T* plane, int64_t oh, int64_t ow, int32_t& best_i) {
  const PoolWindow w = pool_window(g, oh, ow);
  // Padding is -inf, so only real elements compete; padding <= kernel/2 guarantees one exists.
  int64_t bi = w.h0 * g.W + w.w0;
  T best = plane[bi];
  for (int64_t ih = w.h0; ih < w.h1; ++ih)
    for (int64_t iw = w.w0; iw < w.w1; ++iw) {
      const T v = plane[ih * g.W + iw];
      // strict > keeps the first maximum; a NaN wins once and then stays (PyTorch propagates NaN; v != v is isnan)
      if (v > best || (v != v && best == best)) {
        best = v;
        bi = ih * g.W + iw;
      }
    }
  best_i = int32_t(bi);
  return best;
}

// Max pool gradient at input (ih, iw): the dy of every output whose argmax it is.
template <class T>
EP_HD T max_pool_grad_at(const Pool2dGeom& g, const T* dy, const int32_t* idx, int64_t ih, int64_t iw) {
  const PoolWindow o = pool_covering(g, ih, iw);
  const int32_t me = int32_t(ih * g.W + iw);
  T acc = 0;
  for (int64_t oh = o.h0; oh < o.h1; ++oh)
    for (int64_t ow = o.w0; ow < o.w1; ++ow)
      if (idx[oh * g.OW + ow] == me) acc += dy[oh * g.OW + ow];
  return acc;
}

// Adaptive avg pool gradient at input (ih, iw): each bin holding it passes dy / its own area.
template <class T> EP_HD T adaptive_avg_pool_grad_at(const Pool2dGeom& g, const T* dy, int64_t ih, int64_t iw) {
  PoolWindow o;  // a superset of the bins holding (ih, iw): each is still tested
  adaptive_bins_covering(ih, g.H, g.OH, o.h0, o.h1);
  adaptive_bins_covering(iw, g.W, g.OW, o.w0, o.w1);
  T acc = 0;
  for (int64_t oh = o.h0; oh < o.h1; ++oh) {
    const int64_t h0 = adaptive_start(oh, g.H, g.OH), h1 = adaptive_end(oh, g.H, g.OH);
    if (ih < h0 || ih >= h1) continue;
    for (int64_t ow = o.w0; ow < o.w1; ++ow) {
      const int64_t w0 = adaptive_start(ow, g.W, g.OW), w1 = adaptive_end(ow, g.W, g.OW);
      if (iw < w0 || iw >= w1) continue;
      acc += dy[oh * g.OW + ow] / T((h1 - h0) * (w1 - w0));
    }
  }
  return acc;
}

// Max pool: y = window max (padding counts as -inf; NaN propagates), idx = flat h*W+w of the first maximum.
void max_pool2d_forward_cpu(DType dt, const Pool2dGeom& g, const void* x, void* y, int32_t* idx);
// dx (fully written) = sum of dy over the outputs whose idx points at each input element.
void max_pool2d_backward_cpu(DType dt, const Pool2dGeom& g, const void* dy, const int32_t* idx, void* dx);
// Avg pool with count_include_pad: every window divides by kh*kw.
void avg_pool2d_forward_cpu(DType dt, const Pool2dGeom& g, const void* x, void* y);
void avg_pool2d_backward_cpu(DType dt, const Pool2dGeom& g, const void* dy, void* dx);
void adaptive_avg_pool2d_forward_cpu(DType dt, const Pool2dGeom& g, const void* x, void* y);
void adaptive_avg_pool2d_backward_cpu(DType dt, const Pool2dGeom& g, const void* dy, void* dx);

EP_CUDA_API void max_pool2d_forward_cuda(DType dt, const Pool2dGeom& g, const void* x, void* y, int32_t* idx,
                                         cudaStream_t st) EP_CUDA_BODY("max_pool2d")
EP_CUDA_API void max_pool2d_backward_cuda(DType dt, const Pool2dGeom& g, const void* dy, const int32_t* idx,
                                          void* dx, cudaStream_t st) EP_CUDA_BODY("max_pool2d backward")
EP_CUDA_API void avg_pool2d_forward_cuda(DType dt, const Pool2dGeom& g, const void* x, void* y, cudaStream_t st)
    EP_CUDA_BODY("avg_pool2d")
EP_CUDA_API void avg_pool2d_backward_cuda(DType dt, const Pool2dGeom& g, const void* dy, void* dx, cudaStream_t st)
    EP_CUDA_BODY("avg_pool2d backward")
EP_CUDA_API void adaptive_avg_pool2d_forward_cuda(DType dt, const Pool2dGeom& g, const void* x, void* y,
                                                  cudaStream_t st) EP_CUDA_BODY("adaptive_avg_pool2d")
EP_CUDA_API void adaptive_avg_pool2d_backward_cuda(DType dt, const Pool2dGeom& g, const void* dy, void* dx,
                                                   cudaStream_t st) EP_CUDA_BODY("adaptive_avg_pool2d backward")

}  // namespace ep
