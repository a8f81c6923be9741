// fp8.h — OCP 8-bit floating point (OFP8, v1.0) encode/decode as EP_HD functions shared by CPU and CUDA code.
// Not a tensor op: compress/fp8.cpp scales tensors into range and packs these bytes.
//   e4m3: 1 sign, 4 exponent (bias 7), 3 mantissa; no infinities; S.1111.111 is NaN; max 448 = 1.75 * 2^8;
//         smallest subnormal 2^-9.
//   e5m2: 1 sign, 5 exponent (bias 15), 2 mantissa; IEEE-style infinities/NaN at exponent 31; max 57344 =
//         1.75 * 2^15; smallest subnormal 2^-16.
#pragma once
#include <cmath>
#include <cstdint>

#include "engine/dtype.h"  // EP_HD

namespace ep::compress {

struct Fp8Format {
  int man_bits;  // 3 or 2
  int bias;      // 7 or 15
  double max;    // largest finite magnitude
};
EP_HD Fp8Format fp8_format(bool e5m2) { return e5m2 ? Fp8Format{2, 15, 57344.0} : Fp8Format{3, 7, 448.0}; }

// The per-tensor scale: the smallest power of two with amax / scale <= max, so scaling is exact in both directions
// and the only error is the fp8 rounding itself (at most one binade of range is given up against amax / max); 1 for
// amax = 0. Shared by the CPU encoder and the GPU kernel that computes it from the device's amax.
EP_HD float fp8_power_of_two_scale(double amax, double fmax) {
  if (!(amax > 0)) return 1.0f;
  int e;
  ::frexp(amax / fmax, &e);  // amax / max = m * 2^e with m in [0.5, 1)
  double s2 = ::ldexp(1.0, (amax / fmax) == ::ldexp(0.5, e) ? e - 1 : e);
  if (s2 < 0x1p-126) s2 = 0x1p-126;  // f32's smallest normal and largest power of two bound the sent f32
  if (s2 > 0x1p127) s2 = 0x1p127;
  return float(s2);
}

// True for the codes that are not finite numbers (never produced by fp8_encode).
EP_HD bool fp8_is_special(uint8_t code, bool e5m2) {
  return e5m2 ? ((code >> 2) & 0x1f) == 0x1f : (code & 0x7f) == 0x7f;
}

EP_HD double fp8_decode(uint8_t code, bool e5m2) {
  const Fp8Format f = fp8_format(e5m2);
  const int e = (code & 0x7f) >> f.man_bits;
  const int m = code & ((1 << f.man_bits) - 1);
  const double mag = e == 0 ? ::ldexp(double(m), 1 - f.bias - f.man_bits)
                            : ::ldexp(double((1 << f.man_bits) + m), e - f.bias - f.man_bits);
  return (code & 0x80) ? -mag : mag;
}

// The fp8 code of v (finite). u < 0: round to nearest, ties to even; u in [0, 1): stochastic rounding, rounding the
// magnitude up with probability equal to its fractional position between the two neighbouring grid points.
// Magnitudes beyond max saturate to max (the OCP "saturating" conversion; e4m3 has no infinity to go to).
EP_HD uint8_t fp8_encode(double v, bool e5m2, double u) {
  const Fp8Format f = fp8_format(e5m2);
  const uint8_t sign = (::copysign(1.0, v) < 0) ? 0x80 : 0;
  double a = ::fabs(v);
  if (a == 0) return sign;
  const int emin = 1 - f.bias;  // exponent of the smallest normal
  int e;
  ::frexp(a, &e);
  e -= 1;  // a = 1.x * 2^e
  if (e < emin) e = emin;  // subnormals share the smallest normal's quantum
  const int qexp = e - f.man_bits;
  const double t = ::ldexp(a, -qexp);  // a in units of the quantum: exact (power-of-two scaling)
  // Integer parity of t equals the mantissa's last bit, so nearbyint's ties-to-even is the format's.
  double r = u < 0 ? ::nearbyint(t) : ::floor(t + u);
  double q = ::ldexp(r, qexp);
  if (q > f.max) q = f.max;
  if (q == 0) return sign;
  int qe;
  ::frexp(q, &qe);
  qe -= 1;
  if (qe < emin) {  // subnormal: exponent field 0, mantissa = q / 2^(emin - man_bits)
    return uint8_t(sign | uint8_t(::ldexp(q, -(emin - f.man_bits))));
  }
  const int mant = int(::ldexp(q, -(qe - f.man_bits))) - (1 << f.man_bits);
  return uint8_t(sign | uint8_t((qe + f.bias) << f.man_bits) | uint8_t(mant));
}

// The same conversion for an f32 value by integer arithmetic on its bits (the fast path of f32 tensors and the one a
// CUDA kernel would use). Nearest: identical to fp8_encode(double(y), e5m2, -1). Stochastic (stochastic = true):
// in the normal range the low 23 - man_bits bits of `rbits` are added below the kept mantissa, so rounding up
// happens with probability equal to the discarded fraction; in the subnormal range u = (rbits >> 8) * 2^-24 is used
// as in fp8_encode. Either way E[decoded] = y away from saturation.
EP_HD uint8_t fp8_encode_f32(float y, bool e5m2, bool stochastic, uint32_t rbits) {
  const Fp8Format f = fp8_format(e5m2);
  const uint32_t yb = float_bits(y);
  const uint8_t sign = uint8_t((yb >> 24) & 0x80u);
  const uint32_t ab = yb & 0x7fffffffu;
  const uint32_t max_code = e5m2 ? 0x7Bu : 0x7Eu;
  const float a = bits_float(ab);
  if (a >= float(f.max)) return uint8_t(sign | max_code);
  const int emin = 1 - f.bias;
  if (a < ::ldexpf(1.0f, emin)) {  // fp8 subnormal range: a fixed quantum 2^(emin - man_bits)
    const float t = ::ldexpf(a, f.man_bits - emin);  // exact power-of-two scaling, t < 2^man_bits
    const float r = stochastic ? ::floorf(t + float(rbits >> 8) * (1.0f / 16777216.0f)) : ::nearbyintf(t);
    return uint8_t(sign | uint32_t(r));  // r == 2^man_bits is the smallest normal, whose code is exactly that
  }
  const int shift = 23 - f.man_bits;
  uint32_t b = ab;
  if (stochastic) b += rbits & ((1u << shift) - 1u);
  else b += (1u << (shift - 1)) - 1u + ((b >> shift) & 1u);  // round half to even
  uint32_t code = (b >> shift) - (uint32_t(127 - f.bias) << f.man_bits);  // rebias the exponent field
  if (code > max_code) code = max_code;
  return uint8_t(sign | code);
}

}  // namespace ep::compress
