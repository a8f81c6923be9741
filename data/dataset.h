// dataset.h — an in-memory image data set: N uint8 images in CHW order (the CIFAR record layout), int64 labels and
// the class names. Plain data shared read-only by the loaders; not a file format, not an augmentation, not a batcher.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ep::data {

struct ImageDataset {
  // CHW like a CIFAR record (1024 R, 1024 G, 1024 B): a batch is then a plain per-image copy into NCHW.
  int64_t channels = 3, height = 32, width = 32;
  std::vector<uint8_t> pixels;  // size() * image_bytes(), image i at i * image_bytes()
  std::vector<int64_t> labels;  // one per image, in [0, class_names.size())
  std::vector<std::string> class_names;

  int64_t size() const { return int64_t(labels.size()); }
  int64_t num_classes() const { return int64_t(class_names.size()); }
  int64_t image_bytes() const { return channels * height * width; }
  const uint8_t* image(int64_t i) const { return pixels.data() + size_t(i) * size_t(image_bytes()); }
  uint8_t* image(int64_t i) { return pixels.data() + size_t(i) * size_t(image_bytes()); }
};

}  // namespace ep::data
