// test_data.cpp — the data/ loaders on the real CIFAR-10 files (binary records and the JPEG sample), bad inputs,
// augmentation by hand, determinism, the prefetching loader and the synthetic set. Not a learnability check (the
// trainer's tests do that). Cases needing ../shared/data print a notice and return when it is absent.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include "data/augment.h"
#include "data/cifar10.h"
#include "data/image_folder.h"
#include "data/jpeg_guard.h"
#include "data/png_guard.h"
#include "data/loader.h"
#include "data/synthetic.h"
#include "tests/test_util.h"


using namespace ep;
using namespace ep::data;
namespace fs = std::filesystem;

namespace {

using ep::test::TempDir;
using ep::test::error_of;
using ep::test::contains;

const std::string kCifarDir = "../shared/data/cifar10";

bool have_file(const std::string& p) { return ep::test::have_data(p); }

std::vector<uint8_t> read_bytes(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const fs::path& p, const std::vector<uint8_t>& b) {
  std::ofstream out(p, std::ios::binary);
  out.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

// A tiny data set of n 3x4x5 images with pixel value (i*7 + j) % 256 and label i % 3.
std::shared_ptr<ImageDataset> tiny_dataset(int64_t n) {
  auto ds = std::make_shared<ImageDataset>();
  ds->channels = 3;
  ds->height = 4;
  ds->width = 5;
  ds->class_names = {"a", "b", "c"};
  ds->pixels.resize(size_t(n * ds->image_bytes()));
  for (int64_t i = 0; i < n; ++i) {
    ds->labels.push_back(i % 3);
    for (int64_t j = 0; j < ds->image_bytes(); ++j) ds->image(i)[j] = uint8_t((i * 7 + j) % 256);
  }
  return ds;
}

// A PNG file that is only a signature and an IHDR chunk declaring w x h RGB: enough for stbi_info, not for decoding.
// stb does not check chunk CRCs, so the CRC bytes are zero.
std::vector<uint8_t> png_header_only(uint32_t w, uint32_t h) {
  std::vector<uint8_t> b = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13, 'I', 'H', 'D', 'R'};
  for (uint32_t v : {w, h})
    for (int s = 24; s >= 0; s -= 8) b.push_back(uint8_t(v >> s));
  for (uint8_t v : {8, 2, 0, 0, 0}) b.push_back(v);  // bit depth 8, colour type 2 (RGB), deflate, filter 0, no interlace
  for (int i = 0; i < 4; ++i) b.push_back(0);        // CRC (unchecked)
  return b;
}

}  // namespace

// ---- CIFAR-10 binary ---------------------------------------------------------------------------------------------

TEST_CASE("data: cifar10 binary records, labels cross-checked with the label files and published values") {
  const std::string test_bin = kCifarDir + "/test_batch.first1000.bin", train_bin = kCifarDir + "/data_batch_1.first1000.bin";
  if (!have_file(test_bin) || !have_file(train_bin)) return;
  ImageDataset t = load_cifar10_files({test_bin});
  REQUIRE(t.size() == 1000);
  CHECK(t.channels == 3);
  CHECK(t.height == 32);
  CHECK(t.width == 32);
  CHECK(t.pixels.size() == 1000u * 3072u);
  // formats.md C: the test labels begin 3 8 8 0 6 6 1 6 3 1 0 9 5 7 9 8 (cat, ship, ship, airplane, frog, ...).
  const int64_t first[] = {3, 8, 8, 0, 6, 6, 1, 6, 3, 1, 0, 9, 5, 7, 9, 8};
  for (int i = 0; i < 16; ++i) CHECK(t.labels[size_t(i)] == first[i]);
  REQUIRE(t.class_names.size() == 10u);
  CHECK(t.class_names[3] == "cat");
  CHECK(t.class_names[8] == "ship");
  CHECK(t.class_names[0] == "airplane");
  CHECK(t.class_names[9] == "truck");
  auto test_labels = read_bytes(kCifarDir + "/test_batch.labels.u8");
  REQUIRE(test_labels.size() == 10000u);
  for (int i = 0; i < 1000; ++i) CHECK(t.labels[size_t(i)] == int64_t(test_labels[size_t(i)]));

  // Pixels: record i is <label><1024 R><1024 G><1024 B>; byte 1 + c*1024 + y*32 + x of the file.
  auto raw = read_bytes(test_bin);
  for (int64_t i : {0, 1, 999})
    for (int64_t off : {0, 1023, 1024, 2047, 3071})
      CHECK(t.image(i)[off] == raw[size_t(i * 3073 + 1 + off)]);

  // Two files concatenate in order; data_batch_1 labels begin 6 9 9 4 1 1 2 7 8 3 (formats.md C).
  ImageDataset both = load_cifar10_files({test_bin, train_bin});
  REQUIRE(both.size() == 2000);
  const int64_t train_first[] = {6, 9, 9, 4, 1, 1, 2, 7, 8, 3};
  for (int i = 0; i < 10; ++i) CHECK(both.labels[size_t(1000 + i)] == train_first[i]);
  auto train_labels = read_bytes(kCifarDir + "/data_batch_1.labels.u8");
  REQUIRE(train_labels.size() == 10000u);
  for (int i = 0; i < 1000; ++i) CHECK(both.labels[size_t(1000 + i)] == int64_t(train_labels[size_t(i)]));
  CHECK(std::memcmp(both.image(0), t.image(0), 3072) == 0);
}

TEST_CASE("data: cifar10 rejects truncated files, bad labels, missing files and too many records") {
  TempDir tmp;
  // Two good records (labels 1 and 2) built by hand.
  std::vector<uint8_t> good(2 * 3073, 17);
  good[0] = 1;
  good[3073] = 2;
  write_bytes(tmp.path / "good.bin", good);
  ImageDataset ok = load_cifar10_files({(tmp.path / "good.bin").string()});
  REQUIRE(ok.size() == 2);
  CHECK(ok.labels[0] == 1);
  CHECK(ok.labels[1] == 2);
  CHECK(ok.image(1)[3071] == 17);

  std::vector<uint8_t> truncated(good.begin(), good.begin() + 3073 + 1000);
  write_bytes(tmp.path / "truncated.bin", truncated);
  std::string e = error_of<IOError>([&] { load_cifar10_files({(tmp.path / "truncated.bin").string()}); });
  CHECK(contains(e, "truncated.bin"));
  CHECK(contains(e, "not a multiple of the 3073-byte record"));

  std::vector<uint8_t> bad_label = good;
  bad_label[3073] = 12;  // record 1
  write_bytes(tmp.path / "label12.bin", bad_label);
  e = error_of<IOError>([&] { load_cifar10_files({(tmp.path / "label12.bin").string()}); });
  CHECK(contains(e, "label12.bin: record 1: label 12 out of range [0,9]"));

  write_bytes(tmp.path / "empty.bin", {});
  e = error_of<IOError>([&] { load_cifar10_files({(tmp.path / "empty.bin").string()}); });
  CHECK(contains(e, "empty.bin: empty file"));

  e = error_of<IOError>([&] { load_cifar10_files({(tmp.path / "nope.bin").string()}); });
  CHECK(contains(e, "nope.bin: no such file"));

  // The record limit is checked on the file sizes, before the pixel buffer exists.
  CifarOptions small;
  small.max_records = 3;
  e = error_of<IOError>([&] {
    load_cifar10_files({(tmp.path / "good.bin").string(), (tmp.path / "good.bin").string()}, small);
  });
  CHECK(contains(e, "4 records so far exceed the limit of 3"));

  // The directory layout: test_batch.bin missing is named.
  e = error_of<IOError>([&] { load_cifar10_dir(tmp.path.string(), false); });
  CHECK(contains(e, "test_batch.bin: no such file"));
  e = error_of<IOError>([&] { load_cifar10_dir((tmp.path / "absent").string(), true); });
  CHECK(contains(e, "absent: no such directory"));
  fs::copy_file(tmp.path / "good.bin", tmp.path / "test_batch.bin");
  CHECK(load_cifar10_dir(tmp.path.string(), false).size() == 2);
}

TEST_CASE("data: write_cifar10_dir writes the official layout that load_cifar10_dir reads back, image for image") {
  TempDir tmp;
  SyntheticSplit s = make_synthetic_split(23, 5);  // 23 images: batch files of 4, 5, 4, 5 and 5 records
  REQUIRE(s.test.size() == 10);                    // a fifth, at least 10
  const std::string dir = (tmp.path / "out").string();
  write_cifar10_dir(dir, s.train, s.test);
  const int64_t sizes[5] = {4, 5, 4, 5, 5};
  for (int f = 0; f < 5; ++f)
    CHECK(fs::file_size(fs::path(dir) / ("data_batch_" + std::to_string(f + 1) + ".bin")) ==
          uintmax_t(sizes[f] * 3073));
  ImageDataset train = load_cifar10_dir(dir, true), test = load_cifar10_dir(dir, false);
  CHECK(train.pixels == s.train.pixels);
  CHECK(train.labels == s.train.labels);
  CHECK(test.pixels == s.test.pixels);
  CHECK(test.labels == s.test.labels);
  // A record's first byte is the label, then the R, G and B planes (formats.md A5).
  std::ifstream in(fs::path(dir) / "data_batch_2.bin", std::ios::binary);
  std::vector<char> rec(3073);
  in.read(rec.data(), 3073);
  CHECK(int(uint8_t(rec[0])) == s.train.labels[4]);
  CHECK(std::memcmp(rec.data() + 1, s.train.image(4), 3072) == 0);

  ImageDataset big = s.train;
  big.height = big.width = 64;
  CHECK(contains(error_of<ValueError>([&] { write_cifar10_dir(dir, big, s.test); }), "3x64x64"));
  ImageDataset many = s.test;
  many.labels[0] = 10;
  CHECK(contains(error_of<ValueError>([&] { write_cifar10_dir(dir, s.train, many); }), "label 10"));
  ImageDataset few = s.train;
  few.labels.resize(4);
  few.pixels.resize(4 * 3072);
  CHECK(contains(error_of<ValueError>([&] { write_cifar10_dir(dir, few, s.test); }), "do not fill 5 batch files"));
}

// ---- image folders -----------------------------------------------------------------------------------------------

TEST_CASE("data: image folder sample decodes to the same images as the binary test records") {
  const std::string root = kCifarDir + "/image-folder-sample/test", test_bin = kCifarDir + "/test_batch.first1000.bin";
  if (!have_file(root) || !have_file(test_bin)) return;
  ImageFolderOptions opt;
  opt.threads = 3;
  ImageDataset f = load_image_folder(root, opt);
  REQUIRE(f.size() == 200);
  // Class folders sorted by name are exactly the CIFAR-10 names in label order.
  CHECK(f.class_names == cifar10_class_names());
  std::map<int64_t, int> per_class;
  for (int64_t l : f.labels) per_class[l]++;
  CHECK(per_class.size() == 10u);
  for (auto& [l, n] : per_class) CHECK(n == 20);
  for (int64_t i = 1; i < f.size(); ++i) CHECK(f.labels[size_t(i)] >= f.labels[size_t(i - 1)]);

  // PROVENANCE: test/<class>/NNNN.jpg is the NNNN-th image of that class in test order; JPEG loss keeps the mean
  // absolute difference of a true pair near 6 (max 10.2), a wrong pair is near 64.
  ImageDataset t = load_cifar10_files({test_bin});
  std::map<int64_t, std::vector<int64_t>> records_of;
  for (int64_t i = 0; i < t.size(); ++i) records_of[t.labels[size_t(i)]].push_back(i);
  double worst_true = 0, best_wrong = 1e9;
  for (int64_t i = 0; i < f.size(); ++i) {
    int64_t cls = f.labels[size_t(i)], nth = i % 20;  // files 0000..0019 in sorted order
    REQUIRE(records_of[cls].size() > size_t(nth + 1));
    auto mad = [&](int64_t rec) {
      double s = 0;
      for (int64_t j = 0; j < 3072; ++j) s += std::abs(int(f.image(i)[j]) - int(t.image(rec)[j]));
      return s / 3072;
    };
    worst_true = std::max(worst_true, mad(records_of[cls][size_t(nth)]));
    best_wrong = std::min(best_wrong, mad(records_of[cls][size_t(nth + 1)]));
  }
  CHECK(worst_true < 12.0);
  CHECK(best_wrong > 20.0);

  // The thread count does not change the result.
  opt.threads = 1;
  ImageDataset f1 = load_image_folder(root, opt);
  CHECK(f1.pixels == f.pixels);
  CHECK(f1.labels == f.labels);
}

TEST_CASE("data: unpacked CIFAR-10 JPEG test split (data/cifar10-jpeg, when present) matches the binary records") {
  // Present after `make data` (tar -xzf ../shared/data/cifar10/cifar10-jpeg.tar.gz -C data); 10,000 small files
  // decode in well under a second.
  const std::string root = "data/cifar10-jpeg/test", test_bin = kCifarDir + "/test_batch.first1000.bin";
  if (!have_file(root) || !have_file(test_bin)) return;
  ImageDataset f = load_image_folder(root);
  REQUIRE(f.size() == 10000);  // formats.md A5: the test batch has exactly 1000 images per class
  CHECK(f.class_names == cifar10_class_names());
  std::vector<int> per_class(10, 0);
  for (int64_t l : f.labels) per_class[size_t(l)]++;
  for (int k = 0; k < 10; ++k) CHECK(per_class[size_t(k)] == 1000);
  // Each of the first 1000 test records is image NNNN of its class folder (NNNN = its rank within the class).
  ImageDataset t = load_cifar10_files({test_bin});
  std::vector<int> rank(10, 0);
  double worst = 0;
  for (int64_t i = 0; i < t.size(); ++i) {
    const int64_t cls = t.labels[size_t(i)], j = cls * 1000 + rank[size_t(cls)]++;
    double s = 0;
    for (int64_t k = 0; k < 3072; ++k) s += std::abs(int(f.image(j)[k]) - int(t.image(i)[k]));
    worst = std::max(worst, s / 3072);
  }
  CHECK(worst < 12.0);
}

TEST_CASE("data: image folder errors: empty class, corrupt JPEG, oversized image, wrong size, no classes") {
  const std::string sample = kCifarDir + "/image-folder-sample/test/cat/0000.jpg";
  if (!have_file(sample)) return;
  const std::vector<uint8_t> jpg = read_bytes(sample);
  auto make_root = [&](const TempDir& tmp) {
    fs::create_directories(tmp.path / "a");
    fs::create_directories(tmp.path / "b");
    write_bytes(tmp.path / "a" / "x.jpg", jpg);
    write_bytes(tmp.path / "b" / "y.JPG", jpg);  // extension case does not matter
  };
  {
    TempDir tmp;
    make_root(tmp);
    write_bytes(tmp.path / "b" / "notes.txt", {'h', 'i'});  // not an image name: ignored
    write_bytes(tmp.path / "b" / "._y.jpg", {0, 5, 22});     // hidden (macOS resource fork): ignored
    fs::create_directories(tmp.path / ".cache");           // hidden folder: not a class, though empty
    ImageDataset ds = load_image_folder(tmp.path.string());
    CHECK(ds.size() == 2);
    CHECK(ds.class_names == std::vector<std::string>{"a", "b"});
    CHECK(ds.pixels.size() == 2u * 3072u);
  }
  {
    TempDir tmp;
    make_root(tmp);
    fs::create_directories(tmp.path / "c_empty");
    std::string e = error_of<IOError>([&] { load_image_folder(tmp.path.string()); });
    CHECK(contains(e, "c_empty: empty class folder"));
  }
  {
    TempDir tmp;
    make_root(tmp);
    write_bytes(tmp.path / "b" / "z_garbage.jpg", {'n', 'o', 't', ' ', 'a', ' ', 'j', 'p', 'e', 'g'});
    std::string e = error_of<IOError>([&] { load_image_folder(tmp.path.string()); });
    CHECK(contains(e, "z_garbage.jpg: not a readable JPEG or PNG"));
  }
  {
    // A JPEG whose header is intact but whose entropy-coded data ends early: stbi_info passes, decoding must fail.
    TempDir tmp;
    make_root(tmp);
    std::vector<uint8_t> cut(jpg.begin(), jpg.begin() + std::ptrdiff_t(jpg.size() / 2));
    write_bytes(tmp.path / "b" / "z_cut.jpg", cut);
    std::string e = error_of<IOError>([&] { load_image_folder(tmp.path.string()); });
    CHECK(contains(e, "z_cut.jpg: corrupt image"));
    CHECK(e.find('\n') == std::string::npos);
  }
  {
    // Headers declaring huge images: rejected from stbi_info, before any pixel buffer (the file has no pixels).
    TempDir tmp;
    make_root(tmp);
    write_bytes(tmp.path / "b" / "z_wide.png", png_header_only(20000, 20));
    std::string e = error_of<IOError>([&] { load_image_folder(tmp.path.string()); });
    CHECK(contains(e, "z_wide.png: image of 20000x20 exceeds the dimension limit of 8192"));
    fs::remove(tmp.path / "b" / "z_wide.png");
    write_bytes(tmp.path / "b" / "z_big.png", png_header_only(5000, 5000));
    e = error_of<IOError>([&] { load_image_folder(tmp.path.string()); });
    CHECK(contains(e, "z_big.png: image of 5000x5000 = 25000000 pixels exceeds the pixel budget"));
  }
  {
    TempDir tmp;
    make_root(tmp);
    ImageFolderOptions opt;
    opt.height = opt.width = 16;
    std::string e = error_of<IOError>([&] { load_image_folder(tmp.path.string(), opt); });
    CHECK(contains(e, "x.jpg: image is 32x32, expected 16x16"));
  }
  {
    TempDir tmp;
    std::string e = error_of<IOError>([&] { load_image_folder(tmp.path.string()); });
    CHECK(contains(e, "no class folders"));
    e = error_of<IOError>([&] { load_image_folder((tmp.path / "missing").string()); });
    CHECK(contains(e, "missing: no such directory"));
  }
}

// ---- augmentation ------------------------------------------------------------------------------------------------

TEST_CASE("data: augmentation primitives by hand") {
  // flip: rows reversed per channel; twice is the identity.
  std::vector<uint8_t> img = {1, 2, 3, 4, 5, 6, /* channel 1 */ 7, 8, 9, 10, 11, 12};  // c=2, h=2, w=3
  std::vector<uint8_t> f = img;
  flip_horizontal(f.data(), 2, 2, 3);
  CHECK(f == std::vector<uint8_t>{3, 2, 1, 6, 5, 4, 9, 8, 7, 12, 11, 10});
  flip_horizontal(f.data(), 2, 2, 3);
  CHECK(f == img);

  // crop of a 1x3x3 image padded by 1: offset (0,0) shifts the image down-right with a zero top row/left column.
  std::vector<uint8_t> s = {1, 2, 3, 4, 5, 6, 7, 8, 9}, d(9);
  crop_padded(s.data(), 1, 3, 3, 1, 0, 0, d.data());
  CHECK(d == std::vector<uint8_t>{0, 0, 0, 0, 1, 2, 0, 4, 5});
  crop_padded(s.data(), 1, 3, 3, 1, 2, 1, d.data());
  CHECK(d == std::vector<uint8_t>{4, 5, 6, 7, 8, 9, 0, 0, 0});
  crop_padded(s.data(), 1, 3, 3, 1, 1, 1, d.data());  // the centre window is the image
  CHECK(d == s);
  CHECK_THROWS_AS(crop_padded(s.data(), 1, 3, 3, 1, 3, 0, d.data()), ValueError);

  // normalize: (x/255 - mean)/std. 255 -> (1-0.5)/0.25 = 2; 0 -> -2; 51 -> (0.2-0.5)/0.25 = -1.2;
  // channel 1 with mean 0, std 1: x/255.
  Normalize n;
  n.mean = {0.5f, 0.0f, 0.25f};
  n.std = {0.25f, 1.0f, 0.5f};
  std::vector<uint8_t> px = {255, 0, 51, /* c1 */ 255, 0, 51, /* c2 */ 255, 0, 51};
  std::vector<float> out(9);
  normalize_to_f32(px.data(), 3, 1, 3, n, out.data());
  const float want[] = {2, -2, -1.2f, 1, 0, 0.2f, 1.5f, -0.5f, -0.1f};
  for (int i = 0; i < 9; ++i) CHECK(out[size_t(i)] == doctest::Approx(want[i]).epsilon(1e-6));
  n.std[1] = 0;
  CHECK_THROWS_AS(normalize_to_f32(px.data(), 3, 1, 3, n, out.data()), ValueError);
}

TEST_CASE("data: bilinear resize matches torch.nn.functional.interpolate (align_corners=False)") {
  // Reference values printed by PyTorch 1.13 (F.interpolate(x, size, mode="bilinear", align_corners=False)).
  const std::vector<float> up_src = {0, 1, 4, 2, 3, -1};  // 2x3
  const std::vector<float> up_want = {0.0f, 0.4f, 1.0f, 2.8f, 4.0f,   0.5f, 0.9f, 1.5f, 2.25f, 2.75f,
                                      1.5f, 1.9f, 2.5f, 1.15f, 0.25f, 2.0f, 2.4f, 3.0f, 0.6f,  -1.0f};
  std::vector<float> up(20);
  resize_bilinear(up_src.data(), 1, 2, 3, 4, 5, up.data());
  for (size_t i = 0; i < up.size(); ++i) CHECK(up[i] == doctest::Approx(up_want[i]).epsilon(1e-6));
  // Downsampling 3x3 -> 2x2 (no antialiasing, as antialias=False).
  const std::vector<float> down_src = {0, 1, 2, 3, 4, 5, 6, 7, 8};
  std::vector<float> down(4);
  resize_bilinear(down_src.data(), 1, 3, 3, 2, 2, down.data());
  CHECK(down == std::vector<float>{1.0f, 2.5f, 5.5f, 7.0f});
  CHECK_THROWS_AS(resize_bilinear(down_src.data(), 1, 3, 3, 0, 2, down.data()), ValueError);

  // In augment_image: the normalized image, resized; evaluation images too.
  AugmentOptions o;
  o.resize = 5;
  o.norm.mean = {0, 0, 0};
  o.norm.std = {1, 1, 1};
  const std::vector<uint8_t> px = {0, 51, 204, 102, 153, 255};  // 1x2x3 = up_src pattern scaled
  std::vector<float> got(25 * 1), norm(6), want(25);
  augment_image(px.data(), 1, 2, 3, o, /*train=*/false, 0, 0, 0, got.data());
  for (int i = 0; i < 6; ++i) norm[size_t(i)] = float(px[size_t(i)]) / 255.0f;
  resize_bilinear(norm.data(), 1, 2, 3, 5, 5, want.data());
  for (size_t i = 0; i < want.size(); ++i) CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-6));
  CHECK(augmented_size(o, 32) == 5);
}

TEST_CASE("data: augmented image is a window of the zero-padded image, flipped as drawn, then normalized") {
  const int c = 3, h = 32, w = 32, pad = 4, ph = h + 2 * pad, pw = w + 2 * pad;
  std::vector<uint8_t> img(size_t(c * h * w));
  for (size_t i = 0; i < img.size(); ++i) img[i] = uint8_t(1 + (i * 37) % 250);  // never 0: padding is visible
  // The padded image, built independently of crop_padded.
  std::vector<uint8_t> padded(size_t(c * ph * pw), 0);
  for (int ch = 0; ch < c; ++ch)
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) padded[size_t((ch * ph + y + pad) * pw + x + pad)] = img[size_t((ch * h + y) * w + x)];
  AugmentOptions opt;
  opt.norm.mean = {0, 0, 0};
  opt.norm.std = {1, 1, 1};
  int flips = 0;
  const int trials = 400;
  std::vector<float> out(size_t(c * h * w));
  for (int i = 0; i < trials; ++i) {
    AugmentDraw dr = augment_draw(opt, 7, 3, uint64_t(i));
    REQUIRE(dr.dy >= 0);
    REQUIRE(dr.dy <= 8);
    REQUIRE(dr.dx >= 0);
    REQUIRE(dr.dx <= 8);
    flips += dr.flip;
    augment_image(img.data(), c, h, w, opt, true, 7, 3, uint64_t(i), out.data());
    bool same = true;
    for (int ch = 0; ch < c; ++ch)
      for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) {
          int sx = dr.flip ? w - 1 - x : x;
          float want = float(padded[size_t((ch * ph + y + dr.dy) * pw + sx + dr.dx)]) / 255.0f;
          same = same && std::fabs(out[size_t((ch * h + y) * w + x)] - want) < 1e-6f;
        }
    CHECK(same);
  }
  // Every offset in [0,8]^2 is drawn, about equally often (3000 draws: 37 expected per offset).
  std::map<std::pair<int, int>, int> freq;
  for (int i = 0; i < 3000; ++i) {
    AugmentDraw dr = augment_draw(opt, 7, 3, uint64_t(i));
    freq[{dr.dy, dr.dx}]++;
  }
  CHECK(freq.size() == 81u);
  for (auto& [o, k] : freq) CHECK(k > 10);
  CHECK(flips > trials * 0.4);
  CHECK(flips < trials * 0.6);

  // Same (seed, epoch, index) -> same draw; another epoch or seed -> another sequence of draws.
  int diff_epoch = 0, diff_seed = 0;
  for (int i = 0; i < 50; ++i) {
    AugmentDraw a = augment_draw(opt, 7, 3, uint64_t(i)), b = augment_draw(opt, 7, 3, uint64_t(i));
    CHECK((a.dy == b.dy && a.dx == b.dx && a.flip == b.flip));
    AugmentDraw e = augment_draw(opt, 7, 4, uint64_t(i)), s = augment_draw(opt, 8, 3, uint64_t(i));
    diff_epoch += (a.dy != e.dy || a.dx != e.dx || a.flip != e.flip);
    diff_seed += (a.dy != s.dy || a.dx != s.dx || a.flip != s.flip);
  }
  CHECK(diff_epoch > 30);
  CHECK(diff_seed > 30);

  // Evaluation (train = false) is normalization only.
  augment_image(img.data(), c, h, w, opt, false, 7, 3, 0, out.data());
  for (size_t i = 0; i < img.size(); ++i) CHECK(out[i] == doctest::Approx(img[i] / 255.0).epsilon(1e-6));
}

// ---- shuffling and batches ---------------------------------------------------------------------------------------

TEST_CASE("data: epoch order is a permutation, fixed by (seed, epoch)") {
  auto a = epoch_order(1000, 5, 0, true), b = epoch_order(1000, 5, 0, true);
  CHECK(a == b);
  auto sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 1000; ++i) CHECK(sorted[size_t(i)] == i);
  CHECK(a != epoch_order(1000, 5, 1, true));
  CHECK(a != epoch_order(1000, 6, 0, true));
  auto id = epoch_order(10, 5, 0, false);
  for (int64_t i = 0; i < 10; ++i) CHECK(id[size_t(i)] == i);
  int fixed = 0;  // a shuffle leaves about one element in place
  for (int64_t i = 0; i < 1000; ++i) fixed += a[size_t(i)] == i;
  CHECK(fixed < 10);
  CHECK(epoch_order(0, 1, 0, true).empty());
  CHECK(epoch_order(1, 1, 0, true) == std::vector<int64_t>{0});
}

TEST_CASE("data: loader yields every example exactly once per epoch, same batches for same seed and epoch") {
  auto ds = tiny_dataset(103);
  LoaderOptions opt;
  opt.batch_size = 10;
  opt.seed = 11;
  opt.augment.pad = 1;
  DataLoader loader(ds, opt);
  CHECK(loader.batches_per_epoch() == 11);
  CHECK_THROWS_AS(loader.next(), Error);  // before start_epoch
  std::vector<std::vector<int64_t>> epoch_idx;
  std::vector<std::vector<float>> epoch0_images;
  for (int64_t epoch : {0, 1}) {
    loader.start_epoch(epoch);
    std::vector<int64_t> seen;
    int64_t nb = 0;
    while (auto b = loader.next()) {
      CHECK(b->epoch == epoch);
      CHECK(b->batch == nb);
      const int64_t rows = nb < 10 ? 10 : 3;
      CHECK(b->images.shape() == Shape{rows, 3, 4, 5});
      CHECK(b->images.dtype() == DType::f32);
      CHECK(b->labels.shape() == Shape{rows});
      CHECK(b->labels.dtype() == DType::i64);
      auto labels = b->labels.to_vector<int64_t>();
      for (int64_t r = 0; r < rows; ++r) CHECK(labels[size_t(r)] == b->indices[size_t(r)] % 3);
      seen.insert(seen.end(), b->indices.begin(), b->indices.end());
      if (epoch == 0) epoch0_images.push_back(b->images.to_vector<float>());
      ++nb;
    }
    CHECK(nb == 11);
    CHECK(!loader.next().has_value());  // stays at the end
    epoch_idx.push_back(seen);
    std::sort(seen.begin(), seen.end());
    for (int64_t i = 0; i < 103; ++i) CHECK(seen[size_t(i)] == i);
  }
  CHECK(epoch_idx[0] != epoch_idx[1]);  // a different epoch visits in a different order
  CHECK(epoch_idx[0] == epoch_order(103, 11, 0, true));

  // Another loader with the same options, and more threads per batch, gives the same batches bit for bit.
  LoaderOptions opt3 = opt;
  opt3.threads = 3;
  opt3.prefetch = 1;
  DataLoader again(ds, opt3);
  again.start_epoch(0);
  for (size_t k = 0; k < epoch0_images.size(); ++k) {
    auto b = again.next();
    REQUIRE(b.has_value());
    CHECK(b->images.to_vector<float>() == epoch0_images[k]);
  }
  // Resuming at batch 4 gives batches 4.. of the same epoch.
  again.start_epoch(0, 4);
  auto b4 = again.next();
  REQUIRE(b4.has_value());
  CHECK(b4->batch == 4);
  CHECK(b4->images.to_vector<float>() == epoch0_images[4]);

  // drop_last: 10 full batches, the 3 left over are not visited.
  opt.drop_last = true;
  DataLoader dl(ds, opt);
  CHECK(dl.batches_per_epoch() == 10);
  dl.start_epoch(0);
  int64_t n = 0;
  while (auto b = dl.next()) n += b->images.size(0);
  CHECK(n == 100);
}

TEST_CASE("data: loader batches equal the augmentation of each image; evaluation only normalizes") {
  auto ds = tiny_dataset(9);
  LoaderOptions opt;
  opt.batch_size = 4;
  opt.shuffle = false;
  opt.augment.pad = 2;
  opt.seed = 3;
  Batch b = make_image_batch(*ds, {8, 0, 5}, opt, 2);
  auto got = b.images.to_vector<float>();
  std::vector<float> want(60);
  for (int r = 0; r < 3; ++r) {
    int64_t idx = b.indices[size_t(r)];
    augment_image(ds->image(idx), 3, 4, 5, opt.augment, true, 3, 2, uint64_t(idx), want.data());
    for (int j = 0; j < 60; ++j) CHECK(got[size_t(r * 60 + j)] == want[size_t(j)]);
  }
  opt.train = false;
  Batch e = make_image_batch(*ds, {8}, opt, 2);
  auto ev = e.images.to_vector<float>();
  // Channel 0, first pixel of image 8: (56/255 - 0.4914)/0.2470.
  CHECK(ds->image(8)[0] == 56);
  CHECK(ev[0] == doctest::Approx((56 / 255.0 - 0.4914) / 0.2470).epsilon(1e-5));
  CHECK_THROWS_AS(make_image_batch(*ds, {9}, opt, 0), ValueError);
  opt.augment.resize = 7;  // batches take the resized shape
  Batch r = make_image_batch(*ds, {8, 0}, opt, 2);
  CHECK(r.images.shape() == Shape{2, 3, 7, 7});
}

TEST_CASE("data: loader re-raises producer exceptions and stops cleanly mid-epoch") {
  LoaderOptions opt;
  opt.batch_size = 5;
  opt.shuffle = false;
  auto make = [](const std::vector<int64_t>& idx, int64_t epoch) {
    if (idx.front() == 15) throw IOError("bad.bin: record 15: label 12 out of range [0,9]");
    Batch b;
    b.images = zeros({int64_t(idx.size()), 1, 1, 1});
    b.labels = zeros({int64_t(idx.size())}, DType::i64);
    b.indices = idx;
    return b;
  };
  DataLoader loader(40, opt, make);
  loader.start_epoch(0);
  int got = 0;
  std::string error;
  try {
    while (loader.next()) ++got;
  } catch (const IOError& e) {
    error = e.what();
  }
  CHECK(got == 3);  // batches 0, 1, 2; batch 3 starts at index 15
  CHECK(error == "bad.bin: record 15: label 12 out of range [0,9]");
  CHECK(!loader.next().has_value());  // the failed epoch is over
  loader.start_epoch(1, 4);           // a new epoch past the bad batch works
  int rest = 0;
  while (loader.next()) ++rest;
  CHECK(rest == 4);

  // Destroyed mid-epoch: with the producer blocked on a full queue, and with it busy in a slow batch. A hang
  // would leave the future unready (the detached thread is then abandoned and the check fails).
  for (int slow_ms : {0, 30}) {
    auto done = std::make_shared<std::promise<void>>();
    auto fut = done->get_future();
    std::thread([done, slow_ms] {
      LoaderOptions o;
      o.batch_size = 2;
      o.prefetch = 2;
      std::atomic<int> made{0};
      {
        DataLoader l(1000, o, [&made, slow_ms](const std::vector<int64_t>& idx, int64_t) {
          if (slow_ms) std::this_thread::sleep_for(std::chrono::milliseconds(slow_ms));
          ++made;
          Batch b;
          b.images = zeros({int64_t(idx.size()), 1, 1, 1});
          b.labels = zeros({int64_t(idx.size())}, DType::i64);
          return b;
        });
        l.start_epoch(0);
        l.next();
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      // Bounded prefetch: one consumed + at most 2 queued + 1 in progress.
      if (made.load() <= 4) done->set_value();
    }).detach();
    CHECK(fut.wait_for(std::chrono::seconds(20)) == std::future_status::ready);
  }
}

TEST_CASE("data: loader places batches on the requested device") {
  LoaderOptions bad;
  bad.device = Device::cuda(cuda_device_count());  // one past the last GPU (cuda:0 without any)
  CHECK_THROWS_AS(DataLoader(tiny_dataset(2), bad), DeviceError);
  if (!test::have_cuda()) return;
  auto ds = tiny_dataset(6);
  LoaderOptions opt;
  opt.batch_size = 4;
  opt.device = Device::cuda(0);
  DataLoader loader(ds, opt);
  loader.start_epoch(0);
  auto b = loader.next();
  REQUIRE(b.has_value());
  CHECK(b->images.device() == Device::cuda(0));
  CHECK(b->labels.device() == Device::cuda(0));
  Batch host = make_image_batch(*ds, b->indices, opt, 0);
  CHECK(b->images.to_vector<float>() == host.images.to_vector<float>());
}

// ---- synthetic shapes --------------------------------------------------------------------------------------------

TEST_CASE("data: synthetic shapes are balanced, deterministic per seed, and drawn as their class says") {
  SyntheticOptions opt;
  opt.size = 1000;
  opt.seed = 42;
  ImageDataset a = make_synthetic_shapes(opt);
  REQUIRE(a.size() == 1000);
  CHECK(a.num_classes() == 10);
  std::vector<int> count(10, 0);
  for (int64_t l : a.labels) {
    REQUIRE(l >= 0);
    REQUIRE(l < 10);
    count[size_t(l)]++;
  }
  for (int k = 0; k < 10; ++k) CHECK(count[size_t(k)] == 100);
  CHECK(make_synthetic_shapes(opt).pixels == a.pixels);
  opt.seed = 43;
  CHECK(make_synthetic_shapes(opt).pixels != a.pixels);

  // Without noise an image has exactly two colours; the shape (the minority colour: at most 20x20 of 32x32)
  // must look like its class.
  opt.noise_std = 0;
  opt.size = 200;
  ImageDataset s = make_synthetic_shapes(opt);
  int contrasted = 0;
  for (int64_t i = 0; i < s.size(); ++i) {
    const uint8_t* p = s.image(i);
    std::map<uint32_t, int> colours;
    auto rgb = [&](int y, int x) {
      return uint32_t(p[y * 32 + x]) << 16 | uint32_t(p[1024 + y * 32 + x]) << 8 | p[2048 + y * 32 + x];
    };
    for (int y = 0; y < 32; ++y)
      for (int x = 0; x < 32; ++x) colours[rgb(y, x)]++;
    REQUIRE(colours.size() == 2u);
    auto fg_it = colours.begin()->second < std::next(colours.begin())->second ? colours.begin()
                                                                               : std::next(colours.begin());
    const uint32_t fg = fg_it->first;
    const int fg_count = fg_it->second;
    // The shape stands out: L1 distance >= min_contrast (300) between the two colours, or after 9 tries the
    // fallback colour, at least 64 away in every channel. Two random colours are 300 apart with probability about
    // 1/3, so about 0.67^9 = 3% of images take the fallback.
    const uint32_t bg = (fg_it == colours.begin() ? std::next(colours.begin()) : colours.begin())->first;
    int contrast = 0;
    for (int shift : {16, 8, 0}) contrast += std::abs(int((fg >> shift) & 255u) - int((bg >> shift) & 255u));
    CHECK(contrast >= 192);
    contrasted += contrast >= opt.min_contrast;
    int y0 = 32, y1 = -1, x0 = 32, x1 = -1;
    for (int y = 0; y < 32; ++y)
      for (int x = 0; x < 32; ++x)
        if (rgb(y, x) == fg) y0 = std::min(y0, y), y1 = std::max(y1, y), x0 = std::min(x0, x), x1 = std::max(x1, x);
    const int bw = x1 - x0 + 1, bh = y1 - y0 + 1, area = bw * bh;
    CHECK(fg_count >= 20);
    auto row_uniform = [&](int y) {
      for (int x = x0; x <= x1; ++x) if (rgb(y, x) != rgb(y, x0)) return false;
      return true;
    };
    auto col_uniform = [&](int x) {
      for (int y = y0; y <= y1; ++y) if (rgb(y, x) != rgb(y0, x)) return false;
      return true;
    };
    INFO("image " << i << " class " << s.labels[size_t(i)] << " bbox " << bw << "x" << bh << " fg " << fg_count);
    switch (s.labels[size_t(i)]) {
      case 0:  // filled circle: round, fills pi/4 of its box
        CHECK(std::abs(bw - bh) <= 1);
        CHECK(fg_count < area * 0.9);
        CHECK(fg_count > area * 0.65);
        break;
      case 2:  // filled square: fills its square box
        CHECK(std::abs(bw - bh) <= 1);
        CHECK(fg_count == area);
        break;
      case 7: {  // horizontal stripes: every row of the box is one colour, both colours occur in rows
        bool all = true;
        for (int y = y0; y <= y1; ++y) all = all && row_uniform(y);
        CHECK(all);
        CHECK(fg_count < area);
        break;
      }
      case 8: {  // vertical stripes: every column of the box is one colour
        bool all = true;
        for (int x = x0; x <= x1; ++x) all = all && col_uniform(x);
        CHECK(all);
        CHECK(fg_count < area);
        break;
      }
      default:  // outlines, triangle, crosses, checker: a box they do not fill
        CHECK(fg_count < area);
    }
  }
  CHECK(opt.min_contrast == 300);
  CHECK(contrasted >= 180);  // of 200

  // The noise comes after the shape's own draws, so the noisy set has the same shapes and colours: the difference
  // from the clean set is the noise, of the requested standard deviation (pixels away from the 0/255 clamps).
  opt.noise_std = 8;
  ImageDataset noisy = make_synthetic_shapes(opt);
  double sum = 0, sum2 = 0;
  int64_t cnt = 0;
  for (size_t j = 0; j < s.pixels.size(); ++j)
    if (s.pixels[j] >= 40 && s.pixels[j] <= 215) {
      double d = double(noisy.pixels[j]) - double(s.pixels[j]);
      sum += d, sum2 += d * d, ++cnt;
    }
  REQUIRE(cnt > 100000);
  const double mean = sum / double(cnt), sd = std::sqrt(sum2 / double(cnt) - mean * mean);
  CHECK(std::fabs(mean) < 0.2);
  CHECK(sd == doctest::Approx(8.0).epsilon(0.05));  // rounding to integers adds 1/12 to the variance

  opt.size = -1;
  CHECK_THROWS_AS(make_synthetic_shapes(opt), ValueError);
}

TEST_CASE("data: png_chunk_hazard finds chunks longer than the file before stb_image allocates for them") {
  auto be32 = [](uint32_t v) {
    return std::string{char(v >> 24), char((v >> 16) & 0xFF), char((v >> 8) & 0xFF), char(v & 0xFF)};
  };
  auto chunk = [&](const std::string& type, const std::string& body, uint32_t declared) {
    return be32(declared) + type + body + be32(0);  // the CRC is stb's business
  };
  auto hazard = [](const std::string& s) {
    return png_chunk_hazard(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  };
  const std::string sig("\x89PNG\r\n\x1A\n", 8), ihdr = chunk("IHDR", std::string(13, '\0'), 13);
  CHECK(hazard("") == "");
  CHECK(hazard("\xFF\xD8\xFF") == "");
  CHECK(hazard(sig + ihdr + chunk("IDAT", "abc", 3) + chunk("IEND", "", 0)) == "");
  CHECK(hazard(sig + ihdr + chunk("IDAT", "abc", 0x7FFFFF00u) + chunk("IEND", "", 0)) ==
        "chunk IDAT declares 2147483392 bytes, 19 remain");
  CHECK(hazard(sig + chunk("IHDR", std::string(13, '\0'), 18)) == "chunk IHDR declares 18 bytes, 17 remain");
  CHECK(hazard(sig + ihdr + chunk("IEND", "", 0) + chunk("IDAT", "", 0x7FFFFF00u)) == "");  // after IEND stb stops
  CHECK(hazard(sig + ihdr + "\x00\x00") == "");  // a torn chunk header: stb rejects it without allocating
}

TEST_CASE("data: jpeg_table_hazard finds oversized and undefined Huffman tables and undefined quantization tables") {
  // Hand-made marker streams (ITU T.81 B.2): SOI, then segments; a DHT table is [class<<4|id][16 counts][values].
  auto seg = [](uint8_t marker, const std::string& body) {
    const size_t len = body.size() + 2;
    return std::string{char(0xFF), char(marker), char(len >> 8), char(len & 0xFF)} + body;
  };
  auto table = [](uint8_t class_id, std::vector<uint8_t> counts) {
    counts.resize(16, 0);
    std::string t(1, char(class_id));
    int n = 0;
    for (uint8_t c : counts) {
      t += char(c);
      n += c;
    }
    return t + std::string(size_t(n), '\x05');
  };
  auto hazard = [](const std::string& s) {
    return jpeg_table_hazard(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  };
  const std::string soi = "\xFF\xD8", eoi = "\xFF\xD9";
  const std::string fine = table(0x00, {0, 1, 5, 1, 1, 1, 1, 1, 1});  // a luminance DC table: 12 codes
  const std::string hostile = table(0x10, {255, 45});                  // 300 codes: 44 past stb's 256
  CHECK(hazard("") == "");
  CHECK(hazard("\x89PNG\r\n") == "");
  CHECK(hazard(soi + seg(0xC4, fine) + eoi) == "");
  CHECK(hazard(soi + seg(0xC4, hostile) + eoi) == "DHT table 0 declares 300 codes (at most 256)");
  CHECK(hazard(soi + seg(0xC4, fine + hostile) + eoi) == "DHT table 1 declares 300 codes (at most 256)");
  CHECK(hazard(soi + "\xFF\xFF\xFF" + seg(0xC4, hostile).substr(1)) != "");  // fill bytes before the marker
  CHECK(hazard("\xFF" + soi + seg(0xC4, hostile) + eoi) != "");               // and before SOI (stb skips them)
  CHECK(hazard("\xFF\xFF\xFF" + soi + seg(0xC4, fine) + eoi) == "");
  // Between scans (progressive JPEGs): after SOS, FF 00 is a stuffed byte and FF D3 a restart, not markers.
  const std::string scan = seg(0xDA, std::string(10, '\x01')) + "\x12\xFF\x00\x34\xFF\xD3\x56";
  CHECK(hazard(soi + scan + seg(0xC4, hostile) + eoi) != "");
  CHECK(hazard(soi + scan + seg(0xC4, fine) + eoi) == "");
  // Inside an APP1 payload (EXIF, an ICC profile) stb skips the bytes by length: not a table, not rejected.
  CHECK(hazard(soi + seg(0xE1, seg(0xC4, hostile)) + seg(0xC4, fine) + eoi) == "");
  // After EOI stb reads nothing.
  CHECK(hazard(soi + eoi + seg(0xC4, hostile)) == "");
  // Truncated inside the counts: stb reads zeros past the end, so 255 codes stay in bounds and 255 + 45 do not.
  CHECK(hazard(soi + seg(0xC4, hostile).substr(0, 6)) == "");
  CHECK(hazard(soi + seg(0xC4, hostile).substr(0, 7)) != "");

  // A scan whose tables no DHT defined (stb would decode with uninitialized memory). SOF0 of one component; an SOS
  // of one component: [1][id 1, DC << 4 | AC][Ss 0][Se 63][Ah/Al 0].
  // The frame's quantization table (a DQT of [precision << 4 | id][64 values]) comes first, as encoders write it.
  const std::string frame = std::string("\x08\x00\x10\x00\x10\x01\x01\x11\x00", 9);  // component 1: table 0
  const std::string dqt0 = seg(0xDB, std::string(1, '\x00') + std::string(64, '\x01'));
  const std::string sof0 = dqt0 + seg(0xC0, frame), sof2 = dqt0 + seg(0xC2, frame);
  auto sos = [&](uint8_t tables, uint8_t ss, uint8_t se, uint8_t ahal) {
    return seg(0xDA, std::string{'\x01', '\x01', char(tables), char(ss), char(se), char(ahal)}) + "\x12\x34";
  };
  const std::string dc0 = table(0x00, {0, 1, 5, 1}), ac0 = table(0x10, {0, 2, 1, 3}), ac1 = table(0x11, {0, 2, 1});
  CHECK(hazard(soi + sof0 + seg(0xC4, dc0 + ac0) + sos(0x00, 0, 63, 0) + eoi) == "");
  CHECK(hazard(soi + sof0 + seg(0xC4, dc0 + ac1) + sos(0x00, 0, 63, 0) + eoi) ==
        "scan uses AC Huffman table 0, which no DHT defined");
  CHECK(hazard(soi + sof0 + seg(0xC4, ac0) + sos(0x00, 0, 63, 0) + eoi) ==
        "scan uses DC Huffman table 0, which no DHT defined");
  CHECK(hazard(soi + sof0 + seg(0xC4, dc0 + ac1) + sos(0x01, 0, 63, 0) + eoi) == "");  // AC table 1 it is
  // Tables defined after the scan that needs them come too late.
  CHECK(hazard(soi + sof0 + sos(0x00, 0, 63, 0) + seg(0xC4, dc0 + ac0) + eoi) != "");
  // Progressive: a first DC scan needs its DC table only, a DC refinement none, an AC scan its AC table only.
  CHECK(hazard(soi + sof2 + seg(0xC4, dc0) + sos(0x00, 0, 0, 0x01) + eoi) == "");
  CHECK(hazard(soi + sof2 + sos(0x00, 0, 0, 0x10) + eoi) == "");
  CHECK(hazard(soi + sof2 + seg(0xC4, ac1) + sos(0x01, 1, 5, 0) + eoi) == "");
  CHECK(hazard(soi + sof2 + seg(0xC4, dc0) + sos(0x00, 1, 5, 0) + eoi) ==
        "scan uses AC Huffman table 0, which no DHT defined");

  // A component whose quantization table no DQT defined (stb would dequantize with uninitialized memory).
  const std::string no_dqt = "scan's component 1 uses quantization table 0, which no DQT defined";
  CHECK(hazard(soi + seg(0xC0, frame) + seg(0xC4, dc0 + ac0) + sos(0x00, 0, 63, 0) + eoi) == no_dqt);
  const std::string dqt1 = seg(0xDB, std::string(1, '\x01') + std::string(64, '\x01'));  // table 1 only
  CHECK(hazard(soi + dqt1 + seg(0xC0, frame) + seg(0xC4, dc0 + ac0) + sos(0x00, 0, 63, 0) + eoi) == no_dqt);
  // Table 1 (8-bit) then table 0 (16-bit values) in one DQT: both defined.
  const std::string dqt10 = seg(0xDB, std::string(1, '\x01') + std::string(64, '\x01') + std::string(1, '\x10') +
                                          std::string(128, '\x01'));
  CHECK(hazard(soi + dqt10 + seg(0xC0, frame) + seg(0xC4, dc0 + ac0) + sos(0x00, 0, 63, 0) + eoi) == "");
  CHECK(hazard(soi + seg(0xC2, frame) + seg(0xC4, dc0) + sos(0x00, 0, 0, 0x01) + eoi) == no_dqt);

  const std::string sample = kCifarDir + "/image-folder-sample/test/cat/0000.jpg";
  if (!have_file(sample)) return;
  std::vector<uint8_t> jpg = read_bytes(sample);
  CHECK(jpeg_table_hazard(jpg.data(), jpg.size()) == "");
  // The real file with its first Huffman table's 16-bit-code count raised to 255: the loader refuses it, naming it.
  size_t dht = 0;
  for (size_t i = 2; i + 1 < jpg.size(); ++i)
    if (jpg[i] == 0xFF && jpg[i + 1] == 0xC4) {
      dht = i;
      break;
    }
  REQUIRE(dht > 0);
  jpg[dht + 4 + 1 + 15] = 255;
  CHECK(contains(jpeg_table_hazard(jpg.data(), jpg.size()), "DHT table 0 declares"));
  TempDir tmp;
  fs::create_directories(tmp.path / "cat");
  write_bytes(tmp.path / "cat" / "0000.jpg", jpg);
  const std::string e = error_of<IOError>([&] { load_image_folder(tmp.path.string()); });
  CHECK(contains(e, "0000.jpg: corrupt JPEG (DHT table 0 declares"));
}
