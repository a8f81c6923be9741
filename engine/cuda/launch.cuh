// launch.cuh — launch-shape helpers shared by the .cu files. Not a kernel library.
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

}  // namespace ep

// A grid-stride loop over [0, n) with a 64-bit index, for kernels launched with grid_for(n).
#define EP_GRID_STRIDE(i, n) \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)
