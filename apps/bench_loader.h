// bench_loader.h — `bench loader`: the CIFAR DataLoader's own ceiling (batches drawn back to back from next() by an
// infinitely fast consumer) in images/s and ms per batch, next to the measured H200 MobileNetV2 training step.
// Not a trainer benchmark: host side only, no device copy and no model; data loading/decoding is timed once apart.
#pragma once
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "apps/bench_timing.h"
#include "data/cifar10.h"
#include "data/dataset.h"
#include "data/image_folder.h"
#include "data/loader.h"
#include "data/synthetic.h"
#include "engine/check.h"

namespace ep::bench_loader_detail {

using Clock = std::chrono::steady_clock;

// The GPU step the prefetch thread must hide behind: `bench model mobilenetv2` (MobileNetV2-cifar width 1.0, f32,
// SGD step) on one H200, apps/bench/RESULTS.md, run of 2026-11-26 21:10. Quoted, not measured here; 0 = no figure.
inline double h200_step_ms(int64_t batch) { return batch == 128 ? 21.26 : batch == 256 ? 37.31 : 0.0; }

// Where the trainer's data comes from (`make data` unpacks the JPEG folder; tests find the binary records in
// ../shared/data), relative to the repository root the apps run from.
inline constexpr const char* kJpegTrain = "data/cifar10-jpeg/train";
inline constexpr const char* kBinaryRecords = "../shared/data/cifar10/data_batch_1.first1000.bin";

struct BenchData {
  std::shared_ptr<const data::ImageDataset> set;
  std::string what;  // one line for the header: which data, how many images
  double load_s = 0;
};

inline BenchData synthetic_data(int64_t size) {
  data::SyntheticOptions so;
  so.size = size;
  const auto t0 = Clock::now();
  auto set = std::make_shared<const data::ImageDataset>(data::make_synthetic_shapes(so));
  return {set, "synthetic shapes (data/synthetic.h; no real CIFAR-10 found)",
          std::chrono::duration<double>(Clock::now() - t0).count()};
}

// `spec`: "auto" = the JPEG training folder, else the binary records, else synthetic shapes (quick: the records or a
// small synthetic set, never the 50,000-file folder); "synthetic"; or a path: a CIFAR-10 binary directory
// (data_batch_1.bin ...), an image folder root/<class>/*.jpg, or one binary record file.
inline BenchData load_bench_data(const std::string& spec, bool quick) {
  namespace fs = std::filesystem;
  const int64_t synthetic_size = quick ? 512 : 10000;
  if (spec == "synthetic") {
    BenchData d = synthetic_data(synthetic_size);
    d.what = "synthetic shapes (data/synthetic.h, --data synthetic)";
    return d;
  }
  std::string path = spec;
  if (spec == "auto") {
    if (!quick && fs::is_directory(kJpegTrain)) path = kJpegTrain;
    else if (fs::is_regular_file(kBinaryRecords)) path = kBinaryRecords;
    else return synthetic_data(synthetic_size);
  }
  const auto t0 = Clock::now();
  data::ImageDataset set;
  std::string what;
  if (fs::is_directory(path) && fs::exists(fs::path(path) / "data_batch_1.bin")) {
    set = data::load_cifar10_dir(path, /*train=*/true);
    what = "CIFAR-10 binary records " + path + "/data_batch_*.bin";
  } else if (fs::is_directory(path)) {
    set = data::load_image_folder(path);
    what = "CIFAR-10 image folder " + path + " (JPEG, decoded by stb_image)";
  } else if (fs::is_regular_file(path)) {
    set = data::load_cifar10_files({path});
    what = "CIFAR-10 binary records " + path;
  } else {
    EP_THROW(IOError, "[bench loader] --data ", path, ": no such file or directory");
  }
  EP_CHECK(set.size() > 0, IOError, "[bench loader] --data ", path, ": no images");
  const double load_s = std::chrono::duration<double>(Clock::now() - t0).count();
  return {std::make_shared<const data::ImageDataset>(std::move(set)), what, load_s};
}

struct LoaderFigures {
  int64_t batches = 0, images = 0;
  double total_ms = 0;   // wall time of the timed draws, epoch restarts included
  double median_ms = 0;  // median time of one next() (the short last batch of an epoch included)
  double ms_per_full_batch(int64_t batch) const { return images > 0 ? total_ms * double(batch) / double(images) : 0; }
  double images_per_s() const { return total_ms > 0 ? 1000.0 * double(images) / total_ms : 0; }
};

// Draws batches back to back, starting the next epoch whenever one ends, after `warmup` untimed draws (thread start,
// cold caches). Stops after max_epochs epochs' worth of batches or once budget_s has passed, whichever comes first,
// but not before min_batches.
inline LoaderFigures time_loader(const std::shared_ptr<const data::ImageDataset>& set, const data::LoaderOptions& opt,
                                 double budget_s, int64_t max_epochs, int64_t min_batches = 3, int warmup = 2) {
  EP_CHECK(set && set->size() > 0, ValueError, "[bench loader] empty data set");
  data::DataLoader loader(set, opt);
  int64_t epoch = 0;
  loader.start_epoch(epoch);
  auto draw = [&]() -> data::Batch {
    std::optional<data::Batch> b = loader.next();
    if (!b) {
      loader.start_epoch(++epoch);
      b = loader.next();
    }
    return std::move(*b);
  };
  for (int i = 0; i < warmup; ++i) (void)draw();
  const int64_t max_batches = std::max(min_batches, max_epochs * loader.batches_per_epoch());
  LoaderFigures f;
  std::vector<double> each;
  const auto start = Clock::now();
  auto last = start;
  while (f.batches < max_batches) {
    const data::Batch b = draw();
    const auto now = Clock::now();
    each.push_back(std::chrono::duration<double, std::milli>(now - last).count());
    last = now;
    f.batches++;
    f.images += b.labels.numel();
    if (f.batches >= min_batches && std::chrono::duration<double>(now - start).count() >= budget_s) break;
  }
  f.total_ms = std::chrono::duration<double, std::milli>(last - start).count();
  f.median_ms = bench::median_of(each);
  return f;
}

// The augmentation arithmetic alone for one batch of `batch` training images on one thread, written into a buffer
// reused across calls (median ms): next to the threads=1 rows it shows what the batch tensor and the queue add.
inline double augment_only_ms(const data::ImageDataset& set, int64_t batch, int resize, int reps) {
  data::AugmentOptions ao;
  ao.resize = resize;
  const int c = int(set.channels), h = int(set.height), w = int(set.width);
  const int64_t per = int64_t(c) * data::augmented_size(ao, h) * data::augmented_size(ao, w);
  std::vector<float> out(size_t(batch * per));
  return bench::median_ms(Device::cpu(), [&] {
    for (int64_t i = 0; i < batch; ++i)
      data::augment_image(set.image(i % set.size()), c, h, w, ao, /*train=*/true, /*seed=*/1, /*epoch=*/0,
                          uint64_t(i), out.data() + i * per);
  }, reps, 1);
}

struct LoaderRow {
  bool train = true;
  int64_t batch = 128;
  int resize = 0;
  int threads = 1;
};

inline void print_row(const LoaderRow& r, const LoaderFigures& f) {
  const double gpu = h200_step_ms(r.batch), ms = f.ms_per_full_batch(r.batch);
  char ratio[32] = "-";
  // * eval: the GPU does a forward only there (not measured), so the true ratio is higher; + 224: the step at 224x224
  // (not measured) is far longer than the 32x32 one, so the true ratio is lower.
  if (gpu > 0) std::snprintf(ratio, sizeof ratio, "%.3f%s", ms / gpu, !r.train ? " *" : r.resize > 0 ? " +" : "");
  char resize[16] = "-";
  if (r.resize > 0) std::snprintf(resize, sizeof resize, "%d", r.resize);
  std::printf("  %-6s %6ld %7s %8d %8ld %10.3f %10.3f %11.0f %12s\n", r.train ? "train" : "eval", long(r.batch), resize,
              r.threads, long(f.batches), ms, f.median_ms, f.images_per_s(), ratio);
  std::fflush(stdout);
}

}  // namespace ep::bench_loader_detail

namespace ep {

// The whole table. quick: the binary records or a small synthetic set, a few batches per row (the test's smoke run).
inline void bench_loader(const std::string& data_spec = "auto", bool quick = false) {
  using namespace bench_loader_detail;
  const BenchData d = load_bench_data(data_spec, quick);
  const int all = std::max(1, int(std::thread::hardware_concurrency()));
  std::printf("\n[loader] DataLoader throughput, host side only: batches drawn back to back from next() with nothing "
              "else running (the loader's own ceiling; no device copy, no model)\n");
  std::printf("  data: %s; %ld images %ldx%ldx%ld, loaded in %.2f s (once, before training; not part of the figures)\n",
              d.what.c_str(), long(d.set->size()), long(d.set->channels), long(d.set->height), long(d.set->width),
              d.load_s);
  std::printf("  host: %d hardware threads; 'threads' = LoaderOptions.threads (OpenMP, inside the one prefetch "
              "thread); prefetch 2; train = random crop (pad 4) + flip + normalize, eval = normalize only\n", all);
  std::printf("  GPU step: MobileNetV2-cifar width 1.0 f32 SGD training step on one H200, quoted from "
              "apps/bench/RESULTS.md (2026-11-26 21:10): batch 128 %.2f ms, batch 256 %.2f ms\n",
              h200_step_ms(128), h200_step_ms(256));
  std::printf("  vs GPU step = loader ms per batch / GPU step ms: below 1 the prefetch thread keeps up (it runs "
              "concurrently with the step)\n");
  std::printf("  %-6s %6s %7s %8s %8s %10s %10s %11s %12s\n", "mode", "batch", "resize", "threads", "batches",
              "ms/batch", "median ms", "images/s", "vs GPU step");
  std::vector<LoaderRow> rows;
  const std::vector<int> thread_counts = all > 1 ? std::vector<int>{1, all} : std::vector<int>{1};
  for (bool train : {true, false})
    for (int64_t batch : {int64_t(128), int64_t(256)})
      for (int threads : thread_counts) rows.push_back({train, batch, 0, threads});
  for (int threads : thread_counts) rows.push_back({true, 128, 224, threads});
  for (const LoaderRow& r : rows) {
    data::LoaderOptions o;
    o.batch_size = r.batch;
    o.train = r.train;
    o.threads = r.threads;
    o.augment.resize = r.resize;
    o.seed = 1;
    // Two epochs' worth when that fits the budget; 224x224 rows (49x the pixels) get a longer one and stop early.
    const double budget_s = quick ? 0.02 : r.resize > 0 ? 4.0 : 2.5;
    print_row(r, time_loader(d.set, o, budget_s, /*max_epochs=*/2, /*min_batches=*/quick ? 2 : 5,
                             /*warmup=*/quick ? 1 : 2));
  }
  for (int resize : {0, 224}) {
    const int reps = quick ? 1 : resize > 0 ? 5 : 50;
    std::printf("  augment_image alone, batch 128%s, 1 thread, into a reused buffer: %.3f ms (the rest of a threads=1 "
                "row is the batch tensor's allocation, the labels and the queue)\n", resize > 0 ? ", resize 224" : "",
                augment_only_ms(*d.set, 128, resize, reps));
  }
  std::printf("  * eval: compared with the training step; the GPU's eval step (forward only) is shorter and not "
              "measured, so the true ratio is higher\n");
  std::printf("  + resize 224: compared with the 32x32 training step; the step at 224x224 is not measured and is far "
              "longer, so the true ratio is lower\n");
}

// `bench loader [--quick] [--data auto|synthetic|PATH] [--device X]`: runs once, on the host, whatever --device says.
// Returns the exit status: 0, 1 on an error, 2 on a usage error.
inline int bench_loader_main(int argc, char** argv) {
  bool quick = false;
  std::string data_spec = "auto";
  for (int i = 2; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) quick = true;
    else if (std::strcmp(argv[i], "--data") == 0 && i + 1 < argc) data_spec = argv[++i];
    else if (std::strcmp(argv[i], "--device") == 0 && i + 1 < argc) ++i;  // host-side only: accepted and ignored
    else {
      std::fprintf(stderr, "bench: loader: unknown argument '%s' (expected --quick, --data auto|synthetic|PATH)\n",
                   argv[i]);
      return 2;
    }
  }
  try {
    bench_loader(data_spec, quick);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench: %s\n", e.what());
    return 1;
  }
  return 0;
}

}  // namespace ep
