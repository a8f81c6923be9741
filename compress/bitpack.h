// bitpack.h — pack and unpack unsigned b-bit codes (b = 1..32) into a little-endian bit stream, as EP_HD inline
// functions so a CUDA kernel can share them. Not a code generator: callers decide what the codes mean.
//
// Bit order: code i occupies stream bits [i*b, (i+1)*b); stream bit k is bit (k % 8) of byte k / 8; the low bit of
// a code comes first. A group of 8 codes always spans exactly b whole bytes, so groups can be packed independently
// (one thread per group on a GPU, one OpenMP iteration on the CPU) without two writers sharing a byte.
#pragma once
#include <cstdint>

#include "engine/dtype.h"  // EP_HD

namespace ep::compress {

constexpr int kMaxCodeBits = 32;

// Bytes that n codes of b bits occupy: ceil(n*b/8). n*b stays far below 2^64 for any tensor that fits in memory.
EP_HD uint64_t packed_bytes(uint64_t n, int bits) { return (n * uint64_t(bits) + 7) / 8; }

// Bits needed to tell apart `count` values (indices 0..count-1): at least 1.
EP_HD int bits_for_count(uint64_t count) {
  int b = 1;
  while (b < 64 && (uint64_t(1) << b) < count) ++b;
  return b;
}

// Packs codes[0..count) (count <= 8, each < 2^bits) into out[0 .. packed_bytes(count, bits)). Writes whole bytes
// only (a partial last byte is zero-padded), so it never reads `out`.
EP_HD void pack_group(const uint32_t* codes, int count, int bits, uint8_t* out) {
  const uint64_t mask = bits == 32 ? 0xffffffffull : ((uint64_t(1) << bits) - 1);
  uint64_t acc = 0;  // pending bits, low bit first; at most 7 + 32 bits are pending
  int pending = 0;
  int o = 0;
  for (int j = 0; j < count; ++j) {
    acc |= (uint64_t(codes[j]) & mask) << pending;
    pending += bits;
    while (pending >= 8) {
      out[o++] = uint8_t(acc);
      acc >>= 8;
      pending -= 8;
    }
  }
  if (pending > 0) out[o] = uint8_t(acc);
}

// Unpacks count (<= 8) codes of b bits from in[0 .. packed_bytes(count, bits)): the inverse of pack_group, reading
// only those bytes.
EP_HD void unpack_group(const uint8_t* in, int count, int bits, uint32_t* codes) {
  const uint64_t mask = bits == 32 ? 0xffffffffull : ((uint64_t(1) << bits) - 1);
  uint64_t acc = 0;  // bits read and not yet handed out, low bit first; at most 7 + 32 of them
  int have = 0;
  int k = 0;
  for (int j = 0; j < count; ++j) {
    while (have < bits) {
      acc |= uint64_t(in[k++]) << have;
      have += 8;
    }
    codes[j] = uint32_t(acc & mask);
    acc >>= bits;
    have -= bits;
  }
}

// Code i of a stream of `nbytes` bytes. Reads only bytes inside the stream (the last code may end mid-byte).
EP_HD uint32_t unpack_code(const uint8_t* in, uint64_t nbytes, uint64_t i, int bits) {
  const uint64_t bit = i * uint64_t(bits);
  const uint64_t first = bit >> 3;
  const int shift = int(bit & 7);
  const int span = (shift + bits + 7) >> 3;  // bytes touched: at most 5 for 32-bit codes
  uint64_t acc = 0;
  for (int k = 0; k < span && first + uint64_t(k) < nbytes; ++k) acc |= uint64_t(in[first + k]) << (8 * k);
  const uint64_t mask = bits == 32 ? 0xffffffffull : ((uint64_t(1) << bits) - 1);
  return uint32_t((acc >> shift) & mask);
}

// Packs n codes into out[0 .. packed_bytes(n, bits)); group by group (each group of 8 is byte-aligned).
EP_HD void pack_codes(const uint32_t* codes, uint64_t n, int bits, uint8_t* out) {
  for (uint64_t g = 0; g * 8 < n; ++g) {
    const uint64_t left = n - g * 8;
    pack_group(codes + g * 8, left < 8 ? int(left) : 8, bits, out + g * uint64_t(bits));
  }
}

#ifdef __CUDACC__
// The CUDA encode kernels' loop: each thread packs whole groups of 8 codes (one group spans exactly `bits` bytes, so
// no two threads share a byte), code_of(i) giving element i's code. Launch with grid_for((n + 7) / 8) threads.
template <class CodeOf>
__device__ __forceinline__ void encode_groups(int64_t n, int bits, uint8_t* __restrict__ out, CodeOf&& code_of) {
  const int64_t groups = (n + 7) / 8;
  for (int64_t g = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; g < groups; g += int64_t(gridDim.x) * blockDim.x) {
    uint32_t c[8];
    const int64_t base = g * 8;
    const int count = n - base < 8 ? int(n - base) : 8;
    for (int j = 0; j < count; ++j) c[j] = code_of(base + j);
    pack_group(c, count, bits, out + uint64_t(g) * uint64_t(bits));
  }
}
#endif

}  // namespace ep::compress
