// optim.cu — CUDA twins of engine/cpu/optim.cpp: fused SGD and AdamW updates for up to 32 parameter tensors per
// launch (same element math as the CPU, from optim_kernels.h), and a two-pass sum of squares for clip_grad_norm_.
// Not a fused whole-model kernel or a tensor-splitting scheduler; no atomics, so results are reproducible.
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

// The tensors of one launch, by value in the kernel's arguments (well under the 4 KB limit for f64 too).
constexpr int kMultiTensors = 32;
// Blocks per tensor: a grid-stride loop covers larger tensors; 1024 x 256 threads keep an H100 busy on its own.
constexpr unsigned kMultiMaxBlocks = 1024;

template <class T> struct SgdLaunch {
  T* p[kMultiTensors];
  const T* g[kMultiTensors];
  T* buf[kMultiTensors];
  int64_t n[kMultiTensors];
  bool init_buf[kMultiTensors];
};

template <class T> struct AdamWLaunch {
  T* p[kMultiTensors];
  const T* g[kMultiTensors];
  T* m[kMultiTensors];
  T* v[kMultiTensors];
  int64_t n[kMultiTensors];
  T decay[kMultiTensors], step_size[kMultiTensors], bc2_sqrt[kMultiTensors];
};

// blockIdx.y picks the tensor, blockIdx.x and the threads stride over its elements.
template <class T>
__global__ void sgd_multi_kernel(SgdLaunch<T> t, T lr, T momentum, T one_minus_damp, T wd, bool nesterov) {
  const int k = blockIdx.y;
  T* __restrict__ p = t.p[k];
  const T* __restrict__ g = t.g[k];
  T* __restrict__ buf = t.buf[k];
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < t.n[k]; i += int64_t(gridDim.x) * blockDim.x)
    sgd_update<T>(p[i], g[i], buf ? buf + i : nullptr, lr, momentum, one_minus_damp, wd, nesterov, t.init_buf[k]);
}

template <class T>
__global__ void adamw_multi_kernel(AdamWLaunch<T> t, T b1, T omb1, T b2, T omb2, T eps) {
  const int k = blockIdx.y;
  T* __restrict__ p = t.p[k];
  const T* __restrict__ g = t.g[k];
  T* __restrict__ m = t.m[k];
  T* __restrict__ v = t.v[k];
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < t.n[k]; i += int64_t(gridDim.x) * blockDim.x)
    adamw_update<T>(p[i], g[i], m[i], v[i], t.decay[k], b1, omb1, b2, omb2, t.step_size[k], t.bc2_sqrt[k], eps);
}

// Calls fill(launch, first, count) for consecutive groups of at most kMultiTensors tensors, then launches `kernel`
// over (blocks for the group's largest tensor) x (the group's tensors).
template <class Launch, class Fill, class Kernel>
void for_each_group(int64_t count, Fill&& fill, Kernel&& launch) {
  for (int64_t first = 0; first < count; first += kMultiTensors) {
    const int64_t k = std::min<int64_t>(kMultiTensors, count - first);
    Launch l{};
    const int64_t largest = fill(l, first, k);
    if (largest == 0) continue;
    launch(l, dim3(std::min(grid_for(largest), kMultiMaxBlocks), unsigned(k)));
    CUDA_CHECK_LAUNCH();
  }
}

void sgd_step_multi_cuda(DType dt, const SgdTensor* tensors, int64_t count, const SgdHyper& h, cudaStream_t st) {
  if (count == 0) return;
  use_device_of(st);
  dispatch_float(dt, "sgd", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    for_each_group<SgdLaunch<T>>(
        count,
        [&](SgdLaunch<T>& l, int64_t first, int64_t k) {
          int64_t largest = 0;
          for (int64_t j = 0; j < k; ++j) {
            const SgdTensor& t = tensors[first + j];
            l.p[j] = static_cast<T*>(t.p);
            l.g[j] = static_cast<const T*>(t.g);
            l.buf[j] = static_cast<T*>(t.buf);
            l.n[j] = t.n;
            l.init_buf[j] = t.init_buf;
            largest = std::max(largest, t.n);
          }
          return largest;
        },
        [&](const SgdLaunch<T>& l, dim3 grid) {
          sgd_multi_kernel<T><<<grid, kBlock, 0, st>>>(l, T(h.lr), T(h.momentum), T(1.0 - h.dampening),
                                                       T(h.weight_decay), h.nesterov);
        });
  });
}

void adamw_step_multi_cuda(DType dt, const AdamWTensor* tensors, int64_t count, cudaStream_t st) {
  if (count == 0) return;
  use_device_of(st);
  const AdamWHyper& h0 = tensors[0].h;  // betas and eps are the optimizer's, the same for every tensor
  dispatch_float(dt, "adamw", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    for_each_group<AdamWLaunch<T>>(
        count,
        [&](AdamWLaunch<T>& l, int64_t first, int64_t k) {
          int64_t largest = 0;
          for (int64_t j = 0; j < k; ++j) {
            const AdamWTensor& t = tensors[first + j];
            l.p[j] = static_cast<T*>(t.p);
            l.g[j] = static_cast<const T*>(t.g);
            l.m[j] = static_cast<T*>(t.m);
            l.v[j] = static_cast<T*>(t.v);
            l.n[j] = t.n;
            l.decay[j] = T(t.h.decay);
            l.step_size[j] = T(t.h.step_size);
            l.bc2_sqrt[j] = T(t.h.bc2_sqrt);
            largest = std::max(largest, t.n);
          }
          return largest;
        },
        [&](const AdamWLaunch<T>& l, dim3 grid) {
          adamw_multi_kernel<T><<<grid, kBlock, 0, st>>>(l, T(h0.beta1), T(1.0 - h0.beta1), T(h0.beta2),
                                                         T(1.0 - h0.beta2), T(h0.eps));
        });
  });
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
