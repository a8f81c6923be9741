// layer_norm.cpp — LayerNorm over the last dim (biased variance, eps inside the sqrt, optional weight and bias), with
// explicit backward kernels for x, weight and bias from the saved per-row mean and rstd. Not a multi-dim
// normalized_shape (callers flatten) and not BatchNorm (batch_norm.cpp). D = hidden (the last dim).
// Kernels: engine/cpu/layer_norm.cpp, engine/cuda/layer_norm.cu.
#include "engine/ops.h"
#include "engine/op_registry.h"
#include "engine/ops/layer_norm_kernels.h"

namespace ep {

EP_DIFFERENTIABLE_OPS("layer_norm");

static void check_affine(const char* what, const Tensor& x, const Tensor& p, int64_t d) {
  if (!p.defined()) return;
  EP_CHECK(p.dim() == 1 && p.size(0) == d, ShapeError, "[layer_norm] ", what, " shape ", shape_str(p.shape()),
           " does not match the last dim of x ", shape_str(x.shape()), " (expected [", d, "])");
  check_same_dtype("layer_norm", x, p);
  check_same_device("layer_norm", x, p);
}

static const void* data_or_null(const Tensor& t) { return t.defined() ? t.raw_data() : nullptr; }

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  check_floating("layer_norm", x);
  EP_CHECK(x.dim() >= 1, ShapeError, "[layer_norm] expected at least a 1-D input, got ", shape_str(x.shape()));
  EP_CHECK(eps >= 0.0, ValueError, "[layer_norm] eps must be >= 0, got ", eps);
  const int64_t d = x.shape().back();
  const int64_t rows = d == 0 ? 0 : x.numel() / d;
  check_affine("weight", x, weight, d);
  check_affine("bias", x, bias, d);

  Tensor y = empty_like(x);
  Tensor mean = empty({rows}, x.dtype(), x.device());
  Tensor rstd = empty({rows}, x.dtype(), x.device());
  if (x.is_cuda())
    layer_norm_forward_cuda(x.dtype(), x.raw_data(), data_or_null(weight), data_or_null(bias), y.raw_data(),
                            mean.raw_data(), rstd.raw_data(), rows, d, eps, current_stream(x.device()));
  else
    layer_norm_forward_cpu(x.dtype(), x.raw_data(), data_or_null(weight), data_or_null(bias), y.raw_data(),
                           mean.raw_data(), rstd.raw_data(), rows, d, eps);

  // The bias is not needed by backward: only whether it exists (to return its gradient).
  record(y, "layer_norm", {x, weight, bias},
         [xs = saved(x), ws = saved(weight), has_bias = bias.defined(), mean, rstd, rows, d](
             const Tensor& dy, const NeedsGrad& need) {
           Tensor dx, dw, db;
           if (need[0]) dx = empty_like(xs);
           if (ws.defined() && need[1]) dw = empty({d}, xs.dtype(), xs.device());
           if (has_bias && need[2]) db = empty({d}, xs.dtype(), xs.device());
           auto ptr = [](const Tensor& t) { return t.defined() ? t.raw_data() : nullptr; };
           if (xs.is_cuda())
             layer_norm_backward_cuda(xs.dtype(), xs.raw_data(), data_or_null(ws), mean.raw_data(), rstd.raw_data(),
                                      dy.raw_data(), ptr(dx), ptr(dw), ptr(db), rows, d, current_stream(xs.device()));
           else
             layer_norm_backward_cpu(xs.dtype(), xs.raw_data(), data_or_null(ws), mean.raw_data(), rstd.raw_data(),
                                     dy.raw_data(), ptr(dx), ptr(dw), ptr(db), rows, d);
           return std::vector<Tensor>{dx, dw, db};
         });
  return y;
}

}  // namespace ep
