// shape.cpp — reshape and flatten: free (they share storage) and differentiable. Copying layout ops (transpose,
// permute, slice, concat, split) live in layout.cpp.
#include "engine/ops.h"
#include "engine/op_registry.h"

namespace ep {

EP_DIFFERENTIABLE_OPS("reshape");

Tensor reshape(const Tensor& a, const Shape& shape_in) {
  Shape shape = shape_in;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      EP_CHECK(infer < 0, ShapeError, "[reshape] more than one -1 in ", shape_str(shape_in));
      infer = int64_t(i);
    } else {
      EP_CHECK(shape[i] >= 0, ShapeError, "[reshape] negative size in ", shape_str(shape_in));
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    EP_CHECK(known != 0 && a.numel() % known == 0, ShapeError, "[reshape] cannot reshape ", shape_str(a.shape()),
             " into ", shape_str(shape_in));
    shape[size_t(infer)] = a.numel() / known;
  }
  EP_CHECK(shape_numel(shape) == a.numel(), ShapeError, "[reshape] cannot reshape ", shape_str(a.shape()), " (",
           a.numel(), " elements) into ", shape_str(shape_in));
  Tensor out = a.detach();
  out.impl().shape = shape;
  record(out, "reshape", {a}, [in = a.shape()](const Tensor& g, const NeedsGrad&) {
    return std::vector<Tensor>{reshape(g, in)};
  });
  return out;
}

Tensor flatten(const Tensor& a, int64_t start_dim, int64_t end_dim) {
  if (a.dim() == 0) return reshape(a, {1});
  int64_t s = normalize_dim(start_dim, a.dim(), "flatten"), e = normalize_dim(end_dim, a.dim(), "flatten");
  EP_CHECK(s <= e, ShapeError, "[flatten] start_dim ", start_dim, " is after end_dim ", end_dim);
  Shape out;
  for (int64_t i = 0; i < s; ++i) out.push_back(a.shape()[size_t(i)]);
  int64_t m = 1;
  for (int64_t i = s; i <= e; ++i) m *= a.shape()[size_t(i)];
  out.push_back(m);
  for (int64_t i = e + 1; i < a.dim(); ++i) out.push_back(a.shape()[size_t(i)]);
  return reshape(a, out);
}

}  // namespace ep
