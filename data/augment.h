// augment.h — training-time augmentation of one uint8 CHW image into normalized f32 CHW: random crop from a
// zero-padded copy, horizontal flip, per-channel (x/255 - mean)/std. The random choices come from Philox keyed by
// (seed, epoch, index), so a batch never depends on thread count or order; an optional bilinear resize (the seeds
// fine-tune at 224). Not a general transform pipeline: this fixed order is the one the CIFAR recipes use.
#pragma once
#include <array>
#include <cstdint>

namespace ep::data {

struct Normalize {
  // CIFAR-10 training-set channel statistics in [0,1] (the values used by kuangliu/pytorch-cifar and most recipes).
  std::array<float, 3> mean{0.4914f, 0.4822f, 0.4465f};
  std::array<float, 3> std{0.2470f, 0.2435f, 0.2616f};
};

struct AugmentOptions {
  bool crop = true;  // random crop of the original size from the image padded by `pad` zero pixels on every side
  int pad = 4;
  bool flip = true;  // horizontal flip with probability 1/2
  Normalize norm;
  int resize = 0;  // > 0: bilinear resize of the normalized image to resize x resize (train and eval alike)
};

// The output side of augment_image: resize when set, else the input's.
inline int augmented_size(const AugmentOptions& opt, int side) { return opt.resize > 0 ? opt.resize : side; }

// The random choices for one image: crop offset (dy, dx) in [0, 2*pad] within the padded image, flip or not.
struct AugmentDraw {
  int dy = 0, dx = 0;
  bool flip = false;
};
AugmentDraw augment_draw(const AugmentOptions& opt, uint64_t seed, uint64_t epoch, uint64_t index);

// The primitives, each usable alone (and testable by hand). Images are CHW uint8 with c channels of h x w.
// dst = the h x w window at (dy, dx) of src padded with `pad` zeros on each side; dy, dx in [0, 2*pad].
void crop_padded(const uint8_t* src, int c, int h, int w, int pad, int dy, int dx, uint8_t* dst);
void flip_horizontal(uint8_t* img, int c, int h, int w);  // in place
// dst[c][i] = (src[c][i] / 255 - mean[c]) / std[c]; at most 3 channels.
void normalize_to_f32(const uint8_t* src, int c, int h, int w, const Normalize& norm, float* dst);

// Bilinear resize of c planes of h x w floats to oh x ow as torch.nn.functional.interpolate(mode="bilinear",
// align_corners=False, antialias=False): source coordinate (i + 0.5) * h / oh - 0.5, clamped at 0, edge-replicated.
void resize_bilinear(const float* src, int c, int h, int w, int oh, int ow, float* dst);

// crop (if enabled) -> flip (if drawn) -> normalize -> resize (if set). With train = false: normalize (-> resize).
// dst holds c * augmented_size(h) * augmented_size(w) floats.
void augment_image(const uint8_t* src, int c, int h, int w, const AugmentOptions& opt, bool train, uint64_t seed,
                   uint64_t epoch, uint64_t index, float* dst);

}  // namespace ep::data
