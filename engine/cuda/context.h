// context.h — the lazily created per-device CUDA context: default stream, cuBLAS/cuBLASLt and cuDNN handles and
// per-stream workspaces. Only CUDA translation units include this file.
// Not thread-safe handle sharing magic: callers that use a handle take `lock` (handles are bound to a stream per call).
#pragma once
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <map>
#include <memory>
#include <mutex>

#include "engine/check.h"
#include "engine/device.h"

namespace ep::cuda {

// Owns its handles: created in the constructor, destroyed in the destructor (RAII).
struct DeviceContext {
  explicit DeviceContext(int device);
  ~DeviceContext();
  int device;
  cudaStream_t stream = nullptr;  // the device's default (non-blocking) stream
  cublasHandle_t cublas = nullptr;
  cublasLtHandle_t cublaslt = nullptr;
  cudnnHandle_t cudnn = nullptr;
  std::mutex lock;                // guards the handles and the workspaces
  // The workspace of stream `s`, grown to at least `bytes`; call with `lock` held. One per stream: kernels queued
  // on two streams may run at the same time, so they must never share scratch memory. `slot` keeps buffers apart
  // that one stream needs at the same time (the bf16 GEMM's operand copies and cuBLAS's own workspace).
  void* ensure_workspace(size_t bytes, cudaStream_t s, int slot = 0);

 private:
  struct Workspace { void* ptr = nullptr; size_t bytes = 0; };
  std::map<std::pair<cudaStream_t, int>, Workspace> workspaces_;
};

// The context of `device`, created on first use of that device only.
DeviceContext& context(int device);
// Sets the device for this thread if it differs (cheap).
void set_device(int device);
// TF32 is off by default so CPU-vs-CUDA parity holds to 1e-3; EP_ALLOW_TF32=1 or set_allow_tf32(true) enable it.
bool allow_tf32();
void set_allow_tf32(bool on);

}  // namespace ep::cuda
