// image_folder.h — an image-folder data set, root/<class>/*.jpg|*.png, classes sorted by name, decoded once into
// memory by several threads through stb_image. Not a streaming reader and not a resizer: images must already have
// the expected size (32x32 here), and a compressed tarball must be unpacked first (`make data`).
#pragma once
#include <string>

#include "data/dataset.h"

namespace ep::data {

struct ImageFolderOptions {
  int64_t height = 32, width = 32;  // every image must be exactly this size (RGB; grey or RGBA is converted)
  // Limits checked from the header (stbi_info) before any pixel is decoded: an image over them is rejected without
  // allocating its pixels (reliability.md §3, stb_image).
  int64_t max_dimension = 8192;          // either side
  int64_t max_pixels = 16 * 1024 * 1024;  // width * height
  int64_t max_file_bytes = 64 << 20;     // read into memory whole
  int64_t max_images = 10'000'000;       // the whole folder, checked before decoding starts
  int threads = 0;                       // decoding threads; 0 = hardware concurrency (at most 16)
};

// Loads every *.jpg, *.jpeg and *.png (any case) under root/<class>/; files are sorted by name inside each class.
// Entries whose name starts with '.' are skipped (".git", macOS "._x.jpg").
// Errors are IOError naming the folder or file: a missing root, no class folder, an empty class folder, a file that
// does not decode, an image over the limits or of the wrong size. Of the failures found before the decoders stop, the
// earliest in sorted order is reported.
ImageDataset load_image_folder(const std::string& root, const ImageFolderOptions& opt = {});

}  // namespace ep::data
