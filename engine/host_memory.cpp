// host_memory.cpp — host allocations for CPU tensors: 64-byte aligned, kept by the C library between steps.
// Not a caching allocator: glibc's heap does the reuse once it is told not to hand large blocks back to the kernel.
#include <malloc.h>

#include <cstdlib>
#include <mutex>

#include "engine/check.h"
#include "engine/storage.h"

namespace ep {

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
  return p;
}

void host_free(void* p) { std::free(p); }

}  // namespace ep
