// split.h — split learning in one process (the seeds' "simulation" mode): a model's units cut into edge-front (first
// K units), cloud (the middle) and edge-back (last M units), with a CompressionLayer at each boundary, and the flags
// that choose each boundary's forward and backward compressor. Statistics go to a per-run log (compression.jsonl).
// Not the pipeline: no threads, no transfers; pipeline/ reuses the same boundaries with encode and decode apart.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "compress/compression_layer.h"
#include "compress/stats.h"
#include "engine/json_lines.h"
#include "layers/module.h"

namespace ep::compress {

// The compressor spec of each boundary (0: edge-front -> cloud, 1: cloud -> edge-back) and direction.
struct BoundarySpecs {
  std::string forward[2] = {"none", "none"};
  std::string backward[2] = {"none", "none"};
};

// The trainers' flags, most general first: `all` sets every boundary and direction, `fwd`/`bwd` one direction at
// both boundaries, `b1`/`b2` one boundary in both directions, where "FWD|BWD" sets that boundary's two apart.
// Empty strings leave a setting to the more general one. Every spec is parsed once here, so a bad one fails before
// training with a one-line CompressError naming the flag.
struct CompressFlags {
  std::string all = "", fwd = "", bwd = "", b1 = "", b2 = "";
};
BoundarySpecs resolve_boundary_specs(const CompressFlags& flags);

// The statistics of a run: one JSON line per (step, boundary, direction) in <dir>/compression.jsonl and a running
// summary per boundary and direction for summary.json.
class CompressionLog {
 public:
  explicit CompressionLog(const std::string& dir);  // "" keeps the summary only
  // Opens <dir>/compression.jsonl before the first training step: empty for a fresh run (resumed_step < 0), else
  // keeping the lines of steps 1..resumed_step (the later ones are redone). Until then a line to write is an error.
  void start(int64_t resumed_step);
  // Statistics are held per step until the step is committed: by commit_step(), the next set_step() or
  // set_recording(), or summary(). discard_step() drops a step that did not complete (a trainer retries a step that
  // ran out of memory), so only the statistics of the attempt that completed are logged and summarized.
  void set_step(int64_t step) {
    std::lock_guard<std::mutex> g(mu_);
    commit_locked();
    step_ = step;
  }
  // Off during evaluation: the boundaries still compress (the accuracy is that of the compressed model), but only
  // training steps are logged and summarized.
  void set_recording(bool on) {
    std::lock_guard<std::mutex> g(mu_);
    commit_locked();
    recording_ = on;
  }
  // Thread-safe (pipeline stages call it). Statistics still on a GPU are finished when the step is committed.
  void record(int boundary, Direction d, const PendingStats& s);
  void record(int boundary, Direction d, const CompressionStats& s) { record(boundary, d, PendingStats(s)); }
  void commit_step();
  void discard_step();
  bool empty() const;
  nlohmann::json summary();  // {"boundary1": {"forward": {...}, "backward": {...}}, "boundary2": ...}
  // The summary of the steps committed since the last call (the epoch's, for metrics.jsonl), in summary()'s form;
  // a run resumed mid-epoch summarizes the steps it ran. Empty when no step was recorded.
  nlohmann::json take_epoch_summary();

 private:
  struct Pending {
    int boundary;
    Direction direction;
    PendingStats stats;
  };
  void commit_locked();
  mutable std::mutex mu_;
  std::string path_;
  JsonLinesLog out_;
  int64_t step_ = 0;
  bool recording_ = true;
  std::vector<Pending> pending_;  // this step's statistics, in the order they were recorded
  std::map<std::pair<int, int>, StatsSummary> summary_, epoch_;
};

// One console line of an epoch's summary (take_epoch_summary): each boundary and direction's mean SNR, mean |bias| and
// median error of the per-channel sums (stats.h, sum_rel_err), e.g. "compression: b1 fwd 18.0 dB |bias| 0.04 sums
// 0.02 · b1 bwd 1.1 dB |bias| 0.57 sums 490"; "" for an empty summary.
std::string epoch_summary_line(const nlohmann::json& epoch);

// A model's units with the split applied. front = K >= 1 units on the edge before the cloud, back = M >= 0 units on
// the edge after it (M = 0: the cloud computes the loss and there is one boundary); K + M must leave the cloud at
// least one unit. forward() runs the units in order, passing through the boundary layers.
class SplitModel {
 public:
  SplitModel(std::vector<nn::Unit> units, int64_t front, int64_t back, const BoundarySpecs& specs,
             std::shared_ptr<CompressionLog> log);
  Tensor forward(const Tensor& x, const nn::UnitContext& ctx = {});
  std::string describe() const;  // "edge [stem .. block3] | cloud [block4 .. head] | edge [classifier]" + compressors
  int boundaries() const { return back_ > 0 ? 2 : 1; }

 private:
  std::vector<nn::Unit> units_;
  int64_t front_, back_;
  std::vector<CompressionLayer> layers_;  // one per boundary
};

// Parses "K,M" (the seeds' first-K + last-M layers) against a model of `units` units; ValueError naming --split.
std::pair<int64_t, int64_t> parse_split(const std::string& s, int64_t units);

}  // namespace ep::compress
