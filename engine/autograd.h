// autograd.h — the dynamic tape: Node, recording an op's backward, GradMode/NoGradGuard, and backward().
// Not a graph compiler and no double backward: a node's backward is an explicit kernel call written next to its
// forward (engine/ops/*.cpp). Traversal and teardown are iterative, so 100,000-node chains neither overflow the stack
// on backward() nor when the graph is destroyed.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace ep {

// needs[i] tells a backward function whether input i wants a gradient, so it can skip work.
using NeedsGrad = std::vector<bool>;
// Returns one gradient per input (an undefined Tensor where needs[i] is false or the gradient is zero).
// Gradients must have the input's shape, dtype and device.
using BackwardFn = std::function<std::vector<Tensor>(const Tensor& dout, const NeedsGrad& needs)>;

struct Node {
  const char* name = "";                           // the op, for error messages: "[mul backward] ..."
  std::vector<std::shared_ptr<Node>> next;         // per input: its producer node, or null
  std::vector<std::shared_ptr<TensorImpl>> leaf;   // per input: the leaf that accumulates, or null
  NeedsGrad needs;                                 // per input: wants a gradient
  Shape out_shape;                                 // to check gradients flowing in
  DType out_dtype = DType::f32;
  Device out_device;
  BackwardFn backward;
  std::string anomaly_context;  // where the forward ran, kept only in anomaly mode (engine/anomaly.h)
  ~Node();  // iterative: never recurses through a long chain
};

// Thread-local switch: while disabled, ops record nothing.
bool grad_enabled();
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;
 private:
  bool previous_;
};

// True when grad mode is on and any input requires a gradient.
bool needs_record(std::initializer_list<const Tensor*> inputs);
bool needs_record(const std::vector<Tensor>& inputs);

// Attaches a node to `out` (which must be a fresh tensor) when needs_record(inputs). Closures must capture the
// tensors they save through `saved(t)` (data only, no history), else the graph would hold itself alive.
void record(Tensor& out, const char* name, const std::vector<Tensor>& inputs, BackwardFn backward);
inline Tensor saved(const Tensor& t) { return t.defined() ? t.detach() : t; }

// Runs backward from `root` with gradient `grad` (same shape). Leaves accumulate into .grad.
void run_backward(const Tensor& root, const Tensor& grad);

}  // namespace ep
