// synthetic.cpp — the shape renderer: every random choice of image i comes from Philox keyed by (seed, i), so images
// can be drawn in any order on any number of threads. Not anti-aliased: hard pixel edges are easy enough to learn.
#include "data/synthetic.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "engine/check.h"
#include "engine/philox.h"

namespace ep::data {

namespace {

constexpr uint32_t kSyntheticDomain = 0x53594e31u;  // "SYN1": keeps these draws apart from augmentation/shuffle

// The random numbers of one image: draw k is block k of the image's own Philox stream.
struct ImageRng {
  uint64_t seed, index;
  uint32_t k = 0;
  Philox4 block() {
    return philox4x32_10(Philox4{{uint32_t(index), uint32_t(index >> 32), k++, kSyntheticDomain}}, uint32_t(seed),
                         uint32_t(seed >> 32));
  }
  float uniform() { return float(block().v[0] >> 8) * (1.0f / 16777216.0f); }  // [0, 1)
  int uniform_int(int lo, int hi) { return lo + int(block().v[0] % uint32_t(hi - lo + 1)); }  // [lo, hi]
  // n values of mean 0 and standard deviation 1, four per Philox block: each is a sum of four uniform bytes
  // (Irwin-Hall, close to Gaussian), since pixel noise is most of the work of drawing an image and needs no exact
  // tails. A byte has variance (256^2 - 1)/12, so four have a standard deviation of 147.8.
  void noise(float* out, int n) {
    for (int i = 0; i < n; i += 4) {
      Philox4 r = block();
      for (int j = 0; j < 4 && i + j < n; ++j) {
        uint32_t v = r.v[j];
        int sum = int(v & 255u) + int((v >> 8) & 255u) + int((v >> 16) & 255u) + int(v >> 24);
        out[i + j] = float(sum - 510) * (1.0f / 147.80165f);
      }
    }
  }
};

// Is pixel offset (dx, dy) from the shape centre inside shape `cls` of half-size r?
bool inside(int cls, float dx, float dy, float r) {
  const float ax = std::fabs(dx), ay = std::fabs(dy);
  const bool in_box = ax <= r && ay <= r;
  const float t = 2.5f;  // outline / stroke width in pixels
  switch (cls) {
    case 0: return dx * dx + dy * dy <= r * r;
    case 1: { float d = std::sqrt(dx * dx + dy * dy); return d <= r && d >= r - t; }
    case 2: return in_box;
    case 3: return in_box && (ax >= r - t || ay >= r - t);
    case 4: return dy >= -r && dy <= r && ax <= (dy + r) * 0.5f;  // apex up, base of width 2r at the bottom
    case 5: return in_box && (ax <= t * 0.6f || ay <= t * 0.6f);
    case 6: return in_box && (std::fabs(dx - dy) <= t * 0.85f || std::fabs(dx + dy) <= t * 0.85f);
    case 7: return in_box && int(std::floor((dy + r) / 2.0f)) % 2 == 0;  // stripes of 2 px, period 4
    case 8: return in_box && int(std::floor((dx + r) / 2.0f)) % 2 == 0;
    case 9: return in_box && (int(std::floor((dx + r) / 3.0f)) + int(std::floor((dy + r) / 3.0f))) % 2 == 0;
  }
  return false;
}

void draw(const SyntheticOptions& opt, int64_t index, int cls, uint8_t* out) {
  constexpr int H = 32, W = 32;
  ImageRng rng{opt.seed, uint64_t(index)};
  const float r = 5.0f + 5.0f * rng.uniform();  // half-size 5..10 px
  const float cx = 11.0f + 10.0f * rng.uniform(), cy = 11.0f + 10.0f * rng.uniform();
  int bg[3], fg[3];
  for (int c = 0; c < 3; ++c) bg[c] = rng.uniform_int(0, 255);
  // Redraw the shape colour until it stands out; after a few tries take the complement, which always does.
  for (int attempt = 0;; ++attempt) {
    for (int c = 0; c < 3; ++c) fg[c] = rng.uniform_int(0, 255);
    int dist = std::abs(fg[0] - bg[0]) + std::abs(fg[1] - bg[1]) + std::abs(fg[2] - bg[2]);
    if (dist >= opt.min_contrast) break;
    if (attempt == 8) {
      for (int c = 0; c < 3; ++c) fg[c] = bg[c] < 128 ? 255 - bg[c] / 2 : bg[c] / 2;
      break;
    }
  }
  float noise[3 * H * W] = {};
  if (opt.noise_std > 0) rng.noise(noise, 3 * H * W);
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) {
      const bool in = inside(cls, float(x) + 0.5f - cx, float(y) + 0.5f - cy, r);
      for (int c = 0; c < 3; ++c) {
        float v = float(in ? fg[c] : bg[c]) + opt.noise_std * noise[(c * H + y) * W + x];
        v = std::fmin(255.0f, std::fmax(0.0f, std::nearbyint(v)));
        out[(c * H + y) * W + x] = uint8_t(v);
      }
    }
}

}  // namespace

ImageDataset make_synthetic_shapes(const SyntheticOptions& opt) {
  EP_CHECK(opt.size >= 0, ValueError, "[synthetic] negative size ", opt.size);
  EP_CHECK(opt.noise_std >= 0, ValueError, "[synthetic] negative noise_std ", opt.noise_std);
  EP_CHECK(opt.min_contrast >= 0 && opt.min_contrast <= 400, ValueError, "[synthetic] min_contrast ",
           opt.min_contrast, " outside [0,400]");
  ImageDataset ds;
  ds.class_names = {"filled_circle", "ring",    "filled_square", "outlined_square", "triangle",
                    "plus",          "x_cross", "h_stripes",     "v_stripes",       "checker"};
  ds.labels.resize(size_t(opt.size));
  ds.pixels.resize(size_t(opt.size) * size_t(ds.image_bytes()));
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < opt.size; ++i) {
    int cls = int(i % kSyntheticClasses);
    ds.labels[size_t(i)] = cls;
    draw(opt, i, cls, ds.image(i));
  }
  return ds;
}

SyntheticSplit make_synthetic_split(int64_t train_size, uint64_t seed) {
  SyntheticOptions tr, te;
  tr.size = train_size;
  tr.seed = seed;
  te.size = std::max<int64_t>(train_size / 5, 10);
  te.seed = seed + 1000003;  // a different draw of the same classes
  return {make_synthetic_shapes(tr), make_synthetic_shapes(te)};
}

}  // namespace ep::data
