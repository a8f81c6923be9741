// module.h — the module conventions every layer and model follows, and the generic helpers built on them
// (parameters, state_dict, parameter counts, device/dtype moves, train/eval). Not a base class: modules are plain structs.
//
// A module is a struct with:
//   * public Tensor members named as PyTorch names them (weight, bias, running_mean, running_var, num_batches_tracked),
//     so state-dict keys come out identical and weights load by name;
//   * `bool train` (true after construction, as nn.Module) and `void set_train(bool)` that also sets its children;
//   * `template <class F> void visit(const std::string& prefix, F&& f)` calling f(name, Tensor&, is_buffer) for every
//     parameter (is_buffer = false) and buffer (true), in PyTorch's state_dict order, with the full dotted key;
//   * `Tensor forward(const Tensor&)`.
// Modules hold their tensors by handle, so a model must stay where it was built once closures (units()) capture it.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "engine/anomaly.h"
#include "engine/random.h"
#include "engine/tensor.h"

namespace ep::nn {

// What a unit sees of its batch besides the activation it is handed: the key padding mask [N, T] of a token batch
// (undefined for images). Passed alongside rather than stored in the model, so micro-batches can run concurrently.
struct UnitContext {
  Tensor key_mask;
};

// A named piece of the forward pass, for cutting a model into split points and pipeline stages. Running a model's
// units in order equals its forward(). Image models' units ignore the context and are written as one-argument lambdas.
struct Unit {
  std::string name;
  std::function<Tensor(const Tensor&, const UnitContext&)> fn;
  // The random streams the unit draws from (its dropout sites): recomputation rewinds them so a second forward
  // draws the same masks. The model owns them; empty for units without randomness.
  std::vector<Generator*> generators;
  // Visits the parameters and buffers the unit computes with (keys relative to their module), so a pipeline stage
  // can move them to its device. Null for units that hold no tensors (an activation). The units of one model own
  // disjoint modules that together cover its whole state (tested), so moving some units leaves the rest in place.
  using TensorVisitor = std::function<void(const std::string& name, Tensor& t, bool is_buffer)>;
  std::function<void(const TensorVisitor&)> visit_owned;
  template <class F> Unit(std::string unit_name, F f) : name(std::move(unit_name)) {
    if constexpr (std::is_invocable_v<F, const Tensor&, const UnitContext&>)
      fn = std::move(f);
    else
      fn = [f = std::move(f)](const Tensor& x, const UnitContext&) { return f(x); };
  }
  Tensor forward(const Tensor& x, const UnitContext& ctx = {}) const {
    AnomalyScope section(name);  // anomaly findings name the unit (nothing outside anomaly mode)
    return fn(x, ctx);
  }
  Unit& with_generators(std::vector<Generator*> g) {
    generators = std::move(g);
    return *this;
  }
  // The unit computes with these modules (held by reference: models stay where they were built).
  template <class... M> Unit& owning(M&... modules);
  // Its tensors to `device` (nn::to_device of each owned module); nothing for a unit without tensors.
  void move_to(Device device) const;
};

// True on this thread while a pipeline stage recomputes a forward for its backward (activation checkpointing):
// layers with side effects in training (BatchNorm's running statistics) must not apply them a second time.
bool recomputing();
class RecomputeGuard {
 public:
  RecomputeGuard();
  ~RecomputeGuard();
  RecomputeGuard(const RecomputeGuard&) = delete;
  RecomputeGuard& operator=(const RecomputeGuard&) = delete;

 private:
  bool previous_;
};

// "features.0" + "weight" -> "features.0.weight"; an empty prefix gives the bare name.
inline std::string key(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

// The parameters of Conv2d and Linear: weight, then bias when the layer has one.
template <class F> void visit_weight_bias(const std::string& prefix, F&& f, Tensor& weight, Tensor& bias) {
  f(key(prefix, "weight"), weight, false);
  if (bias.defined()) f(key(prefix, "bias"), bias, false);
}

// The trainable tensors in state_dict order (what an optimizer takes).
template <class M>
std::vector<Tensor> parameters(M& m) {
  std::vector<Tensor> out;
  m.visit("", [&](const std::string&, Tensor& t, bool is_buffer) {
    if (!is_buffer) out.push_back(t);
  });
  return out;
}

template <class M>
std::vector<std::pair<std::string, Tensor>> named_parameters(M& m) {
  std::vector<std::pair<std::string, Tensor>> out;
  m.visit("", [&](const std::string& name, Tensor& t, bool is_buffer) {
    if (!is_buffer) out.emplace_back(name, t);
  });
  return out;
}

// Parameters and buffers under their PyTorch keys (the tensors themselves, not copies): ready for write_safetensors.
template <class M>
std::vector<std::pair<std::string, Tensor>> state_dict(M& m) {
  std::vector<std::pair<std::string, Tensor>> out;
  m.visit("", [&](const std::string& name, Tensor& t, bool) { out.emplace_back(name, t); });
  return out;
}

// Elements over parameters only (buffers excluded), as sum(p.numel() for p in model.parameters()).
template <class M>
int64_t count_parameters(M& m) {
  int64_t n = 0;
  m.visit("", [&](const std::string&, Tensor& t, bool is_buffer) {
    if (!is_buffer) n += t.numel();
  });
  return n;
}

// Moves every floating tensor to `device`; parameters stay leaves that require grad (their grads are dropped).
// Integer buffers (num_batches_tracked) stay on the host: they are bookkeeping no kernel reads, and keeping them
// there lets BatchNorm2d count batches without a device round trip.
template <class M>
void to_device(M& m, Device device) {
  m.visit("", [&](const std::string&, Tensor& t, bool is_buffer) {
    if (!t.defined() || !is_floating(t.dtype()) || t.device() == device) return;
    Tensor moved = t.detach().to(device);
    if (!is_buffer) moved.requires_grad_();
    t = moved;
  });
}

template <class... M> Unit& Unit::owning(M&... modules) {
  visit_owned = [&modules...](const TensorVisitor& f) { (modules.visit("", f), ...); };
  return *this;
}

inline void Unit::move_to(Device device) const {
  if (!visit_owned) return;
  struct Owned {  // the unit's tensors seen as one module
    const Unit* unit;
    void visit(const std::string&, const TensorVisitor& f) { unit->visit_owned(f); }
  } owned{this};
  to_device(owned, device);
}

// Casts every floating tensor to `dtype` (f64 models for gradchecks); integer buffers are left as they are.
template <class M>
void to_dtype(M& m, DType dtype) {
  m.visit("", [&](const std::string&, Tensor& t, bool is_buffer) {
    if (!t.defined() || !is_floating(t.dtype()) || t.dtype() == dtype) return;
    Tensor cast = t.detach().to(dtype);
    if (!is_buffer) cast.requires_grad_();
    t = cast;
  });
}

template <class M>
void zero_grad(M& m) {
  m.visit("", [&](const std::string&, Tensor& t, bool is_buffer) {
    if (!is_buffer) t.zero_grad();
  });
}

}  // namespace ep::nn
