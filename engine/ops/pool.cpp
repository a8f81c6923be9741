// pool.cpp — max_pool2d, avg_pool2d (count_include_pad) and adaptive_avg_pool2d: argument checks, forward, and
// autograd nodes, dispatched to engine/cpu/pool.cpp or engine/cuda/pool.cu.
// Not ceil_mode, dilation, return_indices or 3-D inputs. Only the batch may be empty (as in PyTorch).
#include <climits>
#include <type_traits>
#include <utility>

#include "engine/ops.h"
#include "engine/op_registry.h"
#include "engine/ops/pool_kernels.h"

namespace ep {

EP_DIFFERENTIABLE_OPS("max_pool2d", "avg_pool2d", "adaptive_avg_pool2d");

static std::string pair_str(const std::array<int64_t, 2>& a) { return shape_str({a[0], a[1]}); }

static void check_pool_input(const char* op, const Tensor& x) {
  EP_CHECK(x.dim() == 4, ShapeError, "[", op, "] expected 4-D input, got ", shape_str(x.shape()));
  check_floating(op, x);
  EP_CHECK(x.size(1) > 0 && x.size(2) > 0 && x.size(3) > 0, ShapeError, "[", op,
           "] expected non-empty channel and spatial dims (only the batch may be empty), got input ",
           shape_str(x.shape()));
  EP_CHECK(x.size(2) * x.size(3) <= INT_MAX, ShapeError, "[", op, "] planes must hold fewer than 2^31 elements, got ",
           shape_str(x.shape()));
}

static Pool2dGeom pool_check(const char* op, const Tensor& x, const Pool2dOptions& opt) {
  check_pool_input(op, x);
  const auto &k = opt.kernel, &s = opt.stride, &p = opt.padding;
  EP_CHECK(k[0] > 0 && k[1] > 0, ValueError, "[", op, "] kernel must be positive, got ", pair_str(k));
  EP_CHECK(s[0] > 0 && s[1] > 0, ValueError, "[", op, "] stride must be positive, got ", pair_str(s));
  // PyTorch's rule; it also guarantees every window holds at least one real element.
  EP_CHECK(p[0] >= 0 && p[1] >= 0 && 2 * p[0] <= k[0] && 2 * p[1] <= k[1], ValueError, "[", op,
           "] padding must be non-negative and at most half the kernel, got padding ", pair_str(p), " for kernel ",
           pair_str(k));
  Pool2dGeom g;
  g.NC = x.size(0) * x.size(1), g.H = x.size(2), g.W = x.size(3);
  g.kh = k[0], g.kw = k[1], g.sh = s[0], g.sw = s[1], g.ph = p[0], g.pw = p[1];
  EP_CHECK(g.kh <= g.H + 2 * g.ph && g.kw <= g.W + 2 * g.pw, ShapeError, "[", op, "] kernel ", pair_str(k),
           " is larger than the padded input [", g.H + 2 * g.ph, ",", g.W + 2 * g.pw, "] (input ",
           shape_str(x.shape()), ", padding ", pair_str(p), ")");
  g.OH = (g.H + 2 * g.ph - g.kh) / g.sh + 1;
  g.OW = (g.W + 2 * g.pw - g.kw) / g.sw + 1;
  return g;
}

// Runs one pooling kernel on t's device: cpu(args...) or cuda(args..., t's current stream). The CPU kernel's
// signature alone fixes P (type_identity_t keeps the CUDA one out of deduction).
template <class... P, class... A>
static void run_pool(const Tensor& t, void (*cpu)(P...), std::type_identity_t<void (*)(P..., cudaStream_t)> cuda,
                     A&&... args) {
  if (t.is_cuda())
    cuda(std::forward<A>(args)..., current_stream(t.device()));
  else
    cpu(std::forward<A>(args)...);
}

Tensor max_pool2d(const Tensor& x, const Pool2dOptions& opt) {
  const Pool2dGeom g = pool_check("max_pool2d", x, opt);
  Tensor y = empty({x.size(0), x.size(1), g.OH, g.OW}, x.dtype(), x.device());
  // The argmax of each window (flat h*W+w in its plane), kept for backward: the gradient goes to the first maximum.
  Tensor idx = empty(y.shape(), DType::i32, x.device());
  run_pool(x, max_pool2d_forward_cpu, max_pool2d_forward_cuda, x.dtype(), g, x.raw_data(), y.raw_data(),
           idx.data<int32_t>());
  record(y, "max_pool2d", {x}, [g, idx, x_shape = x.shape()](const Tensor& dy, const NeedsGrad&) {
    Tensor dx = empty(x_shape, dy.dtype(), dy.device());
    run_pool(dy, max_pool2d_backward_cpu, max_pool2d_backward_cuda, dy.dtype(), g, dy.raw_data(),
             idx.data<int32_t>(), dx.raw_data());
    return std::vector<Tensor>{dx};
  });
  return y;
}

using AvgPoolCpu = void (*)(DType, const Pool2dGeom&, const void*, void*);
using AvgPoolCuda = void (*)(DType, const Pool2dGeom&, const void*, void*, cudaStream_t);

// avg_pool2d and adaptive_avg_pool2d past their checks: y = forward(x), dx = backward(dy), both needing only g.
static Tensor avg_pool(const char* op, const Tensor& x, const Pool2dGeom& g, AvgPoolCpu fwd_cpu, AvgPoolCuda fwd_cuda,
                       AvgPoolCpu bwd_cpu, AvgPoolCuda bwd_cuda) {
  Tensor y = empty({x.size(0), x.size(1), g.OH, g.OW}, x.dtype(), x.device());
  run_pool(x, fwd_cpu, fwd_cuda, x.dtype(), g, x.raw_data(), y.raw_data());
  record(y, op, {x}, [g, bwd_cpu, bwd_cuda, x_shape = x.shape()](const Tensor& dy, const NeedsGrad&) {
    Tensor dx = empty(x_shape, dy.dtype(), dy.device());
    run_pool(dy, bwd_cpu, bwd_cuda, dy.dtype(), g, dy.raw_data(), dx.raw_data());
    return std::vector<Tensor>{dx};
  });
  return y;
}

Tensor avg_pool2d(const Tensor& x, const Pool2dOptions& opt) {
  return avg_pool("avg_pool2d", x, pool_check("avg_pool2d", x, opt), avg_pool2d_forward_cpu, avg_pool2d_forward_cuda,
                  avg_pool2d_backward_cpu, avg_pool2d_backward_cuda);
}

Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_h, int64_t out_w) {
  check_pool_input("adaptive_avg_pool2d", x);
  EP_CHECK(out_h > 0 && out_w > 0, ValueError, "[adaptive_avg_pool2d] output size must be positive, got [", out_h,
           ",", out_w, "]");
  Pool2dGeom g;
  g.NC = x.size(0) * x.size(1), g.H = x.size(2), g.W = x.size(3), g.OH = out_h, g.OW = out_w;
  return avg_pool("adaptive_avg_pool2d", x, g, adaptive_avg_pool2d_forward_cpu, adaptive_avg_pool2d_forward_cuda,
                  adaptive_avg_pool2d_backward_cpu, adaptive_avg_pool2d_backward_cuda);
}

}  // namespace ep
