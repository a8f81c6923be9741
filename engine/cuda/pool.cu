// pool.cu — CUDA twins of engine/cpu/pool.cpp: one thread per output element forward, one per input element backward.
// Backward gathers from the windows covering each input (no atomics), so it is deterministic and matches the CPU's
// summation order. Not tuned (no shared-memory tiling, no NHWC); pooling is a small share of MobileNetV2's time.
#include <cuda_runtime.h>

#include "engine/cuda/launch.cuh"
#include "engine/ops/pool_kernels.h"

namespace ep {

namespace {

// Grid-stride over the outputs: at(plane, oh, ow, o) for output o = (nc * OH + oh) * OW + ow, plane = input plane nc.
template <class T, class F> __device__ __forceinline__ void for_each_output(const Pool2dGeom& g, const T* x, F&& at) {
  const int64_t n = g.NC * g.OH * g.OW;
  for (int64_t o = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; o < n; o += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ow = o % g.OW, oh = (o / g.OW) % g.OH, nc = o / (g.OW * g.OH);
    at(x + nc * g.H * g.W, oh, ow, o);
  }
}

// Grid-stride over the inputs (the gather form of backward): dx[i] = at(nc * OH * OW, ih, iw), where the first
// argument is where input i's plane starts in dy.
template <class T, class F> __device__ __forceinline__ void gather_inputs(const Pool2dGeom& g, T* dx, F&& at) {
  const int64_t n = g.NC * g.H * g.W;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t iw = i % g.W, ih = (i / g.W) % g.H, nc = i / (g.W * g.H);
    dx[i] = at(nc * g.OH * g.OW, ih, iw);
  }
}

template <class T>
__global__ void max_pool2d_forward_kernel(Pool2dGeom g, const T* __restrict__ x, T* __restrict__ y,
                                          int32_t* __restrict__ idx) {
  for_each_output(g, x, [&](const T* plane, int64_t oh, int64_t ow, int64_t o) {
    int32_t best_i;
    y[o] = max_pool_at(g, plane, oh, ow, best_i);
    idx[o] = best_i;
  });
}

template <class T>
__global__ void max_pool2d_backward_kernel(Pool2dGeom g, const T* __restrict__ dy, const int32_t* __restrict__ idx,
                                           T* __restrict__ dx) {
  gather_inputs(g, dx, [&](int64_t plane, int64_t ih, int64_t iw) {
    return max_pool_grad_at(g, dy + plane, idx + plane, ih, iw);
  });
}

template <class T>
__global__ void avg_pool2d_forward_kernel(Pool2dGeom g, const T* __restrict__ x, T* __restrict__ y) {
  const T inv = T(1) / T(g.kh * g.kw);
  for_each_output(g, x, [&](const T* plane, int64_t oh, int64_t ow, int64_t o) {
    y[o] = window_sum(plane, g.W, pool_window(g, oh, ow)) * inv;
  });
}

template <class T>
__global__ void avg_pool2d_backward_kernel(Pool2dGeom g, const T* __restrict__ dy, T* __restrict__ dx) {
  const T inv = T(1) / T(g.kh * g.kw);
  gather_inputs(g, dx, [&](int64_t plane, int64_t ih, int64_t iw) {
    return window_sum(dy + plane, g.OW, pool_covering(g, ih, iw)) * inv;
  });
}

template <class T>
__global__ void adaptive_avg_pool2d_forward_kernel(Pool2dGeom g, const T* __restrict__ x, T* __restrict__ y) {
  for_each_output(g, x, [&](const T* plane, int64_t oh, int64_t ow, int64_t o) {
    const PoolWindow w = adaptive_window(g, oh, ow);
    y[o] = window_sum(plane, g.W, w) / T(w.size());
  });
}

template <class T>
__global__ void adaptive_avg_pool2d_backward_kernel(Pool2dGeom g, const T* __restrict__ dy, T* __restrict__ dx) {
  gather_inputs(g, dx, [&](int64_t plane, int64_t ih, int64_t iw) {
    return adaptive_avg_pool_grad_at(g, dy + plane, ih, iw);
  });
}

// One thread per element of n (grid-stride): launch(type tag, grid) issues the kernel for dt; nothing when n == 0.
template <class F> void launch_pool(DType dt, const char* op, int64_t n, F&& launch) {
  if (n == 0) return;
  dispatch_float(dt, op, [&](auto tag) { launch(tag, grid_for(n)); });
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void max_pool2d_forward_cuda(DType dt, const Pool2dGeom& g, const void* x, void* y, int32_t* idx, cudaStream_t st) {
  launch_pool(dt, "max_pool2d", g.NC * g.OH * g.OW, [&](auto tag, unsigned grid) {
    using T = EP_TYPE(tag);
    max_pool2d_forward_kernel<T><<<grid, kBlock, 0, st>>>(g, static_cast<const T*>(x), static_cast<T*>(y), idx);
  });
}

void max_pool2d_backward_cuda(DType dt, const Pool2dGeom& g, const void* dy, const int32_t* idx, void* dx,
                              cudaStream_t st) {
  launch_pool(dt, "max_pool2d backward", g.NC * g.H * g.W, [&](auto tag, unsigned grid) {
    using T = EP_TYPE(tag);
    max_pool2d_backward_kernel<T><<<grid, kBlock, 0, st>>>(g, static_cast<const T*>(dy), idx, static_cast<T*>(dx));
  });
}

void avg_pool2d_forward_cuda(DType dt, const Pool2dGeom& g, const void* x, void* y, cudaStream_t st) {
  launch_pool(dt, "avg_pool2d", g.NC * g.OH * g.OW, [&](auto tag, unsigned grid) {
    using T = EP_TYPE(tag);
    avg_pool2d_forward_kernel<T><<<grid, kBlock, 0, st>>>(g, static_cast<const T*>(x), static_cast<T*>(y));
  });
}

void avg_pool2d_backward_cuda(DType dt, const Pool2dGeom& g, const void* dy, void* dx, cudaStream_t st) {
  launch_pool(dt, "avg_pool2d backward", g.NC * g.H * g.W, [&](auto tag, unsigned grid) {
    using T = EP_TYPE(tag);
    avg_pool2d_backward_kernel<T><<<grid, kBlock, 0, st>>>(g, static_cast<const T*>(dy), static_cast<T*>(dx));
  });
}

void adaptive_avg_pool2d_forward_cuda(DType dt, const Pool2dGeom& g, const void* x, void* y, cudaStream_t st) {
  launch_pool(dt, "adaptive_avg_pool2d", g.NC * g.OH * g.OW, [&](auto tag, unsigned grid) {
    using T = EP_TYPE(tag);
    adaptive_avg_pool2d_forward_kernel<T><<<grid, kBlock, 0, st>>>(g, static_cast<const T*>(x), static_cast<T*>(y));
  });
}

void adaptive_avg_pool2d_backward_cuda(DType dt, const Pool2dGeom& g, const void* dy, void* dx, cudaStream_t st) {
  launch_pool(dt, "adaptive_avg_pool2d backward", g.NC * g.H * g.W, [&](auto tag, unsigned grid) {
    using T = EP_TYPE(tag);
    adaptive_avg_pool2d_backward_kernel<T><<<grid, kBlock, 0, st>>>(g, static_cast<const T*>(dy),
                                                                    static_cast<T*>(dx));
  });
}

}  // namespace ep
