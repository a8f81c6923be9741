// sortquant.cpp — the seeds' multi-split ("sort") quantization: 2^s buckets of the value distribution, each quantized
// min-max with b bits; `exact` cuts the sorted order into equal counts, `sampled` uses quantiles of a sample.
// Not the seeds' wire quirks: codes are bucket * 2^b + level packed at b+s bits (no signed offsets, no code-0 loss),
// and sampled thresholds come from a sample of the whole tensor rather than the first sample only.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <optional>
#include <type_traits>

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
  // Each thread's extremes, merged: min and max are exact, so the thread count cannot change them.
#pragma omp parallel if (n > (1 << 16))
  {
    std::vector<double> my_lo(lo), my_hi(hi);
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      const int64_t b = bucket_of(i);
      const double v = double(x[i]);
      my_lo[size_t(b)] = std::min(my_lo[size_t(b)], v);
      my_hi[size_t(b)] = std::max(my_hi[size_t(b)], v);
    }
#pragma omp critical
    for (int64_t b = 0; b < K; ++b) {
      lo[size_t(b)] = std::min(lo[size_t(b)], my_lo[size_t(b)]);
      hi[size_t(b)] = std::max(hi[size_t(b)], my_hi[size_t(b)]);
    }
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

// A cut of exact sortquant's sorted order: the bucket above it starts at sorted position pos, whose key is key, with
// `below` keys smaller than it and `equal` keys equal to it (itself included).
template <class Key> struct SortCut {
  int64_t pos;
  Key key = 0;
  int64_t below = 0, equal = 0;
};

// The seeds' few buckets (up to kFewCuts cuts): each element's bucket as a sum over the cuts, cut by cut over a
// chunk, with no branch. An element is past a cut when its key is larger than the cut's, or when it is equal and
// sorted at or after the cut: a key found once is the cut's own element, and a repeated key's equal elements take
// their sorted positions below + 0, 1, ... in index order, so the first (pos - below) of them stay before the cut.
// (Gradients past a ReLU6 or a pooling hold many exact repeats, often at a cut.) For a repeated key a first pass counts
// each chunk's equal elements, so that the chunks then run in parallel, each starting where the ones before it left.
constexpr size_t kFewCuts = 16;
template <class Key>
void few_cut_buckets(const Key* keys, int64_t n, const std::vector<SortCut<Key>>& cuts, uint16_t* bucket) {
  constexpr int64_t kChunk = int64_t(1) << 16;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  const size_t m = cuts.size();
  std::vector<int64_t> seen(size_t(chunks) * m, 0);  // per chunk and repeated cut key: equal elements before the chunk
#pragma omp parallel for schedule(static) if (n > kChunk)
  for (int64_t c = 0; c < chunks; ++c)
    for (size_t j = 0; j < m; ++j) {
      if (cuts[j].equal == 1) continue;
      const Key ck = cuts[j].key;
      int64_t count = 0;
      for (int64_t i = c * kChunk; i < std::min(n, (c + 1) * kChunk); ++i) count += keys[i] == ck;
      seen[size_t(c) * m + j] = count;
    }
  for (size_t j = 0; j < m; ++j) {  // exclusive prefix over the chunks
    int64_t run = 0;
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t here = seen[size_t(c) * m + j];
      seen[size_t(c) * m + j] = run;
      run += here;
    }
  }
#pragma omp parallel for schedule(static) if (n > kChunk)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t i0 = c * kChunk, len = std::min(n, (c + 1) * kChunk) - i0;
    const Key* k = keys + i0;
    uint16_t* b = bucket + i0;
    std::fill(b, b + len, uint16_t(0));
    for (size_t j = 0; j < m; ++j) {
      const Key ck = cuts[j].key;
      if (cuts[j].equal == 1) {
        for (int64_t i = 0; i < len; ++i) b[i] = uint16_t(b[i] + (ck <= k[i]));
      } else if (cuts[j].equal * 64 <= n) {  // a few repeats: the larger keys, then the rare equal ones by a branch
        const int64_t stay = cuts[j].pos - cuts[j].below;
        int64_t s = seen[size_t(c) * m + j];
        for (int64_t i = 0; i < len; ++i) b[i] = uint16_t(b[i] + (ck < k[i]));
        for (int64_t i = 0; i < len; ++i)
          if (k[i] == ck) b[i] = uint16_t(b[i] + (s++ >= stay));
      } else {
        const int64_t stay = cuts[j].pos - cuts[j].below;  // the equal elements that stay before the cut
        int64_t s = seen[size_t(c) * m + j];
        for (int64_t i = 0; i < len; ++i) {
          const bool eq = k[i] == ck;
          b[i] = uint16_t(b[i] + (unsigned(ck < k[i]) | unsigned(eq & (s >= stay))));
          s += eq;
        }
      }
    }
  }
}

// Exact: bucket b holds the sorted positions [bucket_start(b), bucket_start(b+1)) of the total order (value, index),
// a stable sort's order, -0 equal to +0 (value_key), so ties at a cut are split by index and a GPU stable sort gives
// the same buckets. Found without sorting x: a histogram of the keys' top bits tells which bin holds each cut
// position, a selection among those bins' keys only gives the key at the cut (on activations a bin holds well under
// 1% of them), and one pass counts the cut keys below each element's. Elements equal to a cut key are then settled in
// index order: the first (cut - keys below it) of them sit before the cut. The recursive nth_element over indices
// this replaced took 5.7% of `make run`.
template <class T>
void exact_buckets(const T* x, int64_t n, int64_t K, std::vector<uint16_t>& bucket) {
  using Key = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  // 2^16 bins, or 2^12 for up to 2^20 keys, where clearing and summing 2^16 counters would cost more than it saves.
  const int top_bits = n > (int64_t(1) << 20) ? 16 : 12, kShift = int(8 * sizeof(Key)) - top_bits;
  const int64_t kBins = int64_t(1) << top_bits;
  constexpr int64_t kChunk = int64_t(1) << 16;
  bucket.assign(size_t(n), 0);
  std::vector<SortCut<Key>> cuts;
  for (int64_t b = 1; b < K; ++b)
    if (bucket_start(n, K, b) < n) cuts.push_back({bucket_start(n, K, b)});  // a cut at n splits nothing
  if (cuts.empty()) return;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  auto chunk_end = [&](int64_t c) { return std::min(n, (c + 1) * kChunk); };

  std::vector<Key> keys(static_cast<size_t>(n));  // the GPU twin's keys: -0 keyed as +0, negatives flipped
#pragma omp parallel for schedule(static) if (n > kChunk)
  for (int64_t c = 0; c < chunks; ++c)
    for (int64_t i = c * kChunk; i < chunk_end(c); ++i) keys[size_t(i)] = value_key(x[i]);

  const std::vector<uint64_t> hist = bin_histogram(n, kBins, [&](int64_t i) { return keys[size_t(i)] >> kShift; });
  std::vector<uint64_t> start(size_t(kBins) + 1, 0);  // keys in the bins below: the histogram's prefix sums
  for (int64_t b = 0; b < kBins; ++b) start[size_t(b) + 1] = start[size_t(b)] + hist[size_t(b)];

  // The bins that hold a cut, numbered in order, and their keys.
  std::vector<int32_t> slot(size_t(kBins), -1);
  std::vector<int64_t> bin_of_cut(cuts.size());
  int32_t slots = 0;
  for (size_t j = 0; j < cuts.size(); ++j) {
    const int64_t b = int64_t(std::upper_bound(start.begin(), start.end(), uint64_t(cuts[j].pos)) - start.begin()) - 1;
    bin_of_cut[j] = b;
    if (slot[size_t(b)] < 0) slot[size_t(b)] = slots++;
  }
  // A bin of one repeated key (the exact zeros of a ReLU6's output or its gradient can be half of x, and a cut) needs
  // nothing more: with the seeds' few cuts, each cut bin's extremes first, in a pass without branches per bin.
  std::vector<int64_t> bin_of_slot(static_cast<size_t>(slots));
  for (size_t j = 0; j < cuts.size(); ++j) bin_of_slot[size_t(slot[size_t(bin_of_cut[j])])] = bin_of_cut[j];
  std::vector<char> uniform(size_t(slots), 0);
  std::vector<Key> only_key(size_t(slots), 0);
  // Only a bin holding over 1/16 of x is checked: a smaller one costs less to gather than to check.
  const bool check = size_t(slots) <= kFewCuts;
#pragma omp parallel for schedule(dynamic) if (check && slots > 1 && n > kChunk)
  for (int32_t s = 0; s < (check ? slots : 0); ++s) {
    const int64_t b = bin_of_slot[size_t(s)];
    if (int64_t(start[size_t(b) + 1] - start[size_t(b)]) * 16 <= n) continue;
    const Key bin = Key(b);
    Key lo = ~Key(0), hi = 0;
    for (int64_t i = 0; i < n; ++i) {
      const Key k = keys[size_t(i)];
      const Key in = Key(0) - Key((k >> kShift) == bin);  // all ones or zero: a select GCC cannot turn into a branch
      lo = std::min(lo, (k & in) | ~in);
      hi = std::max(hi, k & in);
    }
    uniform[size_t(s)] = lo == hi;
    only_key[size_t(s)] = lo;
  }
  // The other cut bins' keys (sized by the histogram, filled in one pass); a bin with a few cuts then takes a
  // selection per cut, one with more a sort.
  std::vector<int32_t> gather_slot(slot);
  for (int32_t s = 0; s < slots; ++s)
    if (uniform[size_t(s)]) gather_slot[size_t(bin_of_slot[size_t(s)])] = -1;
  std::vector<std::vector<Key>> bin_keys{size_t(slots)};
  for (int32_t s = 0; s < slots; ++s) {
    const int64_t b = bin_of_slot[size_t(s)];
    if (!uniform[size_t(s)]) bin_keys[size_t(s)].resize(start[size_t(b) + 1] - start[size_t(b)]);
  }
  std::vector<size_t> filled(size_t(slots), 0);
  for (int64_t i = 0; i < n; ++i) {
    const int32_t s = gather_slot[size_t(keys[size_t(i)] >> kShift)];
    if (s >= 0) bin_keys[size_t(s)][filled[size_t(s)]++] = keys[size_t(i)];
  }
  std::vector<int64_t> cuts_in(size_t(slots), 0);
  for (size_t j = 0; j < cuts.size(); ++j) ++cuts_in[size_t(slot[size_t(bin_of_cut[j])])];
#pragma omp parallel for schedule(dynamic) if (slots > 1 && n > kChunk)
  for (int32_t s = 0; s < slots; ++s)
    if (!uniform[size_t(s)] && cuts_in[size_t(s)] > 4)
      std::sort(bin_keys[size_t(s)].begin(), bin_keys[size_t(s)].end());
  std::vector<Key> cut_keys(cuts.size());  // non-decreasing, as the positions
  for (size_t j = 0; j < cuts.size(); ++j) {
    const int32_t s = slot[size_t(bin_of_cut[j])];
    std::vector<Key>& in_bin = bin_keys[size_t(s)];
    const uint64_t first = start[size_t(bin_of_cut[j])];
    const int64_t rank = int64_t(uint64_t(cuts[j].pos) - first);  // the cut's rank inside its bin
    if (uniform[size_t(s)]) {
      cuts[j].key = only_key[size_t(s)];
      cuts[j].below = int64_t(first);
      cuts[j].equal = int64_t(start[size_t(bin_of_cut[j]) + 1] - first);
    } else if (cuts_in[size_t(s)] > 4) {
      const auto at = in_bin.begin() + rank;
      const auto [lo, hi] = std::equal_range(in_bin.begin(), in_bin.end(), *at);
      cuts[j].key = *at;
      cuts[j].below = int64_t(first) + (lo - in_bin.begin());
      cuts[j].equal = hi - lo;
    } else {
      const auto at = in_bin.begin() + rank;
      std::nth_element(in_bin.begin(), at, in_bin.end());
      const Key key = *at;
      cuts[j].key = key;
      cuts[j].below = int64_t(first) + std::count_if(in_bin.begin(), at, [&](Key k) { return k < key; });
      cuts[j].equal = std::count(in_bin.begin(), in_bin.end(), key);
    }
    cut_keys[j] = cuts[j].key;
  }

  const size_t ncuts = cut_keys.size();
  if (ncuts <= kFewCuts) {
    few_cut_buckets(keys.data(), n, cuts, bucket.data());
    return;
  }
  // Many cuts: each element's bucket counts the cut keys below its key, by binary search; the elements equal to one
  // are listed per chunk with that count, which is the first of the cuts their key is at.
  struct Tie {
    int64_t i;
    size_t first_cut;
  };
  std::vector<std::vector<Tie>> ties{size_t(chunks)};
#pragma omp parallel for schedule(static) if (n > kChunk)
  for (int64_t c = 0; c < chunks; ++c)
    for (int64_t i = c * kChunk; i < chunk_end(c); ++i) {
      const Key k = keys[size_t(i)];
      const size_t below = size_t(std::lower_bound(cut_keys.begin(), cut_keys.end(), k) - cut_keys.begin());
      bucket[size_t(i)] = uint16_t(below);
      if (below < ncuts && cut_keys[below] == k) ties[size_t(c)].push_back({i, below});
    }
  // In index order: an element whose key is that of cuts [first, last) is the seen-th of its key, at sorted
  // position below + seen, past each of those cuts whose position it reaches.
  std::vector<size_t> last_cut(ncuts);  // one past the last cut with the same key
  for (size_t j = ncuts; j-- > 0;)
    last_cut[j] = j + 1 < ncuts && cut_keys[j + 1] == cut_keys[j] ? last_cut[j + 1] : j + 1;
  std::vector<int64_t> seen;  // per group of equal cut keys, at its first cut (resized: sized at construction,
                              // it set off a false GCC 12 -Wfree-nonheap-object)
  seen.resize(ncuts);
  for (const std::vector<Tie>& list : ties)
    for (const Tie& t : list) {
      const int64_t position = cuts[t.first_cut].below + seen[t.first_cut]++;
      uint16_t& b = bucket[size_t(t.i)];
      for (size_t j = t.first_cut; j < last_cut[t.first_cut]; ++j) b = uint16_t(b + (position >= cuts[j].pos));
    }
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
      // The first threshold >= x is the count of thresholds below x: a plain count for the seeds' few buckets
      // (a binary search's branches mispredict on every element), a search for many.
      const size_t nt = t.size();
#pragma omp parallel for if (n > (1 << 16))
      for (int64_t i = 0; i < n; ++i) {
        const double v = double(xs[i]);
        size_t below = 0;
        if (nt <= 16) {
          for (size_t j = 0; j < nt; ++j) below += t[j] < v;
        } else {
          below = size_t(std::lower_bound(t.begin(), t.end(), v) - t.begin());
        }
        bucket[size_t(i)] = uint16_t(below);
      }
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
