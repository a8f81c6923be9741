// conv2d.cpp — the conv2d op: argument checks, the forward call and its autograd node (dx, dweight, dbias), dispatched
// to engine/cpu/conv2d.cpp or engine/cuda/cudnn_conv.cpp. Also the deterministic-algorithms switch.
// Not the kernels, and not transposed/3-D/NHWC convolution. Only the batch may be empty (as in PyTorch).
#include <atomic>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "engine/ops.h"
#include "engine/op_registry.h"
#include "engine/ops/conv2d_kernels.h"

namespace ep {

EP_DIFFERENTIABLE_OPS("conv2d");

static std::atomic<bool> g_conv_deterministic{[] {
  const char* e = std::getenv("EP_DETERMINISTIC");
  return e && std::strcmp(e, "1") == 0;
}()};
void set_conv_deterministic(bool on) { g_conv_deterministic = on; }
bool conv_deterministic() { return g_conv_deterministic; }

static std::string pair_str(const std::array<int64_t, 2>& a) { return shape_str({a[0], a[1]}); }

static Conv2dGeom conv2d_check(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& opt) {
  EP_CHECK(x.dim() == 4, ShapeError, "[conv2d] expected 4-D input, got ", shape_str(x.shape()));
  EP_CHECK(weight.dim() == 4, ShapeError, "[conv2d] expected 4-D weight [Cout,Cin/groups,kH,kW], got ",
           shape_str(weight.shape()));
  check_floating("conv2d", x);
  check_same_dtype("conv2d", x, weight);
  check_same_device("conv2d", x, weight);
  if (bias.defined()) {
    check_same_dtype("conv2d", x, bias);
    check_same_device("conv2d", x, bias);
  }
  EP_CHECK(opt.stride[0] > 0 && opt.stride[1] > 0, ValueError, "[conv2d] stride must be positive, got ",
           pair_str(opt.stride));
  EP_CHECK(opt.padding[0] >= 0 && opt.padding[1] >= 0, ValueError, "[conv2d] padding must be non-negative, got ",
           pair_str(opt.padding));
  EP_CHECK(opt.dilation[0] > 0 && opt.dilation[1] > 0, ValueError, "[conv2d] dilation must be positive, got ",
           pair_str(opt.dilation));
  EP_CHECK(opt.groups > 0, ValueError, "[conv2d] groups must be positive, got ", opt.groups);

  Conv2dGeom g;
  g.N = x.size(0), g.C = x.size(1), g.H = x.size(2), g.W = x.size(3);
  g.K = weight.size(0), g.kh = weight.size(2), g.kw = weight.size(3);
  g.sh = opt.stride[0], g.sw = opt.stride[1], g.ph = opt.padding[0], g.pw = opt.padding[1];
  g.dh = opt.dilation[0], g.dw = opt.dilation[1], g.groups = opt.groups;
  EP_CHECK(g.C > 0 && g.H > 0 && g.W > 0, ShapeError,
           "[conv2d] expected non-empty channel and spatial dims (only the batch may be empty), got input ",
           shape_str(x.shape()));
  EP_CHECK(weight.numel() > 0, ShapeError, "[conv2d] expected a non-empty weight, got ", shape_str(weight.shape()));
  EP_CHECK(g.C % g.groups == 0, ShapeError, "[conv2d] input channels ", g.C, " are not divisible by groups ",
           g.groups, " (input ", shape_str(x.shape()), ")");
  EP_CHECK(g.K % g.groups == 0, ShapeError, "[conv2d] output channels ", g.K, " are not divisible by groups ",
           g.groups, " (weight ", shape_str(weight.shape()), ")");
  EP_CHECK(weight.size(1) * g.groups == g.C, ShapeError, "[conv2d] weight ", shape_str(weight.shape()),
           " with groups ", g.groups, " expects ", weight.size(1) * g.groups, " input channels, got input ",
           shape_str(x.shape()));
  if (bias.defined())
    EP_CHECK(bias.dim() == 1 && bias.size(0) == g.K, ShapeError, "[conv2d] expected bias [", g.K, "], got ",
             shape_str(bias.shape()));
  const int64_t ekh = g.dh * (g.kh - 1) + 1, ekw = g.dw * (g.kw - 1) + 1;  // dilated kernel extent
  EP_CHECK(ekh <= g.H + 2 * g.ph && ekw <= g.W + 2 * g.pw, ShapeError, "[conv2d] kernel [", g.kh, ",", g.kw,
           "] with dilation ", pair_str(opt.dilation), " is larger than the padded input [", g.H + 2 * g.ph, ",",
           g.W + 2 * g.pw, "] (input ", shape_str(x.shape()), ", padding ", pair_str(opt.padding), ")");
  g.OH = (g.H + 2 * g.ph - ekh) / g.sh + 1;
  g.OW = (g.W + 2 * g.pw - ekw) / g.sw + 1;
  // The CPU GEMMs take int sizes and cuDNN's 4-D descriptors int dims: keep every per-sample matrix below 2^31.
  const int64_t col_elems = g.cin_per_group() * g.kh * g.kw * g.OH * g.OW;
  EP_CHECK(col_elems < INT_MAX && g.C * g.H * g.W < INT_MAX && g.K * g.OH * g.OW < INT_MAX, ShapeError,
           "[conv2d] per-sample sizes must stay below 2^31 elements, got input ", shape_str(x.shape()),
           " and weight ", shape_str(weight.shape()));
  return g;
}

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& opt) {
  const Conv2dGeom g = conv2d_check(x, weight, bias, opt);
  Tensor y = empty({g.N, g.K, g.OH, g.OW}, x.dtype(), x.device());
  if (g.N > 0) {
    const void* b = bias.defined() ? bias.raw_data() : nullptr;
    if (x.is_cuda())
      conv2d_forward_cuda(x.dtype(), g, x.device().index, x.raw_data(), weight.raw_data(), b, y.raw_data(),
                          current_stream(x.device()));
    else
      conv2d_forward_cpu(x.dtype(), g, x.raw_data(), weight.raw_data(), b, y.raw_data());
  }
  // dx needs only the weight and dweight only the input: save each only when the other one wants a gradient.
  const bool x_grad = x.requires_grad(), w_grad = weight.requires_grad();
  record(y, "conv2d", {x, weight, bias},
         [g, xs = w_grad ? saved(x) : Tensor(), ws = x_grad ? saved(weight) : Tensor(), x_shape = x.shape(),
          dt = x.dtype(), dev = x.device()](const Tensor& dy, const NeedsGrad& need) {
           Tensor dx, dw, db;
           if (need[0]) dx = g.N > 0 ? empty(x_shape, dt, dev) : zeros(x_shape, dt, dev);
           if (need[1]) dw = g.N > 0 ? empty({g.K, g.cin_per_group(), g.kh, g.kw}, dt, dev)
                                     : zeros({g.K, g.cin_per_group(), g.kh, g.kw}, dt, dev);
           if (need[2]) db = g.N > 0 ? empty({g.K}, dt, dev) : zeros({g.K}, dt, dev);
           if (g.N == 0) return std::vector<Tensor>{dx, dw, db};  // empty batch: zero weight and bias gradients
           auto ptr = [](const Tensor& t) -> void* { return t.defined() ? t.raw_data() : nullptr; };
           if (dev.is_cuda())
             conv2d_backward_cuda(dt, g, dev.index, ptr(xs), ptr(ws), dy.raw_data(), ptr(dx), ptr(dw), ptr(db),
                                  current_stream(dev));
           else
             conv2d_backward_cpu(dt, g, ptr(xs), ptr(ws), dy.raw_data(), ptr(dx), ptr(dw), ptr(db));
           return std::vector<Tensor>{dx, dw, db};
         });
  return y;
}

}  // namespace ep
