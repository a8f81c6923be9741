// batch_norm.cpp — batch normalization over [N, C, *] with PyTorch's semantics (biased variance to normalize, unbiased
// variance and `momentum` for the running statistics), forward and explicit backward kernels in both modes.
// Also the deferred running-stat bookkeeping's two kernels (merge a micro-batch's statistics, commit them), which the
// pipeline's deferred BatchNorm layer (layers/basic.cpp, torchgpipe's DeferredBatchNorm) drives; batch_norm itself is
// not micro-batch aware: running_mean/var are updated in place, outside autograd, on every training call.
// batch_norm_relu / batch_norm_relu6 are the same op with the activation fused (torchvision's Conv2dNormActivation).
// N = batch, C = channels, S = product of the spatial dims (1 for [N, C]).
#include "engine/ops.h"
#include "engine/op_registry.h"
#include "engine/ops/batch_norm_kernels.h"
#include "engine/ops/elementwise_kernels.h"

namespace ep {

EP_DIFFERENTIABLE_OPS("batch_norm", "batch_norm_relu", "batch_norm_relu6");

namespace {

// The element-wise op a fused activation is on its own, for the CUDA path (which runs it as a second kernel).
UnaryOp unary_of(BnAct act) { return act == BnAct::relu ? UnaryOp::relu : UnaryOp::relu6; }

// batch_norm, then `act` (none, relu, relu6) as part of the same op, recorded as `name`.
Tensor batch_norm_apply(const char* name, BnAct act, const Tensor& x, const Tensor& weight, const Tensor& bias,
                        Tensor& running_mean, Tensor& running_var, bool training, double momentum, double eps) {
  check_floating(name, x);
  EP_CHECK(x.dim() >= 2, ShapeError, "[", name, "] expected an input [N,C,*] with at least 2 dims, got ",
           shape_str(x.shape()));
  const int64_t N = x.size(0), C = x.size(1);
  int64_t S = 1;
  for (int64_t d = 2; d < x.dim(); ++d) S *= x.size(d);
  auto check_vec = [&](const Tensor& t, const char* what) {
    if (!t.defined()) return;
    check_same_dtype(name, x, t);
    check_same_device(name, x, t);
    EP_CHECK(t.shape() == Shape{C}, ShapeError, "[", name, "] expected ", what, " [", C, "] for input ",
             shape_str(x.shape()), ", got ", shape_str(t.shape()));
  };
  check_vec(weight, "weight");
  check_vec(bias, "bias");
  check_vec(running_mean, "running_mean");
  check_vec(running_var, "running_var");
  EP_CHECK(running_mean.defined() == running_var.defined(), ValueError, "[", name,
           "] running_mean and running_var must be both defined or both undefined");
  EP_CHECK(training || running_mean.defined(), ValueError, "[", name, "] eval mode needs running_mean and running_var");
  EP_CHECK(eps >= 0, ValueError, "[", name, "] eps must be >= 0, got ", eps);
  // PyTorch's check (F.batch_norm): one value per channel has no variance to normalize by.
  EP_CHECK(!training || N * S != 1, ValueError, "[", name,
           "] expected more than 1 value per channel when training, got input ", shape_str(x.shape()));

  const DType dt = x.dtype();
  const Device dev = x.device();
  cudaStream_t st = dev.is_cuda() ? current_stream(dev) : nullptr;
  Tensor mean, invstd;
  void* rm = running_mean.defined() ? running_mean.raw_data() : nullptr;
  void* rv = running_var.defined() ? running_var.raw_data() : nullptr;
  {
    NoGradGuard ng;  // statistics and running stats are not part of the graph
    if (!training) {
      // A copy: the running statistics may change in place before this node's backward runs.
      mean = running_mean.detach().clone();
      invstd = empty({C}, dt, dev);
      if (dev.is_cuda())
        batch_norm_invstd_cuda(dt, running_var.raw_data(), eps, invstd.raw_data(), C, st);
      else
        batch_norm_invstd_cpu(dt, running_var.raw_data(), eps, invstd.raw_data(), C);
    } else if (N * S == 0) {
      // Empty batch: nothing to normalize and no statistics to commit (PyTorch leaves the running stats alone).
      mean = zeros({C}, dt, dev);
      invstd = zeros({C}, dt, dev);
    } else {
      mean = empty({C}, dt, dev);
      invstd = empty({C}, dt, dev);
      if (dev.is_cuda())  // the CPU fills mean and invstd below, with the output
        batch_norm_stats_cuda(dt, x.raw_data(), N, C, S, eps, mean.raw_data(), invstd.raw_data(), rm, rv, momentum,
                              st);
    }
  }
  const void* wp = weight.defined() ? weight.raw_data() : nullptr;
  const void* bp = bias.defined() ? bias.raw_data() : nullptr;
  Tensor y = empty(x.shape(), dt, dev);
  if (dev.is_cuda()) {
    // With an activation, the normalized values go to a temporary that lives for this call only (the unary kernel's
    // input and output are __restrict__, so not in place), and the activation's kernel writes y from it.
    const Tensor normalized = act == BnAct::none ? y : empty(x.shape(), dt, dev);
    batch_norm_forward_cuda(dt, x.raw_data(), mean.raw_data(), invstd.raw_data(), wp, bp, normalized.raw_data(), N,
                            C, S, st);
    if (act != BnAct::none)
      unary_forward_cuda(unary_of(act), dt, normalized.raw_data(), y.raw_data(), y.numel(), 0, st);
  } else if (training && N * S > 0) {  // statistics and normalizing in one pass over each channel
    batch_norm_train_forward_cpu(dt, x.raw_data(), wp, bp, y.raw_data(), N, C, S, eps, mean.raw_data(),
                                 invstd.raw_data(), rm, rv, momentum, act);
  } else {
    batch_norm_forward_cpu(dt, x.raw_data(), mean.raw_data(), invstd.raw_data(), wp, bp, y.raw_data(), N, C, S, act);
  }

  // With an activation the node also keeps its output, where the activation's gradient is taken (see BnAct).
  record(y, name, {x, weight, bias},
         [xs = saved(x), ws = saved(weight), ms = saved(mean), is = saved(invstd),
          ys = act != BnAct::none ? saved(y) : Tensor(), act, training, N, C, S](const Tensor& dy_out,
                                                                                 const NeedsGrad& need) {
           const DType dt = dy_out.dtype();
           const Device dev = dy_out.device();
           cudaStream_t st = dev.is_cuda() ? current_stream(dev) : nullptr;
           const void* wp = ws.defined() ? ws.raw_data() : nullptr;
           const void* zp = ys.defined() ? ys.raw_data() : nullptr;
           Tensor dy = dy_out;
           BnAct cpu_act = act;  // the CPU kernels apply the activation's gradient as they read dy
           if (dev.is_cuda() && act != BnAct::none) {  // the activation's backward as its own kernel
             dy = empty(dy_out.shape(), dt, dev);
             unary_backward_cuda(unary_of(act), dt, ys.raw_data(), ys.raw_data(), dy_out.raw_data(), dy.raw_data(),
                                 dy.numel(), 0, st);
             cpu_act = BnAct::none;
           }
           Tensor dx, sum_dy, sum_dy_xhat;
           // The sums are dbias and dweight; training's dx needs them too (the batch statistics depend on x).
           if (need[1] || need[2] || (need[0] && training)) {
             sum_dy = empty({C}, dt, dev);
             sum_dy_xhat = empty({C}, dt, dev);
           }
           if (!dev.is_cuda() && need[0] && training) {  // the sums and dx in one pass over each channel
             dx = empty(xs.shape(), dt, dev);
             batch_norm_train_backward_cpu(dt, xs.raw_data(), dy.raw_data(), ms.raw_data(), is.raw_data(), wp,
                                           sum_dy.raw_data(), sum_dy_xhat.raw_data(), dx.raw_data(), N, C, S,
                                           cpu_act, zp);
             return std::vector<Tensor>{dx, need[1] ? sum_dy_xhat : Tensor(), need[2] ? sum_dy : Tensor()};
           }
           if (sum_dy.defined()) {
             if (dev.is_cuda())
               batch_norm_backward_reduce_cuda(dt, xs.raw_data(), dy.raw_data(), ms.raw_data(), is.raw_data(),
                                               sum_dy.raw_data(), sum_dy_xhat.raw_data(), N, C, S, st);
             else
               batch_norm_backward_reduce_cpu(dt, xs.raw_data(), dy.raw_data(), ms.raw_data(), is.raw_data(),
                                              sum_dy.raw_data(), sum_dy_xhat.raw_data(), N, C, S, cpu_act, zp);
           }
           if (need[0]) {
             dx = empty(xs.shape(), dt, dev);
             const void* sd = sum_dy.defined() ? sum_dy.raw_data() : nullptr;
             const void* sdx = sum_dy_xhat.defined() ? sum_dy_xhat.raw_data() : nullptr;
             if (dev.is_cuda())
               batch_norm_backward_cuda(dt, xs.raw_data(), dy.raw_data(), ms.raw_data(), is.raw_data(), wp, sd, sdx,
                                        dx.raw_data(), N, C, S, training, st);
             else
               batch_norm_backward_cpu(dt, xs.raw_data(), dy.raw_data(), ms.raw_data(), is.raw_data(), wp, sd, sdx,
                                       dx.raw_data(), N, C, S, training, cpu_act, zp);
           }
           return std::vector<Tensor>{dx, need[1] ? sum_dy_xhat : Tensor(), need[2] ? sum_dy : Tensor()};
         });
  return y;
}

}  // namespace

Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& running_mean,
                  Tensor& running_var, bool training, double momentum, double eps) {
  return batch_norm_apply("batch_norm", BnAct::none, x, weight, bias, running_mean, running_var, training, momentum,
                          eps);
}

Tensor batch_norm_relu(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& running_mean,
                       Tensor& running_var, bool training, double momentum, double eps) {
  return batch_norm_apply("batch_norm_relu", BnAct::relu, x, weight, bias, running_mean, running_var, training,
                          momentum, eps);
}

Tensor batch_norm_relu6(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& running_mean,
                        Tensor& running_var, bool training, double momentum, double eps) {
  return batch_norm_apply("batch_norm_relu6", BnAct::relu6, x, weight, bias, running_mean, running_var, training,
                          momentum, eps);
}

namespace {

void check_stats(const char* op, const Tensor& mean, const Tensor& m2, const Tensor& a, const Tensor& b) {
  for (const Tensor* t : {&mean, &m2, &a, &b})
    EP_CHECK(t->defined() && t->dim() == 1 && t->numel() == mean.numel(), ShapeError, "[", op,
             "] expects four [C] tensors of one length");
  EP_CHECK(mean.dtype() == DType::f64 && m2.dtype() == DType::f64, DTypeError, "[", op,
           "] accumulates in f64 tensors, got ", dtype_name(mean.dtype()), " and ", dtype_name(m2.dtype()));
  check_floating(op, a);
  check_same_dtype(op, a, b);
  for (const Tensor* t : {&m2, &a, &b}) check_same_device(op, mean, *t);
}

}  // namespace

void batch_norm_merge_stats_(Tensor& mean, Tensor& m2, int64_t count, const Tensor& mean_b, const Tensor& var_b,
                             int64_t n) {
  check_stats("batch_norm_merge_stats_", mean, m2, mean_b, var_b);
  EP_CHECK(count >= 0 && n >= 1, ValueError, "[batch_norm_merge_stats_] counts must be >= 0 and >= 1, got ", count,
           " and ", n);
  NoGradGuard ng;
  const Device dev = mean.device();
  auto* mp = mean.data<double>();
  auto* m2p = m2.data<double>();
  if (dev.is_cuda())
    batch_norm_merge_stats_cuda(mean_b.dtype(), double(count), double(n), mean_b.raw_data(), var_b.raw_data(), mp,
                                m2p, mean.numel(), current_stream(dev));
  else
    batch_norm_merge_stats_cpu(mean_b.dtype(), double(count), double(n), mean_b.raw_data(), var_b.raw_data(), mp,
                               m2p, mean.numel());
}

void batch_norm_commit_stats_(Tensor& running_mean, Tensor& running_var, const Tensor& mean, const Tensor& m2,
                              int64_t count, double momentum) {
  check_stats("batch_norm_commit_stats_", mean, m2, running_mean, running_var);
  EP_CHECK(count >= 1, ValueError, "[batch_norm_commit_stats_] needs at least one value, got ", count);
  NoGradGuard ng;
  const Device dev = mean.device();
  if (dev.is_cuda())
    batch_norm_commit_stats_cuda(running_mean.dtype(), double(count), momentum, mean.data<double>(),
                                 m2.data<double>(), running_mean.raw_data(), running_var.raw_data(), mean.numel(),
                                 current_stream(dev));
  else
    batch_norm_commit_stats_cpu(running_mean.dtype(), double(count), momentum, mean.data<double>(),
                                m2.data<double>(), running_mean.raw_data(), running_var.raw_data(), mean.numel());
}

}  // namespace ep
