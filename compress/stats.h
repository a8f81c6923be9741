// stats.h — the error statistics of one compression call (x against its reconstruction x̂) and their JSON form.
// Not a logger: the trainer decides where the numbers go (compression.jsonl); this file only computes them.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/tensor.h"

namespace ep::compress {

struct CompressionStats {
  int64_t elements = 0;
  double mse = 0;            // mean (x - x̂)^2; 0 for an empty tensor
  double rel_l2 = 0;         // ||x - x̂|| / ||x||; 0 when both norms are 0, +inf when only x is all zeros
  // The seeds' relative error mean(| |x| - |x̂| | / |x|), taken over the elements with x != 0 only (the seeds divided
  // by zero there); 0 when every element is 0. rel_err_count says how many elements the mean covers.
  double rel_err = 0;
  int64_t rel_err_count = 0;
  double max_abs = 0;        // max |x - x̂|
  double snr_db = 0;         // 10 log10(sum x^2 / sum (x - x̂)^2); +inf when exact, -inf when x is 0 but x̂ is not
  double cosine = 1;         // <x, x̂> / (||x|| ||x̂||); 1 when both are 0, 0 when exactly one is
  // The error's mean, signed: mean (x̂ - x). SNR and cosine measure the error's size, not whether it is shared: a
  // quantizer grid without a level at 0 moves every exact zero (half of a gradient after ReLU) by one same offset,
  // which the sum of a weight gradient over positions adds up, where independent errors would cancel.
  double mean_err = 0;
  // mean_err / sqrt(mse), in [-1, 1]: the part of the error that is one offset shared by every element. +-1 when
  // every element is off by the same amount; about +-1/sqrt(n) for independent zero-mean errors; 0 when exact.
  double bias = 0;
  // The error of the per-channel sums, ||S(x̂) - S(x)|| / ||S(x)||, where S_c sums every element of channel c
  // (stats_channel_axis). A gradient's S is the gradient of a BatchNorm shift or a bias that the tensor feeds, so this
  // is that parameter's gradient error: a shared offset adds up n/C times there, and so does noise, as sqrt(n/C).
  // 0 when exact or when both S are 0; +inf when only S(x) is 0.
  double sum_rel_err = 0;
  uint64_t payload_bytes = 0;
  double ratio_fp32 = 0;     // payload_bytes / (4 * elements); 0 for an empty tensor
};

// The channel axis of sum_rel_err: 1 for 4 or more dims (NCHW images), the last for 2 or 3 ([N, F] rows, [B, T, H]
// token features), -1 (the whole tensor is one channel) for fewer.
int64_t stats_channel_axis(const Shape& shape);

// x and x_hat: same shape, f32 or f64 (any device; on one GPU the sums run there, else on the host). Sums run in f64.
CompressionStats compute_stats(const Tensor& x, const Tensor& x_hat, uint64_t payload_bytes);

// Statistics whose sums may still be on a GPU. compute_stats_later() queues the GPU's sums and returns at once, so a
// compression call never waits for the device to measure itself; get() (at the end of a step, when a log commits)
// waits for them, copies the per-block partials back and merges them in order. Held on the host, the sums are done.
class PendingStats {
 public:
  PendingStats() = default;
  explicit PendingStats(const CompressionStats& ready) : ready_(ready) {}
  CompressionStats get() const;
  bool on_device() const { return partial_.defined(); }

 private:
  friend PendingStats compute_stats_later(const Tensor& x, const Tensor& x_hat, uint64_t payload_bytes);
  CompressionStats ready_{};           // the statistics, or (on a GPU) the fields known at once
  Tensor partial_;                     // the GPU's per-block sums, not yet merged
  Tensor channel_sums_;                // the GPU's [2C] f64: S(x), then S(x̂) - S(x)
  std::shared_ptr<const void> done_;   // the Event recorded after them (engine/device.h), kept alive with them
};
PendingStats compute_stats_later(const Tensor& x, const Tensor& x_hat, uint64_t payload_bytes);

// Running summary of many calls (one boundary and direction over a run): means of the per-call errors, the worst
// max_abs, the smallest SNR and cosine, the mean and largest |bias|, and total payload bytes against total fp32 bytes.
class StatsSummary {
 public:
  void add(const CompressionStats& s);
  int64_t calls() const { return calls_; }
  // {"calls", "mean_mse", "mean_rel_l2", "mean_rel_err", "max_abs", "mean_snr_db", "min_snr_db", "exact_calls",
  //  "mean_cosine", "min_cosine", "mean_abs_bias", "max_abs_bias", "median_sum_rel_err", "max_sum_rel_err",
  //  "payload_bytes", "fp32_bytes", "ratio_fp32"};
  //  means over calls, non-finite values as null. mean_snr_db leaves out the exact calls (SNR +inf), which
  //  exact_calls counts: an uncompressed direction, or a dead ReLU's all-zero gradient, would otherwise make every
  //  run's mean +inf. sum_rel_err is summarized by the median of the calls that were not exact, as one call with a
  //  nearly zero S(x) can be huge, and a dead network's exact calls would hide what killed it.
  nlohmann::json to_json() const;

 private:
  int64_t calls_ = 0, exact_calls_ = 0;
  double sum_mse_ = 0, sum_rel_l2_ = 0, sum_rel_err_ = 0, max_abs_ = 0, sum_snr_ = 0, sum_cos_ = 0;
  double min_snr_ = 0, min_cos_ = 0, sum_abs_bias_ = 0, max_abs_bias_ = 0;
  std::vector<double> sum_rel_errs_;  // every inexact call's, for the median (8 bytes a call)
  uint64_t payload_bytes_ = 0, fp32_bytes_ = 0;
};

// Every field by name; non-finite values (exact reconstructions' SNR) become null, as JSON has no infinities.
nlohmann::json to_json(const CompressionStats& s);

}  // namespace ep::compress
