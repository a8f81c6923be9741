// image_folder.cpp — directory walk, header checks with stbi_info, threaded decoding into one CHW buffer.
// Not lenient: any bad file fails the load with its name. stb_image is compiled here only, static, JPEG and PNG only.
#include "data/image_folder.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <fstream>
#include <system_error>
#include <thread>

#include "data/jpeg_guard.h"
#include "data/png_guard.h"
#include "engine/check.h"

// Static functions so another file that includes stb_image (say, an image writer's tests) cannot clash at link
// time; only the two formats we read, which keeps the attack surface to them (reliability.md §3).
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_JPEG
#define STBI_ONLY_PNG
#define STBI_NO_STDIO
#define STBI_MAX_DIMENSIONS (1 << 16)
// stb's internal consistency checks are assert() by default: a hostile file that got past the guards would abort the
// whole run. As an exception the file is reported like any other corrupt image (what stb had allocated for that image
// leaks: a few KiB per such file, against losing the run).
namespace ep::data {
struct StbCheckFailed : std::runtime_error { using std::runtime_error::runtime_error; };
[[noreturn]] inline void stb_check_failed(const char* what) { throw StbCheckFailed(what); }
// stb copies zero bytes from or to a null buffer (a PNG's empty first IDAT chunk), undefined for memcpy even with
// size 0 (UBSan, found by libFuzzer). <cstring> is included above, so stb's own #include <string.h> is a no-op and
// its memcpy calls come here.
inline void* stb_memcpy(void* dst, const void* src, size_t n) { return n ? std::memcpy(dst, src, n) : dst; }
}  // namespace ep::data
#define STBI_ASSERT(x) ((x) ? (void)0 : ep::data::stb_check_failed(#x))
#define memcpy ep::data::stb_memcpy
// stb 2.27 keeps decoding a JPEG scan whose entropy-coded data end early (a marker where bits were due): its bit
// count goes negative, and the next refill shifts by more than 31 bits (undefined; UBSan, found by libFuzzer). stb
// 2.28 fixed it by reading zeros once the bits run out. The same here, without touching stb's text: its refill
// function is renamed where it is defined, and every call to it goes through ep_stb_grow_checked (below), which
// drops a negative count to zero first. The macros tell the definition (parameter `stbi__jpeg *j`) from the calls
// (argument j or z) by the first token; another stb whose refill looks different fails to compile here.
#define EP_STB_KIND_stbi__jpeg DEFINE,
#define EP_STB_KIND_j CALL, j
#define EP_STB_KIND_z CALL, z
#define EP_STB_APPLY(kind, ...) EP_STB_##kind(__VA_ARGS__)
#define EP_STB_EXPAND(...) EP_STB_APPLY(__VA_ARGS__)
#define EP_STB_DEFINE(...) \
  ep_stb_grow_checked(stbi__jpeg __VA_ARGS__); static void ep_stb_grow_raw(stbi__jpeg __VA_ARGS__)
#define EP_STB_CALL(x) ep_stb_grow_checked(x)
#define stbi__grow_buffer_unsafe(...) EP_STB_EXPAND(EP_STB_KIND_##__VA_ARGS__)
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#endif
#include <stb/stb_image.h>
#undef memcpy
#undef stbi__grow_buffer_unsafe
static void ep_stb_grow_checked(stbi__jpeg* j) {
  if (j->code_bits < 0) {  // bits were taken that the scan did not have: continue from zeros, as stb 2.28 does
    j->code_bits = 0;
    j->code_buffer = 0;
  }
  ep_stb_grow_raw(j);
}
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace ep::data {

namespace fs = std::filesystem;

namespace {

// Runs one stb call; a failed internal check of stb's (STBI_ASSERT above) becomes the file's IOError.
template <class F>
auto stb_call(const std::string& path, F&& call) {
  try {
    return call();
  } catch (const StbCheckFailed& e) {
    EP_THROW(IOError, path, ": corrupt image (stb_image's check failed: ", e.what(), ")");
  }
}

bool is_image_name(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png";
}

struct Item {
  std::string path;
  int64_t label;
};

// Reads, checks and decodes one file into `out` (CHW). Throws IOError naming the file.
void decode_one(const std::string& path, const ImageFolderOptions& opt, uint8_t* out) {
  std::error_code ec;
  uintmax_t size = fs::file_size(path, ec);
  EP_CHECK(!ec, IOError, path, ": cannot read its size (", ec.message(), ")");
  EP_CHECK(size > 0, IOError, path, ": empty file");
  EP_CHECK(size <= uintmax_t(opt.max_file_bytes), IOError, path, ": file of ", size, " bytes exceeds the limit of ",
           opt.max_file_bytes);
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  {
    std::ifstream in(path, std::ios::binary);
    EP_CHECK(in.good(), IOError, path, ": cannot open");
    in.read(reinterpret_cast<char*>(bytes.data()), std::streamsize(size));
    EP_CHECK(in.gcount() == std::streamsize(size), IOError, path, ": unexpected end of file");
  }
  // Before stb sees any byte (stbi_info reads the tables in front of the frame header too).
  const std::string hazard = jpeg_table_hazard(bytes.data(), bytes.size());
  EP_CHECK(hazard.empty(), IOError, path, ": corrupt JPEG (", hazard, ")");
  const std::string png_hazard = png_chunk_hazard(bytes.data(), bytes.size());
  EP_CHECK(png_hazard.empty(), IOError, path, ": corrupt PNG (", png_hazard, ")");
  int w = 0, h = 0, comp = 0;
  // The header only: dimensions are checked before stb allocates the decoded pixels.
  const bool readable =
      stb_call(path, [&] { return stbi_info_from_memory(bytes.data(), int(bytes.size()), &w, &h, &comp) != 0; });
  EP_CHECK(readable, IOError, path, ": not a readable JPEG or PNG (", stbi_failure_reason(), ")");
  EP_CHECK(w > 0 && h > 0 && w <= opt.max_dimension && h <= opt.max_dimension, IOError, path, ": image of ", w, "x",
           h, " exceeds the dimension limit of ", opt.max_dimension);
  EP_CHECK(int64_t(w) * int64_t(h) <= opt.max_pixels, IOError, path, ": image of ", w, "x", h, " = ",
           int64_t(w) * int64_t(h), " pixels exceeds the pixel budget of ", opt.max_pixels);
  EP_CHECK(w == opt.width && h == opt.height, IOError, path, ": image is ", w, "x", h, ", expected ", opt.width, "x",
           opt.height, " (no resize)");
  int dw = 0, dh = 0, dc = 0;
  // req_comp = 3: grey and RGBA become RGB, so every image has the same layout.
  uint8_t* px =
      stb_call(path, [&] { return stbi_load_from_memory(bytes.data(), int(bytes.size()), &dw, &dh, &dc, 3); });
  EP_CHECK(px != nullptr, IOError, path, ": corrupt image (", stbi_failure_reason(), ")");
  if (dw != w || dh != h) {
    stbi_image_free(px);
    EP_THROW(IOError, path, ": decoded ", dw, "x", dh, " but the header said ", w, "x", h);
  }
  const int64_t plane = int64_t(w) * h;
  for (int64_t i = 0; i < plane; ++i)
    for (int c = 0; c < 3; ++c) out[c * plane + i] = px[i * 3 + c];  // HWC -> CHW
  stbi_image_free(px);
}

}  // namespace

ImageDataset load_image_folder(const std::string& root, const ImageFolderOptions& opt) {
  std::error_code ec;
  EP_CHECK(fs::is_directory(root, ec), IOError, root, ": no such directory");
  EP_CHECK(opt.height > 0 && opt.width > 0, ValueError, "[image_folder] bad image size ", opt.width, "x",
           opt.height);
  // stb takes the encoded length as an int.
  EP_CHECK(opt.max_file_bytes > 0 && opt.max_file_bytes <= INT32_MAX, ValueError, "[image_folder] max_file_bytes ",
           opt.max_file_bytes, " outside [1, 2^31-1]");

  ImageDataset ds;
  ds.channels = 3;
  ds.height = opt.height;
  ds.width = opt.width;
  std::vector<fs::path> class_dirs;
  // Hidden entries (".git", ".ipynb_checkpoints", "._x.jpg" from macOS archives) are never classes or images.
  auto hidden = [](const fs::path& p) { return p.filename().string().starts_with("."); };
  std::error_code entry_ec;  // per entry: a broken link is skipped, not a failure to list the folder
  for (const auto& e : fs::directory_iterator(root, ec))
    if (e.is_directory(entry_ec) && !hidden(e.path())) class_dirs.push_back(e.path());
  EP_CHECK(!ec, IOError, root, ": cannot list (", ec.message(), ")");
  EP_CHECK(!class_dirs.empty(), IOError, root, ": no class folders (expected root/<class>/*.jpg|png)");
  std::sort(class_dirs.begin(), class_dirs.end());

  std::vector<Item> items;
  for (const auto& dir : class_dirs) {
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(dir, ec))
      if (e.is_regular_file(entry_ec) && !hidden(e.path()) && is_image_name(e.path()))
        files.push_back(e.path().string());
    EP_CHECK(!ec, IOError, dir.string(), ": cannot list (", ec.message(), ")");
    EP_CHECK(!files.empty(), IOError, dir.string(), ": empty class folder (no .jpg, .jpeg or .png files)");
    std::sort(files.begin(), files.end());
    int64_t label = int64_t(ds.class_names.size());
    ds.class_names.push_back(dir.filename().string());
    for (auto& f : files) items.push_back({std::move(f), label});
    EP_CHECK(int64_t(items.size()) <= opt.max_images, IOError, root, ": more than ", opt.max_images, " images");
  }

  const int64_t n = int64_t(items.size());
  ds.labels.resize(size_t(n));
  ds.pixels.resize(size_t(n) * size_t(ds.image_bytes()));
  for (int64_t i = 0; i < n; ++i) ds.labels[size_t(i)] = items[size_t(i)].label;

  int threads = opt.threads > 0 ? opt.threads : int(std::min(16u, std::max(1u, std::thread::hardware_concurrency())));
  threads = int(std::min<int64_t>(threads, n));
  // Files are claimed one at a time from a shared counter. The first failure stops the others early, so a large bad
  // folder fails fast; of the failures seen, the one earliest in sorted order is reported.
  std::atomic<int64_t> next{0};
  std::vector<std::exception_ptr> errors(static_cast<size_t>(n));
  std::atomic<bool> failed{false};
  auto work = [&] {
    for (int64_t i; !failed.load(std::memory_order_relaxed) && (i = next.fetch_add(1)) < n;) {
      try {
        decode_one(items[size_t(i)].path, opt, ds.image(i));
      } catch (...) {
        errors[size_t(i)] = std::current_exception();
        failed = true;
      }
    }
  };
  std::vector<std::thread> pool;
  try {
    for (int t = 1; t < threads; ++t) pool.emplace_back(work);
  } catch (const std::system_error&) {
    // No more threads to be had: the ones started and this one share the work.
  }
  work();
  for (auto& t : pool) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
  return ds;
}

}  // namespace ep::data
