// reduce_minmax.cpp — max, min (values, differentiable: the gradient goes to the first extreme element, the index
// PyTorch returns) and argmax (i64, not differentiable) along one dim. Not sum/mean (reduce.cpp); no multi-dim max.
// Kernels: engine/cpu/reduce_minmax.cpp and engine/cuda/reduce_minmax.cu over the [outer, r, inner] view of reduce.cpp.
#include "engine/ops.h"
#include "engine/op_registry.h"
#include "engine/ops/reduce_minmax_kernels.h"

namespace ep {

EP_DIFFERENTIABLE_OPS("max", "min");

namespace {

struct MinmaxView {
  int64_t outer = 1, r = 1, inner = 1;
  Shape out_shape;
};

// A 0-D tensor reduces over its one element with dim 0 or -1, as PyTorch.
MinmaxView minmax_view(const char* op, const Tensor& a, int64_t dim, bool keepdim) {
  MinmaxView v;
  if (a.dim() == 0) {
    EP_CHECK(dim == 0 || dim == -1, ShapeError, "[", op, "] dim ", dim, " out of range for a 0-D tensor");
    return v;
  }
  const Shape& s = a.shape();
  const int64_t d = normalize_dim(dim, a.dim(), op);
  EP_CHECK(s[size_t(d)] > 0, ShapeError, "[", op, "] cannot reduce dim ", dim, " of size 0 in ", shape_str(s));
  for (int64_t i = 0; i < d; ++i) v.outer *= s[size_t(i)];
  v.r = s[size_t(d)];
  for (size_t i = size_t(d) + 1; i < s.size(); ++i) v.inner *= s[i];
  for (size_t i = 0; i < s.size(); ++i) {
    if (int64_t(i) != d) v.out_shape.push_back(s[i]);
    else if (keepdim) v.out_shape.push_back(1);
  }
  return v;
}

void minmax_run(bool is_max, const Tensor& a, const MinmaxView& v, Tensor* values, Tensor& indices) {
  void* vp = values ? values->raw_data() : nullptr;
  int64_t* ip = static_cast<int64_t*>(indices.raw_data());
  if (v.outer * v.inner == 0) return;
  if (a.is_cuda())
    minmax_forward_cuda(a.dtype(), is_max, a.raw_data(), vp, ip, v.outer, v.r, v.inner, current_stream(a.device()));
  else
    minmax_forward_cpu(a.dtype(), is_max, a.raw_data(), vp, ip, v.outer, v.r, v.inner);
}

Tensor minmax_values(const char* op, bool is_max, const Tensor& a, int64_t dim, bool keepdim) {
  dispatch_minmax(a.dtype(), op, [](auto) {});
  MinmaxView v = minmax_view(op, a, dim, keepdim);
  Tensor values = empty(v.out_shape, a.dtype(), a.device());
  Tensor indices = empty(v.out_shape, DType::i64, a.device());
  minmax_run(is_max, a, v, &values, indices);
  // Backward needs only the indices and the input's shape, not the input.
  record(values, op, {a}, [in = a.shape(), v, idx = saved(indices)](const Tensor& dout, const NeedsGrad&) {
    Tensor dx = empty(in, dout.dtype(), dout.device());
    if (dx.numel() == 0) return std::vector<Tensor>{dx};
    if (dout.is_cuda())
      minmax_backward_cuda(dout.dtype(), dout.raw_data(), static_cast<const int64_t*>(idx.raw_data()), dx.raw_data(),
                           v.outer, v.r, v.inner, current_stream(dout.device()));
    else
      minmax_backward_cpu(dout.dtype(), dout.raw_data(), static_cast<const int64_t*>(idx.raw_data()), dx.raw_data(),
                          v.outer, v.r, v.inner);
    return std::vector<Tensor>{dx};
  });
  return values;
}

}  // namespace

Tensor max(const Tensor& a, int64_t dim, bool keepdim) { return minmax_values("max", true, a, dim, keepdim); }
Tensor min(const Tensor& a, int64_t dim, bool keepdim) { return minmax_values("min", false, a, dim, keepdim); }

Tensor argmax(const Tensor& a, int64_t dim, bool keepdim) {
  dispatch_minmax(a.dtype(), "argmax", [](auto) {});
  MinmaxView v = minmax_view("argmax", a, dim, keepdim);
  Tensor indices = empty(v.out_shape, DType::i64, a.device());
  minmax_run(true, a, v, nullptr, indices);
  return indices;
}

}  // namespace ep
