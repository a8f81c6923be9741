// optim.cu — CUDA twins of engine/cpu/optim.cpp: one fused grid-stride kernel per parameter tensor for SGD and AdamW
// (same element math as the CPU, from optim_kernels.h), and a two-pass sum of squares for clip_grad_norm_.
// Not a multi-tensor launcher: one launch per parameter keeps it simple; no atomics, so results are reproducible.
#include <cuda_runtime.h>

#include <algorithm>

#include "engine/cuda/launch.cuh"
#include "engine/ops/optim_kernels.h"

namespace ep {

// Makes the stream's device current (a launch into another device's stream fails); cheap when it already is.
static void use_device_of(cudaStream_t st) {
  int want = 0, cur = 0;
  CUDA_CHECK(cudaStreamGetDevice(st, &want));
  CUDA_CHECK(cudaGetDevice(&cur));
  if (cur != want) CUDA_CHECK(cudaSetDevice(want));
}

template <class T>
__global__ void sgd_step_kernel(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ buf, int64_t n, T lr,
                                T momentum, T one_minus_damp, T wd, bool nesterov, bool init_buf) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    sgd_update<T>(p[i], g[i], buf ? buf + i : nullptr, lr, momentum, one_minus_damp, wd, nesterov, init_buf);
}

template <class T>
__global__ void adamw_step_kernel(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ m, T* __restrict__ v,
                                  int64_t n, T decay, T b1, T omb1, T b2, T omb2, T step_size, T bc2_sqrt, T eps) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    adamw_update<T>(p[i], g[i], m[i], v[i], decay, b1, omb1, b2, omb2, step_size, bc2_sqrt, eps);
}

void sgd_step_cuda(DType dt, void* p, const void* g, void* buf, int64_t n, const SgdHyper& h, cudaStream_t st) {
  if (n == 0) return;
  use_device_of(st);
  dispatch_float(dt, "sgd", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    sgd_step_kernel<T><<<grid_for(n), kBlock, 0, st>>>(static_cast<T*>(p), static_cast<const T*>(g),
                                                        static_cast<T*>(buf), n, T(h.lr), T(h.momentum),
                                                        T(1.0 - h.dampening), T(h.weight_decay), h.nesterov,
                                                        h.init_buf);
  });
  CUDA_CHECK_LAUNCH();
}

void adamw_step_cuda(DType dt, void* p, const void* g, void* m, void* v, int64_t n, const AdamWHyper& h,
                     cudaStream_t st) {
  if (n == 0) return;
  use_device_of(st);
  dispatch_float(dt, "adamw", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    adamw_step_kernel<T><<<grid_for(n), kBlock, 0, st>>>(
        static_cast<T*>(p), static_cast<const T*>(g), static_cast<T*>(m), static_cast<T*>(v), n, T(h.decay),
        T(h.beta1), T(1.0 - h.beta1), T(h.beta2), T(1.0 - h.beta2), T(h.step_size), T(h.bc2_sqrt), T(h.eps));
  });
  CUDA_CHECK_LAUNCH();
}

// Pass 1: each block sums squares over its grid-stride share in T (f32 for f32 grads), tree-reduces in shared memory
// and writes one double partial. The grid depends only on n, so the order of additions is fixed.
template <class T>
__global__ void sumsq_partial_kernel(const T* __restrict__ x, int64_t n, double* __restrict__ partials) {
  __shared__ T buf[kBlock];
  T acc = 0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    acc += x[i] * x[i];
  buf[threadIdx.x] = acc;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (int(threadIdx.x) < s) buf[threadIdx.x] += buf[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) partials[blockIdx.x] = double(buf[0]);
}

// Pass 2: one block adds the partials in double.
__global__ void sumsq_final_kernel(const double* __restrict__ partials, int nparts, double* __restrict__ out) {
  __shared__ double buf[kBlock];
  double acc = 0;
  for (int k = threadIdx.x; k < nparts; k += blockDim.x) acc += partials[k];
  buf[threadIdx.x] = acc;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (int(threadIdx.x) < s) buf[threadIdx.x] += buf[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = buf[0];
}

void sumsq_cuda(DType dt, const void* x, int64_t n, double* out, double* partials, cudaStream_t st) {
  use_device_of(st);
  if (n == 0) {
    CUDA_CHECK(cudaMemsetAsync(out, 0, sizeof(double), st));
    return;
  }
  const unsigned nparts = unsigned(std::min<int64_t>(grid_for(n), kSumsqMaxPartials));
  dispatch_float(dt, "clip_grad_norm_", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    sumsq_partial_kernel<T><<<nparts, kBlock, 0, st>>>(static_cast<const T*>(x), n, partials);
  });
  CUDA_CHECK_LAUNCH();
  sumsq_final_kernel<<<1, kBlock, 0, st>>>(partials, int(nparts), out);
  CUDA_CHECK_LAUNCH();
}

template <class T>
__global__ void clip_scale_kernel(T* __restrict__ x, int64_t n, T s) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    x[i] *= s;
}

void clip_scale_cuda(DType dt, void* x, int64_t n, double s, cudaStream_t st) {
  if (n == 0) return;
  use_device_of(st);
  dispatch_float(dt, "clip_grad_norm_", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    clip_scale_kernel<T><<<grid_for(n), kBlock, 0, st>>>(static_cast<T*>(x), n, T(s));
  });
  CUDA_CHECK_LAUNCH();
}

}  // namespace ep
