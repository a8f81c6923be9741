// stats.cpp — compute_stats and its JSON form (see stats.h for every definition, including the x = 0 cases).
// Not parallel: a deterministic serial f64 pass, so logged numbers do not depend on the thread count.
#include "compress/stats.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/dispatch.h"

namespace ep::compress {

CompressionStats compute_stats(const Tensor& x, const Tensor& x_hat, uint64_t payload_bytes) {
  EP_CHECK(x.defined() && x_hat.defined(), ValueError, "[compress stats] undefined tensor");
  EP_CHECK(x.shape() == x_hat.shape(), ShapeError, "[compress stats] shapes differ: ", shape_str(x.shape()), " vs ",
           shape_str(x_hat.shape()));
  const std::vector<double> a = x.to_double_vector(), b = x_hat.to_double_vector();
  CompressionStats s;
  s.elements = int64_t(a.size());
  s.payload_bytes = payload_bytes;
  double err2 = 0, xx = 0, yy = 0, xy = 0, rel = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = a[i] - b[i];
    err2 += d * d;
    xx += a[i] * a[i];
    yy += b[i] * b[i];
    xy += a[i] * b[i];
    s.max_abs = std::max(s.max_abs, std::fabs(d));
    if (a[i] != 0) {
      rel += std::fabs(std::fabs(a[i]) - std::fabs(b[i])) / std::fabs(a[i]);
      ++s.rel_err_count;
    }
  }
  const double inf = std::numeric_limits<double>::infinity();
  if (s.elements > 0) {
    s.mse = err2 / double(s.elements);
    s.ratio_fp32 = double(payload_bytes) / (4.0 * double(s.elements));
  }
  s.rel_err = s.rel_err_count > 0 ? rel / double(s.rel_err_count) : 0.0;
  s.rel_l2 = xx > 0 ? std::sqrt(err2 / xx) : (err2 > 0 ? inf : 0.0);
  s.snr_db = err2 > 0 ? (xx > 0 ? 10.0 * std::log10(xx / err2) : -inf) : inf;
  if (xx > 0 && yy > 0) s.cosine = xy / (std::sqrt(xx) * std::sqrt(yy));
  else s.cosine = (xx == 0 && yy == 0) ? 1.0 : 0.0;
  return s;
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
  sum_snr_ += s.snr_db;  // an exact call (+inf) makes the mean +inf, reported as null
  sum_cos_ += s.cosine;
  max_abs_ = std::max(max_abs_, s.max_abs);
  payload_bytes_ += s.payload_bytes;
  fp32_bytes_ += 4 * uint64_t(s.elements);
}

nlohmann::json StatsSummary::to_json() const {
  auto num = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); };
  const double n = calls_ > 0 ? double(calls_) : 1.0;
  return nlohmann::json{{"calls", calls_},
                        {"mean_mse", num(sum_mse_ / n)},
                        {"mean_rel_l2", num(sum_rel_l2_ / n)},
                        {"mean_rel_err", num(sum_rel_err_ / n)},
                        {"max_abs", num(max_abs_)},
                        {"mean_snr_db", num(sum_snr_ / n)},
                        {"min_snr_db", num(min_snr_)},
                        {"mean_cosine", num(sum_cos_ / n)},
                        {"min_cosine", num(min_cos_)},
                        {"payload_bytes", payload_bytes_},
                        {"fp32_bytes", fp32_bytes_},
                        {"ratio_fp32", num(fp32_bytes_ > 0 ? double(payload_bytes_) / double(fp32_bytes_) : 0.0)}};
}

}  // namespace ep::compress
