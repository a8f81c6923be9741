// device.h — Device{kind,index}, RAII Stream and Event, the per-thread current stream, and CUDA availability.
// Not the CUDA runtime wrapper itself: engine/cuda/runtime.cpp implements these (engine/cuda/runtime_stub.cpp when
// built without CUDA, where a CPU Stream/Event is a no-op object so callers keep a single code path).
#pragma once
#include <cstdint>
#include <string>

struct CUstream_st;
struct CUevent_st;
using cudaStream_t = CUstream_st*;
using cudaEvent_t = CUevent_st*;

namespace ep {

enum class DeviceKind : uint8_t { cpu, cuda };

struct Device {
  DeviceKind kind = DeviceKind::cpu;
  int index = 0;
  constexpr bool is_cpu() const { return kind == DeviceKind::cpu; }
  constexpr bool is_cuda() const { return kind == DeviceKind::cuda; }
  bool operator==(const Device& o) const { return kind == o.kind && (is_cpu() || index == o.index); }
  bool operator!=(const Device& o) const { return !(*this == o); }
  std::string str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }
  static constexpr Device cpu() { return {DeviceKind::cpu, 0}; }
  static constexpr Device cuda(int i = 0) { return {DeviceKind::cuda, i}; }
  static Device parse(const std::string& s);  // "cpu", "cuda", "cuda:1"; throws ValueError naming the string
};

bool cuda_built();            // compiled with the CUDA backend
int cuda_device_count();      // 0 when built without CUDA or when no GPU/driver is present (never throws)
inline bool cuda_available() { return cuda_device_count() > 0; }

// A CUDA stream (owned, non-blocking) or, on the CPU, a no-op. Move-only.
class Stream {
 public:
  Stream() = default;                       // the CPU stream
  explicit Stream(Device d);                // creates a new non-blocking stream on a CUDA device
  ~Stream();
  Stream(Stream&& o) noexcept { swap(o); }
  Stream& operator=(Stream&& o) noexcept { swap(o); return *this; }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  Device device() const { return device_; }
  cudaStream_t handle() const { return handle_; }
  void synchronize() const;

 private:
  void swap(Stream& o) noexcept { std::swap(device_, o.device_); std::swap(handle_, o.handle_); }
  Device device_{};
  cudaStream_t handle_ = nullptr;
};

// A CUDA event (timing enabled) or, on the CPU, a no-op. Move-only.
class Event {
 public:
  Event() = default;
  explicit Event(Device d);
  ~Event();
  Event(Event&& o) noexcept { swap(o); }
  Event& operator=(Event&& o) noexcept { swap(o); return *this; }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  void record(cudaStream_t s);
  void wait_on(cudaStream_t s) const;       // make stream s wait for this event
  void synchronize() const;
  float elapsed_ms(const Event& end) const;  // this -> end

 private:
  void swap(Event& o) noexcept { std::swap(device_, o.device_); std::swap(handle_, o.handle_); }
  Device device_{};
  cudaEvent_t handle_ = nullptr;
};

// The stream this thread's ops on device d run on: the StreamGuard's if one is active, else the device's own
// non-blocking default stream (never the legacy NULL stream). nullptr for the CPU.
cudaStream_t current_stream(Device d);
void synchronize(Device d);  // waits for the current stream of d (no-op on CPU)
// High-water mark of memory in use: the process's peak resident set on the CPU, the stream-ordered pool's peak on
// a GPU (0 for a GPU never used).
uint64_t peak_memory_bytes(Device d);
uint64_t peak_host_memory_bytes();  // the CPU case (engine/device.cpp), shared by both runtimes
// High-water mark of tensor storage in use on d since the last reset (or the start): on the CPU the host
// allocator's own count of live blocks, on a GPU the stream-ordered pool's. Unlike the resident set it can be reset,
// so one process can compare the memory of several configurations (bench pipeline, part 3).
uint64_t peak_tensor_bytes(Device d);
void reset_peak_tensor_bytes(Device d);  // the high-water mark becomes what is in use now
uint64_t peak_host_tensor_bytes();       // the CPU cases (engine/host_memory.cpp), shared by both runtimes
void reset_peak_host_tensor_bytes();
// At most `bytes` of live tensor storage on each device (0: no limit, the default): an allocation past it throws
// OutOfMemoryError, as the device running out does. Emulates a smaller device (an edge board's memory) and makes
// out-of-memory recovery testable. Concurrent allocations are checked one by one, so the cap is approximate.
void set_tensor_memory_limit(uint64_t bytes);
uint64_t tensor_memory_limit();
uint64_t live_host_tensor_bytes();

// Makes `s` the current stream of its device for this thread, restoring the previous one on destruction.
class StreamGuard {
 public:
  explicit StreamGuard(const Stream& s);
  StreamGuard(Device d, cudaStream_t s);
  ~StreamGuard();
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;

 private:
  Device device_;
  [[maybe_unused]] cudaStream_t previous_;  // restored by the destructor (CUDA builds)
};

}  // namespace ep
