// storage.h — a move-only RAII byte buffer tied to one device (CPU: 64-byte aligned; CUDA: cudaMallocAsync pool).
// Not a caching allocator: CUDA memory comes from the stream-ordered pool whose release threshold is set high.
#pragma once
#include <cstddef>
#include "engine/device.h"

namespace ep {

class Storage {
 public:
  Storage(size_t nbytes, Device device);  // uninitialized; CUDA allocations are ordered on current_stream(device)
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
  [[maybe_unused]] cudaStream_t stream_ = nullptr;  // the stream the CUDA allocation was ordered on (CUDA builds)
};

// Byte copies between any two devices, ordered on the current stream of the CUDA side (host side waits when the
// destination is the host, so the bytes are there on return).
void copy_bytes(void* dst, Device dst_dev, const void* src, Device src_dev, size_t nbytes);
void fill_bytes_zero(void* dst, Device dev, size_t nbytes);
// A copy to the host of bytes whose producer the caller has already waited for (an event's synchronize), ordered
// after nothing else: copy_bytes would wait for this thread's current stream, and with it for whatever the thread
// queued since (an optimizer step). Returns when the bytes are there.
void copy_ready_to_host(void* dst, const void* src, Device src_dev, size_t nbytes);

// Host memory behind CPU storage (engine/host_memory.cpp): 64-byte aligned, nullptr for 0 bytes.
void* host_alloc(size_t nbytes);
void host_free(void* p);

}  // namespace ep
