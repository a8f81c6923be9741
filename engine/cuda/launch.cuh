// launch.cuh — launch-shape helpers and stream-ordered scratch memory shared by the .cu files. Not a kernel library.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "engine/check.h"

namespace ep {

constexpr int kBlock = 256;
// Enough blocks for a grid-stride loop over n elements, capped so huge tensors do not launch millions of blocks.
inline unsigned grid_for(int64_t n, int block = kBlock) {
  int64_t blocks = (n + block - 1) / block;
  return unsigned(std::max<int64_t>(1, std::min<int64_t>(blocks, 65536)));
}

// Stream-ordered scratch from the device's memory pool (the one Storage uses), freed in stream order on scope exit,
// so an exception between the allocation and the last launch does not leak it.
struct StreamScratch {
  void* ptr = nullptr;
  cudaStream_t st;
  StreamScratch(size_t bytes, cudaStream_t s) : st(s) { CUDA_CHECK(cudaMallocAsync(&ptr, bytes, st)); }
  ~StreamScratch() { CUDA_CHECK_PRINT(cudaFreeAsync(ptr, st)); }
  StreamScratch(const StreamScratch&) = delete;
  StreamScratch& operator=(const StreamScratch&) = delete;
};

}  // namespace ep

// A grid-stride loop over [0, n) with a 64-bit index, for kernels launched with grid_for(n).
#define EP_GRID_STRIDE(i, n) \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)
