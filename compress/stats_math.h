// stats_math.h — the per-element sums behind CompressionStats as EP_HD code, shared by the CPU's serial pass and the
// CUDA partial reduction (compress.cu). Not the finished statistics: stats.cpp turns the sums into MSE, SNR, cosine.
#pragma once
#include <cmath>
#include <cstdint>

#include "engine/dtype.h"  // EP_HD

namespace ep::compress {

// Plain data (no initializers) so that a CUDA block can hold an array of them in shared memory.
struct StatsSums {
  double err2, xx, yy, xy;  // sum (x - x̂)^2, x^2, x̂^2, x x̂
  double err;               // sum (x̂ - x), signed: an offset shared by many elements does not cancel here
  double max_abs;           // max |x - x̂|
  double rel;               // sum | |x| - |x̂| | / |x| over x != 0
  int64_t rel_count;        // how many x != 0
};

EP_HD StatsSums stats_zero() { return StatsSums{0, 0, 0, 0, 0, 0, 0, 0}; }

// One element: a = x, b = x̂, both widened to double.
EP_HD void stats_add(StatsSums& s, double a, double b) {
  const double d = a - b, ad = ::fabs(d);
  s.err2 += d * d;
  s.err -= d;
  s.xx += a * a;
  s.yy += b * b;
  s.xy += a * b;
  s.max_abs = ad > s.max_abs ? ad : s.max_abs;
  if (a != 0) {
    s.rel += ::fabs(::fabs(a) - ::fabs(b)) / ::fabs(a);
    ++s.rel_count;
  }
}

// s += o (the sums of a later stretch of elements; merging in a fixed order keeps the result reproducible).
EP_HD void stats_merge(StatsSums& s, const StatsSums& o) {
  s.err2 += o.err2;
  s.err += o.err;
  s.xx += o.xx;
  s.yy += o.yy;
  s.xy += o.xy;
  s.max_abs = o.max_abs > s.max_abs ? o.max_abs : s.max_abs;
  s.rel += o.rel;
  s.rel_count += o.rel_count;
}

}  // namespace ep::compress
