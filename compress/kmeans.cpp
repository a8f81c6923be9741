// kmeans.cpp — scalar k-means quantization: 2^b f32 centroids from 1-D Lloyd iterations started at the quantiles,
// each element coded by its nearest centroid. Not the seeds' random-init library call (absent at their HEAD): the
// init is deterministic and the centroids are f32 throughout, so the decoded error provably never rises.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>

#include "compress/compress_kernels.h"
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
    c[size_t(j)] = float(sorted[q]) + 0.0f;  // + 0: a canonical zero, whichever of -0/+0 the sort put here
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
        next[size_t(j)] = float(mean) + 0.0f;
      }
      begin = end;
    }
    std::sort(next.begin(), next.end());
    if (next == c) break;  // converged: further iterations change nothing
    c = std::move(next);
  }
  return c;
}

// The GPU twin: a radix sort of value keys gives the sorted data, a CUB scan its prefix sums, and each Lloyd step
// runs one thread per cluster; the K centroids travel to the host per iteration (sorted and compared there, as in
// lloyd()). The scan associates its sums differently from the CPU's serial prefix, so a mean can differ in its last
// bits and the centroids (hence codes) are not guaranteed bit-identical to the CPU's; the decoded tensors agree to
// rounding. The assignment then uses the same cut rule as the CPU on the centroids found.
Payload encode_kmeans_cuda(const Tensor& x, int bits, int iters) {
  const Device dev = x.device();
  const cudaStream_t st = current_stream(dev);
  const bool wide = x.dtype() == DType::f64;
  const int64_t n = x.numel();
  const int K = 1 << bits;
  check_finite_on_device(x, "kmeans");
  const DType key_type = wide ? DType::i64 : DType::i32;
  Tensor keys = empty({n}, key_type, dev), sorted_keys = empty({n}, key_type, dev);
  value_keys_cuda(x.raw_data(), wide, n, keys.raw_data(), nullptr, st);
  Tensor sorted = empty({n}, DType::f64, dev), prefix = empty({n + 1}, DType::f64, dev);
  size_t sort_bytes = 0, scan_bytes = 0;
  sort_keys_cuda(nullptr, &sort_bytes, keys.raw_data(), sorted_keys.raw_data(), n, wide, wide ? 64 : 32, st);
  prefix_sum_cuda(nullptr, &scan_bytes, sorted.data<double>(), prefix.data<double>(), n, st);
  Tensor temp = device_scratch(std::max(sort_bytes, scan_bytes), dev);
  sort_keys_cuda(temp.raw_data(), &sort_bytes, keys.raw_data(), sorted_keys.raw_data(), n, wide, wide ? 64 : 32, st);
  keys_to_values_cuda(sorted_keys.raw_data(), wide, n, sorted.data<double>(), st);
  prefix_sum_cuda(temp.raw_data(), &scan_bytes, sorted.data<double>(), prefix.data<double>(), n, st);
  Tensor c_d = empty({K}, DType::f32, dev), next_d = empty({K}, DType::f32, dev);
  kmeans_init_cuda(sorted.data<double>(), n, K, c_d.data<float>(), st);
  std::vector<float> c = c_d.to_vector<float>();
  for (int it = 0; it < iters; ++it) {
    const Tensor cuts = from_data<double>(cuts_of(c), {K - 1}, dev);
    kmeans_update_cuda(sorted.data<double>(), prefix.data<double>(), n, cuts.data<double>(), c_d.data<float>(), K,
                       next_d.data<float>(), st);
    std::vector<float> next = next_d.to_vector<float>();
    std::sort(next.begin(), next.end());
    if (next == c) break;
    c = std::move(next);
    c_d = from_data<float>(c, {K}, dev);
  }
  Payload p;
  p.method = Method::kmeans;
  p.dtype = x.dtype();
  p.shape = x.shape();
  p.params = {uint32_t(bits), uint32_t(iters)};
  p.table = c;
  const Tensor cuts = from_data<double>(cuts_of(c), {K - 1}, dev);
  Tensor codes = empty({int64_t(packed_bytes(uint64_t(n), bits))}, DType::u8, dev);
  kmeans_assign_cuda(x.raw_data(), wide, n, cuts.data<double>(), bits, codes.data<uint8_t>(), st);
  p.codes_tensor = codes;  // left on the GPU: a decode there reads it in place (payload.h)
  p.check_consistent("kmeans");
  return p;
}

}  // namespace

Payload KmeansCompressor::encode(const Tensor& x, cudaStream_t stream) {
  if (gpu_path(x, true)) {
    std::optional<StreamGuard> guard;
    if (stream) guard.emplace(x.device(), stream);
    return encode_kmeans_cuda(x.detach(), opt_.bits, opt_.iters);
  }
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
    p.table = lloyd(sorted_values(xs, n), K, opt_.iters);
    const std::vector<double> cut = cuts_of(p.table);
    const int bits = opt_.bits;
    encode_blocks(uint64_t(n), bits, p.codes.data(), [&](int64_t i0, int64_t m, uint32_t* codes) {
      for (int64_t j = 0; j < m; ++j) codes[j] = nearest_centroid(cut.data(), bits, double(xs[i0 + j]));
    });
  });
  p.check_consistent("kmeans");
  return p;
}

template <class T> void decode_kmeans(const Payload& p, T* out) {
  decode_blocks(p.codes.data(), uint64_t(p.numel()), int(p.params[0]), [&](int64_t i0, int64_t m, const uint32_t* c) {
    for (int64_t j = 0; j < m; ++j) out[i0 + j] = T(p.table[c[j]]);
  });
}
template void decode_kmeans<float>(const Payload&, float*);
template void decode_kmeans<double>(const Payload&, double*);

}  // namespace ep::compress
