// conv2d_taps.h — what the CPU convolution loops share: the output range a kernel tap reaches inside the input, and a
// walk over the taps of a filter. Not kernels (conv2d.cpp, depthwise_conv2d.cpp).
#pragma once
#include <algorithm>
#include <cstdint>

#include "engine/ops/conv2d_kernels.h"

namespace ep::conv2d_taps {

// Output positions o in [lo, hi) whose input index o * stride + off lies inside [0, in). Hoisting this out of the
// inner loops keeps them branch-free (and vectorizable for stride 1).
inline void valid_range(int64_t off, int64_t stride, int64_t in, int64_t out, int64_t& lo, int64_t& hi) {
  lo = off >= 0 ? 0 : (-off + stride - 1) / stride;
  hi = off >= in ? 0 : std::min(out, (in - 1 - off) / stride + 1);
  lo = std::min(lo, out);
  hi = std::max(hi, lo);
}

// One kernel tap (i, j), index = i * kw + j within a kh x kw filter, and the outputs that see a real input pixel
// through it: rows [olo, ohi), columns [lo, hi). That pixel of output (oh, ow) sits at in_offset(g, oh) + ow * sw in
// its input plane.
struct Tap {
  int64_t index, ih0, iw0, olo, ohi, lo, hi;
  int64_t in_offset(const Conv2dGeom& g, int64_t oh) const { return (oh * g.sh + ih0) * g.W + iw0; }
};

// Calls f(tap) for every tap in row-major (i, j) order.
template <class F> void for_each_tap(const Conv2dGeom& g, F&& f) {
  for (int64_t i = 0; i < g.kh; ++i) {
    const int64_t ih0 = i * g.dh - g.ph;
    int64_t olo, ohi;
    valid_range(ih0, g.sh, g.H, g.OH, olo, ohi);
    for (int64_t j = 0; j < g.kw; ++j) {
      const int64_t iw0 = j * g.dw - g.pw;
      int64_t lo, hi;
      valid_range(iw0, g.sw, g.W, g.OW, lo, hi);
      f(Tap{i * g.kw + j, ih0, iw0, olo, ohi, lo, hi});
    }
  }
}

}  // namespace ep::conv2d_taps
