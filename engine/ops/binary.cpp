// binary.cpp — broadcasting add/sub/mul/div with their backward (gradients summed back to each input's shape), and
// the in-place helpers add_, fill_, copy_. Kernels: engine/cpu/elementwise.cpp, engine/cuda/elementwise.cu.
#include <algorithm>

#include "engine/ops.h"
#include "engine/op_registry.h"
#include "engine/ops/broadcast.h"
#include "engine/ops/convert_kernels.h"
#include "engine/ops/elementwise_kernels.h"

namespace ep {

EP_DIFFERENTIABLE_OPS("add", "sub", "mul", "div");

Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b) {
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    EP_CHECK(da == db || da == 1 || db == 1, ShapeError, "[", op, "] shapes ", shape_str(a), " and ", shape_str(b),
             " cannot be broadcast");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

static BroadcastIndex make_index(const char* op, const Shape& out, const Shape& a, const Shape& b) {
  BroadcastIndex idx;
  if (a == out && b == out) {  // the common case, without building the layout (host overhead per op)
    idx.ndim = 1;
    idx.size[0] = shape_numel(out);
    idx.stride_a[0] = idx.stride_b[0] = 1;
    return idx;
  }
  BroadcastLayout l = broadcast_layout(op, out, {a, b}, kMaxDims);
  idx.ndim = int(l.size.size());
  for (size_t d = 0; d < l.size.size(); ++d) {
    idx.size[d] = l.size[d];
    idx.stride_a[d] = l.strides[0][d];
    idx.stride_b[d] = l.strides[1][d];
  }
  return idx;
}

static Tensor binary_raw(BinaryOp op, const char* name, const Tensor& a, const Tensor& b) {
  check_floating(name, a);
  check_same_dtype(name, a, b);
  check_same_device(name, a, b);
  Shape shape = a.shape() == b.shape() ? a.shape() : broadcast_shapes(name, a.shape(), b.shape());
  Tensor out = empty(shape, a.dtype(), a.device());
  if (out.numel() == 0) return out;
  BroadcastIndex idx = make_index(name, shape, a.shape(), b.shape());
  if (a.is_cuda())
    binary_forward_cuda(op, a.dtype(), a.raw_data(), b.raw_data(), out.raw_data(), out.numel(), idx,
                        current_stream(a.device()));
  else
    binary_forward_cpu(op, a.dtype(), a.raw_data(), b.raw_data(), out.raw_data(), out.numel(), idx);
  return out;
}

Tensor sum_to(const Tensor& g, const Shape& shape) {
  if (g.shape() == shape) return g;
  size_t lead = g.shape().size() - shape.size();
  std::vector<int64_t> dims;
  for (size_t d = 0; d < g.shape().size(); ++d)
    if (d < lead || (shape[d - lead] == 1 && g.shape()[d] != 1)) dims.push_back(int64_t(d));
  return reshape(sum(g, dims, true), shape);
}

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(BinaryOp::add, "add", a, b);
  record(out, "add", {a, b}, [sa = a.shape(), sb = b.shape()](const Tensor& d, const NeedsGrad& need) {
    return std::vector<Tensor>{need[0] ? sum_to(d, sa) : Tensor(), need[1] ? sum_to(d, sb) : Tensor()};
  });
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(BinaryOp::sub, "sub", a, b);
  record(out, "sub", {a, b}, [sa = a.shape(), sb = b.shape()](const Tensor& d, const NeedsGrad& need) {
    return std::vector<Tensor>{need[0] ? sum_to(d, sa) : Tensor(), need[1] ? sum_to(neg(d), sb) : Tensor()};
  });
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(BinaryOp::mul, "mul", a, b);
  record(out, "mul", {a, b}, [as = saved(a), bs = saved(b)](const Tensor& d, const NeedsGrad& need) {
    return std::vector<Tensor>{need[0] ? sum_to(mul(d, bs), as.shape()) : Tensor(),
                               need[1] ? sum_to(mul(d, as), bs.shape()) : Tensor()};
  });
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(BinaryOp::div, "div", a, b);
  record(out, "div", {a, b}, [as = saved(a), bs = saved(b), os = saved(out)](const Tensor& d, const NeedsGrad& need) {
    // d(a/b)/db = -(a/b)/b
    return std::vector<Tensor>{need[0] ? sum_to(div(d, bs), as.shape()) : Tensor(),
                               need[1] ? sum_to(neg(div(mul(d, os), bs)), bs.shape()) : Tensor()};
  });
  return out;
}

// ---- in place, not recorded ----------------------------------------------------------------------------------------
void add_(Tensor& a, const Tensor& b, double alpha) {
  check_floating("add_", a);
  check_same_dtype("add_", a, b);
  check_same_device("add_", a, b);
  check_same_shape("add_", a, b);
  if (a.is_cuda())
    axpy_cuda(a.dtype(), a.raw_data(), b.raw_data(), alpha, a.numel(), current_stream(a.device()));
  else
    axpy_cpu(a.dtype(), a.raw_data(), b.raw_data(), alpha, a.numel());
}

void fill_(Tensor& a, double v) {
  if (a.is_cuda())
    fill_cuda(a.raw_data(), a.dtype(), v, a.numel(), current_stream(a.device()));
  else
    fill_cpu(a.raw_data(), a.dtype(), v, a.numel());
}

void copy_(Tensor& dst, const Tensor& src) {
  check_same_dtype("copy_", dst, src);
  check_same_shape("copy_", dst, src);
  copy_bytes(dst.raw_data(), dst.device(), src.raw_data(), src.device(), src.nbytes());
}

}  // namespace ep
