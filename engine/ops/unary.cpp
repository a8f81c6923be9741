// unary.cpp — element-wise unary ops (neg, exp, log, sqrt, pow, relu, relu6, gelu, tanh, sigmoid, scalar add/mul):
// forward and backward side by side, dispatched to engine/cpu/elementwise.cpp or engine/cuda/elementwise.cu.
#include "engine/ops.h"
#include "engine/op_registry.h"
#include "engine/ops/elementwise_kernels.h"

namespace ep {

EP_DIFFERENTIABLE_OPS("neg", "exp", "log", "sqrt", "pow", "relu", "relu6", "gelu", "tanh", "sigmoid",
                      "add_scalar", "mul_scalar");

static Tensor unary_apply(UnaryOp op, const char* name, const Tensor& x, double s) {
  check_floating(name, x);
  Tensor y = empty_like(x);
  if (x.is_cuda())
    unary_forward_cuda(op, x.dtype(), x.raw_data(), y.raw_data(), x.numel(), s, current_stream(x.device()));
  else
    unary_forward_cpu(op, x.dtype(), x.raw_data(), y.raw_data(), x.numel(), s);
  record(y, name, {x}, [op, s, xs = saved(x), ys = saved(y)](const Tensor& dy, const NeedsGrad&) {
    Tensor dx = empty_like(xs);
    if (xs.is_cuda())
      unary_backward_cuda(op, xs.dtype(), xs.raw_data(), ys.raw_data(), dy.raw_data(), dx.raw_data(), xs.numel(), s,
                          current_stream(xs.device()));
    else
      unary_backward_cpu(op, xs.dtype(), xs.raw_data(), ys.raw_data(), dy.raw_data(), dx.raw_data(), xs.numel(), s);
    return std::vector<Tensor>{dx};
  });
  return y;
}

Tensor neg(const Tensor& a) { return unary_apply(UnaryOp::neg, "neg", a, 0); }
Tensor exp(const Tensor& a) { return unary_apply(UnaryOp::exp, "exp", a, 0); }
Tensor log(const Tensor& a) { return unary_apply(UnaryOp::log, "log", a, 0); }
Tensor sqrt(const Tensor& a) { return unary_apply(UnaryOp::sqrt, "sqrt", a, 0); }
Tensor pow(const Tensor& a, double exponent) { return unary_apply(UnaryOp::pow, "pow", a, exponent); }
Tensor relu(const Tensor& a) { return unary_apply(UnaryOp::relu, "relu", a, 0); }
Tensor relu6(const Tensor& a) { return unary_apply(UnaryOp::relu6, "relu6", a, 0); }
Tensor gelu(const Tensor& a) { return unary_apply(UnaryOp::gelu, "gelu", a, 0); }
Tensor tanh(const Tensor& a) { return unary_apply(UnaryOp::tanh, "tanh", a, 0); }
Tensor sigmoid(const Tensor& a) { return unary_apply(UnaryOp::sigmoid, "sigmoid", a, 0); }
Tensor add(const Tensor& a, double s) { return unary_apply(UnaryOp::add_scalar, "add_scalar", a, s); }
Tensor mul(const Tensor& a, double s) { return unary_apply(UnaryOp::mul_scalar, "mul_scalar", a, s); }

// ---- in place, not recorded ----------------------------------------------------------------------------------------
void mul_(Tensor& a, double s) {
  check_floating("mul_", a);
  if (a.is_cuda())
    unary_forward_cuda(UnaryOp::mul_scalar, a.dtype(), a.raw_data(), a.raw_data(), a.numel(), s,
                       current_stream(a.device()));
  else
    unary_forward_cpu(UnaryOp::mul_scalar, a.dtype(), a.raw_data(), a.raw_data(), a.numel(), s);
}

}  // namespace ep
