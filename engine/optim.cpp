// optim.cpp — SGD, AdamW and clip_grad_norm_: option checks, lazily created state, per-parameter dispatch to the
// fused kernels of engine/cpu/optim.cpp and engine/cuda/optim.cu. Not autograd: updates write parameter storage.
#include "engine/optim.h"

#include <cmath>
#include <map>
#include <set>

#include "engine/ops.h"
#include "engine/ops/optim_kernels.h"

namespace ep {

// ---- Optimizer -------------------------------------------------------------------------------------------------------
Optimizer::Optimizer(std::vector<Tensor> params, double lr, const char* name)
    : params_(std::move(params)), lr_(lr), name_(name) {
  EP_CHECK(std::isfinite(lr) && lr >= 0, ValueError, "[", name, "] invalid learning rate: ", lr);
  std::set<const TensorImpl*> seen;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    EP_CHECK(p.defined(), ValueError, "[", name, "] parameter ", i, " is an undefined tensor");
    EP_CHECK(p.dtype() == DType::f32 || p.dtype() == DType::f64, DTypeError, "[", name, "] parameter ", i, " is ",
             p.str(), "; only f32 and f64 parameters are supported");
    EP_CHECK(p.is_leaf(), ValueError, "[", name, "] can't optimize a non-leaf tensor (parameter ", i, ", ", p.str(),
             ")");
    // A parameter listed twice would be updated twice per step.
    EP_CHECK(seen.insert(p.impl_ptr().get()).second, ValueError, "[", name, "] parameter ", i,
             " appears more than once");
  }
}

void Optimizer::zero_grad(bool set_to_none) {
  for (Tensor& p : params_) {
    if (set_to_none) {
      p.zero_grad();
    } else if (p.grad().defined()) {
      Tensor g = p.grad();
      fill_(g, 0.0);
    }
  }
}

void Optimizer::set_lr(double lr) {
  EP_CHECK(std::isfinite(lr) && lr >= 0, ValueError, "[", name_, "] invalid learning rate: ", lr);
  lr_ = lr;
}

void Optimizer::set_step_count(int64_t n) {
  EP_CHECK(n >= 0, ValueError, "[", name_, "] step count must be >= 0, got ", n);
  step_count_ = n;
}

bool Optimizer::has_grad(size_t i) const {
  const Tensor& p = params_[i];
  Tensor g = p.grad();
  if (!g.defined()) return false;
  EP_CHECK(g.shape() == p.shape(), ShapeError, "[", name_, "] grad of parameter ", i, " has shape ",
           shape_str(g.shape()), ", parameter ", shape_str(p.shape()));
  EP_CHECK(g.dtype() == p.dtype(), DTypeError, "[", name_, "] grad of parameter ", i, " is ", dtype_name(g.dtype()),
           ", parameter ", dtype_name(p.dtype()));
  EP_CHECK(g.device() == p.device(), DeviceError, "[", name_, "] grad of parameter ", i, " is on ",
           g.device().str(), ", parameter on ", p.device().str());
  return true;
}

void Optimizer::check_state(size_t i, const Tensor& s, const char* what) const {
  const Tensor& p = params_[i];
  EP_CHECK(s.shape() == p.shape() && s.dtype() == p.dtype() && s.device() == p.device(), ValueError, "[", name_,
           "] ", what, " of parameter ", i, " is ", s.str(), ", expected ", p.str());
}

// ---- SGD -------------------------------------------------------------------------------------------------------------
static const SGDOptions& check_sgd(const SGDOptions& o) {
  EP_CHECK(std::isfinite(o.momentum) && o.momentum >= 0, ValueError, "[sgd] invalid momentum value: ", o.momentum);
  EP_CHECK(std::isfinite(o.weight_decay) && o.weight_decay >= 0, ValueError, "[sgd] invalid weight_decay value: ",
           o.weight_decay);
  EP_CHECK(std::isfinite(o.dampening), ValueError, "[sgd] invalid dampening value: ", o.dampening);
  EP_CHECK(!o.nesterov || (o.momentum > 0 && o.dampening == 0), ValueError,
           "[sgd] nesterov momentum requires a momentum and zero dampening (momentum ", o.momentum, ", dampening ",
           o.dampening, ")");
  return o;
}

SGD::SGD(std::vector<Tensor> params, const SGDOptions& opt)
    : Optimizer(std::move(params), opt.lr, "sgd"), opt_(check_sgd(opt)) {
  momentum_buffer_.resize(params_.size());
}

namespace {
// CUDA parameters are updated in groups of one device and dtype, a few launches per group (optim_kernels.h).
using CudaGroupKey = std::pair<int, DType>;
}  // namespace

void SGD::step() {
  const SgdHyper base{lr_, opt_.momentum, opt_.dampening, opt_.weight_decay, opt_.nesterov, false};
  std::map<CudaGroupKey, std::vector<SgdTensor>> on_cuda;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!has_grad(i)) continue;
    Tensor& p = params_[i];
    Tensor g = p.grad();
    bool init_buf = false;
    void* buf = nullptr;
    if (opt_.momentum != 0) {
      Tensor& b = momentum_buffer_[i];
      if (!b.defined()) {
        b = empty_like(p);  // the kernel writes buf = d on this first step (PyTorch: clone of the gradient)
        init_buf = true;
      }
      check_state(i, b, "momentum_buffer");
      buf = b.raw_data();
    }
    if (p.is_cuda()) {
      on_cuda[{p.device().index, p.dtype()}].push_back({p.raw_data(), g.raw_data(), buf, p.numel(), init_buf});
    } else {
      SgdHyper h = base;
      h.init_buf = init_buf;
      sgd_step_cpu(p.dtype(), p.raw_data(), g.raw_data(), buf, p.numel(), h);
    }
  }
  for (const auto& [key, tensors] : on_cuda)
    sgd_step_multi_cuda(key.second, tensors.data(), int64_t(tensors.size()), base,
                        current_stream(Device::cuda(key.first)));
  ++step_count_;
}

void SGD::visit_state(const OptimStateVisitor& f) {
  if (opt_.momentum == 0) return;  // plain SGD keeps no state
  for (size_t i = 0; i < params_.size(); ++i) f(i, "momentum_buffer", momentum_buffer_[i]);
}

// ---- AdamW -----------------------------------------------------------------------------------------------------------
static const AdamWOptions& check_adamw(const AdamWOptions& o) {
  EP_CHECK(std::isfinite(o.eps) && o.eps >= 0, ValueError, "[adamw] invalid epsilon value: ", o.eps);
  EP_CHECK(o.beta1 >= 0 && o.beta1 < 1, ValueError, "[adamw] invalid beta parameter at index 0: ", o.beta1,
           " (must be in [0, 1))");
  EP_CHECK(o.beta2 >= 0 && o.beta2 < 1, ValueError, "[adamw] invalid beta parameter at index 1: ", o.beta2,
           " (must be in [0, 1))");
  EP_CHECK(std::isfinite(o.weight_decay) && o.weight_decay >= 0, ValueError, "[adamw] invalid weight_decay value: ",
           o.weight_decay);
  return o;
}

AdamW::AdamW(std::vector<Tensor> params, const AdamWOptions& opt)
    : Optimizer(std::move(params), opt.lr, "adamw"), opt_(check_adamw(opt)) {
  exp_avg_.resize(params_.size());
  exp_avg_sq_.resize(params_.size());
  param_step_.assign(params_.size(), 0);
  decay_exempt_.assign(params_.size(), false);
}

void AdamW::set_weight_decay_exempt(std::vector<bool> exempt) {
  EP_CHECK(exempt.size() == params_.size(), ValueError, "[adamw] weight-decay exemptions for ", exempt.size(),
           " parameters, optimizer has ", params_.size());
  decay_exempt_ = std::move(exempt);
}

void AdamW::step() {
  std::map<CudaGroupKey, std::vector<AdamWTensor>> on_cuda;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!has_grad(i)) continue;
    Tensor& p = params_[i];
    Tensor g = p.grad();
    Tensor& m = exp_avg_[i];
    Tensor& v = exp_avg_sq_[i];
    if (!m.defined() || !v.defined()) {  // first step of this parameter (or a checkpoint without its state)
      m = zeros_like(p);
      v = zeros_like(p);
      param_step_[i] = 0;
    }
    check_state(i, m, "exp_avg");
    check_state(i, v, "exp_avg_sq");
    const int64_t t = ++param_step_[i];
    const double bc1 = 1.0 - std::pow(opt_.beta1, double(t));
    const double bc2 = 1.0 - std::pow(opt_.beta2, double(t));
    AdamWHyper h;
    h.decay = decay_exempt_[i] ? 1.0 : 1.0 - lr_ * opt_.weight_decay;
    h.beta1 = opt_.beta1;
    h.beta2 = opt_.beta2;
    h.eps = opt_.eps;
    h.step_size = lr_ / bc1;
    h.bc2_sqrt = std::sqrt(bc2);
    if (p.is_cuda())
      on_cuda[{p.device().index, p.dtype()}].push_back(
          {p.raw_data(), g.raw_data(), m.raw_data(), v.raw_data(), p.numel(), h});
    else
      adamw_step_cpu(p.dtype(), p.raw_data(), g.raw_data(), m.raw_data(), v.raw_data(), p.numel(), h);
  }
  for (const auto& [key, tensors] : on_cuda)
    adamw_step_multi_cuda(key.second, tensors.data(), int64_t(tensors.size()), current_stream(Device::cuda(key.first)));
  ++step_count_;
}

void AdamW::visit_state(const OptimStateVisitor& f) {
  for (size_t i = 0; i < params_.size(); ++i) {
    f(i, "exp_avg", exp_avg_[i]);
    f(i, "exp_avg_sq", exp_avg_sq_[i]);
  }
}

void AdamW::set_step_count(int64_t n) {
  Optimizer::set_step_count(n);
  param_step_.assign(params_.size(), n);
}

// ---- clip_grad_norm_ -------------------------------------------------------------------------------------------------
namespace {
// The parameters' defined grads with their indices in `params`.
std::vector<std::pair<size_t, Tensor>> defined_grads(const std::vector<Tensor>& params, const char* op) {
  std::vector<std::pair<size_t, Tensor>> grads;
  for (size_t i = 0; i < params.size(); ++i) {
    if (!params[i].defined() || !params[i].grad().defined()) continue;
    check_floating(op, params[i].grad());
    grads.emplace_back(i, params[i].grad());
  }
  return grads;
}
}  // namespace

std::vector<double> grad_sum_squares(const std::vector<Tensor>& params) {
  std::vector<double> out(params.size(), 0.0);
  // One double per grad: CPU sums directly; CUDA sums land in a per-device buffer read back with one copy per device.
  std::map<int, std::vector<std::pair<size_t, Tensor>>> on_cuda;
  for (auto& [i, g] : defined_grads(params, "clip_grad_norm_")) {
    if (g.is_cuda())
      on_cuda[g.device().index].emplace_back(i, g);
    else
      out[i] = sumsq_cpu(g.dtype(), g.raw_data(), g.numel());
  }
  for (auto& [index, gs] : on_cuda) {
    const Device d = Device::cuda(index);
    const int64_t k = int64_t(gs.size());
    Tensor sums = empty({k}, DType::f64, d);
    Tensor partials = empty({k * kSumsqMaxPartials}, DType::f64, d);
    double* sp = sums.data<double>();
    double* pp = partials.data<double>();
    for (int64_t j = 0; j < k; ++j) {
      const Tensor& g = gs[size_t(j)].second;
      sumsq_cuda(g.dtype(), g.raw_data(), g.numel(), sp + j, pp + j * kSumsqMaxPartials, current_stream(d));
    }
    const std::vector<double> host = sums.to_vector<double>();
    for (int64_t j = 0; j < k; ++j) out[gs[size_t(j)].first] = host[size_t(j)];
  }
  return out;
}

double norm_from_sum_squares(const std::vector<double>& sum_squares) {
  double total_sq = 0;
  for (double s : sum_squares) total_sq += s;
  return std::sqrt(total_sq);
}

void clip_grads_to_norm(const std::vector<Tensor>& params, double max_norm, double total) {
  EP_CHECK(max_norm >= 0, ValueError, "[clip_grad_norm_] max_norm must be >= 0, got ", max_norm);
  // PyTorch multiplies by clamp(max_norm / (total + 1e-6), max=1); a factor of 1 changes nothing, so skip it.
  const double coef = max_norm / (total + 1e-6);
  if (!(coef < 1.0)) return;
  for (auto& [i, g] : defined_grads(params, "clip_grad_norm_")) {
    if (g.is_cuda())
      clip_scale_cuda(g.dtype(), g.raw_data(), g.numel(), coef, current_stream(g.device()));
    else
      clip_scale_cpu(g.dtype(), g.raw_data(), g.numel(), coef);
  }
}

double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm) {
  EP_CHECK(max_norm >= 0, ValueError, "[clip_grad_norm_] max_norm must be >= 0, got ", max_norm);
  const double total = norm_from_sum_squares(grad_sum_squares(params));
  clip_grads_to_norm(params, max_norm, total);
  return total;
}

}  // namespace ep
