// host_memory.cpp — host allocations for CPU tensors: 64-byte aligned, kept by the C library between steps, plus a
// few freed large blocks kept here for reuse (see kCachedBlock). Counts the bytes of live blocks for
// peak_tensor_bytes(cpu). Not a general caching allocator: glibc's heap does the reuse for everything else.
#include <malloc.h>

#include <atomic>
#include <cstdlib>
#include <deque>
#include <iterator>
#include <mutex>
#include <vector>

#include "engine/check.h"
#include "engine/device.h"
#include "engine/storage.h"

namespace ep {

namespace {

std::atomic<uint64_t> g_live{0}, g_peak{0};  // bytes, as malloc_usable_size counts them at allocation and free
std::atomic<uint64_t> g_limit{0};            // set_tensor_memory_limit, for every device

// A thread other than the main one allocates from a glibc arena whose heaps hold at most 64 MiB, so a larger block
// is a fresh mmap, unmapped again on free, whatever M_MMAP_THRESHOLD says: the loader thread's 224x224 batches
// (77 MB at batch 128) were first-touched page by page for every batch, two thirds of the batch's time. Freed blocks
// of at least kCachedBlock bytes wait here (at most kCacheBytes in all, oldest given back first) for a request of
// about their size.
constexpr size_t kCachedBlock = size_t(32) << 20;
constexpr size_t kCacheBytes = size_t(512) << 20;
std::mutex g_cache_mu;
// (usable size, block), oldest first. Never destroyed: a static tensor freed during exit still finds it, and the
// blocks it holds stay reachable (LeakSanitizer reported them as leaks once the deque itself had been destroyed).
std::deque<std::pair<size_t, void*>>& g_cache = *new std::deque<std::pair<size_t, void*>>;
size_t g_cache_bytes = 0;

void count_live(void* p) {
  const uint64_t live = g_live.fetch_add(malloc_usable_size(p), std::memory_order_relaxed) + malloc_usable_size(p);
  uint64_t peak = g_peak.load(std::memory_order_relaxed);
  while (live > peak && !g_peak.compare_exchange_weak(peak, live, std::memory_order_relaxed)) {
  }
}

// The most recently freed cached block of at least `bytes` that wastes at most an eighth of them, or null.
void* take_cached(size_t bytes) {
  std::lock_guard<std::mutex> g(g_cache_mu);
  for (auto it = g_cache.rbegin(); it != g_cache.rend(); ++it)
    if (it->first >= bytes && it->first - bytes <= bytes / 8) {
      void* p = it->second;
      g_cache_bytes -= it->first;
      g_cache.erase(std::next(it).base());
      return p;
    }
  return nullptr;
}

// Gives every kept block back to the C library.
void release_cached() {
  std::deque<std::pair<size_t, void*>> blocks;
  {
    std::lock_guard<std::mutex> g(g_cache_mu);
    blocks.swap(g_cache);
    g_cache_bytes = 0;
  }
  for (auto& [size, p] : blocks) std::free(p);
}

}  // namespace

void set_tensor_memory_limit(uint64_t bytes) { g_limit.store(bytes, std::memory_order_relaxed); }
uint64_t tensor_memory_limit() { return g_limit.load(std::memory_order_relaxed); }
uint64_t live_host_tensor_bytes() { return g_live.load(std::memory_order_relaxed); }

void* host_alloc(size_t nbytes) {
  // By default glibc serves blocks above its mmap threshold with fresh mmaps and trims freed heap tops, so each
  // training step page-faulted every activation afresh (4% of a CPU MobileNetV2 step was clear_page in the kernel).
  // Serve them from the heap and keep freed memory: steady-state steps then reuse the same pages.
  static std::once_flag once;
  std::call_once(once, [] {
    mallopt(M_MMAP_THRESHOLD, 512 * 1024 * 1024);
    mallopt(M_TRIM_THRESHOLD, 1024 * 1024 * 1024);
  });
  if (nbytes == 0) return nullptr;
  const size_t bytes = (nbytes + 63) / 64 * 64;
  const uint64_t limit = g_limit.load(std::memory_order_relaxed), live = g_live.load(std::memory_order_relaxed);
  EP_CHECK(limit == 0 || live + bytes <= limit, OutOfMemoryError, "[storage] out of memory on cpu: ", nbytes,
           " bytes requested with ", live, " in use, over the limit of ", limit, " bytes of tensors");
  void* p = bytes >= kCachedBlock ? take_cached(bytes) : nullptr;
  if (!p) p = std::aligned_alloc(64, bytes);
  if (!p) {
    release_cached();  // the blocks kept for reuse may be exactly what the system is missing
    p = std::aligned_alloc(64, bytes);
  }
  EP_CHECK(p != nullptr, OutOfMemoryError, "[storage] out of host memory allocating ", nbytes, " bytes (", live,
           " bytes of tensors in use)");
  count_live(p);
  return p;
}

void host_free(void* p) {
  if (!p) return;
  const size_t usable = malloc_usable_size(p);
  g_live.fetch_sub(usable, std::memory_order_relaxed);
  if (usable >= kCachedBlock && usable <= kCacheBytes) {
    std::vector<void*> evicted;
    {
      std::lock_guard<std::mutex> g(g_cache_mu);
      g_cache.emplace_back(usable, p);
      g_cache_bytes += usable;
      while (g_cache_bytes > kCacheBytes) {
        g_cache_bytes -= g_cache.front().first;
        evicted.push_back(g_cache.front().second);
        g_cache.pop_front();
      }
    }
    for (void* q : evicted) std::free(q);
    return;
  }
  std::free(p);
}

uint64_t peak_host_tensor_bytes() { return g_peak.load(std::memory_order_relaxed); }
void reset_peak_host_tensor_bytes() { g_peak.store(g_live.load(std::memory_order_relaxed), std::memory_order_relaxed); }

}  // namespace ep
