// stats.cpp — compute_stats and its JSON form (see stats.h for every definition, including the x = 0 cases).
// Not parallel on the CPU: a serial f64 pass, so logged numbers do not depend on the thread count; on a GPU, fixed
// per-block partials merged in order.
#include "compress/stats.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "compress/compress_kernels.h"
#include "compress/stats_math.h"
#include "engine/device.h"
#include "engine/dispatch.h"

namespace ep::compress {

namespace {

// The serial f64 pass over both tensors on the host (any float dtype each; no widened copies).
StatsSums host_sums(const Tensor& x, const Tensor& x_hat) {
  const Tensor a = x.is_cuda() ? x.cpu() : x, b = x_hat.is_cuda() ? x_hat.cpu() : x_hat;
  StatsSums s = stats_zero();
  dispatch_float(a.dtype(), "compress stats", [&](auto ta) {
    using A = EP_TYPE(ta);
    dispatch_float(b.dtype(), "compress stats", [&](auto tb) {
      using B = EP_TYPE(tb);
      const A* pa = a.data<A>();
      const B* pb = b.data<B>();
      const int64_t n = a.numel();
      for (int64_t i = 0; i < n; ++i) stats_add(s, double(pa[i]), double(pb[i]));
    });
  });
  return s;
}

// On one GPU: fixed per-block partials (stats_partial_cuda), queued; merge_partials() adds them up in block order, so
// a rerun gives the same numbers. They differ from the CPU's serial pass only in the rounding of the sums' order.
Tensor device_partials(const Tensor& x, const Tensor& x_hat) {
  const Device dev = x.device();
  Tensor partial = empty({int64_t(kReduceBlocks * sizeof(StatsSums))}, DType::u8, dev);
  stats_partial_cuda(x.raw_data(), x.dtype() == DType::f64, x_hat.raw_data(), x_hat.dtype() == DType::f64, x.numel(),
                     reinterpret_cast<StatsSums*>(partial.raw_data()), current_stream(dev));
  return partial;
}

// `ready`: the caller has waited for the partials' event, so the copy need not wait for its own stream's later work.
StatsSums merge_partials(const Tensor& partial, bool ready = false) {
  std::vector<uint8_t> bytes;
  if (ready) {
    bytes.resize(size_t(partial.nbytes()));
    copy_ready_to_host(bytes.data(), partial.raw_data(), partial.device(), bytes.size());
  } else {
    bytes = partial.to_vector<uint8_t>();
  }
  StatsSums s = stats_zero();
  for (int b = 0; b < kReduceBlocks; ++b) {
    StatsSums part;
    std::memcpy(&part, bytes.data() + size_t(b) * sizeof(StatsSums), sizeof(StatsSums));
    stats_merge(s, part);
  }
  return s;
}

void check_pair(const Tensor& x, const Tensor& x_hat) {
  EP_CHECK(x.defined() && x_hat.defined(), ValueError, "[compress stats] undefined tensor");
  EP_CHECK(x.shape() == x_hat.shape(), ShapeError, "[compress stats] shapes differ: ", shape_str(x.shape()), " vs ",
           shape_str(x_hat.shape()));
}

// The statistics from their sums (stats.h has every definition, including the x = 0 cases).
CompressionStats finish(const StatsSums& sums, int64_t elements, uint64_t payload_bytes) {
  CompressionStats s;
  s.elements = elements;
  s.payload_bytes = payload_bytes;
  s.max_abs = sums.max_abs;
  s.rel_err_count = sums.rel_count;
  const double err2 = sums.err2, xx = sums.xx, yy = sums.yy, xy = sums.xy;
  const double inf = std::numeric_limits<double>::infinity();
  if (s.elements > 0) {
    s.mse = err2 / double(s.elements);
    s.ratio_fp32 = double(payload_bytes) / (4.0 * double(s.elements));
  }
  s.rel_err = s.rel_err_count > 0 ? sums.rel / double(s.rel_err_count) : 0.0;
  s.rel_l2 = xx > 0 ? std::sqrt(err2 / xx) : (err2 > 0 ? inf : 0.0);
  s.snr_db = err2 > 0 ? (xx > 0 ? 10.0 * std::log10(xx / err2) : -inf) : inf;
  if (s.elements > 0) s.mean_err = sums.err / double(s.elements);
  // |sum e| <= sqrt(n sum e^2) (Cauchy-Schwarz), so |bias| <= 1 but for the last bits of rounding: clamp those.
  if (err2 > 0) s.bias = std::clamp(sums.err / std::sqrt(err2 * double(s.elements)), -1.0, 1.0);
  if (xx > 0 && yy > 0) s.cosine = xy / (std::sqrt(xx) * std::sqrt(yy));
  else s.cosine = (xx == 0 && yy == 0) ? 1.0 : 0.0;
  return s;
}

bool sums_on_gpu(const Tensor& x, const Tensor& x_hat) {
  return x.is_cuda() && x_hat.device() == x.device() && x.numel() > 0;
}

}  // namespace

CompressionStats compute_stats(const Tensor& x, const Tensor& x_hat, uint64_t payload_bytes) {
  check_pair(x, x_hat);
  const StatsSums sums = sums_on_gpu(x, x_hat) ? merge_partials(device_partials(x, x_hat)) : host_sums(x, x_hat);
  return finish(sums, x.numel(), payload_bytes);
}

PendingStats compute_stats_later(const Tensor& x, const Tensor& x_hat, uint64_t payload_bytes) {
  check_pair(x, x_hat);
  if (!sums_on_gpu(x, x_hat)) return PendingStats(compute_stats(x, x_hat, payload_bytes));
  PendingStats p;
  p.ready_.elements = x.numel();
  p.ready_.payload_bytes = payload_bytes;
  p.partial_ = device_partials(x, x_hat);
  auto done = std::make_shared<Event>(x.device());
  done->record(current_stream(x.device()));
  p.done_ = std::move(done);
  return p;
}

CompressionStats PendingStats::get() const {
  if (!partial_.defined()) return ready_;
  // The sums were queued on the encoding thread's stream; this may be another thread (a pipeline stage's sink, read
  // by the trainer, whose stream has the optimizer queued by now): wait for them by their event, then copy them back
  // without waiting for anything else.
  static_cast<const Event*>(done_.get())->synchronize();
  return finish(merge_partials(partial_, /*ready=*/true), ready_.elements, ready_.payload_bytes);
}

nlohmann::json to_json(const CompressionStats& s) {
  auto num = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); };
  return nlohmann::json{{"elements", s.elements},
                        {"mse", num(s.mse)},
                        {"rel_l2", num(s.rel_l2)},
                        {"rel_err", num(s.rel_err)},
                        {"rel_err_count", s.rel_err_count},
                        {"max_abs", num(s.max_abs)},
                        {"snr_db", num(s.snr_db)},
                        {"cosine", num(s.cosine)},
                        {"mean_err", num(s.mean_err)},
                        {"bias", num(s.bias)},
                        {"payload_bytes", s.payload_bytes},
                        {"ratio_fp32", num(s.ratio_fp32)}};
}

void StatsSummary::add(const CompressionStats& s) {
  min_snr_ = calls_ == 0 ? s.snr_db : std::min(min_snr_, s.snr_db);
  min_cos_ = calls_ == 0 ? s.cosine : std::min(min_cos_, s.cosine);
  ++calls_;
  sum_mse_ += s.mse;
  sum_rel_l2_ += s.rel_l2;
  sum_rel_err_ += s.rel_err;
  if (s.snr_db == std::numeric_limits<double>::infinity()) ++exact_calls_;
  else sum_snr_ += s.snr_db;  // -inf (x = 0, x̂ not) is kept: the mean is then -inf, reported as null
  sum_cos_ += s.cosine;
  max_abs_ = std::max(max_abs_, s.max_abs);
  sum_abs_bias_ += std::fabs(s.bias);
  max_abs_bias_ = std::max(max_abs_bias_, std::fabs(s.bias));
  payload_bytes_ += s.payload_bytes;
  fp32_bytes_ += 4 * uint64_t(s.elements);
}

nlohmann::json StatsSummary::to_json() const {
  auto num = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); };
  const double n = calls_ > 0 ? double(calls_) : 1.0, inf = std::numeric_limits<double>::infinity();
  return nlohmann::json{{"calls", calls_},
                        {"mean_mse", num(sum_mse_ / n)},
                        {"mean_rel_l2", num(sum_rel_l2_ / n)},
                        {"mean_rel_err", num(sum_rel_err_ / n)},
                        {"max_abs", num(max_abs_)},
                        {"mean_snr_db", num(calls_ > exact_calls_ ? sum_snr_ / double(calls_ - exact_calls_) : inf)},
                        {"min_snr_db", num(min_snr_)},
                        {"exact_calls", exact_calls_},
                        {"mean_cosine", num(sum_cos_ / n)},
                        {"min_cosine", num(min_cos_)},
                        {"mean_abs_bias", num(sum_abs_bias_ / n)},
                        {"max_abs_bias", num(max_abs_bias_)},
                        {"payload_bytes", payload_bytes_},
                        {"fp32_bytes", fp32_bytes_},
                        {"ratio_fp32", num(fp32_bytes_ > 0 ? double(payload_bytes_) / double(fp32_bytes_) : 0.0)}};
}

}  // namespace ep::compress
