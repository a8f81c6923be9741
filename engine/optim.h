// optim.h — SGD and AdamW with PyTorch's update rules (torch.optim, single-tensor path), their state exposed by name
// for checkpoints, and clip_grad_norm_. The math runs as fused kernels (engine/ops/optim_kernels.h), CPU and CUDA.
// Not supported: parameter groups (one lr for all), maximize, amsgrad, sparse gradients. Nothing here is recorded
// by autograd.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "engine/tensor.h"

namespace ep {

// The state visitor: (parameter index, "momentum_buffer" | "exp_avg" | "exp_avg_sq", the state tensor). The tensor
// is passed by reference and may be undefined (no step with a gradient yet): a checkpoint loader may assign it a
// tensor of the parameter's shape, dtype and device, and the next step() then continues from it.
using OptimStateVisitor = std::function<void(size_t param_index, const char* name, Tensor& state)>;

// Common interface so apps can pick an optimizer from a config. Parameters are f32/f64 leaf tensors; each keeps its
// own device. step() skips parameters whose grad is undefined (their state is left as it is).
class Optimizer {
 public:
  explicit Optimizer(std::vector<Tensor> params, double lr, const char* name);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  virtual void step() = 0;
  // set_to_none (PyTorch's default) drops the grads; otherwise they are filled with zeros in place.
  void zero_grad(bool set_to_none = true);
  double lr() const { return lr_; }
  const char* name() const { return name_; }  // "sgd" | "adamw" (a checkpoint records it)
  void set_lr(double lr);  // ValueError when negative or not finite
  const std::vector<Tensor>& params() const { return params_; }
  // Number of step() calls made (a checkpoint stores it; set_step_count restores it).
  int64_t step_count() const { return step_count_; }
  virtual void set_step_count(int64_t n);
  virtual void visit_state(const OptimStateVisitor& f) = 0;

 protected:
  // Checks p.grad() against p ("[op] ..."): same shape, dtype and device. False when the grad is undefined.
  bool has_grad(size_t i) const;
  // Checks a state tensor assigned through visit_state before it is used.
  void check_state(size_t i, const Tensor& s, const char* what) const;
  std::vector<Tensor> params_;
  double lr_;
  int64_t step_count_ = 0;
  const char* name_;
};

// torch.optim.SGD defaults.
struct SGDOptions {
  double lr = 1e-3;
  double momentum = 0;
  double dampening = 0;
  double weight_decay = 0;
  bool nesterov = false;
};

// d = g + wd*p; with momentum: buf = momentum*buf + (1-dampening)*d (the first step sets buf = d), then
// d = nesterov ? d + momentum*buf : buf; finally p -= lr*d.
class SGD : public Optimizer {
 public:
  SGD(std::vector<Tensor> params, const SGDOptions& opt = {});
  void step() override;
  void visit_state(const OptimStateVisitor& f) override;  // "momentum_buffer" per parameter when momentum != 0
  const SGDOptions& options() const { return opt_; }

 private:
  SGDOptions opt_;
  std::vector<Tensor> momentum_buffer_;
};

// torch.optim.AdamW defaults.
struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;
};

// With t the parameter's own step count (PyTorch keeps one per parameter):
// p *= 1 - lr*wd; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2; p -= lr * (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps).
class AdamW : public Optimizer {
 public:
  AdamW(std::vector<Tensor> params, const AdamWOptions& opt = {});
  void step() override;
  void visit_state(const OptimStateVisitor& f) override;  // "exp_avg", "exp_avg_sq" per parameter
  // Also sets every parameter's own step count to n (what a checkpoint of a run where every parameter had a
  // gradient at every step means). A parameter whose state is still undefined starts again from t = 1.
  void set_step_count(int64_t n) override;
  int64_t param_step(size_t i) const { return param_step_.at(i); }
  const AdamWOptions& options() const { return opt_; }
  // Parameters marked true skip the decoupled weight decay: HF's run_glue "no_decay" group (biases and LayerNorm
  // weights), which torch.optim expresses as a second parameter group with weight_decay 0. One flag per parameter.
  void set_weight_decay_exempt(std::vector<bool> exempt);

 private:
  AdamWOptions opt_;
  std::vector<bool> decay_exempt_;
  std::vector<Tensor> exp_avg_, exp_avg_sq_;
  std::vector<int64_t> param_step_;
};

// torch.nn.utils.clip_grad_norm_ (L2): total = sqrt(sum over every defined grad of sum g^2), each grad's sum of
// squares computed in double on the CPU and in the grad's dtype within a CUDA block (double across blocks); grads on
// several devices are fine. When max_norm / (total + 1e-6) < 1 every grad is multiplied by that factor. Returns
// total (0 when no parameter has a grad). ValueError for a negative or NaN max_norm.
double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm);
// Its two halves, for a model whose parameters live in several processes (a pipeline with one stage per process):
// each grad's sum of squares (0 for a parameter without a grad), one per parameter, so the processes can add theirs
// in parameter order; and the scaling by clamp(max_norm / (total + 1e-6), max=1) given the total norm.
std::vector<double> grad_sum_squares(const std::vector<Tensor>& params);
double norm_from_sum_squares(const std::vector<double>& sum_squares);  // sqrt of their sum, in order
void clip_grads_to_norm(const std::vector<Tensor>& params, double max_norm, double total);

}  // namespace ep
