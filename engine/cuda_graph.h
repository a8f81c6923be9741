// cuda_graph.h — one thread's GPU work on its current stream, captured once into a CUDA graph and replayed with one
// launch, so the host's cost per kernel (launch, allocation, bookkeeping) is paid at capture only.
// Not a general graph API: no updates, no capture across threads or streams; the trainers do not use it (bench does).
#pragma once
#include <functional>
#include <memory>

#include "engine/device.h"

namespace ep {

// What a replay repeats exactly as captured: every kernel argument, so a dropout layer draws the same mask at every
// replay, an optimizer's step count (AdamW's bias correction) and learning rate stay those of the captured step, and
// host-side counters (a BatchNorm's num_batches_tracked) do not advance. Deferred input checks
// (engine/device_check.h) are not captured: the inputs of a replay must be those the eager steps before it checked.
class CudaGraph {
 public:
  CudaGraph() = default;
  CudaGraph(CudaGraph&&) noexcept;
  CudaGraph& operator=(CudaGraph&&) noexcept;
  ~CudaGraph();

  // Runs fn once with its work on the current stream of d captured (queued into the graph, not executed). fn must
  // free every tensor it makes (a step ends with zero_grad and keeps its results in tensors made before) and must not
  // release a tensor made before the capture, wait for the GPU, or copy to or from the host; cuDNN's algorithm
  // choices and the workspaces must be settled by eager runs of fn first. Throws DeviceError "[cuda graph] ..." naming
  // the first thing that broke the capture; the device is usable afterwards. No other thread may queue work on that
  // stream meanwhile (its work would be captured too): the device's shared default stream is fine in one thread.
  static CudaGraph capture(Device d, const std::function<void()>& fn);
  // Queues one replay on the current stream of the graph's device.
  void launch() const;
  bool defined() const { return impl_ != nullptr; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ep
