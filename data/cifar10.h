// cifar10.h — the CIFAR-10 binary release format (data_batch_1..5.bin, test_batch.bin: records of one label byte and
// 3072 CHW pixel bytes): reader and writer. Not the Python pickle release and not a downloader (`make data` is).
#pragma once
#include <string>
#include <vector>

#include "data/dataset.h"

namespace ep::data {

inline constexpr int64_t kCifarRecordBytes = 1 + 3 * 32 * 32;  // 3073

struct CifarOptions {
  // Checked against the file sizes before anything is allocated: a wrong path (say, a disk image) fails fast
  // instead of allocating its size. 60,000 is the whole of CIFAR-10.
  int64_t max_records = 1'000'000;
};

// airplane automobile bird cat deer dog frog horse ship truck (labels 0..9, formats.md A5).
const std::vector<std::string>& cifar10_class_names();

// Reads the files in order and concatenates their records. Each file's size must be a non-zero multiple of 3073 and
// every label must be in [0,9]; errors are IOError naming the file (and the record): "x.bin: record 17: label 12 out
// of range [0,9]".
ImageDataset load_cifar10_files(const std::vector<std::string>& files, const CifarOptions& opt = {});

// The official layout in `dir`: train = data_batch_1.bin .. data_batch_5.bin, test = test_batch.bin.
// A missing file is an IOError naming it.
ImageDataset load_cifar10_dir(const std::string& dir, bool train, const CifarOptions& opt = {});

// Writes a 3x32x32 data set of at most 10 classes in the official layout, so other frameworks read exactly the images
// we train on: `train` split into data_batch_1..5.bin in order (load_cifar10_dir concatenates them back), `test` as
// test_batch.bin. Each file is written atomically. A set of another shape is a ValueError.
void write_cifar10_dir(const std::string& dir, const ImageDataset& train, const ImageDataset& test);

}  // namespace ep::data
