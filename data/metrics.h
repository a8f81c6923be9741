// metrics.h — the GLUE evaluation metrics: accuracy, Matthews correlation, F1 of the positive class, Pearson and
// Spearman correlation, all in double precision with sklearn/scipy's definitions. Not streaming and not weighted.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

namespace ep::data {

// Conventions shared by every function below (errors are ValueError with a "[metrics] <function>:" prefix):
// - predictions and references must have the same, non-zero length: an empty evaluation is a caller bug, not 0.
// - class labels must be >= 0; a -1 (an unlabeled GLUE test example) is rejected by name.
// - float inputs must be finite.
// - where the metric is undefined (a zero denominator) the result is 0, as sklearn returns for MCC and F1.

// Fraction of positions where pred == gold.
double accuracy(std::span<const int64_t> pred, std::span<const int64_t> gold);

// The binary confusion matrix of labels in {0, 1} (1 = positive).
struct BinaryConfusion {
  int64_t tp = 0, fp = 0, fn = 0, tn = 0;
};
BinaryConfusion binary_confusion(std::span<const int64_t> pred, std::span<const int64_t> gold);

// (TP·TN − FP·FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)); 0 when any factor is 0 (e.g. one predicted class only).
double matthews_corrcoef(const BinaryConfusion& c);
// sklearn's multi-class generalisation (Gorodkin's R_K) over the union of the labels seen:
// (c·s − Σ_k p_k·t_k) / sqrt((s² − Σ_k p_k²)(s² − Σ_k t_k²)), with c correct, s samples, p_k/t_k predicted/true counts
// of class k. For two classes it equals the binary formula; 0 when a factor of the denominator is 0.
double matthews_corrcoef(std::span<const int64_t> pred, std::span<const int64_t> gold);

// F1 of class 1 for labels in {0, 1}: 2·TP / (2·TP + FP + FN); 0 when there is no positive in pred nor gold (sklearn's
// zero_division default, without its warning).
double f1_score(const BinaryConfusion& c);
double f1_score(std::span<const int64_t> pred, std::span<const int64_t> gold);

// Pearson's r. A constant input has no defined correlation: scipy returns NaN there, we return 0 so that logged
// metrics stay numbers (a regressor that predicts a constant has no linear association with the truth).
double pearson(std::span<const double> x, std::span<const double> y);
double pearson(std::span<const float> x, std::span<const float> y);
// Spearman's rho: Pearson's r of the ranks, tied values sharing their average rank (scipy.stats.spearmanr); 0 for a
// constant input, as pearson().
double spearman(std::span<const double> x, std::span<const double> y);
double spearman(std::span<const float> x, std::span<const float> y);
// 1-based ranks with ties averaged: {10, 20, 20, 30} -> {1, 2.5, 2.5, 4}.
std::vector<double> average_ranks(std::span<const double> x);

}  // namespace ep::data
