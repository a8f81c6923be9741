// state.h — loading a state dict (a safetensors file's tensors) into a model by PyTorch key name, with a report of
// missing, unexpected and mis-shaped keys; dtypes convert to the model's (F16/BF16/F64 files load into f32 models).
// Not the safetensors reader (engine/safetensors.h) and not checkpoints (optimizer state, step, RNG live in apps/).
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "engine/safetensors.h"
#include "layers/module.h"

namespace ep::nn {

struct LoadReport {
  std::vector<std::string> missing;     // in the model, not in the file (left as they were)
  std::vector<std::string> unexpected;  // in the file, not in the model (ignored)
  std::vector<std::string> mismatched;  // "name: file [a,b] vs model [c,d]" (left as they were)
  size_t loaded = 0;
  bool ok() const { return missing.empty() && unexpected.empty() && mismatched.empty(); }
  std::string str() const;  // one line: "loaded N; missing K (a, b, ...); unexpected ...; mis-shaped ..."
};

// The core: copies each file tensor into the model tensor of the same name (values only: parameters stay leaves, on
// their device). strict: throws ValueError "[load_state] <report>" before touching the model when !report.ok().
LoadReport load_state_entries(const std::vector<std::pair<std::string, Tensor*>>& model,
                              const std::vector<std::pair<std::string, Tensor>>& file, bool strict);

template <class M>
LoadReport load_state(M& model, const SafetensorsFile& file, bool strict) {
  std::vector<std::pair<std::string, Tensor*>> entries;
  model.visit("", [&](const std::string& name, Tensor& t, bool) { entries.emplace_back(name, &t); });
  return load_state_entries(entries, file.tensors, strict);
}

}  // namespace ep::nn
