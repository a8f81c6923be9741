// loader.h — the batcher: a per-(seed, epoch) Philox shuffle, f32 NCHW images + i64 labels per batch, prepared ahead
// on one background thread through a bounded queue, optionally placed on a Device. Not a multi-process loader and
// not a sampler zoo: one order per epoch, every example exactly once (the last batch may be short unless drop_last).
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "data/augment.h"
#include "data/dataset.h"
#include "engine/tensor.h"

namespace ep::data {

struct Batch {
  Tensor images;                 // f32 [B, C, H, W]
  Tensor labels;                 // i64 [B]
  std::vector<int64_t> indices;  // the data set index of each row, in batch order
  int64_t epoch = 0, batch = 0;  // batch `batch` of epoch `epoch`
};

struct LoaderOptions {
  int64_t batch_size = 128;
  bool shuffle = true;
  bool drop_last = false;
  bool train = true;       // crop/flip as `augment` says; false = normalization only (evaluation)
  AugmentOptions augment;
  uint64_t seed = 0;
  int prefetch = 2;        // batches prepared ahead of the consumer (the queue's capacity), >= 1
  int threads = 1;         // threads assembling one batch; results do not depend on it
  Device device = Device::cpu();
};

// The visiting order of epoch `epoch`: a Fisher-Yates shuffle drawn from Philox keyed by (seed, epoch), or 0..n-1.
std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int64_t epoch, bool shuffle);

// One host batch of `indices` from `data`: augmented (train) or only normalized images, and their labels.
// Synchronous; the loader calls it on its thread. Image i's randomness depends on (seed, epoch, index) only.
Batch make_image_batch(const ImageDataset& data, const std::vector<int64_t>& indices, const LoaderOptions& opt,
                       int64_t epoch);

// Builds the batch for `indices` of epoch `epoch` (any source: tests inject slow or failing ones).
using BatchFn = std::function<Batch(const std::vector<int64_t>& indices, int64_t epoch)>;

// One consumer thread calls start_epoch/next (the training loop); the loader owns one producer thread.
class DataLoader {
 public:
  DataLoader(std::shared_ptr<const ImageDataset> data, LoaderOptions opt);
  DataLoader(int64_t size, LoaderOptions opt, BatchFn make);
  ~DataLoader();  // stops and joins the thread, also mid-epoch
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  // Starts producing epoch `epoch` from batch `first_batch` on (a resumed run's data cursor); a running epoch is
  // abandoned first.
  void start_epoch(int64_t epoch, int64_t first_batch = 0);
  // The next batch of the current epoch (on opt.device), or nullopt at its end. An exception raised while the batch
  // was prepared is rethrown here, after which the epoch is over.
  std::optional<Batch> next();

  int64_t size() const { return size_; }
  int64_t batches_per_epoch() const;
  const LoaderOptions& options() const { return opt_; }

 private:
  struct Item {
    std::optional<Batch> batch;
    std::exception_ptr error;  // set: the producer failed; neither set: end of the epoch
  };
  void produce(int64_t epoch, int64_t first_batch);
  void stop_thread();

  int64_t size_;
  LoaderOptions opt_;
  BatchFn make_;
  std::mutex mutex_;
  std::condition_variable not_full_, not_empty_;
  std::deque<Item> queue_;
  bool stop_ = false;
  bool running_ = false;  // an epoch was started and its end has not been consumed
  std::thread thread_;
};

}  // namespace ep::data
