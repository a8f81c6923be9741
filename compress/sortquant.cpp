// sortquant.cpp — the seeds' multi-split ("sort") quantization: 2^s buckets of the value distribution, each quantized
// min-max with b bits; `exact` cuts the sorted order into equal counts, `sampled` uses quantiles of a sample.
// Not the seeds' wire quirks: codes are bucket * 2^b + level packed at b+s bits (no signed offsets, no code-0 loss),
// and sampled thresholds come from a sample of the whole tensor rather than the first sample only.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <optional>

#include "compress/compress_kernels.h"
#include "compress/method_util.h"
#include "compress/methods.h"
#include "compress/sort_keys.h"
#include "engine/dispatch.h"
#include "engine/philox.h"

namespace ep::compress {

std::unique_ptr<Compressor> make_sortquant(SpecArgs& a) {
  SortquantOptions o;
  o.bits = int(a.get_int("bits", 6, 1, 16));
  o.split = int(a.get_int("split", 2, 0, 15));
  EP_CHECK(o.bits + o.split <= 16, CompressError, "[compress] sortquant: bits + split must be <= 16, got ", o.bits,
           " + ", o.split);
  o.sampled = a.get_choice("mode", "exact", {"exact", "sampled"}) == "sampled";
  o.sample = a.get_int("sample", 65536, 1, int64_t(1) << 32);
  o.seed = uint64_t(a.get_int("seed", 0, 0, std::numeric_limits<int64_t>::max()));
  return std::make_unique<SortquantCompressor>(o);
}

std::string SortquantCompressor::spec() const {
  return "sortquant:bits=" + std::to_string(opt_.bits) + ",split=" + std::to_string(opt_.split) +
         ",mode=" + (opt_.sampled ? "sampled" : "exact") + ",sample=" + std::to_string(opt_.sample) +
         ",seed=" + std::to_string(opt_.seed);
}

namespace {

// Fills table (min, step) per bucket from each bucket's members, then packs code = bucket * 2^b + level.
template <class T, class BucketOf>
void encode_buckets(const T* x, int64_t n, int bits, int split, BucketOf&& bucket_of, std::vector<float>& table,
                    uint8_t* codes) {
  const int64_t K = int64_t(1) << split;
  std::vector<double> lo(size_t(K), std::numeric_limits<double>::infinity());
  std::vector<double> hi(size_t(K), -std::numeric_limits<double>::infinity());
  for (int64_t i = 0; i < n; ++i) {
    const int64_t b = bucket_of(i);
    const double v = double(x[i]);
    lo[size_t(b)] = std::min(lo[size_t(b)], v);
    hi[size_t(b)] = std::max(hi[size_t(b)], v);
  }
  const uint32_t levels = (1u << bits) - 1;
  for (int64_t b = 0; b < K; ++b)
    min_step_entry(lo[size_t(b)], hi[size_t(b)], levels, &table[size_t(2 * b)], &table[size_t(2 * b + 1)]);
  pack_parallel(uint64_t(n), bits + split, codes, [&](uint64_t i) -> uint32_t {
    const int64_t b = bucket_of(int64_t(i));
    const double mn = table[size_t(2 * b)], st = table[size_t(2 * b + 1)];
    const uint32_t level = quant_level(double(x[i]), mn, st, levels, -1.0);
    return (uint32_t(b) << bits) | level;
  });
}

// Exact: the total order (value, index) — a stable sort's order — cut into equal counts by recursive selection, so
// ties at a cut are split deterministically by index (and a GPU stable sort gives the same buckets).
template <class T>
void exact_buckets(const T* x, int64_t n, int64_t K, std::vector<uint16_t>& bucket) {
  std::vector<uint32_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), 0u);
  auto less = [x](uint32_t a, uint32_t b) { return x[a] < x[b] || (x[a] == x[b] && a < b); };
  struct Range { int64_t b0, b1; };  // buckets [b0, b1) occupy sorted positions [start(b0), start(b1))
  std::vector<Range> todo{{0, K}};
  while (!todo.empty()) {
    Range r = todo.back();
    todo.pop_back();
    if (r.b1 - r.b0 <= 1) continue;
    const int64_t mid = (r.b0 + r.b1) / 2;
    const int64_t lo = bucket_start(n, K, r.b0), hi = bucket_start(n, K, r.b1), cut = bucket_start(n, K, mid);
    if (cut > lo && cut < hi) std::nth_element(idx.begin() + lo, idx.begin() + cut, idx.begin() + hi, less);
    todo.push_back({r.b0, mid});
    todo.push_back({mid, r.b1});
  }
  bucket.assign(size_t(n), 0);
  for (int64_t b = 0; b < K; ++b)
    for (int64_t j = bucket_start(n, K, b); j < bucket_start(n, K, b + 1); ++j) bucket[idx[size_t(j)]] = uint16_t(b);
}

// Puts the order statistics at pos[0..count) (ascending, distinct, all in [lo, hi)) where a full sort of s would,
// selecting the middle one first so each half is searched on its own.
void select_positions(std::vector<double>& s, const int64_t* pos, size_t count, int64_t lo, int64_t hi) {
  if (count == 0 || hi - lo <= 1) return;
  const size_t mid = count / 2;
  const int64_t p = pos[mid];
  std::nth_element(s.begin() + lo, s.begin() + p, s.begin() + hi);
  select_positions(s, pos, mid, lo, p);
  select_positions(s, pos + mid + 1, count - mid - 1, p + 1, hi);
}

template <class T>
std::vector<double> sampled_thresholds(const T* x, int64_t n, int64_t K, int64_t sample, uint64_t seed,
                                       uint64_t offset) {
  std::vector<double> s;
  if (n <= sample) {
    s.assign(x, x + n);
  } else {
    s.resize(size_t(sample));
    for (int64_t j = 0; j < sample; ++j) s[size_t(j)] = double(x[sample_index(seed, offset, uint64_t(j), uint64_t(n))]);
  }
  return sample_thresholds(std::move(s), K);
}

}  // namespace

// Sampled: K-1 thresholds at the sample quantiles; x goes to the first bucket i with x <= T_i (the last otherwise).
// Selecting only those positions instead of sorting the sample: on the H200's host the sort of 65,536 doubles made
// sampled mode slower than exact at 12.6 MB (1.8 against 11.4 GB/s).
std::vector<double> sample_thresholds(std::vector<double> s, int64_t K) {
  const int64_t m = int64_t(s.size());
  std::vector<double> t(size_t(std::max<int64_t>(0, K - 1)), 0.0);
  if (m == 0) return t;
  std::vector<int64_t> pos(t.size());
  for (int64_t i = 0; i + 1 < K; ++i) pos[size_t(i)] = std::max<int64_t>(0, ((i + 1) * m + K - 1) / K - 1);
  std::vector<int64_t> distinct = pos;  // non-decreasing already; repeats when m < K
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  select_positions(s, distinct.data(), distinct.size(), 0, m);
  for (size_t i = 0; i < pos.size(); ++i) t[i] = s[size_t(pos[i])];
  return t;
}

// The GPU twin of the sampled mode (f32, more elements than the sample, at most kMaxDeviceBuckets buckets), all on the
// GPU so nothing waits for it: the sample is gathered and radix-sorted there, the thresholds picked at
// sample_thresholds()'s positions, the buckets' exact extremes found in one pass over x (which also flags non-finite
// input, judged at the next synchronization point), the table built by the CPU's rule and the codes packed in a
// second pass. Thresholds, table and codes all equal the CPU path's; the payload keeps table and codes on the GPU.
Payload SortquantCompressor::encode_cuda(const Tensor& x, cudaStream_t stream) {
  std::optional<StreamGuard> guard;
  if (stream) guard.emplace(x.device(), stream);
  const Tensor xd = x.detach();
  const Device dev = xd.device();
  const cudaStream_t st = current_stream(dev);
  const int64_t n = xd.numel(), K = int64_t(1) << opt_.split, m = opt_.sample;
  const uint64_t offset = gen_.advance(uint64_t(std::min(n, m)));
  Tensor sample = empty({m}, DType::f32, dev);
  gather_sample_cuda(xd.data<float>(), n, m, gen_.seed, offset, sample.data<float>(), st);
  Tensor keys = empty({m}, DType::i32, dev), sorted = empty({m}, DType::i32, dev);  // u32 keys in i32 tensors
  value_keys_cuda(sample.raw_data(), false, m, keys.raw_data(), nullptr, st);
  size_t temp_bytes = 0;
  sort_keys_cuda(nullptr, &temp_bytes, keys.raw_data(), sorted.raw_data(), m, false, 32, st);
  Tensor temp = device_scratch(temp_bytes, dev);
  sort_keys_cuda(temp.raw_data(), &temp_bytes, keys.raw_data(), sorted.raw_data(), m, false, 32, st);
  Tensor td = empty({std::max<int64_t>(1, K - 1)}, DType::f64, dev);
  sample_thresholds_cuda(sorted.raw_data(), m, int(K), td.data<double>(), st);
  Tensor lo_key = full({K}, double(INT32_MAX), DType::i32, dev);
  Tensor hi_key = full({K}, double(INT32_MIN), DType::i32, dev);
  Tensor nonfinite = zeros({1}, DType::i64, dev);  // the kernel sets its low int
  bucket_minmax_cuda(xd.data<float>(), n, td.data<double>(), int(K), lo_key.data<int32_t>(), hi_key.data<int32_t>(),
                     static_cast<int*>(nonfinite.raw_data()), st);
  check_finite_later(nonfinite, xd, "sortquant");
  Tensor table = empty({2 * K}, DType::f32, dev);
  bucket_table_cuda(lo_key.data<int32_t>(), hi_key.data<int32_t>(), int(K), opt_.bits, table.data<float>(), st);
  Tensor codes = empty({int64_t(packed_bytes(uint64_t(n), opt_.bits + opt_.split))}, DType::u8, dev);
  sortquant_encode_cuda(xd.data<float>(), n, td.data<double>(), table.data<float>(), opt_.bits, opt_.split,
                        codes.data<uint8_t>(), st);
  Payload p;
  p.method = Method::sortquant;
  p.dtype = DType::f32;
  p.shape = xd.shape();
  p.params = {uint32_t(opt_.bits), uint32_t(opt_.split)};
  p.table_tensor = table;  // left on the GPU with the codes: a decode there reads them in place (payload.h)
  p.codes_tensor = codes;
  p.check_consistent("sortquant");
  return p;
}

// The GPU twin of the exact mode (f32 or f64): a stable radix sort of value keys (-0 keyed as +0) with the indices as
// values is the CPU's (value, index) order, so the equal-count buckets, their extremes (the values at each bucket's
// ends), the table and the codes all equal the CPU path's.
Payload SortquantCompressor::encode_exact_cuda(const Tensor& x, cudaStream_t stream) {
  std::optional<StreamGuard> guard;
  if (stream) guard.emplace(x.device(), stream);
  const Tensor xd = x.detach();
  const Device dev = xd.device();
  const cudaStream_t st = current_stream(dev);
  const bool wide = xd.dtype() == DType::f64;
  const int64_t n = xd.numel(), K = int64_t(1) << opt_.split;
  check_finite_on_device(xd, "sortquant");
  const DType key_type = wide ? DType::i64 : DType::i32;
  Tensor keys = empty({n}, key_type, dev), sorted_keys = empty({n}, key_type, dev);
  Tensor iota = empty({n}, DType::i32, dev), order = empty({n}, DType::i32, dev);
  auto* iota_p = reinterpret_cast<uint32_t*>(iota.raw_data());
  auto* order_p = reinterpret_cast<uint32_t*>(order.raw_data());
  value_keys_cuda(xd.raw_data(), wide, n, keys.raw_data(), iota_p, st);
  size_t temp_bytes = 0;
  sort_pairs_cuda(nullptr, &temp_bytes, keys.raw_data(), sorted_keys.raw_data(), iota_p, order_p, n, wide, st);
  Tensor temp = device_scratch(temp_bytes, dev);
  sort_pairs_cuda(temp.raw_data(), &temp_bytes, keys.raw_data(), sorted_keys.raw_data(), iota_p, order_p, n, wide,
                  st);
  Tensor bucket = empty({n}, DType::i16, dev);  // u16 bucket ids in an i16 tensor
  Tensor lo_hi = empty({2 * K}, DType::f64, dev);
  exact_buckets_cuda(sorted_keys.raw_data(), order_p, wide, n, int(K), reinterpret_cast<uint16_t*>(bucket.raw_data()),
                     lo_hi.data<double>(), st);
  const std::vector<double> ext = lo_hi.to_vector<double>();
  Payload p;
  p.method = Method::sortquant;
  p.dtype = xd.dtype();
  p.shape = xd.shape();
  p.params = {uint32_t(opt_.bits), uint32_t(opt_.split)};
  p.table.assign(size_t(2 * K), 0.0f);
  const uint32_t levels = (1u << opt_.bits) - 1;
  for (int64_t b = 0; b < K; ++b)
    min_step_entry(ext[size_t(2 * b)], ext[size_t(2 * b + 1)], levels, &p.table[size_t(2 * b)],
                   &p.table[size_t(2 * b + 1)]);
  Tensor table = from_data<float>(p.table, {2 * K}, dev);
  Tensor codes = empty({int64_t(packed_bytes(uint64_t(n), opt_.bits + opt_.split))}, DType::u8, dev);
  sortquant_encode_buckets_cuda(xd.raw_data(), wide, n, reinterpret_cast<const uint16_t*>(bucket.raw_data()),
                                table.data<float>(), opt_.bits, opt_.split, codes.data<uint8_t>(), st);
  p.codes_tensor = codes;  // left on the GPU: a decode there reads it in place (payload.h)
  p.check_consistent("sortquant");
  return p;
}

Payload SortquantCompressor::encode(const Tensor& x, cudaStream_t stream) {
  if (x.defined() && x.is_cuda() && x.dtype() == DType::f32 && opt_.sampled && x.numel() > opt_.sample &&
      (int64_t(1) << opt_.split) <= kMaxDeviceBuckets && uint64_t(x.numel()) <= 0xffffffffull &&
      opt_.sample < (int64_t(1) << 31))  // the device sort takes fewer than 2^31 keys; the host path takes any
    return encode_cuda(x, stream);
  if (!opt_.sampled && gpu_path(x, true)) return encode_exact_cuda(x, stream);
  Tensor h = host_input(x, "sortquant");
  Payload p;
  p.method = Method::sortquant;
  p.dtype = h.dtype();
  p.shape = h.shape();
  p.params = {uint32_t(opt_.bits), uint32_t(opt_.split)};
  const int64_t n = h.numel(), K = int64_t(1) << opt_.split;
  p.table.assign(size_t(2 * K), 0.0f);
  p.codes.assign(size_t(packed_bytes(uint64_t(n), opt_.bits + opt_.split)), 0);
  EP_CHECK(uint64_t(n) <= 0xffffffffull, ShapeError, "[sortquant] supports at most 2^32 elements, got ", n);
  const uint64_t offset = opt_.sampled ? gen_.advance(uint64_t(std::min(n, opt_.sample))) : 0;
  dispatch_float(h.dtype(), "sortquant", [&](auto tag) {
    using T = EP_TYPE(tag);
    const T* xs = h.data<T>();
    if (!opt_.sampled) {
      std::vector<uint16_t> bucket;
      exact_buckets(xs, n, K, bucket);
      encode_buckets(xs, n, opt_.bits, opt_.split, [&](int64_t i) { return int64_t(bucket[size_t(i)]); }, p.table,
                     p.codes.data());
    } else {
      const std::vector<double> t = sampled_thresholds(xs, n, K, opt_.sample, gen_.seed, offset);
      std::vector<uint16_t> bucket(static_cast<size_t>(n));
#pragma omp parallel for if (n > (1 << 16))
      for (int64_t i = 0; i < n; ++i)
        bucket[size_t(i)] = uint16_t(std::lower_bound(t.begin(), t.end(), double(xs[i])) - t.begin());
      encode_buckets(xs, n, opt_.bits, opt_.split, [&](int64_t i) { return int64_t(bucket[size_t(i)]); }, p.table,
                     p.codes.data());
    }
  });
  p.check_consistent("sortquant");
  return p;
}

template <class T> void decode_sortquant(const Payload& p, T* out) {
  const int bits = int(p.params[0]), total = int(p.params[0] + p.params[1]);
  const uint32_t level_mask = (1u << bits) - 1;
  decode_blocks(p.codes.data(), uint64_t(p.numel()), total, [&](int64_t i0, int64_t m, const uint32_t* c) {
    for (int64_t j = 0; j < m; ++j) {
      const size_t b = c[j] >> bits;  // < 2^split by construction of a total-bit code
      out[i0 + j] = T(double(p.table[2 * b]) + double(c[j] & level_mask) * double(p.table[2 * b + 1]));
    }
  });
}
template void decode_sortquant<float>(const Payload&, float*);
template void decode_sortquant<double>(const Payload&, double*);

}  // namespace ep::compress
