// kmeans.cpp — scalar k-means quantization: 2^b f32 centroids from 1-D Lloyd iterations started at the quantiles,
// each element coded by its nearest centroid. Not the seeds' random-init library call (absent at their HEAD): the
// init is deterministic and the centroids are f32 throughout, so the decoded error provably never rises.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "compress/method_util.h"
#include "compress/methods.h"
#include "engine/dispatch.h"

namespace ep::compress {

std::unique_ptr<Compressor> make_kmeans(SpecArgs& a) {
  KmeansOptions o;
  o.bits = int(a.get_int("bits", 4, 1, 16));
  o.iters = int(a.get_int("iters", 20, 0, 100000));
  return std::make_unique<KmeansCompressor>(o);
}

std::string KmeansCompressor::spec() const {
  return "kmeans:bits=" + std::to_string(opt_.bits) + ",iters=" + std::to_string(opt_.iters);
}

namespace {

// Nearest-centroid cut points for sorted centroids: x goes to the first j with x <= cut[j] (the last otherwise).
// The midpoint of two f32 values is exact in double, so encoder and any re-implementation agree on every element.
std::vector<double> cuts_of(const std::vector<float>& c) {
  std::vector<double> cut(c.size() - 1);
  for (size_t j = 0; j + 1 < c.size(); ++j) cut[j] = 0.5 * (double(c[j]) + double(c[j + 1]));
  return cut;
}

// Lloyd on sorted data. Centroids are kept as f32 (what the table carries) and sorted; an empty cluster keeps its
// centroid. Each step lowers or keeps the f32-centroid squared error: assignment is nearest, and the update moves
// each centroid to the f32 nearest its members' mean, which is at least as close to the mean as the old f32 value.
std::vector<float> lloyd(const std::vector<double>& sorted, int K, int iters) {
  const size_t n = sorted.size();
  std::vector<float> c(size_t(K), 0.0f);
  if (n == 0) return c;
  for (int j = 0; j < K; ++j) {
    const size_t q = std::min(n - 1, size_t((double(j) + 0.5) / double(K) * double(n)));
    c[size_t(j)] = float(sorted[q]);
  }
  std::vector<double> prefix(n + 1, 0.0);
  for (size_t i = 0; i < n; ++i) prefix[i + 1] = prefix[i] + sorted[i];
  for (int it = 0; it < iters; ++it) {
    const std::vector<double> cut = cuts_of(c);
    std::vector<float> next = c;
    size_t begin = 0;
    for (int j = 0; j < K; ++j) {
      const size_t end = j + 1 < K ? size_t(std::upper_bound(sorted.begin() + int64_t(begin), sorted.end(),
                                                             cut[size_t(j)]) - sorted.begin())
                                   : n;
      if (end > begin) {
        // The mean, clamped into the cluster's range against rounding in the prefix sums.
        double mean = (prefix[end] - prefix[begin]) / double(end - begin);
        mean = std::clamp(mean, sorted[begin], sorted[end - 1]);
        next[size_t(j)] = float(mean);
      }
      begin = end;
    }
    std::sort(next.begin(), next.end());
    if (next == c) break;  // converged: further iterations change nothing
    c = std::move(next);
  }
  return c;
}

}  // namespace

Payload KmeansCompressor::encode(const Tensor& x, cudaStream_t) {
  Tensor h = host_input(x, "kmeans");
  Payload p;
  p.method = Method::kmeans;
  p.dtype = h.dtype();
  p.shape = h.shape();
  p.params = {uint32_t(opt_.bits), uint32_t(opt_.iters)};
  const int64_t n = h.numel();
  const int K = 1 << opt_.bits;
  p.codes.assign(size_t(packed_bytes(uint64_t(n), opt_.bits)), 0);
  dispatch_float(h.dtype(), "kmeans", [&](auto tag) {
    using T = EP_TYPE(tag);
    const T* xs = h.data<T>();
    std::vector<double> sorted(xs, xs + n);
    std::sort(sorted.begin(), sorted.end());
    p.table = lloyd(sorted, K, opt_.iters);
    const std::vector<double> cut = cuts_of(p.table);
    pack_parallel(uint64_t(n), opt_.bits, p.codes.data(), [&](uint64_t i) -> uint32_t {
      return uint32_t(std::lower_bound(cut.begin(), cut.end(), double(xs[i])) - cut.begin());
    });
  });
  p.check_consistent("kmeans");
  return p;
}

template <class T> void decode_kmeans(const Payload& p, T* out) {
  const int bits = int(p.params[0]);
  const int64_t n = p.numel();
#pragma omp parallel for if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) out[i] = T(p.table[unpack_code(p.codes.data(), p.codes.size(), uint64_t(i), bits)]);
}
template void decode_kmeans<float>(const Payload&, float*);
template void decode_kmeans<double>(const Payload&, double*);

}  // namespace ep::compress
