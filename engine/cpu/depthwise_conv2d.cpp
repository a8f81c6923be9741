// depthwise_conv2d.cpp — CPU depthwise convolution: forward, input gradient and weight gradient as direct loops over
// each [H, W] plane, output columns in chunks of kChunk held in registers across the taps (SIMD without intrinsics).
// Not im2col (conv2d.cpp) and not CUDA. Deterministic: every sum has a fixed order, owned by one thread.
#include "engine/cpu/depthwise_conv2d.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "engine/cpu/conv2d_taps.h"

namespace ep {
namespace {

constexpr int64_t kChunk = 16;  // output columns per register block

// GCC's generic vectors (not intrinsics: any target; one SSE register each on baseline x86-64). GCC does not
// SLP-vectorize the scalar form of these loops (16 scalar accumulators, half spilled to the stack).
template <class T> struct VecOf;
template <> struct VecOf<float> { typedef float type __attribute__((vector_size(16))); };
template <> struct VecOf<double> { typedef double type __attribute__((vector_size(16))); };
template <class T> using Vec = typename VecOf<T>::type;
template <class T> constexpr int64_t kLanes = int64_t(16 / sizeof(T));
template <class T> constexpr int64_t kVecs = kChunk / kLanes<T>;  // vectors per chunk

// Lanes p[0], p[sw], ..., p[(kLanes - 1) * sw]. SW = 1 is one unaligned load.
template <int SW, class T> Vec<T> load_cols(const T* p, int64_t sw) {
  Vec<T> v;
  if constexpr (SW == 1) {
    std::memcpy(&v, p, sizeof v);
  } else {
    for (int64_t l = 0; l < kLanes<T>; ++l) v[l] = p[l * (SW ? SW : sw)];
  }
  return v;
}

// One plane's correlation: out[oh, ow] = init + sum over taps (i, j), in row-major order, of
// w[i * kw + j] * in[oh * sh + i * dh - ph, ow * sw + j * dw - pw], with zeros outside `in`.
struct PlaneConv {
  int64_t H, W, OH, OW, kh, kw, sh, sw, dh, dw, ph, pw;
  int64_t chunks() const { return (OW + kChunk - 1) / kChunk; }
  // The zero-padded input every tap of every (whole) chunk reads inside: no bounds checks in the loops.
  int64_t padded_rows() const { return (OH - 1) * sh + (kh - 1) * dh + 1; }
  int64_t padded_cols() const { return (chunks() * kChunk - 1) * sw + (kw - 1) * dw + 1; }
};

// A per-thread zeroed [rows, cols] scratch plane into which one [H, W] plane after another is copied at (top, left),
// clipped. The border is zeroed once: every copy writes the same interior.
template <class T> class PaddedPlane {
 public:
  PaddedPlane(int64_t rows, int64_t cols, int64_t H, int64_t W, int64_t top, int64_t left)
      : buf_(size_t(std::max<int64_t>(rows, 0) * std::max<int64_t>(cols, 0)), T(0)), cols_(cols), W_(W), top_(top),
        left_(left) {
    r0_ = std::max<int64_t>(0, -top), r1_ = std::min(H, rows - top);
    c0_ = std::max<int64_t>(0, -left), c1_ = std::min(W, cols - left);
  }
  const T* fill(const T* plane) {
    for (int64_t r = r0_; r < r1_; ++r) {  // a loop, not std::copy: rows are 4 to 32 values, a memmove call each
      const T* src = plane + r * W_;
      T* dst = buf_.data() + (r + top_) * cols_ + left_;
      for (int64_t c = c0_; c < c1_; ++c) dst[c] = src[c];
    }
    return buf_.data();
  }

 private:
  std::vector<T> buf_;
  int64_t cols_, W_, top_, left_, r0_ = 0, r1_ = 0, c0_ = 0, c1_ = 0;
};

// out = correlation of a padded input (from PaddedPlane with top = ph, left = pw). SW: the column stride known at
// compile time (1 or 2, so the loads vectorize), or 0 to read p.sw. The taps of a row accumulate into kChunk columns
// held in registers; the last chunk computes past OW into the padding and stores only what exists.
template <int SW, class T> void correlate_plane(const PlaneConv& p, const T* in, const T* w, T init, T* out) {
  const int64_t sw = SW ? SW : p.sw, wp = p.padded_cols();
  for (int64_t oh = 0; oh < p.OH; ++oh)
    for (int64_t c0 = 0; c0 < p.OW; c0 += kChunk) {
      Vec<T> acc[kVecs<T>];
      for (auto& a : acc) a = Vec<T>{} + init;
      for (int64_t i = 0; i < p.kh; ++i) {
        const T* row = in + (oh * p.sh + i * p.dh) * wp + c0 * sw;
        for (int64_t j = 0; j < p.kw; ++j) {
          const T wv = w[i * p.kw + j];
          const T* ir = row + j * p.dw;
          for (int64_t q = 0; q < kVecs<T>; ++q) acc[q] += wv * load_cols<SW>(ir + q * kLanes<T> * sw, sw);
        }
      }
      const int64_t cols = std::min(kChunk, p.OW - c0);
      for (int64_t v = 0; v < cols; ++v) out[oh * p.OW + c0 + v] = acc[v / kLanes<T>][v % kLanes<T>];
    }
}

template <class T> void correlate(const PlaneConv& p, const T* in, const T* w, T init, T* out) {
  if (p.sw == 1)
    correlate_plane<1>(p, in, w, init, out);
  else if (p.sw == 2)
    correlate_plane<2>(p, in, w, init, out);
  else
    correlate_plane<0>(p, in, w, init, out);
}

// out plane (n, k) = correlation of in_plane(n, k) with weights(k) from init(k), for n < N, k < K; one padded
// scratch plane per thread.
template <class T, class InPlane, class Weights, class Init>
void correlate_all(const PlaneConv& p, int64_t N, int64_t K, InPlane&& in_plane, Weights&& weights, Init&& init,
                   T* out) {
  const int64_t out_plane = p.OH * p.OW;
#pragma omp parallel if (N * K * out_plane > 16384)
  {
    PaddedPlane<T> pad(p.padded_rows(), p.padded_cols(), p.H, p.W, p.ph, p.pw);
#pragma omp for collapse(2) schedule(static)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < K; ++k)
        correlate(p, pad.fill(in_plane(n, k)), weights(k), init(k), out + (n * K + k) * out_plane);
  }
}

// The weight gradient of one (x, dy) plane pair into per-column partials acc[tap * cols + ow] += dy[oh, ow] *
// x[oh * sh + i * dh - ph, ow * sw + j * dw - pw]: x padded as for the forward, dy padded to whole chunks with zeros.
// A chunk of columns stays in registers down all rows of a tap.
template <int SW, class T>
void weight_partials(const PlaneConv& p, const T* xpad, const T* dypad, T* acc) {
  const int64_t sw = SW ? SW : p.sw, wp = p.padded_cols(), cols = p.chunks() * kChunk;
  for (int64_t i = 0; i < p.kh; ++i)
    for (int64_t j = 0; j < p.kw; ++j)
      for (int64_t c0 = 0; c0 < cols; c0 += kChunk) {
        T* a = acc + (i * p.kw + j) * cols + c0;
        Vec<T> part[kVecs<T>];
        std::memcpy(part, a, sizeof part);
        for (int64_t oh = 0; oh < p.OH; ++oh) {
          const T* d = dypad + oh * cols + c0;
          const T* ir = xpad + (oh * p.sh + i * p.dh) * wp + c0 * sw + j * p.dw;
          for (int64_t q = 0; q < kVecs<T>; ++q)
            part[q] += load_cols<1>(d + q * kLanes<T>, 1) * load_cols<SW>(ir + q * kLanes<T> * sw, sw);
        }
        std::memcpy(a, part, sizeof part);
      }
}

}  // namespace

template <class T> void depthwise_forward(const Conv2dGeom& g, const T* x, const T* w, const T* b, T* y) {
  const int64_t mult = g.K / g.C, taps = g.kh * g.kw;
  const PlaneConv p{g.H, g.W, g.OH, g.OW, g.kh, g.kw, g.sh, g.sw, g.dh, g.dw, g.ph, g.pw};
  correlate_all(
      p, g.N, g.K, [&](int64_t n, int64_t k) { return x + (n * g.C + k / mult) * g.H * g.W; },
      [&](int64_t k) { return w + k * taps; }, [&](int64_t k) { return b ? b[k] : T(0); }, y);
}

// Stride 1, one output per input channel: dx is the correlation of dy with the flipped filter (padding
// (k - 1) * dilation - pad), a gather like the forward. Otherwise each dy element scatters into dx, tap by tap.
template <class T> void depthwise_backward_input(const Conv2dGeom& g, const T* w, const T* dy, T* dx) {
  const int64_t mult = g.K / g.C, ohw = g.OH * g.OW, taps = g.kh * g.kw;
  if (mult == 1 && g.sh == 1 && g.sw == 1) {
    const PlaneConv p{g.OH, g.OW, g.H, g.W, g.kh, g.kw, 1, 1, g.dh, g.dw, (g.kh - 1) * g.dh - g.ph,
                      (g.kw - 1) * g.dw - g.pw};
    std::vector<T> flipped(size_t(g.K * taps));
    for (int64_t k = 0; k < g.K; ++k)
      for (int64_t t = 0; t < taps; ++t) flipped[size_t(k * taps + t)] = w[k * taps + (taps - 1 - t)];
    correlate_all(
        p, g.N, g.C, [&](int64_t n, int64_t c) { return dy + (n * g.K + c) * ohw; },
        [&](int64_t c) { return flipped.data() + c * taps; }, [](int64_t) { return T(0); }, dx);
    return;
  }
  using namespace conv2d_taps;
#pragma omp parallel for collapse(2) schedule(static) if (g.N * g.K * ohw > 16384)
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t c = 0; c < g.C; ++c) {
      T* dxp = dx + (n * g.C + c) * g.H * g.W;
      std::fill(dxp, dxp + g.H * g.W, T(0));
      for (int64_t k = c * mult; k < (c + 1) * mult; ++k) {
        const T* dyp = dy + (n * g.K + k) * ohw;
        for_each_tap(g, [&](const Tap& t) {
          const T wv = w[k * taps + t.index];
          for (int64_t oh = t.olo; oh < t.ohi; ++oh) {
            T* xr = dxp + t.in_offset(g, oh);
            const T* dyr = dyp + oh * g.OW;
#pragma omp simd
            for (int64_t ow = t.lo; ow < t.hi; ++ow) xr[ow * g.sw] += wv * dyr[ow];
          }
        });
      }
    }
}

// Per output channel: samples in order, each adding into one partial per (tap, output column), then the columns
// summed in order. A sample's x and dy planes are read once for all taps while they sit in L1.
template <class T> void depthwise_backward_weight(const Conv2dGeom& g, const T* x, const T* dy, T* dw) {
  const int64_t mult = g.K / g.C, ohw = g.OH * g.OW, taps = g.kh * g.kw;
  const PlaneConv p{g.H, g.W, g.OH, g.OW, g.kh, g.kw, g.sh, g.sw, g.dh, g.dw, g.ph, g.pw};
  const int64_t cols = p.chunks() * kChunk;
#pragma omp parallel if (g.N * g.K * ohw > 16384)
  {
    PaddedPlane<T> xpad(p.padded_rows(), p.padded_cols(), g.H, g.W, g.ph, g.pw);
    PaddedPlane<T> dypad(g.OH, cols, g.OH, g.OW, 0, 0);
    std::vector<T> acc(size_t(taps * cols));
#pragma omp for schedule(static)
    for (int64_t k = 0; k < g.K; ++k) {
      std::fill(acc.begin(), acc.end(), T(0));
      for (int64_t n = 0; n < g.N; ++n) {
        const T* xs = xpad.fill(x + (n * g.C + k / mult) * g.H * g.W);
        const T* ds = dypad.fill(dy + (n * g.K + k) * ohw);
        if (g.sw == 1)
          weight_partials<1>(p, xs, ds, acc.data());
        else if (g.sw == 2)
          weight_partials<2>(p, xs, ds, acc.data());
        else
          weight_partials<0>(p, xs, ds, acc.data());
      }
      for (int64_t t = 0; t < taps; ++t) {
        T sum = 0;
        for (int64_t ow = 0; ow < g.OW; ++ow) sum += acc[size_t(t * cols + ow)];
        dw[k * taps + t] = sum;
      }
    }
  }
}

#define EP_DEPTHWISE(T)                                                                                  \
  template void depthwise_forward<T>(const Conv2dGeom&, const T*, const T*, const T*, T*);               \
  template void depthwise_backward_input<T>(const Conv2dGeom&, const T*, const T*, T*);                  \
  template void depthwise_backward_weight<T>(const Conv2dGeom&, const T*, const T*, T*);
EP_DEPTHWISE(float)
EP_DEPTHWISE(double)
#undef EP_DEPTHWISE

}  // namespace ep
