// philox.h — Philox4x32-10 (Salmon et al., SC'11), the counter-based generator behind every random number here.
// Header-only __host__ __device__ math so CPU and CUDA draw identical streams. Not a Generator: see engine/random.h.
#pragma once
#include <cmath>
#include <cstdint>

#include "engine/dtype.h"  // EP_HD

namespace ep {

struct Philox4 { uint32_t v[4]; };

EP_HD uint32_t mulhilo32(uint32_t a, uint32_t b, uint32_t* hi) {
  uint64_t p = uint64_t(a) * uint64_t(b);
  *hi = uint32_t(p >> 32);
  return uint32_t(p);
}

// Philox4x32 with 10 rounds; constants from the paper (and Random123, cuRAND, PyTorch).
EP_HD Philox4 philox4x32_10(Philox4 ctr, uint32_t k0, uint32_t k1) {
  const uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  for (int r = 0; r < 10; ++r) {
    uint32_t hi0, hi1;
    uint32_t lo0 = mulhilo32(M0, ctr.v[0], &hi0);
    uint32_t lo1 = mulhilo32(M1, ctr.v[2], &hi1);
    ctr = Philox4{{hi1 ^ ctr.v[1] ^ k0, lo1, hi0 ^ ctr.v[3] ^ k1, lo0}};
    k0 += W0;
    k1 += W1;
  }
  return ctr;
}

// Element i of the stream (seed, offset) uses counter (offset + i) in the first two words: one block per element,
// so the value of element i never depends on how the work is split between threads or devices.
EP_HD Philox4 philox_block(uint64_t seed, uint64_t offset, uint64_t i) {
  uint64_t c = offset + i;
  return philox4x32_10(Philox4{{uint32_t(c), uint32_t(c >> 32), 0u, 0u}}, uint32_t(seed), uint32_t(seed >> 32));
}

// Uniform in [0, 1) with 24 random bits (exactly representable in f32).
EP_HD float philox_uniform(uint64_t seed, uint64_t offset, uint64_t i) {
  return float(philox_block(seed, offset, i).v[0] >> 8) * (1.0f / 16777216.0f);
}
// Uniform in [0, 1) with 53 random bits, for f64 tensors.
EP_HD double philox_uniform_f64(uint64_t seed, uint64_t offset, uint64_t i) {
  Philox4 r = philox_block(seed, offset, i);
  uint64_t bits = (uint64_t(r.v[0]) << 21) ^ uint64_t(r.v[1] >> 11);
  return double(bits & ((uint64_t(1) << 53) - 1)) * (1.0 / 9007199254740992.0);
}
// Standard normal by Box-Muller on two uniforms of the same block; u1 in (0, 1] so log never sees 0.
EP_HD double philox_normal(uint64_t seed, uint64_t offset, uint64_t i) {
  Philox4 r = philox_block(seed, offset, i);
  double u1 = (double(r.v[0]) + 1.0) * (1.0 / 4294967296.0);
  double u2 = double(r.v[1]) * (1.0 / 4294967296.0);
  return ::sqrt(-2.0 * ::log(u1)) * ::cos(6.283185307179586 * u2);
}

}  // namespace ep
