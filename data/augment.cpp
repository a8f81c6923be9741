// augment.cpp — crop/flip/normalize on single images with Philox-drawn parameters.
// Not vectorized or threaded: the loader runs many images in parallel, and one 32x32 image is a few microseconds.
#include "data/augment.h"

#include <algorithm>
#include <vector>

#include "engine/check.h"
#include "engine/philox.h"

namespace ep::data {

// Domain word in the counter so these draws never coincide with the loader's shuffle for the same seed.
static constexpr uint32_t kAugmentDomain = 0x41554721u;  // "AUG!"

AugmentDraw augment_draw(const AugmentOptions& opt, uint64_t seed, uint64_t epoch, uint64_t index) {
  EP_CHECK(opt.pad >= 0, ValueError, "[augment] negative padding ", opt.pad);
  Philox4 r = philox4x32_10(Philox4{{uint32_t(index), uint32_t(index >> 32), uint32_t(epoch),
                                     uint32_t(epoch >> 32) ^ kAugmentDomain}},
                            uint32_t(seed), uint32_t(seed >> 32));
  AugmentDraw d;
  if (opt.crop) {
    // Modulo bias is < 2^-28 for 9 choices: irrelevant here.
    uint32_t span = uint32_t(2 * opt.pad + 1);
    d.dy = int(r.v[0] % span);
    d.dx = int(r.v[1] % span);
  } else {
    d.dy = d.dx = opt.pad;  // the centre window is the original image
  }
  d.flip = opt.flip && (r.v[2] & 1u);
  return d;
}

void crop_padded(const uint8_t* src, int c, int h, int w, int pad, int dy, int dx, uint8_t* dst) {
  EP_CHECK(dy >= 0 && dx >= 0 && dy <= 2 * pad && dx <= 2 * pad, ValueError, "[augment] crop offset (", dy, ",",
           dx, ") outside [0,", 2 * pad, "]");
  for (int ch = 0; ch < c; ++ch)
    for (int y = 0; y < h; ++y) {
      int sy = y + dy - pad;  // row in the unpadded image
      uint8_t* out = dst + (int64_t(ch) * h + y) * w;
      if (sy < 0 || sy >= h) {
        std::fill(out, out + w, uint8_t(0));
        continue;
      }
      const uint8_t* in = src + (int64_t(ch) * h + sy) * w;
      for (int x = 0; x < w; ++x) {
        int sx = x + dx - pad;
        out[x] = (sx < 0 || sx >= w) ? uint8_t(0) : in[sx];
      }
    }
}

void flip_horizontal(uint8_t* img, int c, int h, int w) {
  for (int64_t row = 0; row < int64_t(c) * h; ++row) std::reverse(img + row * w, img + (row + 1) * w);
}

void normalize_to_f32(const uint8_t* src, int c, int h, int w, const Normalize& norm, float* dst) {
  EP_CHECK(c >= 1 && c <= 3, ValueError, "[augment] normalize supports 1..3 channels, got ", c);
  const int64_t plane = int64_t(h) * w;
  for (int ch = 0; ch < c; ++ch) {
    EP_CHECK(norm.std[size_t(ch)] > 0, ValueError, "[augment] std of channel ", ch, " is ", norm.std[size_t(ch)],
             ", must be > 0");
    // One multiply-add per pixel: x * (1/(255 std)) - mean/std.
    const float scale = 1.0f / (255.0f * norm.std[size_t(ch)]);
    const float shift = norm.mean[size_t(ch)] / norm.std[size_t(ch)];
    for (int64_t i = 0; i < plane; ++i) dst[ch * plane + i] = float(src[ch * plane + i]) * scale - shift;
  }
}

void resize_bilinear(const float* src, int c, int h, int w, int oh, int ow, float* dst) {
  EP_CHECK(c > 0 && h > 0 && w > 0 && oh > 0 && ow > 0, ValueError, "[resize_bilinear] bad sizes ", c, "x", h, "x", w,
           " -> ", oh, "x", ow);
  // Per output column: the two source columns and the weight of the right one (shared by every row and channel).
  std::vector<int> x0(static_cast<size_t>(ow)), x1(static_cast<size_t>(ow));
  std::vector<float> fx(static_cast<size_t>(ow));
  auto source = [](int i, int in, int out, int& lo, int& hi, float& frac) {
    const double s = std::max(0.0, (double(i) + 0.5) * double(in) / double(out) - 0.5);
    lo = std::min(int(s), in - 1);
    hi = std::min(lo + 1, in - 1);
    frac = float(s - double(lo));
  };
  for (int j = 0; j < ow; ++j) source(j, w, ow, x0[size_t(j)], x1[size_t(j)], fx[size_t(j)]);
  for (int i = 0; i < oh; ++i) {
    int y0, y1;
    float fy;
    source(i, h, oh, y0, y1, fy);
    for (int ch = 0; ch < c; ++ch) {
      const float* r0 = src + (size_t(ch) * size_t(h) + size_t(y0)) * size_t(w);
      const float* r1 = src + (size_t(ch) * size_t(h) + size_t(y1)) * size_t(w);
      float* out = dst + (size_t(ch) * size_t(oh) + size_t(i)) * size_t(ow);
      for (int j = 0; j < ow; ++j) {
        const float top = r0[x0[size_t(j)]] + fx[size_t(j)] * (r0[x1[size_t(j)]] - r0[x0[size_t(j)]]);
        const float bottom = r1[x0[size_t(j)]] + fx[size_t(j)] * (r1[x1[size_t(j)]] - r1[x0[size_t(j)]]);
        out[j] = top + fy * (bottom - top);
      }
    }
  }
}

void augment_image(const uint8_t* src, int c, int h, int w, const AugmentOptions& opt, bool train, uint64_t seed,
                   uint64_t epoch, uint64_t index, float* dst) {
  // With a resize the normalized image goes to a scratch buffer first, then is resized into dst.
  thread_local std::vector<float> scratch;
  float* normalized = dst;
  if (opt.resize > 0) {
    scratch.resize(size_t(c) * size_t(h) * size_t(w));
    normalized = scratch.data();
  }
  if (!train || (!opt.crop && !opt.flip)) {
    normalize_to_f32(src, c, h, w, opt.norm, normalized);
  } else {
    AugmentDraw d = augment_draw(opt, seed, epoch, index);
    // 3 KB for a CIFAR image; thread_local avoids an allocation per image in the loader's threads.
    thread_local std::vector<uint8_t> tmp;
    tmp.resize(size_t(c) * size_t(h) * size_t(w));
    crop_padded(src, c, h, w, opt.pad, d.dy, d.dx, tmp.data());
    if (d.flip) flip_horizontal(tmp.data(), c, h, w);
    normalize_to_f32(tmp.data(), c, h, w, opt.norm, normalized);
  }
  if (opt.resize > 0) resize_bilinear(normalized, c, h, w, opt.resize, opt.resize, dst);
}

}  // namespace ep::data
