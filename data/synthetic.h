// synthetic.h — a procedurally drawn 32x32 RGB data set of 10 shape classes (the embedded default for `make run`):
// random position, size, colours and pixel noise, deterministic per (seed, index). Not a benchmark of anything: it
// only has to be learnable by a small CNN, so that a training run shows a clear rise in accuracy with no downloads.
#pragma once
#include <cstdint>

#include "data/dataset.h"

namespace ep::data {

// Class k (label) is the k-th name: filled_circle ring filled_square outlined_square triangle plus x_cross
// h_stripes v_stripes checker.
inline constexpr int kSyntheticClasses = 10;

struct SyntheticOptions {
  int64_t size = 10000;      // images; image i has label i % 10, so classes are balanced to within one image
  uint64_t seed = 0;
  float noise_std = 8.0f;    // standard deviation of the (near-Gaussian) pixel noise on the 0..255 scale
  int min_contrast = 300;    // least L1 distance (sum over RGB) between shape and background colours
};

ImageDataset make_synthetic_shapes(const SyntheticOptions& opt = {});

// The trainers' synthetic split: `train_size` images drawn with `seed`, and a test set of a fifth as many (at least 10)
// drawn with another seed, so test images are new draws of the same classes.
struct SyntheticSplit {
  ImageDataset train, test;
};
SyntheticSplit make_synthetic_split(int64_t train_size, uint64_t seed);

}  // namespace ep::data
