// random.cu — CUDA twins of engine/cpu/random.cpp over the same value functions (random_kernels.h), so a stream
// drawn at (seed, offset) is bit-identical on both backends. Not cuRAND: one Philox block per element, by design.
#include <cuda_runtime.h>

#include "engine/cuda/launch.cuh"
#include "engine/ops/random_kernels.h"

namespace ep {

template <class T>
__global__ void uniform_kernel(T* __restrict__ out, int64_t n, T low, T width, uint64_t seed, uint64_t offset) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = uniform_value<T>(seed, offset, uint64_t(i), low, width);
}

template <class T>
__global__ void normal_kernel(T* __restrict__ out, int64_t n, double mean, double std, uint64_t seed,
                              uint64_t offset) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = normal_value<T>(seed, offset, uint64_t(i), mean, std);
}

__global__ void bernoulli_kernel(uint8_t* __restrict__ out, int64_t n, double p_keep, uint64_t seed,
                                 uint64_t offset) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = bernoulli_keep(seed, offset, uint64_t(i), p_keep) ? 1 : 0;
}

void uniform_cuda(DType dt, void* out, int64_t n, double low, double high, uint64_t seed, uint64_t offset,
                  cudaStream_t st) {
  if (n == 0) return;
  dispatch_float(dt, "uniform_", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    uniform_kernel<<<grid_for(n), kBlock, 0, st>>>(static_cast<T*>(out), n, T(low), T(high - low), seed, offset);
  });
  CUDA_CHECK_LAUNCH();
}

void normal_cuda(DType dt, void* out, int64_t n, double mean, double std, uint64_t seed, uint64_t offset,
                 cudaStream_t st) {
  if (n == 0) return;
  dispatch_float(dt, "normal_", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    normal_kernel<<<grid_for(n), kBlock, 0, st>>>(static_cast<T*>(out), n, mean, std, seed, offset);
  });
  CUDA_CHECK_LAUNCH();
}

void bernoulli_cuda(uint8_t* out, int64_t n, double p_keep, uint64_t seed, uint64_t offset, cudaStream_t st) {
  if (n == 0) return;
  bernoulli_kernel<<<grid_for(n), kBlock, 0, st>>>(out, n, p_keep, seed, offset);
  CUDA_CHECK_LAUNCH();
}

}  // namespace ep
