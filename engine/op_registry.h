// op_registry.h — the set of differentiable ops, filled at static-init time by EP_DIFFERENTIABLE_OPS in each op file.
// The test suite fails when a registered op has no gradcheck (or, with a GPU, no CPU-vs-CUDA parity) case, and when
// an op records a node under a name that is not registered. Not a dispatcher.
#pragma once
#include <set>
#include <string>

namespace ep {

std::set<std::string>& differentiable_ops();
// Every node name record() has seen in this process (so tests can catch an op recorded under an unregistered name).
void note_recorded(const char* name);
std::set<std::string> recorded_ops();
struct OpRegistrar {
  OpRegistrar(std::initializer_list<const char*> names) {
    for (const char* n : names) differentiable_ops().insert(n);
  }
};

}  // namespace ep

#define EP_CONCAT_INNER(a, b) a##b
#define EP_CONCAT(a, b) EP_CONCAT_INNER(a, b)
// Lists the node names an op file records (the names passed to record()).
#define EP_DIFFERENTIABLE_OPS(...) \
  static ::ep::OpRegistrar EP_CONCAT(ep_op_registrar_, __LINE__) { __VA_ARGS__ }
