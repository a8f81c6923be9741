// checkpoint.h — the trainers' checkpoint: model state ("model.<key>"), optimizer state ("optim.<i>.<name>"), and in
// the metadata the step, the data cursor (epoch, next batch), every dropout stream's offset ("rng.<name>") and the
// run's config; one safetensors file written atomically. Not a weights export: --init-from reads plain state dicts.
#pragma once
#include <nlohmann/json.hpp>

#include <charconv>
#include <cstdio>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/optim.h"
#include "engine/random.h"
#include "engine/safetensors.h"
#include "layers/state.h"

namespace ep::ckpt {

// What a trainer holds: its tensors by state-dict name and its named random streams.
struct TrainState {
  std::vector<std::pair<std::string, Tensor*>> tensors;
  std::vector<std::pair<std::string, Generator*>> generators;
};

struct Cursor {
  int64_t epoch = 0, next_batch = 0;
  int64_t micro_batches = 0;  // after an out-of-memory retry (apps/oom_retry.h): the steps' micro-batches; 0: none
};

inline void save(const std::string& path, const TrainState& s, Optimizer& opt, const Cursor& at,
                 const nlohmann::json& config) {
  std::vector<std::pair<std::string, Tensor>> t;
  for (auto& [name, p] : s.tensors) t.emplace_back("model." + name, *p);
  opt.visit_state([&](size_t i, const char* name, Tensor& st) {
    if (st.defined()) t.emplace_back("optim." + std::to_string(i) + "." + name, st);
  });
  std::map<std::string, std::string> meta{{"format", "edgepipe-checkpoint"},
                                          {"version", "3"},
                                          {"step", std::to_string(opt.step_count())},
                                          {"optimizer", opt.name()},
                                          {"epoch", std::to_string(at.epoch)},
                                          {"next_batch", std::to_string(at.next_batch)},
                                          {"config", config.dump()}};
  for (auto& [name, g] : s.generators) meta["rng." + name] = std::to_string(g->offset);
  if (at.micro_batches > 0) meta["micro_batches"] = std::to_string(at.micro_batches);
  write_safetensors(path, t, meta);
}

// Restores everything save() wrote; IOError naming the file when it is not a checkpoint of this state: a missing or
// mis-shaped tensor, a metadata number that is not a whole non-negative decimal, a data cursor past the epoch's
// `steps_per_epoch` batches (another --batch-size or data set), a file checksum that is missing or does not match.
// A checkpoint is input like any file: a cursor taken on trust would index the epoch order out of bounds.
inline Cursor load(const std::string& path, TrainState& s, Optimizer& opt, int64_t steps_per_epoch) {
  SafetensorsFile f = read_safetensors(path);
  EP_CHECK(f.metadata.count("format") && f.metadata.at("format") == "edgepipe-checkpoint", IOError, path,
           ": not an edgepipe checkpoint");
  // Version 3 carries the file checksum (verified by read_safetensors); version 2, before it, is still read.
  const std::string version = f.metadata.count("version") ? f.metadata.at("version") : "";
  EP_CHECK(version == "2" || version == "3", IOError, path, ": checkpoint version '", version,
           "' is not one this edgepipe reads (2 or 3)");
  EP_CHECK(version == "2" || f.checksum_verified, IOError, path, ": checkpoint has no checksum (",
           kChecksumKey, ")");
  auto meta = [&](const std::string& k) -> const std::string& {
    auto it = f.metadata.find(k);
    EP_CHECK(it != f.metadata.end(), IOError, path, ": checkpoint has no '", k, "' in __metadata__");
    return it->second;
  };
  auto number = [&](const std::string& k) {
    const std::string& v = meta(k);
    int64_t x = -1;
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
    EP_CHECK(ec == std::errc() && end == v.data() + v.size() && x >= 0, IOError, path, ": metadata '", k,
             "' is not a non-negative integer: '", v, "'");
    return x;
  };
  std::vector<std::pair<std::string, Tensor>> model_part;
  std::map<std::string, Tensor> optim_part;
  for (auto& [name, t] : f.tensors) {
    if (name.rfind("model.", 0) == 0) model_part.emplace_back(name.substr(6), t);
    else if (name.rfind("optim.", 0) == 0) optim_part[name.substr(6)] = t;
  }
  try {
    nn::load_state_entries(s.tensors, model_part, /*strict=*/true);
  } catch (const ValueError& e) {
    EP_THROW(IOError, path, ": ", e.what());
  }
  // Another optimizer's state would be skipped by name and this one's started from zero: refuse it instead. A
  // checkpoint from before this field was written holds no name.
  EP_CHECK(!f.metadata.count("optimizer") || f.metadata.at("optimizer") == opt.name(), IOError, path,
           ": checkpoint of optimizer '", f.metadata.at("optimizer"), "', this run uses '", opt.name(), "'");
  opt.visit_state([&](size_t i, const char* name, Tensor& st) {
    auto it = optim_part.find(std::to_string(i) + "." + name);
    if (it == optim_part.end()) return;
    const Tensor& p = opt.params()[i];
    EP_CHECK(it->second.shape() == p.shape() && it->second.dtype() == p.dtype(), IOError, path, ": optim.", it->first,
             " is ", dtype_name(it->second.dtype()), shape_str(it->second.shape()), ", its parameter ",
             dtype_name(p.dtype()), shape_str(p.shape()));
    st = it->second.to(p.device()).detach();  // beside its parameter
  });
  opt.set_step_count(number("step"));
  for (auto& [name, g] : s.generators) g->offset = uint64_t(number("rng." + name));
  // A resumed run takes up the micro-batch count an out-of-memory retry had reached, rather than failing again.
  const int64_t micro_batches = f.metadata.count("micro_batches") ? number("micro_batches") : 0;
  const Cursor at{number("epoch"), number("next_batch"), micro_batches};
  EP_CHECK(at.micro_batches <= 4096, IOError, path, ": metadata 'micro_batches' is ", at.micro_batches,
           ", more than --chunks allows (4096)");
  EP_CHECK(at.next_batch <= steps_per_epoch, IOError, path, ": data cursor at batch ", at.next_batch, " of an epoch of ",
           steps_per_epoch, " batches (written with another --batch-size or data set?)");
  return at;
}

// The end of a training step, the same in every trainer: the exact loss line of --log-steps (hex float, for
// bit-for-bit comparisons between runs), and at --max-steps a checkpoint at cursor `at`. True when the run stops.
inline bool finish_step(bool log_steps, int64_t max_steps, double loss, const std::string& path, const TrainState& s,
                        Optimizer& opt, const Cursor& at, const nlohmann::json& config) {
  if (log_steps) std::printf("step %lld loss %a\n", (long long)opt.step_count(), loss);
  if (max_steps <= 0 || opt.step_count() < max_steps) return false;
  save(path, s, opt, at, config);
  return true;
}

}  // namespace ep::ckpt
