// dropout.cu — CUDA twin of engine/cpu/dropout.cpp over the shared bernoulli_keep predicate, so CPU and GPU drop the
// same elements for the same (seed, offset). Not vectorized: Philox, not memory, bounds this kernel.
#include <cuda_runtime.h>

#include "engine/cuda/launch.cuh"
#include "engine/ops/dropout_kernels.h"
#include "engine/ops/random_kernels.h"

namespace ep {

template <class T>
__global__ void dropout_kernel(const T* __restrict__ x, T* __restrict__ out, int64_t n, double p_keep, T scale,
                               uint64_t seed, uint64_t offset) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = bernoulli_keep(seed, offset, uint64_t(i), p_keep) ? x[i] * scale : T(0);
}

void dropout_cuda(DType dt, const void* x, void* out, int64_t n, double p_keep, double scale, uint64_t seed,
                  uint64_t offset, cudaStream_t st) {
  if (n == 0) return;
  dispatch_float(dt, "dropout", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    dropout_kernel<<<grid_for(n), kBlock, 0, st>>>(static_cast<const T*>(x), static_cast<T*>(out), n, p_keep,
                                                   T(scale), seed, offset);
  });
  CUDA_CHECK_LAUNCH();
}

}  // namespace ep
