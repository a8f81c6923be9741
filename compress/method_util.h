// method_util.h — what the CPU encoders and decoders share: the parallel packer and unpacker (codes go through blocks
// of kCodeBlock, computed or consumed by loops the compiler can vectorize), the exact value range by vector lanes, and
// a histogram of key bins and a radix sort of values.
// Not public API (include compress/methods.h instead); the rounding rules live in compress/quant_math.h.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "compress/bitpack.h"
#include "compress/quant_math.h"
#include "compress/sort_keys.h"

namespace ep::compress {

// Codes per block: a multiple of 8, so every block starts on a byte boundary (a group of 8 spans exactly b bytes)
// and blocks pack and unpack independently; 8 KiB of codes, on the stack of the thread that handles the block.
constexpr int64_t kCodeBlock = 2048;

// Packs codes[0..m) at out (m a multiple of 8 unless the block is the stream's last; each code < 2^bits). The
// common widths get a straight loop; the rest go 8 codes at a time through pack_group. Same bytes either way.
inline void pack_block(const uint32_t* codes, int64_t m, int bits, uint8_t* out) {
  if (bits == 8) {
    for (int64_t j = 0; j < m; ++j) out[j] = uint8_t(codes[j]);
  } else if (bits == 16) {
    for (int64_t j = 0; j < m; ++j) {
      out[2 * j] = uint8_t(codes[j]);
      out[2 * j + 1] = uint8_t(codes[j] >> 8);
    }
  } else if (bits == 4) {
    for (int64_t j = 0; j < m / 2; ++j) out[j] = uint8_t((codes[2 * j] & 15u) | (codes[2 * j + 1] << 4));
    if (m % 2) out[m / 2] = uint8_t(codes[m - 1] & 15u);
  } else {
    pack_codes(codes, uint64_t(m), bits, out);
  }
}

// The inverse: codes[0..m) of the block that starts at in (reads packed_bytes(m, bits) bytes).
inline void unpack_block(const uint8_t* in, int64_t m, int bits, uint32_t* codes) {
  if (bits == 8) {
    for (int64_t j = 0; j < m; ++j) codes[j] = in[j];
  } else if (bits == 16) {
    for (int64_t j = 0; j < m; ++j) codes[j] = uint32_t(in[2 * j]) | (uint32_t(in[2 * j + 1]) << 8);
  } else if (bits == 4) {
    for (int64_t j = 0; j < m / 2; ++j) {
      codes[2 * j] = in[j] & 15u;
      codes[2 * j + 1] = uint32_t(in[j]) >> 4;
    }
    if (m % 2) codes[m - 1] = in[m / 2] & 15u;
  } else {
    for (int64_t g = 0; g * 8 < m; ++g)
      unpack_group(in + g * bits, int(std::min<int64_t>(8, m - 8 * g)), bits, codes + 8 * g);
  }
}

// Encodes n codes into out (packed_bytes(n, bits) bytes): fill(i0, m, codes) writes the codes of elements
// [i0, i0 + m) to codes[0..m). Blocks never share a byte, so the bytes do not depend on the thread count.
template <class FillFn>
void encode_blocks(uint64_t n, int bits, uint8_t* out, FillFn&& fill) {
  const int64_t total = int64_t(n), blocks = (total + kCodeBlock - 1) / kCodeBlock;
#pragma omp parallel for schedule(static) if (total > (1 << 16))
  for (int64_t b = 0; b < blocks; ++b) {
    uint32_t codes[kCodeBlock];
    const int64_t i0 = b * kCodeBlock, m = std::min(kCodeBlock, total - i0);
    fill(i0, m, codes);
    pack_block(codes, m, bits, out + i0 / 8 * bits);
  }
}

// The same with one code at a time: code_of(i) is element i's code.
template <class CodeFn>
void pack_parallel(uint64_t n, int bits, uint8_t* out, CodeFn&& code_of) {
  encode_blocks(n, bits, out, [&](int64_t i0, int64_t m, uint32_t* codes) {
    for (int64_t j = 0; j < m; ++j) codes[j] = code_of(uint64_t(i0 + j));
  });
}

// Decodes the n codes of `in`: consume(i0, m, codes) receives the codes of elements [i0, i0 + m).
template <class ConsumeFn>
void decode_blocks(const uint8_t* in, uint64_t n, int bits, ConsumeFn&& consume) {
  const int64_t total = int64_t(n), blocks = (total + kCodeBlock - 1) / kCodeBlock;
#pragma omp parallel for schedule(static) if (total > (1 << 16))
  for (int64_t b = 0; b < blocks; ++b) {
    uint32_t codes[kCodeBlock];
    const int64_t i0 = b * kCodeBlock, m = std::min(kCodeBlock, total - i0);
    unpack_block(in + i0 / 8 * bits, m, bits, codes);
    consume(i0, m, static_cast<const uint32_t*>(codes));
  }
}

// A 16-byte vector of T (GCC generic vectors, as engine/cpu/depthwise_conv2d.cpp: no intrinsics): element-wise
// compares and selects that GCC emits as SSE2 code. The scalar loops stay scalar: under the default -ftrapping-math
// GCC will not if-convert floating-point selects, and it vectorizes no floating-point min reduction. (Vectors wider
// than the machine's were split back into scalar code through the stack.)
template <class T> struct Vec16 { typedef T type __attribute__((vector_size(16))); };

// The exact extremes of x[0..n), merged into lo and hi. Min and max are exact, so neither the lanes nor the threads
// can change them, only which of -0 and +0 a tie keeps (min_step_entry makes the table's zeros canonical).
template <class T>
void lane_range(const T* x, int64_t n, double& lo, double& hi) {
  using V = typename Vec16<T>::type;
  constexpr int64_t kLanes = 16 / sizeof(T);
  int64_t i = 0;
  if (n >= kLanes) {
    V a, b;
    std::memcpy(&a, x, sizeof a);
    b = a;
    for (i = kLanes; i + kLanes <= n; i += kLanes) {
      V v;
      std::memcpy(&v, x + i, sizeof v);
      a = v < a ? v : a;
      b = v > b ? v : b;
    }
    for (int64_t l = 0; l < kLanes; ++l) {
      lo = std::min(lo, double(a[l]));
      hi = std::max(hi, double(b[l]));
    }
  }
  for (; i < n; ++i) {
    lo = std::min(lo, double(x[i]));
    hi = std::max(hi, double(x[i]));
  }
}

// The exact extremes of x[0..n), merged into lo and hi: chunks over the threads, each by lanes.
template <class T>
void value_range(const T* x, int64_t n, double& lo, double& hi) {
  constexpr int64_t kChunk = int64_t(1) << 16;
  double mn = lo, mx = hi;
#pragma omp parallel for reduction(min : mn) reduction(max : mx) if (n > kChunk)
  for (int64_t c = 0; c < (n + kChunk - 1) / kChunk; ++c)
    lane_range(x + c * kChunk, std::min(kChunk, n - c * kChunk), mn, mx);
  lo = mn;
  hi = mx;
}

// The histogram of bin_of(i) over i < n (each < bins): every thread counts its chunks of 2^16 into its own table of
// 32-bit counters (n < 2^32), and the tables are added up, so the counts do not depend on the thread count. Exact
// sortquant and top-k find the bins of their cuts and thresholds in it.
template <class BinOf>
std::vector<uint64_t> bin_histogram(int64_t n, int64_t bins, BinOf&& bin_of) {
  constexpr int64_t kChunk = int64_t(1) << 16;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<uint64_t> hist(size_t(bins), 0);
#pragma omp parallel if (chunks > 1)
  {
    std::vector<uint32_t> mine(size_t(bins), 0);
#pragma omp for schedule(static)
    for (int64_t c = 0; c < chunks; ++c)
      for (int64_t i = c * kChunk; i < std::min(n, (c + 1) * kChunk); ++i) ++mine[size_t(bin_of(i))];
#pragma omp critical
    for (int64_t b = 0; b < bins; ++b) hist[size_t(b)] += mine[size_t(b)];
  }
  return hist;
}

// x[0..n) ascending, as doubles: an LSD radix sort of the value keys, 8 bits a pass, chunks counted and scattered in
// parallel, a pass skipped where every key shares its digit. -0 is keyed as +0 and comes back as +0, which no sum or
// centroid of kmeans can tell from -0. The std::sort of doubles it replaced there took 35% of `bench compress`'s CPU
// time.
template <class T>
std::vector<double> sorted_values(const T* x, int64_t n) {
  using Key = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  constexpr int64_t kChunk = int64_t(1) << 16, kDigits = 256;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  auto chunk_end = [&](int64_t c) { return std::min(n, (c + 1) * kChunk); };
  std::vector<Key> keys(static_cast<size_t>(n)), moved(static_cast<size_t>(n));
#pragma omp parallel for schedule(static) if (chunks > 1)
  for (int64_t c = 0; c < chunks; ++c)
    for (int64_t i = c * kChunk; i < chunk_end(c); ++i) keys[size_t(i)] = value_key(x[i]);
  std::vector<uint64_t> at(size_t(chunks * kDigits));  // [chunk][digit]: counts, then that chunk's next slot
  for (int shift = 0; shift < int(8 * sizeof(Key)); shift += 8) {
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (int64_t c = 0; c < chunks; ++c) {
      uint64_t* count = at.data() + c * kDigits;
      std::fill(count, count + kDigits, 0);
      for (int64_t i = c * kChunk; i < chunk_end(c); ++i) ++count[(keys[size_t(i)] >> shift) & 255];
    }
    uint64_t slot = 0;
    bool one_digit = false;
    for (int64_t d = 0; d < kDigits; ++d) {
      const uint64_t first = slot;
      for (int64_t c = 0; c < chunks; ++c) {
        const uint64_t count = at[size_t(c * kDigits + d)];
        at[size_t(c * kDigits + d)] = slot;
        slot += count;
      }
      one_digit = one_digit || slot - first == uint64_t(n);
    }
    if (one_digit) continue;  // every key has this digit: the pass would move nothing
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (int64_t c = 0; c < chunks; ++c) {
      uint64_t* next = at.data() + c * kDigits;
      for (int64_t i = c * kChunk; i < chunk_end(c); ++i) {
        const Key key = keys[size_t(i)];
        moved[size_t(next[(key >> shift) & 255]++)] = key;
      }
    }
    keys.swap(moved);
  }
  std::vector<Key>().swap(moved);  // freed before the doubles are made: 12 bytes an f32 element at the peak, not 16
  std::vector<double> sorted(static_cast<size_t>(n));
#pragma omp parallel for schedule(static) if (chunks > 1)
  for (int64_t c = 0; c < chunks; ++c)
    for (int64_t i = c * kChunk; i < chunk_end(c); ++i) sorted[size_t(i)] = value_of_key(keys[size_t(i)]);
  return sorted;
}

}  // namespace ep::compress
