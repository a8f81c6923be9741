// autograd.cpp — recording nodes, iterative backward (Kahn order over the reachable graph) and iterative teardown.
// Not op-specific: each op's backward function lives beside its forward in engine/ops/.
#include "engine/autograd.h"

#include <unordered_map>

#include "engine/anomaly.h"
#include "engine/op_registry.h"
#include "engine/ops.h"

namespace ep {

namespace {
thread_local bool t_grad_enabled = true;
}

bool grad_enabled() { return t_grad_enabled; }
NoGradGuard::NoGradGuard() : previous_(t_grad_enabled) { t_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { t_grad_enabled = previous_; }

bool needs_record(std::initializer_list<const Tensor*> inputs) {
  if (!t_grad_enabled) return false;
  for (const Tensor* t : inputs)
    if (t->defined() && t->requires_grad()) return true;
  return false;
}
bool needs_record(const std::vector<Tensor>& inputs) {
  if (!t_grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

void record(Tensor& out, const char* name, const std::vector<Tensor>& inputs, BackwardFn backward) {
  if (!needs_record(inputs)) return;
  note_recorded(name);
  auto node = std::make_shared<Node>();
  node->name = name;
  node->next.resize(inputs.size());
  node->leaf.resize(inputs.size());
  node->needs.resize(inputs.size(), false);
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& t = inputs[i];
    if (!t.defined() || !t.requires_grad()) continue;
    node->needs[i] = true;
    if (t.grad_fn())
      node->next[i] = t.grad_fn();
    else
      node->leaf[i] = t.impl_ptr();
  }
  node->out_shape = out.shape();
  node->out_dtype = out.dtype();
  node->out_device = out.device();
  node->backward = std::move(backward);
  out.impl().requires_grad = true;
  out.impl().grad_fn = node;
  if (anomaly_mode()) anomaly_check_forward(*node, out, inputs);
}

// Destroying the head of a long chain would recurse once per node; instead the nodes this one solely owns are moved
// to a local stack and released one by one (MLX #982).
Node::~Node() {
  std::vector<std::shared_ptr<Node>> stack = std::move(next);
  while (!stack.empty()) {
    std::shared_ptr<Node> n = std::move(stack.back());
    stack.pop_back();
    if (n && n.use_count() == 1) {
      for (auto& c : n->next) stack.push_back(std::move(c));
      n->next.clear();
    }
  }
}

static void check_grad(const Node& node, size_t i, const Tensor& g, const Shape& expected) {
  EP_CHECK(g.shape() == expected, ShapeError, "[", node.name, " backward] gradient for input ", i, " has shape ",
           shape_str(g.shape()), ", expected ", shape_str(expected));
}

// Leaves own their gradient buffer: the first gradient is copied (it may alias another tensor), later ones are added
// in place, so optimizers and clipping may modify .grad safely.
static void accumulate_leaf(TensorImpl& leaf, const Tensor& g) {
  EP_CHECK(g.device() == leaf.device && g.dtype() == leaf.dtype, Error,
           "[backward] gradient ", g.str(), " does not match its leaf (", dtype_name(leaf.dtype), " on ",
           leaf.device.str(), ")");
  if (!leaf.grad) {
    NoGradGuard ng;
    Tensor own = empty(g.shape(), g.dtype(), g.device());
    copy_(own, g);
    leaf.grad = own.impl_ptr();
  } else {
    Tensor acc(leaf.grad);
    add_(acc, g);
    if (anomaly_mode()) anomaly_check_accumulated_gradient(leaf, acc);
  }
}

void run_backward(const Tensor& root, const Tensor& grad) {
  EP_CHECK(root.requires_grad(), Error, "[backward] the tensor does not require grad and has no grad_fn");
  check_same_shape("backward", root, grad);
  NoGradGuard no_grad;  // backward computations are not recorded
  const bool anomaly = anomaly_mode();
  if (anomaly) anomaly_check_root_gradient(grad);
  if (!root.grad_fn()) {
    accumulate_leaf(root.impl(), grad);
    return;
  }
  // 1. Count, for every reachable node, how many edges point at it (iterative DFS).
  std::unordered_map<Node*, int> deps;
  std::vector<Node*> stack{root.grad_fn().get()};
  deps[root.grad_fn().get()] = 0;
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (auto& c : n->next) {
      if (!c) continue;
      auto it = deps.find(c.get());
      if (it == deps.end()) {
        deps[c.get()] = 1;
        stack.push_back(c.get());
      } else {
        ++it->second;
      }
    }
  }
  // 2. Process nodes whose consumers have all delivered their gradient.
  std::unordered_map<Node*, Tensor> pending;
  pending[root.grad_fn().get()] = grad;
  std::vector<Node*> ready{root.grad_fn().get()};
  while (!ready.empty()) {
    Node* n = ready.back();
    ready.pop_back();
    Tensor dout = std::move(pending[n]);
    pending.erase(n);
    std::vector<Tensor> grads = n->backward(dout, n->needs);
    EP_CHECK(grads.size() == n->next.size(), Error, "[", n->name, " backward] returned ", grads.size(),
             " gradients for ", n->next.size(), " inputs");
    for (size_t i = 0; i < grads.size(); ++i) {
      if (!n->needs[i]) continue;
      const Tensor& g = grads[i];
      if (anomaly) anomaly_check_gradient(*n, i, g);  // n's own gradient was checked: a finding is n's doing
      if (n->next[i]) {
        Node* c = n->next[i].get();
        if (g.defined()) {
          check_grad(*n, i, g, c->out_shape);
          auto it = pending.find(c);
          if (it == pending.end() || !it->second.defined()) {
            pending[c] = g;
          } else {
            it->second = add(it->second, g);
            if (anomaly) anomaly_check_summed_gradient(*c, it->second);
          }
        }
        if (--deps[c] == 0) {
          if (!pending[c].defined()) {
            // Every consumer's gradient was zero: nothing flows further, but its inputs' counts must still drop.
            pending[c] = zeros(c->out_shape, c->out_dtype, c->out_device);
          }
          ready.push_back(c);
        }
      } else if (n->leaf[i] && g.defined()) {
        check_grad(*n, i, g, n->leaf[i]->shape);
        accumulate_leaf(*n->leaf[i], g);
      }
    }
  }
}

}  // namespace ep
