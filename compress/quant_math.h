// quant_math.h — the scalar rules of the quantizers (rounding, table entries, sample positions) as EP_HD functions, so
// the CPU encoders and the CUDA kernels compute bit-identical tables and codes. Not a packer (compress/bitpack.h).
#pragma once
#include <cmath>
#include <cstdint>

#include "engine/dtype.h"  // EP_HD
#include "engine/philox.h"

namespace ep::compress {

// Round half to even for |t| < 2^51 without a libm call (the CPU build has no SSE4.1 roundsd): adding and removing
// 2^52 leaves no fraction bits, so the FPU's default round-to-nearest-even does the rounding. Needs strict IEEE
// evaluation (no -ffast-math / --use_fast_math), which the Makefile's flags give.
EP_HD double rint_half_even(double t) {
  const double big = 4503599627370496.0;  // 2^52
  return ::fabs(t) < big / 2 ? (t + big) - big : t;
}

// A level in [0, levels] from t by truncation toward zero, which is floor for t >= 0 (callers round first, or add a
// uniform draw for stochastic rounding); t <= 0 gives 0.
EP_HD uint32_t clamp_level(double t, uint32_t levels) {
  if (!(t > 0)) return 0;
  if (t >= double(levels)) return levels;
  return uint32_t(t);
}

// The min-max quantizer's level of x for a table entry (mn, st) as stored (f32) and read back as double.
// u < 0: nearest (half to even); else stochastic with the uniform draw u in [0, 1).
EP_HD uint32_t quant_level(double x, double mn, double st, uint32_t levels, double u) {
  if (st == 0) return 0;
  const double t = (x - mn) / st;
  return u < 0 ? clamp_level(rint_half_even(t), levels) : clamp_level(t + u, levels);
}

// The (min, step) table entry of a group whose exact extremes are lo <= hi (lo > hi: an empty group, entry (0, 0)).
// The step is rounded to f32 once; encoders then quantize against exactly the entry the decoder reads. Adding +0
// turns a -0 extreme into +0: -0 and +0 compare equal, so which of them a reduction keeps depends on its order (the
// CPU's serial scan, a GPU's tree); canonical zeros make every device's table bit-identical.
EP_HD void min_step_entry(double lo, double hi, uint32_t levels, float* mn, float* step) {
  const bool seen = lo <= hi;
  *mn = seen ? float(lo) + 0.0f : 0.0f;
  *step = seen ? float((hi - double(*mn)) / double(levels)) + 0.0f : 0.0f;
}

// quant's table entry: min_step_entry, or with zero_exact (quant:zero=exact) a grid that holds 0 exactly when the
// range straddles it (lo < 0 <= hi), so that exact zeros, such as a ReLU's masked gradient, decode to 0 instead of a
// level up to step/2 away, a bias that every such element shares. There the step is (hi - lo) / levels rounded up to
// 24 - log2(levels + 1) significant bits, so mn = -z * step with z = rint(-lo / step) is an f32, the decoder's
// mn + z * step (in double) is exactly 0, and the encoder's t = (0 - mn) / step is exactly z. Rounding the step up
// keeps [lo, hi] within step/2 of the grid at both ends; the step grows by less than a factor 1 + 2^(b - 23) for b =
// log2(levels + 1) bits, e.g. 2^-15 at 8 bits. A step below f32's normal range loses those bits and the zero is then
// only near 0. Other ranges hold no 0 but at their minimum, where min_step_entry's mn = lo = 0 already is a level.
EP_HD void quant_entry(double lo, double hi, uint32_t levels, bool zero_exact, float* mn, float* step) {
  if (!zero_exact || !(lo < 0 && hi >= 0)) return min_step_entry(lo, hi, levels, mn, step);
  int bits = 0;
  while ((uint64_t(1) << bits) <= uint64_t(levels)) ++bits;  // levels = 2^bits - 1
  int e = 0;
  const double m = ::frexp((hi - lo) / double(levels), &e);  // in [0.5, 1)
  const double st = ::ldexp(::ceil(::ldexp(m, 24 - bits)), e - (24 - bits));
  const double z = rint_half_even(-lo / st);  // in [0, levels]: -lo <= hi - lo <= levels * st
  *step = float(st);
  *mn = float(-(z * st)) + 0.0f;  // z = 0 (lo within step/2 of 0): +0, not -0
}

// Element j of sortquant's sample of n elements: Philox block (seed, offset + j), 64 bits modulo n (the bias, below
// n / 2^64, is negligible).
EP_HD uint64_t sample_index(uint64_t seed, uint64_t offset, uint64_t j, uint64_t n) {
  const Philox4 r = philox_block(seed, offset, j);
  return ((uint64_t(r.v[0]) << 32) | r.v[1]) % n;
}

}  // namespace ep::compress
