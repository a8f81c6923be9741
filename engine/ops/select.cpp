// select.cpp — where(cond, a, b) with three-way broadcasting and masked_fill(a, mask, value), forward and backward
// (the gradient is dout masked to each side, summed back to the input's shape). Kernels: engine/cpu/select.cpp,
// engine/cuda/select.cu. Not arithmetic: every dtype selects; gradients exist for f32/f64 only.
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "engine/ops.h"
#include "engine/op_registry.h"
#include "engine/ops/broadcast.h"
#include "engine/ops/select_kernels.h"

namespace ep {

EP_DIFFERENTIABLE_OPS("where", "masked_fill");

static WhereIndex make_where_index(const char* op, const Shape& out, const Shape& c, const Shape& a, const Shape& b) {
  BroadcastLayout l = broadcast_layout(op, out, {c, a, b}, kMaxDims);
  WhereIndex idx;
  idx.ndim = int(l.size.size());
  for (size_t d = 0; d < l.size.size(); ++d) {
    idx.size[d] = l.size[d];
    idx.stride_c[d] = l.strides[0][d];
    idx.stride_a[d] = l.strides[1][d];
    idx.stride_b[d] = l.strides[2][d];
  }
  return idx;
}

// The bit pattern of `v` as dtype dt (low bytes of the result). Integers must hold v exactly in range.
static uint64_t scalar_bits(const char* op, DType dt, double v) {
  return dispatch_all(dt, [&](auto tag_) {
    using T = EP_TYPE(tag_);
    if constexpr (std::is_integral_v<T>) {
      EP_CHECK(std::isfinite(v) && v >= double(std::numeric_limits<T>::lowest()) &&
                   v <= double(std::numeric_limits<T>::max()),
               ValueError, "[", op, "] value ", v, " does not fit ", dtype_name(dt));
    }
    T x = from_f64<T>(v);
    uint64_t bits = 0;
    std::memcpy(&bits, &x, sizeof(T));
    return bits;
  });
}

// out = cond ? a : b over the broadcast shape `out_shape`; an undefined a (b) stands for the constant a_val (b_val).
static Tensor select_raw(const char* op, const Tensor& cond, const Tensor& a, double a_val, const Tensor& b,
                         double b_val, DType dt, const Shape& out_shape) {
  Tensor out = empty(out_shape, dt, cond.device());
  if (out.numel() == 0) return out;
  Shape none;  // a constant broadcasts like a 0-D tensor
  WhereIndex idx = make_where_index(op, out_shape, cond.shape(), a.defined() ? a.shape() : none,
                                    b.defined() ? b.shape() : none);
  const void* ap = a.defined() ? a.raw_data() : nullptr;
  const void* bp = b.defined() ? b.raw_data() : nullptr;
  uint64_t abits = a.defined() ? 0 : scalar_bits(op, dt, a_val), bbits = b.defined() ? 0 : scalar_bits(op, dt, b_val);
  const uint8_t* c = static_cast<const uint8_t*>(cond.raw_data());
  if (cond.is_cuda())
    where_cuda(dtype_size(dt), c, ap, bp, out.raw_data(), out.numel(), idx, abits, bbits,
               current_stream(cond.device()));
  else
    where_cpu(dtype_size(dt), c, ap, bp, out.raw_data(), out.numel(), idx, abits, bbits);
  return out;
}

static void check_mask(const char* op, const char* what, const Tensor& mask, const Tensor& like) {
  EP_CHECK(mask.dtype() == DType::u8, DTypeError, "[", op, "] ", what, " must be u8, got ", dtype_name(mask.dtype()));
  EP_CHECK(mask.device() == like.device(), DeviceError, "[", op, "] ", what, " is on ", mask.device().str(),
           " but the values are on ", like.device().str());
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  check_same_dtype("where", a, b);
  check_same_device("where", a, b);
  check_mask("where", "cond", cond, a);
  Shape shape = broadcast_shapes("where", broadcast_shapes("where", cond.shape(), a.shape()), b.shape());
  Tensor out = select_raw("where", cond, a, 0, b, 0, a.dtype(), shape);
  record(out, "where", {a, b}, [c = saved(cond), sa = a.shape(), sb = b.shape()](const Tensor& dout,
                                                                                const NeedsGrad& need) {
    std::vector<Tensor> g(2);
    if (need[0]) g[0] = sum_to(select_raw("where", c, dout, 0, Tensor(), 0, dout.dtype(), dout.shape()), sa);
    if (need[1]) g[1] = sum_to(select_raw("where", c, Tensor(), 0, dout, 0, dout.dtype(), dout.shape()), sb);
    return g;
  });
  return out;
}

Tensor masked_fill(const Tensor& a, const Tensor& mask, double value) {
  check_mask("masked_fill", "mask", mask, a);
  EP_CHECK(broadcast_shapes("masked_fill", mask.shape(), a.shape()) == a.shape(), ShapeError, "[masked_fill] mask ",
           shape_str(mask.shape()), " cannot be broadcast to ", shape_str(a.shape()));
  Tensor out = select_raw("masked_fill", mask, Tensor(), value, a, 0, a.dtype(), a.shape());
  record(out, "masked_fill", {a}, [m = saved(mask)](const Tensor& dout, const NeedsGrad&) {
    return std::vector<Tensor>{select_raw("masked_fill", m, Tensor(), 0, dout, 0, dout.dtype(), dout.shape())};
  });
  return out;
}

}  // namespace ep
