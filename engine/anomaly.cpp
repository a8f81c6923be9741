// anomaly.cpp — anomaly mode's switch, the registry of named tensors, and the forward and gradient checks that name
// the first op to make NaN/Inf. Not called outside anomaly mode: record() and run_backward test the switch first.
#include "engine/anomaly.h"

#include <atomic>
#include <memory>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <unordered_map>
#include <utility>

#include "engine/autograd.h"
#include "engine/check.h"
#include "engine/ops.h"

namespace ep {

namespace {

std::atomic<bool> g_anomaly{false};

struct NamedTensor {
  std::string name;
  std::weak_ptr<TensorImpl> impl;  // a freed tensor's address may be reused: a name only counts while it lives
};
std::shared_mutex g_names_mutex;
std::unordered_map<const TensorImpl*, NamedTensor> g_names;

// The module that ran last on this thread with a named parameter: where a parameter-free op (relu6, add) sits.
thread_local std::string t_last_module;
thread_local std::string t_section;  // the innermost AnomalyScope's name

std::string name_of(const TensorImpl* impl) {
  std::shared_lock lock(g_names_mutex);
  auto it = g_names.find(impl);
  if (it == g_names.end() || it->second.impl.lock().get() != impl) return "";
  return it->second.name;
}

// "features.3.conv.1.weight" -> "features.3.conv.1": findings name modules, as a traceback names a line.
std::string module_of(const std::string& key) {
  const size_t dot = key.rfind('.');
  return dot == std::string::npos ? key : key.substr(0, dot);
}

std::string shapes_of(const std::vector<Tensor>& inputs) {
  std::string s;
  for (const Tensor& t : inputs) {
    if (!t.defined()) continue;
    s += (s.empty() ? "" : ", ") + shape_str(t.shape());
  }
  return s;
}

// Where a node's forward ran, as record() kept it in anomaly mode.
std::string context_of(const Node& node) {
  return node.anomaly_context.empty() ? "recorded before anomaly mode" : node.anomaly_context;
}

// Where a tensor that was already non-finite came from, for a forward finding.
std::string origin_of(const Tensor& t) {
  const std::string name = name_of(t.impl_ptr().get());
  if (!name.empty()) return "it is " + name;
  if (t.grad_fn()) return std::string("it is the output of ") + t.grad_fn()->name + ", recorded before anomaly mode";
  return "it was not made by a recorded op (data fed to the model, or a tensor computed without gradient)";
}

}  // namespace

bool anomaly_mode() { return g_anomaly.load(std::memory_order_relaxed); }
void set_anomaly_mode(bool on) { g_anomaly.store(on, std::memory_order_relaxed); }

void anomaly_name_tensors(const std::vector<std::pair<std::string, Tensor*>>& named) {
  std::unique_lock lock(g_names_mutex);
  g_names.clear();
  for (const auto& [name, t] : named)
    if (t->defined()) g_names[t->impl_ptr().get()] = NamedTensor{name, t->impl_ptr()};
}

void anomaly_forget_names() {
  std::unique_lock lock(g_names_mutex);
  g_names.clear();
}

AnomalyScope::AnomalyScope(const std::string& section) : active_(anomaly_mode()) {
  if (!active_) return;
  previous_section_ = std::exchange(t_section, section);
  previous_module_ = std::exchange(t_last_module, "");
}
AnomalyScope::~AnomalyScope() {
  if (!active_) return;
  t_section = std::move(previous_section_);
  t_last_module = std::move(previous_module_);
}

void anomaly_check_forward(Node& node, const Tensor& out, const std::vector<Tensor>& inputs) {
  std::set<std::string> modules;
  for (const Tensor& t : inputs) {
    if (!t.defined()) continue;
    const std::string name = name_of(t.impl_ptr().get());
    if (!name.empty()) modules.insert(module_of(name));
  }
  std::string where = t_section.empty() ? "" : "unit " + t_section + ", ";
  if (!modules.empty()) {
    std::string list;
    for (const std::string& m : modules) list += (list.empty() ? "" : " and ") + m;
    where += "in " + list + ", ";
    t_last_module = *modules.rbegin();
  } else if (!t_last_module.empty()) {
    where += "after " + t_last_module + ", ";
  }
  node.anomaly_context = where + "forward inputs " + shapes_of(inputs);

  if (all_finite(out)) return;
  for (size_t i = 0; i < inputs.size(); ++i)
    if (!all_finite(inputs[i]))
      EP_THROW(AnomalyError, "[anomaly] ", node.name, " (", node.anomaly_context, "): its forward output holds NaN/Inf "
               "because input ", i, " ", shape_str(inputs[i].shape()), " already did: ", origin_of(inputs[i]));
  EP_THROW(AnomalyError, "[anomaly] ", node.name, " (", node.anomaly_context, "): made NaN/Inf in its forward output ",
           shape_str(out.shape()), " from finite inputs");
}

void anomaly_check_gradient(const Node& node, size_t input, const Tensor& grad) {
  if (all_finite(grad)) return;
  std::string what = "the gradient of its input " + std::to_string(input) + " " + shape_str(grad.shape());
  if (node.leaf[input]) {
    const std::string name = name_of(node.leaf[input].get());
    if (!name.empty()) what = "the gradient of " + name;
  }
  EP_THROW(AnomalyError, "[anomaly] ", node.name, " backward (", context_of(node), "): returned NaN/Inf in ", what,
           " from a finite incoming gradient");
}

void anomaly_check_summed_gradient(const Node& node, const Tensor& total) {
  EP_CHECK(all_finite(total), AnomalyError, "[anomaly] ", node.name, " backward (", context_of(node),
           "): the gradients its output's consumers sent sum to NaN/Inf, though each was finite");
}

void anomaly_check_accumulated_gradient(const TensorImpl& leaf, const Tensor& total) {
  if (all_finite(total)) return;
  const std::string name = name_of(&leaf);
  EP_THROW(AnomalyError, "[anomaly] backward: adding a finite gradient to the .grad of ",
           name.empty() ? "a leaf " + shape_str(leaf.shape) : name, " made it NaN/Inf");
}

void anomaly_check_root_gradient(const Tensor& grad) {
  EP_CHECK(all_finite(grad), AnomalyError, "[anomaly] the gradient passed to backward() ", shape_str(grad.shape()),
           " holds NaN/Inf");
}

}  // namespace ep
