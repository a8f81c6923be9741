// broadcast.cpp — broadcast_layout (see broadcast.h). Not shape inference: broadcast_shapes lives in binary.cpp.
#include "engine/ops/broadcast.h"

namespace ep {

BroadcastLayout broadcast_layout(const char* op, const Shape& out, std::initializer_list<Shape> inputs,
                                 int max_dims) {
  const size_t n = out.size();
  // Strides of each input seen from the output's index space (0 where the input has size 1 or lacks the dim).
  std::vector<std::vector<int64_t>> full;
  for (const Shape& in : inputs) {
    std::vector<int64_t> st(n, 0);
    int64_t stride = 1;
    for (size_t k = 0; k < in.size(); ++k) {
      size_t d = n - 1 - k;
      int64_t size = in[in.size() - 1 - k];
      st[d] = size == 1 && out[d] != 1 ? 0 : stride;
      stride *= size;
    }
    full.push_back(std::move(st));
  }
  BroadcastLayout l;
  l.strides.resize(full.size());
  for (size_t d = 0; d < n; ++d) {
    if (out[d] == 1) continue;
    bool merge = !l.size.empty();
    for (size_t i = 0; merge && i < full.size(); ++i) merge = l.strides[i].back() == full[i][d] * out[d];
    if (merge) {
      l.size.back() *= out[d];
      for (size_t i = 0; i < full.size(); ++i) l.strides[i].back() = full[i][d];
    } else {
      l.size.push_back(out[d]);
      for (size_t i = 0; i < full.size(); ++i) l.strides[i].push_back(full[i][d]);
    }
  }
  if (l.size.empty()) {  // a one-element output
    l.size = {1};
    for (auto& s : l.strides) s = {1};
  }
  EP_CHECK(int(l.size.size()) <= max_dims, ShapeError, "[", op, "] broadcasting to ", shape_str(out), " needs more than ",
           max_dims, " dims");
  return l;
}

}  // namespace ep
