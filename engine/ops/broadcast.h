// broadcast.h — the merged layout of several inputs broadcast against one output shape: size-1 output dims dropped
// and adjacent dims merged where every input is contiguous across them, so most cases index in 1-3 dims.
// Not a kernel: binary.cpp and select.cpp copy the result into their fixed-size index structs for the launchers.
#pragma once
#include <initializer_list>
#include <vector>

#include "engine/tensor.h"

namespace ep {

struct BroadcastLayout {
  std::vector<int64_t> size;                  // merged output dims (at least one)
  std::vector<std::vector<int64_t>> strides;  // per input, per merged dim; 0 along broadcast dims
};

// Throws ShapeError "[op] ..." when more than max_dims merged dims remain.
BroadcastLayout broadcast_layout(const char* op, const Shape& out, std::initializer_list<Shape> inputs,
                                 int max_dims);

}  // namespace ep
