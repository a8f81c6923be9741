// loader.cpp — shuffle, batch assembly and the prefetch thread (one producer, one consumer, a bounded deque).
// Not lock-free: one lock per batch is nothing next to assembling it. Device copies happen on the consumer's thread,
// so they run on the consumer's current stream, ordered with its compute.
#include "data/loader.h"

#include "engine/check.h"
#include "engine/philox.h"

namespace ep::data {

namespace {
constexpr uint32_t kShuffleDomain = 0x53485546u;  // "SHUF": apart from augmentation and synthetic draws

void check_options(const LoaderOptions& opt) {
  EP_CHECK(opt.batch_size >= 1, ValueError, "[loader] batch_size must be >= 1, got ", opt.batch_size);
  EP_CHECK(opt.prefetch >= 1, ValueError, "[loader] prefetch must be >= 1, got ", opt.prefetch);
  EP_CHECK(opt.threads >= 1, ValueError, "[loader] threads must be >= 1, got ", opt.threads);
  EP_CHECK(opt.augment.pad >= 0, ValueError, "[loader] negative padding ", opt.augment.pad);
  EP_CHECK(opt.augment.resize >= 0 && opt.augment.resize <= 4096, ValueError, "[loader] resize ", opt.augment.resize,
           " outside [0, 4096]");
  for (int c = 0; c < 3; ++c)
    EP_CHECK(opt.augment.norm.std[size_t(c)] > 0, ValueError, "[loader] std of channel ", c, " must be > 0");
  // Here rather than at the first batch: a CPU-only build asked for cuda:0 fails before any work.
  EP_CHECK(opt.device.is_cpu() || (opt.device.index >= 0 && opt.device.index < cuda_device_count()), DeviceError,
           "[loader] device ", opt.device.str(), " is not available (", cuda_device_count(), " GPU(s))");
}
}  // namespace

std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int64_t epoch, bool shuffle) {
  EP_CHECK(n >= 0, ValueError, "[loader] negative data set size ", n);
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[size_t(i)] = i;
  if (!shuffle) return order;
  const uint64_t e = uint64_t(epoch);
  for (int64_t i = n - 1; i > 0; --i) {
    Philox4 r = philox4x32_10(Philox4{{uint32_t(i), uint32_t(uint64_t(i) >> 32), uint32_t(e),
                                       uint32_t(e >> 32) ^ kShuffleDomain}},
                              uint32_t(seed), uint32_t(seed >> 32));
    // 64 random bits modulo i+1: the bias is below 2^-30 for any realistic n.
    uint64_t bits = (uint64_t(r.v[0]) << 32) | r.v[1];
    std::swap(order[size_t(i)], order[size_t(bits % uint64_t(i + 1))]);
  }
  return order;
}

Batch make_image_batch(const ImageDataset& data, const std::vector<int64_t>& indices, const LoaderOptions& opt,
                       int64_t epoch) {
  const int64_t b = int64_t(indices.size()), c = data.channels, h = data.height, w = data.width;
  EP_CHECK(c >= 1 && c <= 3, ValueError, "[loader] images with ", c, " channels (1..3 supported)");
  for (int64_t idx : indices)
    EP_CHECK(idx >= 0 && idx < data.size(), ValueError, "[loader] index ", idx, " outside the data set of ",
             data.size());
  Batch out;
  const int64_t oh = augmented_size(opt.augment, int(h)), ow = augmented_size(opt.augment, int(w));
  out.images = empty({b, c, oh, ow}, DType::f32);
  out.labels = empty({b}, DType::i64);
  out.indices = indices;
  out.epoch = epoch;
  float* img = out.images.data<float>();
  int64_t* lab = out.labels.data<int64_t>();
  const int64_t per = c * oh * ow;
  std::exception_ptr error;  // nothing may leave an OpenMP region by exception
#pragma omp parallel for schedule(static) num_threads(opt.threads) if (opt.threads > 1 && b > 1)
  for (int64_t i = 0; i < b; ++i) {
    try {
      const int64_t idx = indices[size_t(i)];
      lab[i] = data.labels[size_t(idx)];
      augment_image(data.image(idx), int(c), int(h), int(w), opt.augment, opt.train, opt.seed, uint64_t(epoch),
                    uint64_t(idx), img + i * per);
    } catch (...) {
#pragma omp critical(ep_loader_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
  return out;
}

DataLoader::DataLoader(std::shared_ptr<const ImageDataset> data, LoaderOptions opt)
    : size_(data ? data->size() : 0), opt_(std::move(opt)) {
  EP_CHECK(data != nullptr, ValueError, "[loader] no data set");
  check_options(opt_);
  LoaderOptions o = opt_;
  make_ = [data, o](const std::vector<int64_t>& idx, int64_t epoch) { return make_image_batch(*data, idx, o, epoch); };
}

DataLoader::DataLoader(int64_t size, LoaderOptions opt, BatchFn make)
    : size_(size), opt_(std::move(opt)), make_(std::move(make)) {
  EP_CHECK(size >= 0, ValueError, "[loader] negative data set size ", size);
  EP_CHECK(make_ != nullptr, ValueError, "[loader] no batch function");
  check_options(opt_);
}

DataLoader::~DataLoader() { stop_thread(); }

int64_t DataLoader::batches_per_epoch() const {
  return opt_.drop_last ? size_ / opt_.batch_size : (size_ + opt_.batch_size - 1) / opt_.batch_size;
}

void DataLoader::stop_thread() {
  {
    std::lock_guard<std::mutex> lk(mutex_);
    stop_ = true;
  }
  not_full_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::lock_guard<std::mutex> lk(mutex_);
  queue_.clear();
  running_ = false;
}

void DataLoader::start_epoch(int64_t epoch, int64_t first_batch) {
  EP_CHECK(epoch >= 0, ValueError, "[loader] negative epoch ", epoch);
  EP_CHECK(first_batch >= 0 && first_batch <= batches_per_epoch(), ValueError, "[loader] first batch ", first_batch,
           " outside [0,", batches_per_epoch(), "]");
  stop_thread();
  {
    std::lock_guard<std::mutex> lk(mutex_);
    stop_ = false;
    running_ = true;
  }
  thread_ = std::thread([this, epoch, first_batch] { produce(epoch, first_batch); });
}

void DataLoader::produce(int64_t epoch, int64_t first_batch) {
  // Pushes an item once there is room (errors and the end marker too: the consumer must see them in order).
  auto push = [this](Item item) {
    std::unique_lock<std::mutex> lk(mutex_);
    not_full_.wait(lk, [this] { return stop_ || int64_t(queue_.size()) < opt_.prefetch; });
    if (stop_) return false;
    queue_.push_back(std::move(item));
    lk.unlock();
    not_empty_.notify_one();
    return true;
  };
  std::exception_ptr failure;
  try {
    const std::vector<int64_t> order = epoch_order(size_, opt_.seed, epoch, opt_.shuffle);
    const int64_t nb = batches_per_epoch();
    for (int64_t b = first_batch; b < nb; ++b) {
      {
        std::lock_guard<std::mutex> lk(mutex_);
        if (stop_) return;
      }
      const int64_t lo = b * opt_.batch_size, hi = std::min(size_, lo + opt_.batch_size);
      std::vector<int64_t> idx(order.begin() + lo, order.begin() + hi);
      Batch batch = make_(idx, epoch);
      batch.epoch = epoch;
      batch.batch = b;
      if (!push(Item{std::move(batch), nullptr})) return;
    }
    push(Item{});
  } catch (...) {
    failure = std::current_exception();
  }
  // Handed over once the handler has ended, so this thread no longer holds the exception when the consumer rethrows
  // it: its last reference, and so its destructor, are the consumer's. (Otherwise the two references are released in
  // uninstrumented libstdc++, and ThreadSanitizer saw the destructor here race the consumer's what().)
  if (failure) push(Item{std::nullopt, std::move(failure)});
}

std::optional<Batch> DataLoader::next() {
  Item item;
  {
    std::unique_lock<std::mutex> lk(mutex_);
    EP_CHECK(thread_.joinable(), Error, "[loader] next() before start_epoch()");
    if (!running_) return std::nullopt;
    not_empty_.wait(lk, [this] { return !queue_.empty(); });
    item = std::move(queue_.front());
    queue_.pop_front();
    if (!item.batch) running_ = false;  // end of epoch or failure: later calls return nullopt
  }
  not_full_.notify_one();
  if (item.error) std::rethrow_exception(item.error);
  if (!item.batch) return std::nullopt;
  Batch b = std::move(*item.batch);
  if (!(opt_.device == b.images.device())) {
    b.images = b.images.to(opt_.device);
    b.labels = b.labels.to(opt_.device);
  }
  return b;
}

}  // namespace ep::data
