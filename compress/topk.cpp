// topk.cpp — magnitude top-k: the k = ceil(ratio * n) largest |x| survive, the rest decode to 0; positions travel as
// packed indices or a bitmap, whichever is smaller. Not the seeds' bfloat16 indices (lossy above 256), and the pruned
// tensor really is what the payload carries (the seeds computed it and sent the unpruned one).
#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>
#include <functional>
#include <numeric>
#include <optional>
#include <type_traits>

#include "compress/compress_kernels.h"
#include "compress/method_util.h"
#include "compress/methods.h"
#include "compress/sort_keys.h"
#include "engine/dispatch.h"
#include "engine/storage.h"

namespace ep::compress {

std::unique_ptr<Compressor> make_topk(SpecArgs& a) {
  TopkOptions o;
  o.ratio = a.get_double("ratio", 0.5);
  EP_CHECK(o.ratio > 0.0 && o.ratio <= 1.0, CompressError, "[compress] topk: ratio must be in (0, 1], got ", o.ratio);
  o.reuse_mask = a.get_choice("mask", "reuse", {"reuse", "own"}) == "reuse";
  return std::make_unique<TopkCompressor>(o);
}

std::string TopkCompressor::spec() const {
  return std::string("topk:ratio=") + shortest_double(opt_.ratio) + ",mask=" + (opt_.reuse_mask ? "reuse" : "own");
}

namespace {

// ceil(ratio * n) where a product within 1e-9 of an integer counts as that integer (0.3 * 10 is 3, not 4).
uint64_t kept_count(double ratio, uint64_t n) {
  const double t = ratio * double(n);
  const double r = std::nearbyint(t);
  const double k = std::fabs(t - r) <= 1e-9 * std::max(1.0, t) ? r : std::ceil(t);
  return std::min<uint64_t>(n, uint64_t(k));
}

template <class T>
Payload payload_at(const T* x, const Shape& shape, DType dtype, const std::vector<uint32_t>& idx) {
  const uint64_t n = uint64_t(shape_numel(shape)), k = idx.size();
  Payload p;
  p.method = Method::topk;
  p.dtype = dtype;
  p.shape = shape;
  p.table.resize(idx.size());
  for (size_t j = 0; j < idx.size(); ++j) p.table[j] = float(x[idx[j]]);
  const int ib = bits_for_count(n);
  const bool bitmap = !(packed_bytes(k, ib) < (n + 7) / 8);
  p.params = {uint32_t(k), bitmap ? 1u : 0u};
  if (bitmap) {
    p.codes.assign(size_t((n + 7) / 8), 0);
    for (uint32_t i : idx) p.codes[i >> 3] |= uint8_t(1u << (i & 7));  // bit i of the little-endian stream
  } else {
    p.codes.assign(size_t(packed_bytes(k, ib)), 0);
    pack_codes(idx.data(), k, ib, p.codes.data());
  }
  p.check_consistent("topk");
  return p;
}

// The k ascending positions of the largest |x| (larger magnitude first, the lower index first among equals: the GPU
// twin's set), found as the GPU finds them, by the magnitude keys' radix order rather than a sort: a histogram of the
// keys' top bits gives the bin of the k-th largest, a selection among that bin's keys gives its key t, and one pass
// writes the positions above t and the first (k - those above) equal to t, in index order. The nth_element over
// indices this replaced ran at 0.18 GB/s on a 12.6 MB tensor (2 cores).
template <class T>
std::vector<uint32_t> kept_positions(const T* x, uint64_t n, uint64_t k) {
  using Key = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  std::vector<uint32_t> kept(size_t(k), 0);
  if (k == 0) return kept;
  if (k == n) {
    std::iota(kept.begin(), kept.end(), 0u);
    return kept;
  }
  // Up to 2^16 bins of the keys' top bits (the sign bit is always 0), fewer for small tensors.
  const int key_bits = int(8 * sizeof(Key)) - 1, top_bits = std::clamp(int(std::bit_width(n)) - 4, 4, 16);
  const int shift = key_bits - top_bits;
  const int64_t bins = int64_t(1) << top_bits;
  constexpr int64_t kChunk = int64_t(1) << 16;
  const int64_t chunks = int64_t((n + kChunk - 1) / kChunk);
  auto chunk_end = [&](int64_t c) { return std::min(int64_t(n), (c + 1) * kChunk); };
  const std::vector<uint64_t> hist =
      bin_histogram(int64_t(n), bins, [&](int64_t i) { return magnitude_key(x[i]) >> shift; });
  // The bin of the k-th largest key: `above` keys lie in the bins over it, and it supplies the other `need`.
  int64_t bin = bins - 1;
  uint64_t above = 0;
  while (above + hist[size_t(bin)] < k) above += hist[size_t(bin--)];
  const uint64_t need = k - above;  // 1..hist[bin]
  std::vector<Key> in_bin;
  in_bin.reserve(size_t(hist[size_t(bin)]));
  for (uint64_t i = 0; i < n; ++i) {
    const Key key = magnitude_key(x[i]);
    if (int64_t(key >> shift) == bin) in_bin.push_back(key);
  }
  std::nth_element(in_bin.begin(), in_bin.begin() + int64_t(need - 1), in_bin.end(), std::greater<Key>());
  const Key t = in_bin[size_t(need - 1)];
  uint64_t over_t = above;  // keys above t: the bins over `bin`, and those of `bin` over t
  for (const Key key : in_bin) over_t += key > t;
  const uint64_t take_equal = k - over_t;  // the first take_equal keys equal to t (in index order) are kept
  // Each chunk's count of keys above and equal to t, then the chunks write their positions from their first slot.
  std::vector<uint64_t> chunk_over(size_t(chunks) + 1, 0), chunk_equal(size_t(chunks) + 1, 0);
#pragma omp parallel for schedule(static) if (chunks > 1)
  for (int64_t c = 0; c < chunks; ++c) {
    uint64_t o = 0, e = 0;
    for (int64_t i = c * kChunk; i < chunk_end(c); ++i) {
      const Key key = magnitude_key(x[i]);
      o += key > t;
      e += key == t;
    }
    chunk_over[size_t(c) + 1] = o;
    chunk_equal[size_t(c) + 1] = e;
  }
  for (int64_t c = 0; c < chunks; ++c) {
    chunk_over[size_t(c) + 1] += chunk_over[size_t(c)];
    chunk_equal[size_t(c) + 1] += chunk_equal[size_t(c)];
  }
#pragma omp parallel for schedule(static) if (chunks > 1)
  for (int64_t c = 0; c < chunks; ++c) {
    uint64_t equal_seen = chunk_equal[size_t(c)];
    uint64_t slot = topk_slot(chunk_over[size_t(c)], equal_seen, take_equal);
    const uint64_t end = topk_slot(chunk_over[size_t(c) + 1], chunk_equal[size_t(c) + 1], take_equal);
    // No branch per element: every position is written at the next slot, which only a kept one advances. The loop
    // stops at the chunk's last kept position, so no write lands on the next chunk's first slot.
    for (int64_t i = c * kChunk; slot < end; ++i) {
      const Key key = magnitude_key(x[i]);
      const uint64_t equal = key == t;
      kept[size_t(slot)] = uint32_t(i);
      slot += uint64_t(key > t) | (equal & uint64_t(equal_seen < take_equal));
      equal_seen += equal;
    }
  }
  return kept;
}

// The payload of x at the k ascending positions kept_p (a device array) on the GPU: the values gathered, the positions
// packed as a bitmap or as indices, whichever is smaller (payload_at's rule and bytes); both stay on the GPU as the
// payload's table and code tensors (payload.h).
Payload payload_at_cuda(const Tensor& x, const uint32_t* kept_p, uint64_t k) {
  const Device dev = x.device();
  const cudaStream_t st = current_stream(dev);
  const int64_t n = x.numel();
  const int ib = bits_for_count(uint64_t(n));
  Payload p;
  p.method = Method::topk;
  p.dtype = x.dtype();
  p.shape = x.shape();
  const bool bitmap = !(packed_bytes(k, ib) < (uint64_t(n) + 7) / 8);
  p.params = {uint32_t(k), bitmap ? 1u : 0u};
  if (k == 0) {  // nothing kept: an empty table and code stream (index mode, 0 bytes)
    p.check_consistent("topk");
    return p;
  }
  Tensor values = empty({int64_t(k)}, DType::f32, dev);
  gather_values_cuda(x.raw_data(), x.dtype() == DType::f64, kept_p, int64_t(k), values.data<float>(), st);
  const uint64_t code_bytes = bitmap ? (uint64_t(n) + 7) / 8 : packed_bytes(k, ib);  // >= 1: k >= 1
  Tensor codes = empty({int64_t(code_bytes)}, DType::u8, dev);
  if (bitmap) bitmap_of_sorted_cuda(kept_p, int64_t(k), n, codes.data<uint8_t>(), st);
  else pack_u32_cuda(kept_p, int64_t(k), ib, codes.data<uint8_t>(), st);
  p.table_tensor = values;
  p.codes_tensor = codes;
  p.check_consistent("topk");
  return p;
}

// The GPU twin: a radix selection of the k-th largest magnitude puts the kept positions, ascending, straight into
// `kept` (topk_select_cuda): the CPU's set, ties to the lower index included. The values are gathered and the positions
// packed on the GPU. Nothing is copied back: the payload keeps its sections on the GPU and `kept` receives the k
// positions there (the layer's mask, copied only when asked for).
Payload encode_topk_cuda(const Tensor& x, uint64_t k, Tensor& kept) {
  const Device dev = x.device();
  const cudaStream_t st = current_stream(dev);
  const int64_t n = x.numel();
  check_finite_on_device(x, "topk");
  if (k == 0) {
    kept = Tensor();
    return payload_at_cuda(x, nullptr, 0);
  }
  Tensor kept_d = empty({int64_t(k)}, DType::i32, dev);
  auto* kept_p = reinterpret_cast<uint32_t*>(kept_d.raw_data());
  const bool f64 = x.dtype() == DType::f64;
  size_t temp_bytes = 0;
  topk_select_cuda(nullptr, &temp_bytes, x.raw_data(), f64, n, int64_t(k), kept_p, st);
  Tensor temp = device_scratch(temp_bytes, dev);
  topk_select_cuda(temp.raw_data(), &temp_bytes, x.raw_data(), f64, n, int64_t(k), kept_p, st);
  Payload p = payload_at_cuda(x, kept_p, k);
  kept = kept_d;
  return p;
}

}  // namespace

const std::vector<uint32_t>& TopkCompressor::last_indices() const {
  if (last_indices_device_.defined() && last_indices_.empty()) {
    if (last_encode_done_) last_encode_done_->synchronize();
    const std::vector<int32_t> kept = last_indices_device_.to_vector<int32_t>();
    last_indices_.assign(kept.begin(), kept.end());  // the u32 positions, bit for bit
  }
  return last_indices_;
}

Payload TopkCompressor::encode(const Tensor& x, cudaStream_t stream) {
  if (gpu_path(x, true)) {
    std::optional<StreamGuard> guard;
    if (stream) guard.emplace(x.device(), stream);
    const Tensor xd = x.detach();
    last_indices_.clear();
    Payload p = encode_topk_cuda(xd, kept_count(opt_.ratio, uint64_t(xd.numel())), last_indices_device_);
    last_encode_done_ = std::make_shared<Event>(xd.device());
    last_encode_done_->record(current_stream(xd.device()));
    return p;
  }
  last_indices_device_ = Tensor();
  last_encode_done_.reset();
  Tensor h = host_input(x, "topk");
  EP_CHECK(uint64_t(h.numel()) <= 0xffffffffull, ShapeError, "[topk] supports at most 2^32 elements, got ",
           h.numel());
  const uint64_t n = uint64_t(h.numel()), k = kept_count(opt_.ratio, n);
  return dispatch_float(h.dtype(), "topk", [&](auto tag) {
    using T = EP_TYPE(tag);
    const T* xs = h.data<T>();
    last_indices_ = kept_positions(xs, n, k);
    return payload_at(xs, h.shape(), h.dtype(), last_indices_);
  });
}

Payload TopkCompressor::encode_at(const Tensor& x, const std::vector<uint32_t>& indices) {
  EP_CHECK(x.defined(), ValueError, "[topk] undefined input tensor");
  const uint64_t n = uint64_t(x.numel());
  for (size_t j = 0; j < indices.size(); ++j)
    EP_CHECK(indices[j] < n && (j == 0 || indices[j] > indices[j - 1]), ValueError,
             "[topk] mask positions must be ascending and below ", n, " (position ", j, " is ", indices[j], ")");
  if (gpu_path(x, true)) {  // a layer's backward on the GPU: only the k positions go over
    Tensor kept_d = empty({int64_t(indices.size())}, DType::i32, x.device());
    if (!indices.empty())
      copy_bytes(kept_d.raw_data(), x.device(), indices.data(), Device::cpu(), indices.size() * sizeof(uint32_t));
    return encode_at(x, kept_d);
  }
  Tensor h = host_input(x, "topk");
  return dispatch_float(h.dtype(), "topk", [&](auto tag) {
    using T = EP_TYPE(tag);
    return payload_at(h.data<T>(), h.shape(), h.dtype(), indices);
  });
}

Payload TopkCompressor::encode_at(const Tensor& x, const Tensor& positions) {
  EP_CHECK(x.defined() && positions.defined() && positions.dtype() == DType::i32 && positions.dim() == 1, ValueError,
           "[topk] encode_at expects an input and i32 positions");
  if (!gpu_path(x, true) || positions.device() != x.device()) {
    const std::vector<int32_t> p = positions.to_vector<int32_t>();
    return encode_at(x, std::vector<uint32_t>(p.begin(), p.end()));  // checked there
  }
  EP_CHECK(positions.numel() <= x.numel(), ValueError, "[topk] ", positions.numel(), " mask positions for ",
           x.numel(), " elements");
  const Tensor xd = x.detach();
  check_finite_on_device(xd, "topk");
  return payload_at_cuda(xd, reinterpret_cast<const uint32_t*>(positions.raw_data()), uint64_t(positions.numel()));
}

namespace {

// A bitmap payload is valid when the padding bits of its last byte are clear and it marks exactly k elements.
// Counted by popcount, 8 bytes at a time: the GPU decoder checks this on the host before scattering. Walking the bits
// into a positions vector instead took 6.7 ms for a 12.6 MB tensor on the build VM (popcount: 0.16 ms); the whole GPU
// decode took 8.9 ms on the H200, so that walk was likely most of it (not yet measured there).
void check_bitmap(const Payload& p) {
  const uint64_t n = uint64_t(p.numel()), k = p.params[0];
  const uint64_t pad = p.codes.size() * 8 - n;  // the padding bits of the last byte must be clear
  EP_CHECK(pad == 0 || (p.codes.back() >> (8 - pad)) == 0, CompressError, "[topk] bitmap has bits set past ", n);
  uint64_t marked = 0;
  size_t i = 0;
  for (; i + 8 <= p.codes.size(); i += 8) {
    uint64_t word;
    std::memcpy(&word, p.codes.data() + i, 8);
    marked += uint64_t(std::popcount(word));
  }
  for (; i < p.codes.size(); ++i) marked += uint64_t(std::popcount(p.codes[i]));
  EP_CHECK(marked == k, CompressError, "[topk] bitmap marks ", marked, " elements, the header says ", k);
}

}  // namespace

// Validates while it extracts: a bitmap must mark exactly k positions below n, packed indices must ascend below n.
std::vector<uint32_t> TopkCompressor::positions(const Payload& p) {
  EP_CHECK(p.method == Method::topk, CompressError, "[topk] positions of a ", method_name(p.method), " payload");
  if (p.has_tensors()) return positions(p.host_copy());
  const uint64_t n = uint64_t(p.numel()), k = p.params[0];
  std::vector<uint32_t> out;
  out.reserve(size_t(k));
  if (p.params[1]) {
    check_bitmap(p);  // so no bit past n is set
    // Eight bytes at a time, set bits only: the work follows k, not n, and no branch per element mispredicts.
    static_assert(std::endian::native == std::endian::little, "[topk] the bitmap is read as little-endian words");
    const size_t bytes = p.codes.size();
    for (size_t b0 = 0; b0 < bytes; b0 += 8) {
      uint64_t word = 0;  // the last word's missing bytes stay zero
      std::memcpy(&word, p.codes.data() + b0, std::min<size_t>(8, bytes - b0));
      for (; word != 0; word &= word - 1) out.push_back(uint32_t(8 * b0 + uint64_t(std::countr_zero(word))));
    }
  } else {
    const int ib = bits_for_count(n);
    for (uint64_t j = 0; j < k; ++j) {
      const uint64_t i = unpack_code(p.codes.data(), p.codes.size(), j, ib);
      EP_CHECK(i < n && (j == 0 || i > out.back()), CompressError, "[topk] index ", j, " (", i,
               ") is out of range or not ascending");
      out.push_back(uint32_t(i));
    }
  }
  return out;
}

void check_topk_positions(const Payload& p) {
  if (p.method == Method::topk && p.params[1])
    check_bitmap(p);
  else
    (void)TopkCompressor::positions(p);  // k unpacks, ascending and in range (another method: its error)
}

template <class T> void decode_topk(const Payload& p, T* out) {
  const std::vector<uint32_t> kept = TopkCompressor::positions(p);
  std::fill(out, out + p.numel(), T(0));
  for (size_t j = 0; j < kept.size(); ++j) out[kept[j]] = T(p.table[j]);
}
template void decode_topk<float>(const Payload&, float*);
template void decode_topk<double>(const Payload&, double*);

}  // namespace ep::compress
