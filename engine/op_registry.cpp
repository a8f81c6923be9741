// op_registry.cpp — storage for the differentiable-op registry (function-local static: safe at static-init time).
#include "engine/op_registry.h"

#include <mutex>
#include <unordered_set>

namespace ep {

std::set<std::string>& differentiable_ops() {
  static std::set<std::string> ops;
  return ops;
}

namespace {
std::mutex g_seen_lock;
std::unordered_set<const char*> g_seen;  // names are string literals: pointer identity is enough and cheap
}  // namespace

void note_recorded(const char* name) {
  std::lock_guard<std::mutex> g(g_seen_lock);
  g_seen.insert(name);
}

std::set<std::string> recorded_ops() {
  std::lock_guard<std::mutex> g(g_seen_lock);
  return std::set<std::string>(g_seen.begin(), g_seen.end());
}

}  // namespace ep
