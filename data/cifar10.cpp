// cifar10.cpp — the CIFAR-10 binary reader: sizes validated before allocation, labels per record.
// Not a cache: the caller keeps the ImageDataset; not tolerant: one bad byte fails the whole load.
#include "data/cifar10.h"

#include <filesystem>
#include <fstream>

#include "engine/check.h"
#include "engine/safetensors.h"  // write_file_atomic

namespace ep::data {

namespace fs = std::filesystem;

const std::vector<std::string>& cifar10_class_names() {
  static const std::vector<std::string> names = {"airplane", "automobile", "bird",  "cat",  "deer",
                                                 "dog",      "frog",       "horse", "ship", "truck"};
  return names;
}

namespace {

int64_t file_records(const std::string& path) {
  std::error_code ec;
  EP_CHECK(fs::is_regular_file(path, ec), IOError, path, ": no such file");
  uintmax_t size = fs::file_size(path, ec);
  EP_CHECK(!ec, IOError, path, ": cannot read its size (", ec.message(), ")");
  EP_CHECK(size > 0, IOError, path, ": empty file, expected records of ", kCifarRecordBytes, " bytes");
  EP_CHECK(size % uintmax_t(kCifarRecordBytes) == 0, IOError, path, ": size ", size, " is not a multiple of the ",
           kCifarRecordBytes, "-byte record (truncated or not a CIFAR-10 binary file; ",
           size / uintmax_t(kCifarRecordBytes), " whole records and ", size % uintmax_t(kCifarRecordBytes),
           " bytes over)");
  return int64_t(size / uintmax_t(kCifarRecordBytes));
}

}  // namespace

ImageDataset load_cifar10_files(const std::vector<std::string>& files, const CifarOptions& opt) {
  EP_CHECK(!files.empty(), ValueError, "[cifar10] no files given");
  // Every size first, so the one allocation below is known to be bounded and every file to be whole.
  std::vector<int64_t> counts;
  int64_t total = 0;
  for (const auto& f : files) {
    counts.push_back(file_records(f));
    total += counts.back();
    EP_CHECK(total <= opt.max_records, IOError, f, ": ", total, " records so far exceed the limit of ",
             opt.max_records);
  }
  ImageDataset ds;
  ds.class_names = cifar10_class_names();
  ds.pixels.resize(size_t(total) * size_t(ds.image_bytes()));
  ds.labels.resize(size_t(total));

  // A few hundred records per read: large sequential reads without a second full-size buffer.
  constexpr int64_t kChunk = 512;
  std::vector<uint8_t> buf(size_t(kChunk * kCifarRecordBytes));
  int64_t at = 0;
  for (size_t fi = 0; fi < files.size(); ++fi) {
    const std::string& f = files[fi];
    std::ifstream in(f, std::ios::binary);
    EP_CHECK(in.good(), IOError, f, ": cannot open");
    for (int64_t r0 = 0; r0 < counts[fi]; r0 += kChunk) {
      int64_t n = std::min(kChunk, counts[fi] - r0);
      in.read(reinterpret_cast<char*>(buf.data()), std::streamsize(n * kCifarRecordBytes));
      // The file can shrink between the size check and the read (a copy still in progress).
      EP_CHECK(in.gcount() == std::streamsize(n * kCifarRecordBytes), IOError, f, ": record ",
               r0 + in.gcount() / kCifarRecordBytes, ": unexpected end of file");
      for (int64_t r = 0; r < n; ++r) {
        const uint8_t* rec = buf.data() + r * kCifarRecordBytes;
        EP_CHECK(rec[0] <= 9, IOError, f, ": record ", r0 + r, ": label ", int(rec[0]), " out of range [0,9]");
        ds.labels[size_t(at)] = rec[0];
        std::copy(rec + 1, rec + kCifarRecordBytes, ds.image(at));
        ++at;
      }
    }
  }
  return ds;
}

ImageDataset load_cifar10_dir(const std::string& dir, bool train, const CifarOptions& opt) {
  std::error_code ec;
  EP_CHECK(fs::is_directory(dir, ec), IOError, dir, ": no such directory");
  std::vector<std::string> files;
  if (train)
    for (int i = 1; i <= 5; ++i) files.push_back((fs::path(dir) / ("data_batch_" + std::to_string(i) + ".bin")).string());
  else
    files.push_back((fs::path(dir) / "test_batch.bin").string());
  return load_cifar10_files(files, opt);
}

namespace {

void write_records(const std::string& path, const ImageDataset& d, int64_t begin, int64_t end) {
  std::string bytes;
  bytes.reserve(size_t((end - begin) * kCifarRecordBytes));
  for (int64_t i = begin; i < end; ++i) {
    bytes += char(uint8_t(d.labels[size_t(i)]));
    bytes.append(reinterpret_cast<const char*>(d.image(i)), size_t(d.image_bytes()));
  }
  write_file_atomic(path, bytes);
}

void check_writable(const ImageDataset& d, const char* which) {
  EP_CHECK(d.channels == 3 && d.height == 32 && d.width == 32, ValueError, "[cifar10] the ", which, " set is ",
           d.channels, "x", d.height, "x", d.width, "; CIFAR-10 records hold 3x32x32 images");
  EP_CHECK(d.size() >= 1, ValueError, "[cifar10] the ", which, " set is empty");
  for (int64_t l : d.labels)
    EP_CHECK(l >= 0 && l <= 9, ValueError, "[cifar10] the ", which, " set has label ", l, "; a record holds 0..9");
}

}  // namespace

void write_cifar10_dir(const std::string& dir, const ImageDataset& train, const ImageDataset& test) {
  check_writable(train, "training");
  check_writable(test, "test");
  EP_CHECK(train.size() >= 5, ValueError, "[cifar10] ", train.size(), " training images do not fill 5 batch files");
  fs::create_directories(dir);
  for (int64_t f = 0; f < 5; ++f)
    write_records((fs::path(dir) / ("data_batch_" + std::to_string(f + 1) + ".bin")).string(), train,
                  train.size() * f / 5, train.size() * (f + 1) / 5);
  write_records((fs::path(dir) / "test_batch.bin").string(), test, 0, test.size());
}

}  // namespace ep::data
