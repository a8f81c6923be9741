// topk.cpp — magnitude top-k: the k = ceil(ratio * n) largest |x| survive, the rest decode to 0; positions travel as
// packed indices or a bitmap, whichever is smaller. Not the seeds' bfloat16 indices (lossy above 256), and the pruned
// tensor really is what the payload carries (the seeds computed it and sent the unpruned one).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "compress/method_util.h"
#include "compress/methods.h"
#include "engine/dispatch.h"

namespace ep::compress {

std::unique_ptr<Compressor> make_topk(SpecArgs& a) {
  TopkOptions o;
  o.ratio = a.get_double("ratio", 0.5);
  EP_CHECK(o.ratio > 0.0 && o.ratio <= 1.0, CompressError, "[compress] topk: ratio must be in (0, 1], got ", o.ratio);
  o.reuse_mask = a.get_choice("mask", "reuse", {"reuse", "own"}) == "reuse";
  return std::make_unique<TopkCompressor>(o);
}

std::string TopkCompressor::spec() const {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", opt_.ratio);
  return std::string("topk:ratio=") + buf + ",mask=" + (opt_.reuse_mask ? "reuse" : "own");
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

}  // namespace

Payload TopkCompressor::encode(const Tensor& x, cudaStream_t) {
  Tensor h = host_input(x, "topk");
  EP_CHECK(uint64_t(h.numel()) <= 0xffffffffull, ShapeError, "[topk] supports at most 2^32 elements, got ",
           h.numel());
  const uint64_t n = uint64_t(h.numel()), k = kept_count(opt_.ratio, n);
  return dispatch_float(h.dtype(), "topk", [&](auto tag) {
    using T = EP_TYPE(tag);
    const T* xs = h.data<T>();
    std::vector<uint32_t> idx(static_cast<size_t>(n));
    std::iota(idx.begin(), idx.end(), 0u);
    // Larger |x| first; equal magnitudes: the lower index first, so the kept set is deterministic.
    auto before = [xs](uint32_t a, uint32_t b) {
      const T fa = std::fabs(xs[a]), fb = std::fabs(xs[b]);
      return fa > fb || (fa == fb && a < b);
    };
    if (k < n) std::nth_element(idx.begin(), idx.begin() + int64_t(k), idx.end(), before);
    idx.resize(size_t(k));
    std::sort(idx.begin(), idx.end());
    last_indices_ = idx;
    return payload_at(xs, h.shape(), h.dtype(), idx);
  });
}

Payload TopkCompressor::encode_at(const Tensor& x, const std::vector<uint32_t>& indices) {
  Tensor h = host_input(x, "topk");
  const uint64_t n = uint64_t(h.numel());
  for (size_t j = 0; j < indices.size(); ++j)
    EP_CHECK(indices[j] < n && (j == 0 || indices[j] > indices[j - 1]), ValueError,
             "[topk] mask positions must be ascending and below ", n, " (position ", j, " is ", indices[j], ")");
  return dispatch_float(h.dtype(), "topk", [&](auto tag) {
    using T = EP_TYPE(tag);
    return payload_at(h.data<T>(), h.shape(), h.dtype(), indices);
  });
}

template <class T> void decode_topk(const Payload& p, T* out) {
  const uint64_t n = uint64_t(p.numel()), k = p.params[0];
  std::fill(out, out + n, T(0));
  if (p.params[1]) {
    uint64_t j = 0;
    for (uint64_t i = 0; i < n; ++i)
      if (p.codes[i >> 3] >> (i & 7) & 1) {
        EP_CHECK(j < k, CompressError, "[topk] bitmap marks more than the ", k, " kept elements");
        out[i] = T(p.table[j++]);
      }
    EP_CHECK(j == k, CompressError, "[topk] bitmap marks ", j, " elements, the header says ", k);
    const uint64_t pad = p.codes.size() * 8 - n;  // the padding bits of the last byte must be clear
    EP_CHECK(pad == 0 || (p.codes.back() >> (8 - pad)) == 0, CompressError, "[topk] bitmap has bits set past ", n);
  } else {
    const int ib = bits_for_count(n);
    uint64_t prev = 0;
    for (uint64_t j = 0; j < k; ++j) {
      const uint64_t i = unpack_code(p.codes.data(), p.codes.size(), j, ib);
      EP_CHECK(i < n && (j == 0 || i > prev), CompressError, "[topk] index ", j, " (", i,
               ") is out of range or not ascending");
      out[i] = T(p.table[j]);
      prev = i;
    }
  }
}
template void decode_topk<float>(const Payload&, float*);
template void decode_topk<double>(const Payload&, double*);

}  // namespace ep::compress
