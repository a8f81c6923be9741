// split.cpp — boundary spec resolution, the compression statistics log, and the split model's forward.
// Not the compressors (compressor.h and the method files) nor the autograd op (compression_layer.cpp).
#include "compress/split.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "compress/compressor.h"
#include "engine/check.h"

namespace ep::compress {

namespace {

// "FWD|BWD" -> (FWD, BWD); a spec without '|' is both.
std::pair<std::string, std::string> split_pair(const std::string& s) {
  const size_t bar = s.find('|');
  if (bar == std::string::npos) return {s, s};
  return {s.substr(0, bar), s.substr(bar + 1)};
}

void check_spec(const std::string& flag, const std::string& spec) {
  try {
    parse_compressor(spec);
  } catch (const Error& e) {
    EP_THROW(CompressError, "--", flag, " ", spec, ": ", e.what());
  }
}

}  // namespace

BoundarySpecs resolve_boundary_specs(const CompressFlags& f) {
  BoundarySpecs s;
  for (int b = 0; b < 2; ++b) {
    if (!f.all.empty()) s.forward[b] = s.backward[b] = f.all;
    if (!f.fwd.empty()) s.forward[b] = f.fwd;
    if (!f.bwd.empty()) s.backward[b] = f.bwd;
    const std::string& per = b == 0 ? f.b1 : f.b2;
    if (!per.empty()) {
      auto [fw, bw] = split_pair(per);
      if (!fw.empty()) s.forward[b] = fw;
      if (!bw.empty()) s.backward[b] = bw;
    }
  }
  // Checked per flag so the message names the one that is wrong.
  const std::pair<const char*, const std::string*> flags[] = {
      {"compress", &f.all}, {"compress-fwd", &f.fwd}, {"compress-bwd", &f.bwd}, {"compress-b1", &f.b1},
      {"compress-b2", &f.b2}};
  for (auto [name, value] : flags) {
    if (value->empty()) continue;
    auto [fw, bw] = split_pair(*value);
    if (!fw.empty()) check_spec(name, fw);
    if (bw != fw && !bw.empty()) check_spec(name, bw);
  }
  return s;
}

std::pair<int64_t, int64_t> parse_split(const std::string& s, int64_t units) {
  const size_t comma = s.find(',');
  EP_CHECK(comma != std::string::npos, ValueError, "--split ", s, ": expected K,M (units on the edge before and after the cloud)");
  auto number = [&](const std::string& part) {
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(part.c_str(), &end, 10);
    EP_CHECK(!part.empty() && *end == '\0' && errno == 0, ValueError, "--split ", s, ": '", part, "' is not an integer");
    return int64_t(v);
  };
  const int64_t k = number(s.substr(0, comma)), m = number(s.substr(comma + 1));
  EP_CHECK(k >= 1 && m >= 0, ValueError, "--split ", s, ": need K >= 1 and M >= 0");
  EP_CHECK(k + m < units, ValueError, "--split ", s, ": K + M = ", k + m, " leaves no unit for the cloud (the model has ",
           units, " units)");
  return {k, m};
}

CompressionLog::CompressionLog(const std::string& dir) : path_(dir.empty() ? "" : dir + "/compression.jsonl") {}

void CompressionLog::start(int64_t resumed_step) {
  std::lock_guard<std::mutex> g(mu_);
  if (!path_.empty()) out_.open(path_, "step", resumed_step);
}

void CompressionLog::record(int boundary, Direction d, const PendingStats& s) {
  std::lock_guard<std::mutex> g(mu_);
  if (recording_) pending_.push_back({boundary, d, s});
}

void CompressionLog::commit_step() {
  std::lock_guard<std::mutex> g(mu_);
  commit_locked();
}

void CompressionLog::discard_step() {
  std::lock_guard<std::mutex> g(mu_);
  pending_.clear();
}

void CompressionLog::commit_locked() {
  const std::vector<Pending> step = std::move(pending_);  // cleared even if finishing GPU sums throws
  pending_.clear();
  for (const Pending& p : step) {
    const CompressionStats stats = p.stats.get();
    summary_[{p.boundary, int(p.direction)}].add(stats);
    epoch_[{p.boundary, int(p.direction)}].add(stats);
    if (path_.empty()) continue;
    nlohmann::json row = to_json(stats);
    row["step"] = step_;
    row["boundary"] = p.boundary + 1;
    row["direction"] = direction_name(p.direction);
    out_.write(row);
  }
}

bool CompressionLog::empty() const {
  std::lock_guard<std::mutex> g(mu_);
  return summary_.empty() && pending_.empty();
}

namespace {

nlohmann::json summaries_json(const std::map<std::pair<int, int>, StatsSummary>& by_key) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [key, s] : by_key)
    j["boundary" + std::to_string(key.first + 1)][direction_name(Direction(key.second))] = s.to_json();
  return j;
}

}  // namespace

nlohmann::json CompressionLog::summary() {
  std::lock_guard<std::mutex> g(mu_);
  commit_locked();
  return summaries_json(summary_);
}

nlohmann::json CompressionLog::take_epoch_summary() {
  std::lock_guard<std::mutex> g(mu_);
  commit_locked();
  nlohmann::json j = summaries_json(epoch_);
  epoch_.clear();
  return j;
}

std::string epoch_summary_line(const nlohmann::json& epoch) {
  std::string line;
  for (const auto& [boundary, directions] : epoch.items()) {  // "boundary1", "boundary2"
    for (const char* d : {"forward", "backward"}) {
      if (!directions.contains(d)) continue;
      const nlohmann::json& s = directions[d];
      char snr[32], bias[32];
      // A null mean SNR: every call was exact (+inf), or one decoded a nonzero from an all-zero input (-inf).
      if (s["mean_snr_db"].is_number()) std::snprintf(snr, sizeof snr, "%.1f dB", s["mean_snr_db"].get<double>());
      else std::snprintf(snr, sizeof snr, "%s", s["exact_calls"] == s["calls"] ? "exact" : "-inf dB");
      std::snprintf(bias, sizeof bias, "%.2f", s["mean_abs_bias"].get<double>());
      line += std::string(line.empty() ? "compression: b" : " · b") + boundary.substr(8) +
              (d[0] == 'f' ? " fwd " : " bwd ") + snr + " |bias| " + bias;
      // The per-channel sums' error, when some call was inexact (null: its median was +inf).
      if (s.value("exact_calls", 0) != s.value("calls", 0) && s.contains("median_sum_rel_err")) {
        char sums[32];
        if (s["median_sum_rel_err"].is_number())
          std::snprintf(sums, sizeof sums, "%.3g", s["median_sum_rel_err"].get<double>());
        else
          std::snprintf(sums, sizeof sums, "inf");
        line += std::string(" sums ") + sums;
      }
    }
  }
  return line;
}

SplitModel::SplitModel(std::vector<nn::Unit> units, int64_t front, int64_t back, const BoundarySpecs& specs,
                       std::shared_ptr<CompressionLog> log)
    : units_(std::move(units)), front_(front), back_(back) {
  EP_CHECK(front >= 1 && back >= 0 && front + back < int64_t(units_.size()), ValueError, "[split] K=", front,
           ", M=", back, " does not leave the cloud a unit of ", units_.size());
  for (int b = 0; b < boundaries(); ++b) {
    layers_.emplace_back(specs.forward[b], specs.backward[b]);
    if (log) layers_.back().set_stats_sink([log, b](Direction d, const PendingStats& s) { log->record(b, d, s); });
  }
}

Tensor SplitModel::forward(const Tensor& x, const nn::UnitContext& ctx) {
  const int64_t n = int64_t(units_.size());
  Tensor h = x;
  for (int64_t i = 0; i < n; ++i) {
    if (i == front_) h = layers_[0].forward(h);
    if (back_ > 0 && i == n - back_) h = layers_[1].forward(h);
    h = units_[size_t(i)].forward(h, ctx);
  }
  return h;
}

std::string SplitModel::describe() const {
  const int64_t n = int64_t(units_.size());
  auto range = [&](int64_t a, int64_t b) {  // units [a, b)
    return "[" + units_[size_t(a)].name + (b - a > 1 ? " .. " + units_[size_t(b - 1)].name : "") + "]";
  };
  std::string s = "edge " + range(0, front_) + " | " + layers_[0].forward_compressor().spec() + " / " +
                  layers_[0].backward_compressor().spec() + " | cloud " + range(front_, n - back_);
  if (back_ > 0)
    s += " | " + layers_[1].forward_compressor().spec() + " / " + layers_[1].backward_compressor().spec() +
         " | edge " + range(n - back_, n);
  return s;
}

}  // namespace ep::compress
