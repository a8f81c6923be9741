// context.h — the lazily created per-device CUDA context (default stream, per-stream workspaces and their locks) and
// the per-thread cuBLAS/cuDNN handles. Only CUDA translation units include this file.
// Not a handle shared between threads: each thread has its own, bound to the caller's stream on every call.
#pragma once
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "engine/check.h"
#include "engine/device.h"

namespace ep::cuda {

// The per-device state every thread shares: the default stream and the per-stream workspaces. The cuBLAS and cuDNN
// handles are per thread (thread_handles below). Created once, never destroyed (see runtime.cpp).
struct DeviceContext {
  explicit DeviceContext(int device);
  int device;
  cudaStream_t stream = nullptr;  // the device's default (non-blocking) stream
  // The lock of stream `s`: held while a workspace of `s` is fetched and the calls that use it are queued. Threads on
  // different streams never wait for each other; threads sharing a stream take turns, so one cannot grow (and free)
  // a workspace another has fetched but not yet used.
  std::mutex& stream_lock(cudaStream_t s);
  // The workspace of stream `s`, grown to at least `bytes`; call with stream_lock(s) held. One per stream: kernels
  // queued on two streams may run at the same time, so they must never share scratch memory. `slot` keeps buffers
  // apart that one stream needs at the same time (the bf16 GEMM's operand copies and cuBLAS's own workspace).
  void* ensure_workspace(size_t bytes, cudaStream_t s, int slot = 0);
  // Gives back stream `s`'s workspaces (freed in its order, after its queued work) before `s` is destroyed: a Stream
  // made per test or per pipeline would otherwise keep them, and a new stream given the same handle would inherit them.
  void forget(cudaStream_t s);
  // CUDA graphs alive on this device (engine/cuda_graph.h): while any is, a workspace that grows or whose stream
  // goes is kept (a replay may use it), and freed when the last graph goes.
  void graph_made();
  void graph_gone();

 private:
  void retire(void* ptr, cudaStream_t s);
  int live_graphs_ = 0;                                   // guarded by states_lock_
  std::vector<std::pair<void*, cudaStream_t>> retired_;  // guarded by states_lock_
  struct Workspace { void* ptr = nullptr; size_t bytes = 0; };
  struct StreamState {
    std::mutex lock;
    std::map<int, Workspace> slots;  // guarded by `lock`
  };
  StreamState& state(cudaStream_t s);
  std::mutex states_lock_;  // guards the map, not the states (their addresses never change)
  std::map<cudaStream_t, std::unique_ptr<StreamState>> states_;
};

// The calling thread's cuBLAS and cuDNN handles on `device`, taken from the device's pool on first use and given back
// when the thread ends (PyTorch's DeviceThreadHandlePool). Pipeline stages issue work from several threads at once;
// one shared handle would make them take turns for every GEMM and convolution. Bind the stream on every call.
struct Handles {
  cublasHandle_t cublas = nullptr;
  cudnnHandle_t cudnn = nullptr;
};
Handles thread_handles(int device);

// Stream capture on this thread (CudaGraph::capture, engine/cuda_graph.h). While it runs, a tensor made on the
// capturing stream is a graph allocation that must be freed inside the capture; releasing one made before would let
// a replay read freed memory (its free is held back until the capture ends, and the capture fails); copies to or
// from the host and workspace growth throw; deferred input checks are skipped.
struct CaptureReport {
  std::string problem;  // empty: the capture kept its rules
};
void begin_capture(int device, cudaStream_t stream);
CaptureReport end_capture();
bool capturing(int device);  // this thread is capturing work for `device`

// The context of `device`, created on first use of that device only.
DeviceContext& context(int device);
// Sets the device for this thread if it differs (cheap).
void set_device(int device);
// TF32 is off by default so CPU-vs-CUDA parity holds to 1e-3; EP_ALLOW_TF32=1 or set_allow_tf32(true) enable it.
bool allow_tf32();
void set_allow_tf32(bool on);

}  // namespace ep::cuda
