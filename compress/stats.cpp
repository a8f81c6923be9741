// stats.cpp — compute_stats and its JSON form (see stats.h for every definition, including the x = 0 cases).
// Not parallel on the CPU: a serial f64 pass, so logged numbers do not depend on the thread count; on a GPU, fixed
// per-block partials merged in order.
#include "compress/stats.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "compress/compress_kernels.h"
#include "compress/stats_math.h"
#include "engine/device.h"
#include "engine/autograd.h"
#include "engine/dispatch.h"
#include "engine/ops.h"

namespace ep::compress {

namespace {

// The tensor as [outer, C, inner] around stats_channel_axis (C = 1 when there is none).
struct ChannelView {
  int64_t outer = 1, channels = 1, inner = 1;
};
ChannelView channel_view(const Shape& shape) {
  ChannelView v;
  const int64_t axis = stats_channel_axis(shape);
  if (axis < 0) {
    v.inner = shape_numel(shape);
    return v;
  }
  for (int64_t d = 0; d < int64_t(shape.size()); ++d)
    (d < axis ? v.outer : d == axis ? v.channels : v.inner) *= shape[d];
  return v;
}

// ||S(x̂) - S(x)||^2 and ||S(x)||^2 from C per-channel sums S(x) and S(x̂) - S(x) (stats.h, sum_rel_err).
struct ChannelSumNorms {
  double err2 = 0, sum2 = 0;
};
ChannelSumNorms channel_sum_norms(const double* sums, const double* errs, size_t channels) {
  ChannelSumNorms n;
  for (size_t c = 0; c < channels; ++c) {
    n.sum2 += sums[c] * sums[c];
    n.err2 += errs[c] * errs[c];
  }
  return n;
}

// The host's one serial f64 pass over both tensors (any float dtype each; no widened copies), in element order: the
// element sums and, channel by channel, the channel sums.
std::pair<StatsSums, ChannelSumNorms> host_sums(const Tensor& x, const Tensor& x_hat) {
  const Tensor a = x.is_cuda() ? x.cpu() : x, b = x_hat.is_cuda() ? x_hat.cpu() : x_hat;
  const ChannelView v = channel_view(a.shape());
  std::vector<double> sums(size_t(v.channels), 0.0), errs(size_t(v.channels), 0.0);
  StatsSums s = stats_zero();
  dispatch_float(a.dtype(), "compress stats", [&](auto ta) {
    using A = EP_TYPE(ta);
    dispatch_float(b.dtype(), "compress stats", [&](auto tb) {
      using B = EP_TYPE(tb);
      const A* pa = a.data<A>();
      const B* pb = b.data<B>();
      for (int64_t o = 0; o < v.outer; ++o)
        for (int64_t c = 0; c < v.channels; ++c)
          for (int64_t i = (o * v.channels + c) * v.inner, end = i + v.inner; i < end; ++i) {
            const double xa = double(pa[i]), xb = double(pb[i]);
            stats_add(s, xa, xb);
            sums[size_t(c)] += xa;
            errs[size_t(c)] += xb - xa;
          }
    });
  });
  return {s, channel_sum_norms(sums.data(), errs.data(), sums.size())};
}

// On one GPU: [2C] f64, S(x) then S(x̂ - x), queued on the current stream with the engine's own reductions (widened
// to f64 first, as the host sums). Not recorded by autograd.
Tensor device_channel_sums(const Tensor& x, const Tensor& x_hat) {
  NoGradGuard no_grad;
  const ChannelView v = channel_view(x.shape());
  const Tensor a = reshape(x.detach(), {v.outer, v.channels, v.inner}).to(DType::f64);
  const Tensor b = reshape(x_hat.detach(), {v.outer, v.channels, v.inner}).to(DType::f64);
  return concat({sum(a, {0, 2}), sum(sub(b, a), {0, 2})}, 0);  // [2C]
}

ChannelSumNorms merge_channel_sums(const Tensor& sums, bool ready = false) {
  std::vector<double> host(size_t(sums.numel()));
  if (ready) copy_ready_to_host(host.data(), sums.raw_data(), sums.device(), host.size() * sizeof(double));
  else host = sums.to_vector<double>();
  const size_t c = host.size() / 2;
  return channel_sum_norms(host.data(), host.data() + c, c);
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
CompressionStats finish(const StatsSums& sums, const ChannelSumNorms& channel, int64_t elements,
                        uint64_t payload_bytes) {
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
  s.sum_rel_err = channel.sum2 > 0 ? std::sqrt(channel.err2 / channel.sum2) : (channel.err2 > 0 ? inf : 0.0);
  if (xx > 0 && yy > 0) s.cosine = xy / (std::sqrt(xx) * std::sqrt(yy));
  else s.cosine = (xx == 0 && yy == 0) ? 1.0 : 0.0;
  return s;
}

bool sums_on_gpu(const Tensor& x, const Tensor& x_hat) {
  return x.is_cuda() && x_hat.device() == x.device() && x.numel() > 0;
}

}  // namespace

int64_t stats_channel_axis(const Shape& shape) {
  const int64_t dims = int64_t(shape.size());
  return dims >= 4 ? 1 : dims >= 2 ? dims - 1 : -1;
}

CompressionStats compute_stats(const Tensor& x, const Tensor& x_hat, uint64_t payload_bytes) {
  check_pair(x, x_hat);
  if (sums_on_gpu(x, x_hat)) {
    const Tensor partial = device_partials(x, x_hat), channel = device_channel_sums(x, x_hat);
    return finish(merge_partials(partial), merge_channel_sums(channel), x.numel(), payload_bytes);
  }
  const auto [sums, channel] = host_sums(x, x_hat);
  return finish(sums, channel, x.numel(), payload_bytes);
}

PendingStats compute_stats_later(const Tensor& x, const Tensor& x_hat, uint64_t payload_bytes) {
  check_pair(x, x_hat);
  if (!sums_on_gpu(x, x_hat)) return PendingStats(compute_stats(x, x_hat, payload_bytes));
  PendingStats p;
  p.ready_.elements = x.numel();
  p.ready_.payload_bytes = payload_bytes;
  p.partial_ = device_partials(x, x_hat);
  p.channel_sums_ = device_channel_sums(x, x_hat);
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
  return finish(merge_partials(partial_, /*ready=*/true), merge_channel_sums(channel_sums_, /*ready=*/true),
                ready_.elements, ready_.payload_bytes);
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
                        {"sum_rel_err", num(s.sum_rel_err)},
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
  if (s.snr_db == std::numeric_limits<double>::infinity()) {
    ++exact_calls_;
  } else {
    sum_snr_ += s.snr_db;  // -inf (x = 0, x̂ not) is kept: the mean is then -inf, reported as null
    sum_rel_errs_.push_back(s.sum_rel_err);
  }
  sum_cos_ += s.cosine;
  max_abs_ = std::max(max_abs_, s.max_abs);
  sum_abs_bias_ += std::fabs(s.bias);
  max_abs_bias_ = std::max(max_abs_bias_, std::fabs(s.bias));
  payload_bytes_ += s.payload_bytes;
  fp32_bytes_ += 4 * uint64_t(s.elements);
}

// The lower median (an element of v, so +inf stays +inf); 0 for none.
static double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  const auto mid = v.begin() + long((v.size() - 1) / 2);
  std::nth_element(v.begin(), mid, v.end());
  return *mid;
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
                        {"median_sum_rel_err", num(median(sum_rel_errs_))},
                        {"max_sum_rel_err", num(sum_rel_errs_.empty() ? 0.0 : *std::max_element(
                                                    sum_rel_errs_.begin(), sum_rel_errs_.end()))},
                        {"payload_bytes", payload_bytes_},
                        {"fp32_bytes", fp32_bytes_},
                        {"ratio_fp32", num(fp32_bytes_ > 0 ? double(payload_bytes_) / double(fp32_bytes_) : 0.0)}};
}

}  // namespace ep::compress
