// sort_keys.h — the integer keys the GPU encoders radix-sort or radix-select by (value order with -0 as +0, magnitude
// order), top-k's radix-selection steps, k-means's cut search and the equal-count bucket arithmetic of exact sortquant,
// as EP_HD functions the host tests can check. Not a sort or a selection: the kernels in sort_methods.cu drive these.
#pragma once
#include <cstdint>
#include <cstring>

#include "engine/dtype.h"  // EP_HD, float_bits, bits_float

namespace ep::compress {

EP_HD uint64_t double_bits(double d) {
#if defined(__CUDA_ARCH__)
  return uint64_t(__double_as_longlong(d));
#else
  uint64_t u; std::memcpy(&u, &d, 8); return u;
#endif
}
EP_HD double bits_double(uint64_t u) {
#if defined(__CUDA_ARCH__)
  return __longlong_as_double((long long)u);
#else
  double d; std::memcpy(&d, &u, 8); return d;
#endif
}

// Unsigned keys that order like the values: negative values get every bit flipped, the others the sign bit set.
// -0 is keyed as +0 because the CPU encoders' comparisons see them equal (ties are then broken by index alike).
EP_HD uint32_t value_key(float v) {
  const uint32_t u = float_bits(v == 0.0f ? 0.0f : v);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
EP_HD uint64_t value_key(double v) {
  const uint64_t u = double_bits(v == 0.0 ? 0.0 : v);
  return (u & 0x8000000000000000ull) ? ~u : (u | 0x8000000000000000ull);
}
EP_HD double value_of_key(uint32_t k) { return double(bits_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k)); }
EP_HD double value_of_key(uint64_t k) {
  return bits_double((k & 0x8000000000000000ull) ? (k & 0x7fffffffffffffffull) : ~k);
}

// |v| as its bit pattern without the sign: non-negative floats order like their bits, and -0 becomes +0.
EP_HD uint32_t magnitude_key(float v) { return float_bits(v) & 0x7fffffffu; }
EP_HD uint64_t magnitude_key(double v) { return double_bits(v) & 0x7fffffffffffffffull; }

// Top-k by radix selection finds the k-th largest magnitude key 8 bits a pass, from the top. A pass histograms the
// next digit of the keys whose higher digits equal the ones chosen so far; radix_pick_digit then returns the digit
// whose bin holds the `remaining`-th largest of them (1 <= remaining <= the bins' sum) and makes `remaining` its rank
// inside that bin. After the last pass the chosen digits are the threshold key t and `remaining` is how many keys
// equal to t are kept: the lowest-indexed ones, as the CPU's (larger, then lower index) order keeps them.
constexpr int kRadixBits = 8, kRadixBins = 1 << kRadixBits;
EP_HD int radix_pick_digit(const uint32_t* hist, uint64_t* remaining) {
  uint64_t above = 0;
  for (int d = kRadixBins - 1; d > 0; --d) {
    if (above + hist[d] >= *remaining) {
      *remaining -= above;
      return d;
    }
    above += hist[d];
  }
  *remaining -= above;
  return 0;
}
// The slot among the k ascending kept positions of an element kept by the selection, from the counts of elements
// before it (in index order) with a key above t and with a key equal to t; take_eq is the final `remaining`.
EP_HD uint64_t topk_slot(uint64_t above_before, uint64_t equal_before, uint64_t take_eq) {
  return above_before + (equal_before < take_eq ? equal_before : take_eq);
}

// k-means's cut rule, shared by the CPU encoder and the CUDA kernel: the number of the 2^bits - 1 sorted cuts below v
// (std::lower_bound's index), by halving a power-of-two range per step, so that no step branches on the data.
EP_HD uint32_t nearest_centroid(const double* cut, int bits, double v) {
  uint32_t at = 0;
  for (uint32_t step = 1u << (bits - 1); step > 0; step >>= 1) at += cut[at + step - 1] < v ? step : 0u;
  return at;
}

// Bucket b of exact sortquant holds sorted positions [bucket_start(b), bucket_start(b+1)): torch.tensor_split's
// equal counts, the first n mod K buckets one larger.
EP_HD int64_t bucket_start(int64_t n, int64_t K, int64_t b) {
  const int64_t q = n / K, r = n % K;
  return b * q + (b < r ? b : r);
}
// The bucket of sorted position j < n (the inverse of bucket_start).
EP_HD int64_t bucket_of_position(int64_t n, int64_t K, int64_t j) {
  const int64_t q = n / K, r = n % K, big = r * (q + 1);  // the first r buckets hold q + 1 positions
  return j < big ? j / (q + 1) : r + (j - big) / q;       // q > 0 whenever j >= big (j < n)
}

}  // namespace ep::compress
