// anomaly.h — anomaly mode (PyTorch's detect_anomaly; the trainers' --detect-anomaly): every recorded op's output
// and every gradient a backward returns is checked for NaN/Inf, and the first op that makes one out of finite values
// is named, with the module whose parameters it used (or the last one before it), as an AnomalyError.
// A debugging aid, not a guard: one reduction per checked tensor, and the run stops at the first finding.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace ep {

struct Node;

// Process-wide, so pipeline stage threads see it too (torch.autograd.set_detect_anomaly is global as well).
bool anomaly_mode();
void set_anomaly_mode(bool on);

// Names the tensors ops report: a model's parameters and buffers by their state_dict keys. The registry follows each
// handle's current storage (a pipeline may have moved it) when it is set, so call it once the model is in place; it
// replaces any earlier naming. Parameters named here are how findings say where they are ("in features.3.conv.1").
void anomaly_name_tensors(const std::vector<std::pair<std::string, Tensor*>>& named);
void anomaly_forget_names();

// Marks a forward section on this thread (a model's unit: "block3"), so findings inside it say so and a
// parameter-free op is never placed after a module that ran before the section. Nothing outside anomaly mode.
class AnomalyScope {
 public:
  explicit AnomalyScope(const std::string& section);
  ~AnomalyScope();
  AnomalyScope(const AnomalyScope&) = delete;
  AnomalyScope& operator=(const AnomalyScope&) = delete;

 private:
  bool active_;
  std::string previous_section_, previous_module_;
};

// Called by record() in anomaly mode, with the node just attached to `out`: fills its context and throws
// AnomalyError when `out` holds NaN/Inf. The error says whether the inputs were finite (the op made the values) or
// which input already held them (data fed to the model, or a tensor computed outside the recorded graph).
void anomaly_check_forward(Node& node, const Tensor& out, const std::vector<Tensor>& inputs);

// Called by run_backward in anomaly mode for each gradient node.backward returned (its incoming gradient was
// checked before, so a finding is this op's doing). Throws AnomalyError naming the op and the input.
void anomaly_check_gradient(const Node& node, size_t input, const Tensor& grad);
// A sum of finite gradients can still overflow: the gradient several consumers sent to `node`'s output, and a leaf's
// .grad after a gradient was added to it (accumulation across micro-batches or backward calls).
void anomaly_check_summed_gradient(const Node& node, const Tensor& total);
void anomaly_check_accumulated_gradient(const TensorImpl& leaf, const Tensor& total);
// The gradient handed to backward() itself.
void anomaly_check_root_gradient(const Tensor& grad);

}  // namespace ep
