// pool.cu — CUDA twins of engine/cpu/pool.cpp: one thread per output element forward, one per input element backward.
// Backward gathers from the windows covering each input (no atomics), so it is deterministic and matches the CPU's
// summation order. Not tuned (no shared-memory tiling, no NHWC); pooling is a small share of MobileNetV2's time.
#include <cuda_runtime.h>

#include "engine/cuda/launch.cuh"
#include "engine/ops/pool_kernels.h"

namespace ep {

#define EP_GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

template <class T>
__global__ void max_pool2d_forward_kernel(Pool2dGeom g, const T* __restrict__ x, T* __restrict__ y,
                                          int32_t* __restrict__ idx) {
  EP_GRID_STRIDE(o, g.NC * g.OH * g.OW) {
    const int64_t ow = o % g.OW, oh = (o / g.OW) % g.OH, nc = o / (g.OW * g.OH);
    const T* plane = x + nc * g.H * g.W;
    const int64_t hs = oh * g.sh - g.ph, ws = ow * g.sw - g.pw;
    const int64_t h0 = max(hs, int64_t(0)), h1 = min(hs + g.kh, g.H);
    const int64_t w0 = max(ws, int64_t(0)), w1 = min(ws + g.kw, g.W);
    int64_t best_i = h0 * g.W + w0;
    T best = plane[best_i];
    for (int64_t ih = h0; ih < h1; ++ih)
      for (int64_t iw = w0; iw < w1; ++iw) {
        const T v = plane[ih * g.W + iw];
        if (v > best || (isnan(v) && !isnan(best))) {
          best = v;
          best_i = ih * g.W + iw;
        }
      }
    y[o] = best;
    idx[o] = int32_t(best_i);
  }
}

template <class T>
__global__ void max_pool2d_backward_kernel(Pool2dGeom g, const T* __restrict__ dy, const int32_t* __restrict__ idx,
                                           T* __restrict__ dx) {
  EP_GRID_STRIDE(i, g.NC * g.H * g.W) {
    const int64_t iw = i % g.W, ih = (i / g.W) % g.H, nc = i / (g.W * g.H);
    int64_t oh0, oh1, ow0, ow1;
    pool_windows_covering(ih, g.kh, g.sh, g.ph, g.OH, oh0, oh1);
    pool_windows_covering(iw, g.kw, g.sw, g.pw, g.OW, ow0, ow1);
    const T* dyplane = dy + nc * g.OH * g.OW;
    const int32_t* iplane = idx + nc * g.OH * g.OW;
    const int32_t me = int32_t(ih * g.W + iw);
    T acc = 0;
    for (int64_t oh = oh0; oh < oh1; ++oh)
      for (int64_t ow = ow0; ow < ow1; ++ow)
        if (iplane[oh * g.OW + ow] == me) acc += dyplane[oh * g.OW + ow];
    dx[i] = acc;
  }
}

template <class T>
__global__ void avg_pool2d_forward_kernel(Pool2dGeom g, const T* __restrict__ x, T* __restrict__ y) {
  const T inv = T(1) / T(g.kh * g.kw);
  EP_GRID_STRIDE(o, g.NC * g.OH * g.OW) {
    const int64_t ow = o % g.OW, oh = (o / g.OW) % g.OH, nc = o / (g.OW * g.OH);
    const T* plane = x + nc * g.H * g.W;
    const int64_t hs = oh * g.sh - g.ph, ws = ow * g.sw - g.pw;
    const int64_t h0 = max(hs, int64_t(0)), h1 = min(hs + g.kh, g.H);
    const int64_t w0 = max(ws, int64_t(0)), w1 = min(ws + g.kw, g.W);
    T acc = 0;
    for (int64_t ih = h0; ih < h1; ++ih)
      for (int64_t iw = w0; iw < w1; ++iw) acc += plane[ih * g.W + iw];
    y[o] = acc * inv;
  }
}

template <class T>
__global__ void avg_pool2d_backward_kernel(Pool2dGeom g, const T* __restrict__ dy, T* __restrict__ dx) {
  const T inv = T(1) / T(g.kh * g.kw);
  EP_GRID_STRIDE(i, g.NC * g.H * g.W) {
    const int64_t iw = i % g.W, ih = (i / g.W) % g.H, nc = i / (g.W * g.H);
    int64_t oh0, oh1, ow0, ow1;
    pool_windows_covering(ih, g.kh, g.sh, g.ph, g.OH, oh0, oh1);
    pool_windows_covering(iw, g.kw, g.sw, g.pw, g.OW, ow0, ow1);
    const T* dyplane = dy + nc * g.OH * g.OW;
    T acc = 0;
    for (int64_t oh = oh0; oh < oh1; ++oh)
      for (int64_t ow = ow0; ow < ow1; ++ow) acc += dyplane[oh * g.OW + ow];
    dx[i] = acc * inv;
  }
}

template <class T>
__global__ void adaptive_avg_pool2d_forward_kernel(Pool2dGeom g, const T* __restrict__ x, T* __restrict__ y) {
  EP_GRID_STRIDE(o, g.NC * g.OH * g.OW) {
    const int64_t ow = o % g.OW, oh = (o / g.OW) % g.OH, nc = o / (g.OW * g.OH);
    const T* plane = x + nc * g.H * g.W;
    const int64_t h0 = adaptive_start(oh, g.H, g.OH), h1 = adaptive_end(oh, g.H, g.OH);
    const int64_t w0 = adaptive_start(ow, g.W, g.OW), w1 = adaptive_end(ow, g.W, g.OW);
    T acc = 0;
    for (int64_t ih = h0; ih < h1; ++ih)
      for (int64_t iw = w0; iw < w1; ++iw) acc += plane[ih * g.W + iw];
    y[o] = acc / T((h1 - h0) * (w1 - w0));
  }
}

template <class T>
__global__ void adaptive_avg_pool2d_backward_kernel(Pool2dGeom g, const T* __restrict__ dy, T* __restrict__ dx) {
  EP_GRID_STRIDE(i, g.NC * g.H * g.W) {
    const int64_t iw = i % g.W, ih = (i / g.W) % g.H, nc = i / (g.W * g.H);
    int64_t oh0, oh1, ow0, ow1;
    adaptive_bins_covering(ih, g.H, g.OH, oh0, oh1);
    adaptive_bins_covering(iw, g.W, g.OW, ow0, ow1);
    const T* dyplane = dy + nc * g.OH * g.OW;
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
    dx[i] = acc;
  }
}

#undef EP_GRID_STRIDE

void max_pool2d_forward_cuda(DType dt, const Pool2dGeom& g, const void* x, void* y, int32_t* idx, cudaStream_t st) {
  const int64_t n = g.NC * g.OH * g.OW;
  if (n == 0) return;
  dispatch_float(dt, "max_pool2d", [&](auto tag) {
    using T = EP_TYPE(tag);
    max_pool2d_forward_kernel<T><<<grid_for(n), kBlock, 0, st>>>(g, static_cast<const T*>(x), static_cast<T*>(y),
                                                                  idx);
  });
  CUDA_CHECK_LAUNCH();
}

void max_pool2d_backward_cuda(DType dt, const Pool2dGeom& g, const void* dy, const int32_t* idx, void* dx,
                              cudaStream_t st) {
  const int64_t n = g.NC * g.H * g.W;
  if (n == 0) return;
  dispatch_float(dt, "max_pool2d backward", [&](auto tag) {
    using T = EP_TYPE(tag);
    max_pool2d_backward_kernel<T><<<grid_for(n), kBlock, 0, st>>>(g, static_cast<const T*>(dy), idx,
                                                                   static_cast<T*>(dx));
  });
  CUDA_CHECK_LAUNCH();
}

void avg_pool2d_forward_cuda(DType dt, const Pool2dGeom& g, const void* x, void* y, cudaStream_t st) {
  const int64_t n = g.NC * g.OH * g.OW;
  if (n == 0) return;
  dispatch_float(dt, "avg_pool2d", [&](auto tag) {
    using T = EP_TYPE(tag);
    avg_pool2d_forward_kernel<T><<<grid_for(n), kBlock, 0, st>>>(g, static_cast<const T*>(x), static_cast<T*>(y));
  });
  CUDA_CHECK_LAUNCH();
}

void avg_pool2d_backward_cuda(DType dt, const Pool2dGeom& g, const void* dy, void* dx, cudaStream_t st) {
  const int64_t n = g.NC * g.H * g.W;
  if (n == 0) return;
  dispatch_float(dt, "avg_pool2d backward", [&](auto tag) {
    using T = EP_TYPE(tag);
    avg_pool2d_backward_kernel<T><<<grid_for(n), kBlock, 0, st>>>(g, static_cast<const T*>(dy), static_cast<T*>(dx));
  });
  CUDA_CHECK_LAUNCH();
}

void adaptive_avg_pool2d_forward_cuda(DType dt, const Pool2dGeom& g, const void* x, void* y, cudaStream_t st) {
  const int64_t n = g.NC * g.OH * g.OW;
  if (n == 0) return;
  dispatch_float(dt, "adaptive_avg_pool2d", [&](auto tag) {
    using T = EP_TYPE(tag);
    adaptive_avg_pool2d_forward_kernel<T><<<grid_for(n), kBlock, 0, st>>>(g, static_cast<const T*>(x),
                                                                           static_cast<T*>(y));
  });
  CUDA_CHECK_LAUNCH();
}

void adaptive_avg_pool2d_backward_cuda(DType dt, const Pool2dGeom& g, const void* dy, void* dx, cudaStream_t st) {
  const int64_t n = g.NC * g.H * g.W;
  if (n == 0) return;
  dispatch_float(dt, "adaptive_avg_pool2d backward", [&](auto tag) {
    using T = EP_TYPE(tag);
    adaptive_avg_pool2d_backward_kernel<T><<<grid_for(n), kBlock, 0, st>>>(g, static_cast<const T*>(dy),
                                                                            static_cast<T*>(dx));
  });
  CUDA_CHECK_LAUNCH();
}

}  // namespace ep
