// metrics.cpp — accuracy, MCC, F1, Pearson and Spearman over host vectors, in double precision (the MCC products
// overflow 32-bit integers at GLUE sizes). Not a reduction kernel: evaluation sets are small and live on the host.
#include "data/metrics.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "engine/check.h"

namespace ep::data {

namespace {

template <class A, class B>
void check_pair(const char* fn, std::span<A> pred, std::span<B> gold) {
  EP_CHECK(pred.size() == gold.size(), ValueError, "[metrics] ", fn, ": ", pred.size(), " predictions but ",
           gold.size(), " references");
  EP_CHECK(!pred.empty(), ValueError, "[metrics] ", fn, ": empty input (nothing was evaluated)");
}

void check_labels(const char* fn, std::span<const int64_t> pred, std::span<const int64_t> gold) {
  check_pair(fn, pred, gold);
  for (size_t i = 0; i < pred.size(); ++i) {
    EP_CHECK(gold[i] >= 0, ValueError, "[metrics] ", fn, ": reference ", i, " is ", gold[i],
             " (an unlabeled test example has no reference)");
    EP_CHECK(pred[i] >= 0, ValueError, "[metrics] ", fn, ": prediction ", i, " is ", pred[i], ", expected a class >= 0");
  }
}

template <class T>
std::vector<double> finite_copy(const char* fn, const char* what, std::span<const T> v) {
  std::vector<double> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    EP_CHECK(std::isfinite(double(v[i])), ValueError, "[metrics] ", fn, ": ", what, " ", i, " is not finite (",
             double(v[i]), ")");
    out[i] = double(v[i]);
  }
  return out;
}

// Pearson's r of two finite vectors of equal non-zero length; two-pass (centre first) for accuracy.
double pearson_of(const std::vector<double>& x, const std::vector<double>& y) {
  const double n = double(x.size());
  const double mx = std::accumulate(x.begin(), x.end(), 0.0) / n;
  const double my = std::accumulate(y.begin(), y.end(), 0.0) / n;
  double sxy = 0, sxx = 0, syy = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double dx = x[i] - mx, dy = y[i] - my;
    sxy += dx * dy;
    sxx += dx * dx;
    syy += dy * dy;
  }
  if (sxx == 0 || syy == 0) return 0.0;  // a constant side: see metrics.h
  // Rounding can push |r| a hair past 1 for perfectly (anti)correlated data.
  return std::clamp(sxy / std::sqrt(sxx * syy), -1.0, 1.0);
}

template <class T>
double pearson_impl(std::span<const T> x, std::span<const T> y) {
  check_pair("pearson", x, y);
  return pearson_of(finite_copy("pearson", "x", x), finite_copy("pearson", "y", y));
}

template <class T>
double spearman_impl(std::span<const T> x, std::span<const T> y) {
  check_pair("spearman", x, y);
  std::vector<double> xs = finite_copy("spearman", "x", x), ys = finite_copy("spearman", "y", y);
  return pearson_of(average_ranks(xs), average_ranks(ys));
}

}  // namespace

double accuracy(std::span<const int64_t> pred, std::span<const int64_t> gold) {
  check_labels("accuracy", pred, gold);
  int64_t correct = 0;
  for (size_t i = 0; i < pred.size(); ++i) correct += pred[i] == gold[i];
  return double(correct) / double(pred.size());
}

BinaryConfusion binary_confusion(std::span<const int64_t> pred, std::span<const int64_t> gold) {
  check_labels("binary_confusion", pred, gold);
  BinaryConfusion c;
  for (size_t i = 0; i < pred.size(); ++i) {
    EP_CHECK(pred[i] <= 1 && gold[i] <= 1, ValueError, "[metrics] binary_confusion: labels must be 0 or 1, got ",
             "prediction ", pred[i], " and reference ", gold[i], " at ", i);
    if (gold[i] == 1) (pred[i] == 1 ? c.tp : c.fn)++;
    else (pred[i] == 1 ? c.fp : c.tn)++;
  }
  return c;
}

double matthews_corrcoef(const BinaryConfusion& c) {
  const double tp = double(c.tp), fp = double(c.fp), fn = double(c.fn), tn = double(c.tn);
  const double denom = (tp + fp) * (tp + fn) * (tn + fp) * (tn + fn);
  if (denom == 0) return 0.0;
  return (tp * tn - fp * fn) / std::sqrt(denom);
}

double matthews_corrcoef(std::span<const int64_t> pred, std::span<const int64_t> gold) {
  check_labels("matthews_corrcoef", pred, gold);
  // Classes = the union of the labels seen (as sklearn), so any label values work without a dense table.
  std::vector<int64_t> classes(pred.begin(), pred.end());
  classes.insert(classes.end(), gold.begin(), gold.end());
  std::sort(classes.begin(), classes.end());
  classes.erase(std::unique(classes.begin(), classes.end()), classes.end());
  auto index_of = [&](int64_t v) { return size_t(std::lower_bound(classes.begin(), classes.end(), v) - classes.begin()); };
  std::vector<double> p(classes.size(), 0.0), t(classes.size(), 0.0);
  double correct = 0;
  for (size_t i = 0; i < pred.size(); ++i) {
    p[index_of(pred[i])] += 1;
    t[index_of(gold[i])] += 1;
    correct += pred[i] == gold[i];
  }
  const double s = double(pred.size());
  double pt = 0, pp = 0, tt = 0;
  for (size_t k = 0; k < classes.size(); ++k) {
    pt += p[k] * t[k];
    pp += p[k] * p[k];
    tt += t[k] * t[k];
  }
  const double denom = (s * s - pp) * (s * s - tt);
  if (denom == 0) return 0.0;
  return (correct * s - pt) / std::sqrt(denom);
}

double f1_score(const BinaryConfusion& c) {
  const double denom = 2.0 * double(c.tp) + double(c.fp) + double(c.fn);
  if (denom == 0) return 0.0;
  return 2.0 * double(c.tp) / denom;
}

double f1_score(std::span<const int64_t> pred, std::span<const int64_t> gold) {
  return f1_score(binary_confusion(pred, gold));
}

double pearson(std::span<const double> x, std::span<const double> y) { return pearson_impl(x, y); }
double pearson(std::span<const float> x, std::span<const float> y) { return pearson_impl(x, y); }
double spearman(std::span<const double> x, std::span<const double> y) { return spearman_impl(x, y); }
double spearman(std::span<const float> x, std::span<const float> y) { return spearman_impl(x, y); }

std::vector<double> average_ranks(std::span<const double> x) {
  std::vector<size_t> order(x.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return x[a] < x[b]; });
  std::vector<double> rank(x.size());
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    while (j + 1 < order.size() && x[order[j + 1]] == x[order[i]]) ++j;
    // Positions i..j (0-based) hold one value: each gets the mean of the 1-based ranks i+1..j+1.
    const double avg = double(i + j + 2) / 2.0;
    for (size_t k = i; k <= j; ++k) rank[order[k]] = avg;
    i = j + 1;
  }
  return rank;
}

}  // namespace ep::data
