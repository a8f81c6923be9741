// state.cpp — name matching, shape checks and dtype-converting copies for load_state.
// Not file parsing: the tensors arrive already validated by read_safetensors.
#include "layers/state.h"

#include <map>
#include <set>

#include "engine/ops.h"

namespace ep::nn {

namespace {
std::string list(const std::vector<std::string>& v) {
  std::string s;
  const size_t shown = std::min<size_t>(v.size(), 5);  // one line: the first few names, then a count
  for (size_t i = 0; i < shown; ++i) s += (i ? ", " : "") + v[i];
  if (v.size() > shown) s += ", ... " + std::to_string(v.size() - shown) + " more";
  return s;
}
}  // namespace

std::string LoadReport::str() const {
  std::string s = "loaded " + std::to_string(loaded);
  if (!missing.empty()) s += "; missing " + std::to_string(missing.size()) + " (" + list(missing) + ")";
  if (!unexpected.empty()) s += "; unexpected " + std::to_string(unexpected.size()) + " (" + list(unexpected) + ")";
  if (!mismatched.empty()) s += "; mis-shaped " + std::to_string(mismatched.size()) + " (" + list(mismatched) + ")";
  return s;
}

LoadReport load_state_entries(const std::vector<std::pair<std::string, Tensor*>>& model,
                              const std::vector<std::pair<std::string, Tensor>>& file, bool strict) {
  std::map<std::string, const Tensor*> in_file;
  for (const auto& [name, t] : file) in_file[name] = &t;
  std::set<std::string> in_model;
  LoadReport r;
  std::vector<std::pair<Tensor*, const Tensor*>> copies;
  for (const auto& [name, dst] : model) {
    in_model.insert(name);
    auto it = in_file.find(name);
    if (it == in_file.end()) {
      r.missing.push_back(name);
      continue;
    }
    const Tensor& src = *it->second;
    if (src.shape() != dst->shape()) {
      r.mismatched.push_back(name + ": file " + shape_str(src.shape()) + " vs model " + shape_str(dst->shape()));
      continue;
    }
    if (is_floating(src.dtype()) != is_floating(dst->dtype())) {
      r.mismatched.push_back(name + ": file " + dtype_name(src.dtype()) + " vs model " + dtype_name(dst->dtype()));
      continue;
    }
    copies.emplace_back(dst, &src);
  }
  for (const auto& [name, t] : file)
    if (!in_model.count(name)) r.unexpected.push_back(name);
  EP_CHECK(!strict || r.ok(), ValueError, "[load_state] ", r.str());
  for (auto& [dst, src] : copies) {
    Tensor values = src->detach().to(dst->dtype());  // cast on the host, then one copy to the model's device
    copy_(*dst, values);
  }
  r.loaded = copies.size();
  return r;
}

}  // namespace ep::nn
