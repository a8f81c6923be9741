// runtime.cpp — the CUDA side of device.h and storage.h: streams, events, the current stream, stream-ordered pool
// allocations, byte copies, and the per-device context. Not kernels (engine/cuda/*.cu).
#include <cuda_runtime.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/check.h"
#include "engine/cuda/context.h"
#include "engine/device.h"
#include "engine/device_check.h"
#include "engine/storage.h"

namespace ep {

bool cuda_built() { return true; }

int cuda_device_count() {
  static int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();  // clear the sticky "no driver" error
      return 0;
    }
    return n;
  }();
  return count;
}

static void require_cuda(Device d, const char* what) {
  EP_CHECK(d.is_cuda(), DeviceError, "[", what, "] expected a CUDA device, got ", d.str());
  EP_CHECK(d.index < cuda_device_count(), DeviceError, "[", what, "] ", d.str(), " is not available (",
           cuda_device_count(), " CUDA devices)");
}

namespace cuda {

// Contexts live for the whole process and are never destroyed: at exit the driver may already be shutting down
// (static destruction order), and it reclaims streams, handles and memory itself.
static std::array<std::atomic<DeviceContext*>, 64> g_contexts{};
static std::mutex g_contexts_lock;

void set_device(int device) {
  thread_local int current = -1;
  if (current != device) {
    CUDA_CHECK(cudaSetDevice(device));
    current = device;
  }
}

DeviceContext::DeviceContext(int dev) : device(dev) {
  set_device(dev);
  CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  // Stream-ordered pool that keeps freed memory (PyTorch-like caching without our own allocator).
  cudaMemPool_t pool;
  CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, dev));
  uint64_t threshold = UINT64_MAX;
  CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold));
}

DeviceContext::StreamState& DeviceContext::state(cudaStream_t s) {
  std::lock_guard<std::mutex> g(states_lock_);
  auto& slot = states_[s];
  if (!slot) slot = std::make_unique<StreamState>();
  return *slot;
}

std::mutex& DeviceContext::stream_lock(cudaStream_t s) { return state(s).lock; }

void* DeviceContext::ensure_workspace(size_t bytes, cudaStream_t s, int slot) {
  Workspace& w = state(s).slots[slot];
  if (bytes <= w.bytes) return w.ptr;
  EP_CHECK(!capturing(device), DeviceError, "[cuda graph] a workspace grows to ", bytes,
           " bytes inside a captured step: run the step eagerly first, at the same shapes");
  // Stream-ordered: work already queued on `s` finishes with the old buffer before the pool reuses it. A live CUDA
  // graph may have the old buffer baked into its replays: it is kept until the last graph of this device goes.
  if (w.ptr) retire(w.ptr, s);
  w = Workspace{};
  CUDA_CHECK(cudaMallocAsync(&w.ptr, bytes, s));
  w.bytes = bytes;
  return w.ptr;
}

void DeviceContext::retire(void* ptr, cudaStream_t s) {
  {
    std::lock_guard<std::mutex> g(states_lock_);
    if (live_graphs_ > 0) {
      retired_.emplace_back(ptr, s);
      return;
    }
  }
  CUDA_CHECK(cudaFreeAsync(ptr, s));
}

void DeviceContext::graph_made() {
  std::lock_guard<std::mutex> g(states_lock_);
  ++live_graphs_;
}

void DeviceContext::graph_gone() {
  std::vector<std::pair<void*, cudaStream_t>> freed;
  {
    std::lock_guard<std::mutex> g(states_lock_);
    if (--live_graphs_ > 0) return;
    freed.swap(retired_);
  }
  // A workspace whose stream is gone (null here) has no stream to order its free after: wait for the device first.
  for (auto [ptr, s] : freed)
    if (s == nullptr) {
      set_device(device);
      CUDA_CHECK_PRINT(cudaDeviceSynchronize());
      break;
    }
  for (auto [ptr, s] : freed) CUDA_CHECK_PRINT(cudaFreeAsync(ptr, s));
}

void DeviceContext::forget(cudaStream_t s) {
  std::unique_ptr<StreamState> gone;
  {
    std::lock_guard<std::mutex> g(states_lock_);
    auto it = states_.find(s);
    if (it == states_.end()) return;
    gone = std::move(it->second);
    states_.erase(it);
  }
  for (auto& [slot, w] : gone->slots) {
    if (!w.ptr) continue;
    {
      std::lock_guard<std::mutex> g(states_lock_);
      if (live_graphs_ > 0) {  // see retire(): freed when the last graph goes, on the stream's device pool
        retired_.emplace_back(w.ptr, nullptr);
        continue;
      }
    }
    const cudaError_t e = cudaFreeAsync(w.ptr, s);
    // A static Stream (the pipeline's) can end at process exit, when the runtime unloads and reclaims everything.
    if (e != cudaSuccess && e != cudaErrorCudartUnloading)
      std::fprintf(stderr, "[stream] freeing a workspace: %s\n", cudaGetErrorString(e));
  }
}

namespace {
// Handles given back by threads that ended, per device; never destroyed (a thread may end during exit).
struct HandlePool {
  std::mutex lock;
  std::vector<Handles> free;
};
HandlePool& handle_pool(int device) {
  static auto& pools = *new std::array<HandlePool, 64>;
  return pools.at(size_t(device));
}
// The calling thread's handles per device; its destructor (at thread exit) returns them to the pools.
struct ThreadHandles {
  std::array<Handles, 64> per_device{};
  ~ThreadHandles() {
    for (size_t d = 0; d < per_device.size(); ++d)
      if (per_device[d].cudnn) {
        HandlePool& pool = handle_pool(int(d));
        std::lock_guard<std::mutex> g(pool.lock);
        pool.free.push_back(per_device[d]);
      }
  }
};
}  // namespace

Handles thread_handles(int device) {
  thread_local ThreadHandles mine;
  Handles& h = mine.per_device.at(size_t(device));
  if (h.cudnn) return h;
  {
    HandlePool& pool = handle_pool(device);
    std::lock_guard<std::mutex> g(pool.lock);
    if (!pool.free.empty()) {
      h = pool.free.back();
      pool.free.pop_back();
      return h;
    }
  }
  set_device(device);
  Handles fresh;
  CUBLAS_CHECK(cublasCreate(&fresh.cublas));
  const cudnnStatus_t s = cudnnCreate(&fresh.cudnn);
  if (s != CUDNN_STATUS_SUCCESS) {
    cublasDestroy(fresh.cublas);
    CUDNN_CHECK(s);
  }
  h = fresh;
  return h;
}

DeviceContext& context(int device) {
  // Fast path without a lock: every op asks for its stream, and through it for the context.
  if (device >= 0 && device < int(g_contexts.size()))
    if (DeviceContext* c = g_contexts[size_t(device)].load(std::memory_order_acquire)) return *c;
  require_cuda(Device::cuda(device), "cuda context");
  std::lock_guard<std::mutex> g(g_contexts_lock);
  auto& slot = g_contexts.at(size_t(device));
  if (!slot.load()) slot.store(new DeviceContext(device), std::memory_order_release);
  return *slot.load();
}

static bool g_allow_tf32 = [] {
  const char* e = std::getenv("EP_ALLOW_TF32");
  return e && std::strcmp(e, "1") == 0;
}();
bool allow_tf32() { return g_allow_tf32; }
void set_allow_tf32(bool on) { g_allow_tf32 = on; }

}  // namespace cuda

// ---- current stream ------------------------------------------------------------------------------------------------
namespace {
thread_local std::array<cudaStream_t, 64> t_stream_override{};
}

cudaStream_t current_stream(Device d) {
  if (d.is_cpu()) return nullptr;
  // Every op asks for its stream right before launching: making the device current here keeps launches for a
  // tensor on GPU 1 correct while GPU 0 was current (a thread-local compare when nothing changes).
  cuda::set_device(d.index);
  cudaStream_t s = t_stream_override.at(size_t(d.index));
  return s ? s : cuda::context(d.index).stream;
}


uint64_t peak_memory_bytes(Device d) {
  if (d.is_cpu()) return peak_host_memory_bytes();
  if (d.index >= cuda_device_count() || !cuda::g_contexts[size_t(d.index)].load()) return 0;
  cuda::set_device(d.index);
  cudaMemPool_t pool;
  CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, d.index));
  uint64_t high = 0;
  CUDA_CHECK(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &high));
  return high;
}

uint64_t peak_tensor_bytes(Device d) {
  return d.is_cpu() ? peak_host_tensor_bytes() : peak_memory_bytes(d);  // the pool holds only tensors' storage
}

void reset_peak_tensor_bytes(Device d) {
  if (d.is_cpu()) return reset_peak_host_tensor_bytes();
  if (d.index >= cuda_device_count() || !cuda::g_contexts[size_t(d.index)].load()) return;
  cuda::set_device(d.index);
  cudaMemPool_t pool;
  CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, d.index));
  uint64_t zero = 0;  // the only value accepted: resets the high-water mark to the memory in use now
  CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &zero));
}

void synchronize(Device d) {
  if (d.is_cpu()) return;
  cuda::set_device(d.index);
  CUDA_CHECK(cudaStreamSynchronize(current_stream(d)));
  judge_device_checks();
}

StreamGuard::StreamGuard(const Stream& s) : StreamGuard(s.device(), s.handle()) {}
StreamGuard::StreamGuard(Device d, cudaStream_t s) : device_(d), previous_(nullptr) {
  if (d.is_cuda()) {
    previous_ = t_stream_override.at(size_t(d.index));
    t_stream_override[size_t(d.index)] = s;
  }
}
StreamGuard::~StreamGuard() {
  if (device_.is_cuda()) t_stream_override[size_t(device_.index)] = previous_;
}

// ---- Stream / Event ------------------------------------------------------------------------------------------------
Stream::Stream(Device d) : device_(d) {
  if (d.is_cpu()) return;
  require_cuda(d, "stream");
  cuda::set_device(d.index);
  CUDA_CHECK(cudaStreamCreateWithFlags(&handle_, cudaStreamNonBlocking));
}
Stream::~Stream() {
  if (!handle_) return;
  if (cuda::DeviceContext* c = cuda::g_contexts[size_t(device_.index)].load(std::memory_order_acquire))
    c->forget(handle_);
  CUDA_CHECK_PRINT(cudaStreamDestroy(handle_));  // returns at once; queued work still finishes
}
void Stream::synchronize() const {
  if (!handle_) return;
  CUDA_CHECK(cudaStreamSynchronize(handle_));
  judge_device_checks();
}

Event::Event(Device d) : device_(d) {
  if (d.is_cpu()) return;
  require_cuda(d, "event");
  cuda::set_device(d.index);
  CUDA_CHECK(cudaEventCreate(&handle_));
}
Event::~Event() {
  if (handle_) CUDA_CHECK_PRINT(cudaEventDestroy(handle_));
}
void Event::record(cudaStream_t s) {
  if (handle_) CUDA_CHECK(cudaEventRecord(handle_, s));
}
void Event::wait_on(cudaStream_t s) const {
  if (handle_) CUDA_CHECK(cudaStreamWaitEvent(s, handle_, 0));
}
void Event::synchronize() const {
  if (!handle_) return;
  CUDA_CHECK(cudaEventSynchronize(handle_));
  judge_device_checks();
}
float Event::elapsed_ms(const Event& end) const {
  EP_CHECK(handle_ && end.handle_, DeviceError, "[event] elapsed_ms needs two CUDA events");
  float ms = 0;
  CUDA_CHECK(cudaEventElapsedTime(&ms, handle_, end.handle_));
  return ms;
}

// ---- Stream capture (engine/cuda_graph.h) --------------------------------------------------------------------------
namespace {
struct CaptureState {
  bool on = false;
  int device = -1;
  cudaStream_t stream = nullptr;
  std::unordered_map<void*, size_t> made;                // tensors made inside the capture, not yet freed
  std::vector<std::pair<void*, cudaStream_t>> held;      // tensors of before, released inside: freed at the end
  size_t held_bytes = 0;
};
thread_local CaptureState t_capture;
// Graph allocations of a failed capture still held by tensors: their memory went with the graph, so their tensors
// must not free it again. Rare (a broken capture), hence the flag in front of the lock.
std::atomic<bool> g_any_orphans{false};
std::mutex g_orphans_lock;
auto& g_orphans = *new std::unordered_map<void*, size_t>;
bool forget_orphan(void* p) {
  if (!g_any_orphans.load(std::memory_order_acquire)) return false;
  std::lock_guard<std::mutex> g(g_orphans_lock);
  const bool orphan = g_orphans.erase(p) > 0;
  if (g_orphans.empty()) g_any_orphans.store(false, std::memory_order_release);
  return orphan;
}
}  // namespace

namespace cuda {
void begin_capture(int device, cudaStream_t stream) {
  t_capture = CaptureState{};
  t_capture.on = true;
  t_capture.device = device;
  t_capture.stream = stream;
}
CaptureReport end_capture() {
  CaptureState state = std::move(t_capture);
  t_capture = CaptureState{};
  CaptureReport r;
  for (auto [ptr, stream] : state.held) CUDA_CHECK_PRINT(cudaFreeAsync(ptr, stream));  // outside the capture now
  if (!state.held.empty()) {
    r.problem = std::to_string(state.held.size()) + " tensor(s) (" + std::to_string(state.held_bytes) +
                " bytes) made before the capture were released inside it: a replay would read freed memory";
  }
  if (!state.made.empty()) {
    size_t bytes = 0;
    for (const auto& [ptr, n] : state.made) bytes += n;
    if (r.problem.empty())
      r.problem = std::to_string(state.made.size()) + " tensor(s) (" + std::to_string(bytes) +
                  " bytes) made inside the capture outlive it: a captured step must free what it makes";
    std::lock_guard<std::mutex> g(g_orphans_lock);  // the capture fails, and its graph takes their memory with it
    g_orphans.insert(state.made.begin(), state.made.end());
    g_any_orphans.store(true, std::memory_order_release);
  }
  return r;
}
bool capturing(int device) { return t_capture.on && t_capture.device == device; }
}  // namespace cuda

// ---- Storage -------------------------------------------------------------------------------------------------------
namespace {
std::array<std::atomic<uint64_t>, 64> g_cuda_live{};  // bytes of live tensor storage per GPU, for the memory limit

// A copy between `gpu` and the host inside a capture would be replayed with host memory long changed or gone.
void refuse_host_copy_in_capture(Device gpu, size_t nbytes, bool to_host) {
  EP_CHECK(!cuda::capturing(gpu.index), DeviceError, "[cuda graph] a copy of ", nbytes, " bytes ",
           to_host ? "to" : "from",
           " the host inside a captured step (a replay would repeat it with stale host memory)");
}
}

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  if (device.is_cpu()) {
    data_ = host_alloc(nbytes);
    return;
  }
  require_cuda(device, "storage");
  if (nbytes == 0) return;
  cuda::set_device(device.index);
  std::atomic<uint64_t>& live = g_cuda_live.at(size_t(device.index));
  const uint64_t limit = tensor_memory_limit(), in_use = live.load(std::memory_order_relaxed);
  EP_CHECK(limit == 0 || in_use + nbytes <= limit, OutOfMemoryError, "[storage] out of memory on ", device.str(), ": ",
           nbytes, " bytes requested with ", in_use, " in use, over the limit of ", limit, " bytes of tensors");
  stream_ = current_stream(device);
  cudaError_t e = cudaMallocAsync(&data_, nbytes, stream_);
  if (e == cudaErrorMemoryAllocation && !cuda::capturing(device.index)) {  // no waiting inside a capture
    // Blocks freed on other streams return to the pool once those streams have passed their frees: wait, then retry.
    cudaGetLastError();
    CUDA_CHECK(cudaDeviceSynchronize());
    e = cudaMallocAsync(&data_, nbytes, stream_);
  }
  if (e != cudaSuccess) {
    cudaGetLastError();
    EP_CHECK(e != cudaErrorMemoryAllocation, OutOfMemoryError, "[storage] out of memory on ", device.str(),
             " allocating ", nbytes, " bytes (", in_use, " bytes of tensors in use)");
    EP_THROW(CudaError, "[storage] cudaMallocAsync of ", nbytes, " bytes on ", device.str(),
             " failed: ", cudaGetErrorString(e));
  }
  live.fetch_add(nbytes, std::memory_order_relaxed);
  if (cuda::capturing(device.index) && stream_ == t_capture.stream) t_capture.made[data_] = nbytes;
}

Storage::~Storage() {
  if (!data_) return;
  if (device_.is_cpu()) {
    host_free(data_);
  } else {
    cuda::set_device(device_.index);
    g_cuda_live.at(size_t(device_.index)).fetch_sub(nbytes_, std::memory_order_relaxed);
    if (cuda::capturing(device_.index)) {
      if (t_capture.made.erase(data_) == 0) {
        t_capture.held.emplace_back(data_, stream_);  // made before the capture: see cuda::end_capture
        t_capture.held_bytes += nbytes_;
        return;
      }
      // Made in this capture: a free node. A capture CUDA invalidated refuses it; its graph takes the memory along.
      const cudaError_t e = cudaFreeAsync(data_, stream_);
      if (e == cudaErrorStreamCaptureInvalidated || e == cudaErrorStreamCaptureUnsupported) cudaGetLastError();
      else CUDA_CHECK_PRINT(e);
      return;
    }
    if (forget_orphan(data_)) return;
    CUDA_CHECK_PRINT(cudaFreeAsync(data_, stream_));
  }
}

void copy_bytes(void* dst, Device dst_dev, const void* src, Device src_dev, size_t nbytes) {
  if (nbytes == 0) return;
  if (dst_dev.is_cpu() && src_dev.is_cpu()) {
    std::memcpy(dst, src, nbytes);
    return;
  }
  Device cuda_dev = dst_dev.is_cuda() ? dst_dev : src_dev;
  if (dst_dev.is_cpu() || src_dev.is_cpu()) refuse_host_copy_in_capture(cuda_dev, nbytes, dst_dev.is_cpu());
  cuda::set_device(cuda_dev.index);
  cudaStream_t s = current_stream(cuda_dev);
  if (dst_dev.is_cuda() && src_dev.is_cuda() && dst_dev.index != src_dev.index) {
    // Peer copy: order it after the source device's work too.
    CUDA_CHECK(cudaStreamSynchronize(current_stream(src_dev)));
    CUDA_CHECK(cudaMemcpyPeerAsync(dst, dst_dev.index, src, src_dev.index, nbytes, s));
    return;
  }
  CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDefault, s));
  // To the host: wait, so the bytes are there on return. From the host: no wait. Host memory here is pageable, and
  // for pageable memory the driver has staged the source (or finished the copy) when cudaMemcpyAsync returns, so the
  // caller may free or reuse it at once (CUDA runtime API, "API synchronization behavior"); the copy stays ordered
  // on `s` before the work that reads it. Waiting here made every host-to-device copy (a batch's labels, token ids,
  // a micro-batch's input) stall the thread until its stream had drained.
  if (dst_dev.is_cpu()) {
    CUDA_CHECK(cudaStreamSynchronize(s));
    judge_device_checks();
  }
}

void copy_ready_to_host(void* dst, const void* src, Device src_dev, size_t nbytes) {
  if (nbytes == 0 || src_dev.is_cpu()) return copy_bytes(dst, Device::cpu(), src, src_dev, nbytes);
  refuse_host_copy_in_capture(src_dev, nbytes, true);
  cuda::set_device(src_dev.index);
  // The legacy stream on purpose: every stream here is non-blocking, so a copy there waits for none of them.
  CUDA_CHECK(cudaMemcpy(dst, src, nbytes, cudaMemcpyDeviceToHost));
}

void fill_bytes_zero(void* dst, Device dev, size_t nbytes) {
  if (nbytes == 0) return;
  if (dev.is_cpu()) {
    std::memset(dst, 0, nbytes);
    return;
  }
  cuda::set_device(dev.index);
  CUDA_CHECK(cudaMemsetAsync(dst, 0, nbytes, current_stream(dev)));
}

}  // namespace ep
