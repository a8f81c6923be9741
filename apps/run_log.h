// run_log.h — what a trainer shows and leaves behind: a progress bar on a terminal (plain lines otherwise),
// metrics.jsonl (one JSON object per line, flushed) and summary.json (written atomically).
// Not a logger for library code: the engine never prints.
#pragma once
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "engine/check.h"
#include "engine/device.h"
#include "engine/json_lines.h"
#include "engine/ops.h"
#include "engine/safetensors.h"  // write_file_atomic

namespace ep::runlog {

class Progress {
 public:
  Progress(std::string label, int64_t total) : label_(std::move(label)), total_(total), tty_(isatty(STDOUT_FILENO)) {
    start_ = std::chrono::steady_clock::now();
  }
  // Updates the bar (terminal) or prints a line every `every` steps and at the end (otherwise).
  void update(int64_t done, const std::string& stats, int64_t every = 50) {
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    double eta = done > 0 ? secs / double(done) * double(total_ - done) : 0.0;
    if (tty_) {
      const int width = 24;
      int fill = total_ > 0 ? int(double(width) * double(done) / double(total_)) : width;
      std::printf("\r%s [%.*s%*s] %lld/%lld %s eta %.0fs ", label_.c_str(), fill, "########################",
                  width - fill, "", (long long)done, (long long)total_, stats.c_str(), eta);
      if (done == total_) std::printf("\n");
      std::fflush(stdout);
    } else if (done == total_ || (every > 0 && done % every == 0)) {
      std::printf("%s %lld/%lld %s (%.1fs)\n", label_.c_str(), (long long)done, (long long)total_, stats.c_str(), secs);
      std::fflush(stdout);
    }
  }

 private:
  std::string label_;
  int64_t total_;
  bool tty_;
  std::chrono::steady_clock::time_point start_;
};

// <dir>/metrics.jsonl, one JSON object per epoch, flushed at once so a crash loses at most the line in flight. A fresh
// run (keep_through_epoch < 0) starts it empty; a run resumed at epoch E (0-based, the next to train) passes E and
// keeps the rows of epochs 1..E.
class Metrics {
 public:
  Metrics(const std::string& dir, int64_t keep_through_epoch)
      : kept_(log_.open(dir + "/metrics.jsonl", "epoch", keep_through_epoch)) {}
  void write(const nlohmann::json& row) { log_.write(row); }
  // The best value of `field` over the kept rows (`floor` when none), so summary.json's best covers the whole run.
  double best_kept(const std::string& field, double floor) const {
    double best = floor;
    for (const nlohmann::json& r : kept_)
      if (r.contains(field) && r[field].is_number()) best = std::max(best, r[field].get<double>());
    return best;
  }

 private:
  JsonLinesLog log_;
  std::vector<nlohmann::json> kept_;
};

// One epoch's running training figures: mean loss, accuracy over the classified examples, and throughput from the
// timed steps (examples over step time, so a short last batch does not skew it).
class EpochMeter {
 public:
  // A step of n examples with mean loss `loss`, `correct` of `classified` right (0 of 0 for regression), `ms` long.
  void add(double loss, int64_t n, int64_t correct, int64_t classified, double ms) {
    loss_sum_ += loss * double(n);
    seen_ += n;
    correct_ += correct;
    classified_ += classified;
    ms_ += ms;
  }
  int64_t seen() const { return seen_; }
  double loss() const { return seen_ ? loss_sum_ / double(seen_) : 0.0; }
  double accuracy() const { return classified_ ? double(correct_) / double(classified_) : 0.0; }
  double per_second() const { return ms_ > 0 ? 1000.0 * double(seen_) / ms_ : 0.0; }
  // "loss 0.6931 acc 50.0% 120 img/s" for the progress bar.
  std::string line(const char* unit) const {
    char buf[128];
    std::snprintf(buf, sizeof buf, "loss %.4f acc %.1f%% %.0f %s/s", loss(), 100.0 * accuracy(), per_second(), unit);
    return buf;
  }

 private:
  double loss_sum_ = 0, ms_ = 0;
  int64_t seen_ = 0, correct_ = 0, classified_ = 0;
};

// How many rows of logits [N, K] have their argmax at the label (labels i64 [N], any device).
inline int64_t count_correct(const Tensor& logits, const Tensor& labels) {
  const std::vector<int64_t> pred = argmax(logits.detach(), 1).to_vector<int64_t>(), lab = labels.to_vector<int64_t>();
  int64_t n = 0;
  for (size_t i = 0; i < pred.size(); ++i) n += pred[i] == lab[i];
  return n;
}

// The "peak_memory_bytes" entry of summary.json: the host, the training device and every pipeline stage's device.
inline nlohmann::json peak_memory_json(Device device, const std::vector<Device>& stage_devices = {}) {
  nlohmann::json j{{"cpu", peak_memory_bytes(Device::cpu())}, {device.str(), peak_memory_bytes(device)}};
  for (const Device& d : stage_devices) j[d.str()] = peak_memory_bytes(d);
  return j;
}

// High-water marks of tensor storage per device (what --memory-limit is compared with), in the same layout.
inline nlohmann::json peak_tensor_json(Device device, const std::vector<Device>& stage_devices = {}) {
  nlohmann::json j{{"cpu", peak_tensor_bytes(Device::cpu())}, {device.str(), peak_tensor_bytes(device)}};
  for (const Device& d : stage_devices) j[d.str()] = peak_tensor_bytes(d);
  return j;
}

// summary.json (or any JSON document) written atomically: readers see the old or the new file, never half of one.
inline void write_json_atomic(const std::string& path, const nlohmann::json& j) { write_file_atomic(path, j.dump(2) + "\n"); }

}  // namespace ep::runlog
