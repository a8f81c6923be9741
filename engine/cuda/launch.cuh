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
