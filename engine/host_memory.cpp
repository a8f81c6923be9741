// host_memory.cpp — host allocations for CPU tensors: 64-byte aligned, kept by the C library between steps.
// Not a caching allocator: glibc's heap does the reuse once it is told not to hand large blocks back to the kernel.
// Counts the bytes of live blocks for peak_tensor_bytes(cpu).
#include <malloc.h>

#include <atomic>
#include <cstdlib>
#include <mutex>

#include "engine/check.h"
#include "engine/storage.h"

namespace ep {

namespace {
std::atomic<uint64_t> g_live{0}, g_peak{0};  // bytes, as malloc_usable_size counts them at allocation and free
}

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
  void* p = std::aligned_alloc(64, (nbytes + 63) / 64 * 64);
  EP_CHECK(p != nullptr, Error, "[storage] out of host memory allocating ", nbytes, " bytes");
  const uint64_t live = g_live.fetch_add(malloc_usable_size(p), std::memory_order_relaxed) + malloc_usable_size(p);
  uint64_t peak = g_peak.load(std::memory_order_relaxed);
  while (live > peak && !g_peak.compare_exchange_weak(peak, live, std::memory_order_relaxed)) {
  }
  return p;
}

void host_free(void* p) {
  if (!p) return;
  g_live.fetch_sub(malloc_usable_size(p), std::memory_order_relaxed);
  std::free(p);
}

uint64_t peak_host_tensor_bytes() { return g_peak.load(std::memory_order_relaxed); }
void reset_peak_host_tensor_bytes() { g_peak.store(g_live.load(std::memory_order_relaxed), std::memory_order_relaxed); }

}  // namespace ep
