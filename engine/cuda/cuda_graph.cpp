// cuda_graph.cpp (CUDA) — CudaGraph on stream capture (cudaStreamBeginCapture in thread-local mode) and
// cudaGraphInstantiate; the capture state that Storage, copy_bytes and the workspaces consult lives in runtime.cpp.
// Not a replay of host-side effects: only what the stream saw is in the graph.
#include "engine/cuda_graph.h"

#include <cuda_runtime.h>

#include <exception>
#include <string>

#include "engine/check.h"
#include "engine/cuda/context.h"

namespace ep {

struct CudaGraph::Impl {
  Device device;
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  bool counted = false;  // registered with the device's context (graph_made), which keeps the workspaces it uses
  ~Impl() {
    if (exec) {
      // Replays still queued use the workspaces the context kept for them: wait for them before it frees those.
      CUDA_CHECK_PRINT(cudaStreamSynchronize(current_stream(device)));
      CUDA_CHECK_PRINT(cudaGraphExecDestroy(exec));
    }
    if (graph) CUDA_CHECK_PRINT(cudaGraphDestroy(graph));
    if (counted) cuda::context(device.index).graph_gone();
  }
};

CudaGraph::CudaGraph(CudaGraph&&) noexcept = default;
CudaGraph& CudaGraph::operator=(CudaGraph&&) noexcept = default;
CudaGraph::~CudaGraph() = default;

namespace {
std::string describe(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  } catch (...) {
    return "an unknown exception";
  }
}
}  // namespace

CudaGraph CudaGraph::capture(Device d, const std::function<void()>& fn) {
  EP_CHECK(d.is_cuda(), DeviceError, "[cuda graph] capture needs a GPU, got ", d.str());
  synchronize(d);  // judges the checks queued so far: nothing of before is left to query during the capture
  cuda::set_device(d.index);
  const cudaStream_t st = current_stream(d);
  CUDA_CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
  cuda::begin_capture(d.index, st);
  std::exception_ptr failed;
  try {
    fn();
  } catch (...) {
    failed = std::current_exception();
  }
  cudaGraph_t graph = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(st, &graph);
  const cuda::CaptureReport report = cuda::end_capture();
  auto impl = std::make_unique<Impl>();
  impl->device = d;
  impl->graph = graph;
  std::string why;
  if (failed) why = describe(failed);
  else if (ended != cudaSuccess) why = std::string("cudaStreamEndCapture: ") + cudaGetErrorString(ended);
  else if (!report.problem.empty()) why = report.problem;
  if (why.empty()) {
    const cudaError_t e = cudaGraphInstantiate(&impl->exec, graph, 0);
    if (e != cudaSuccess) why = std::string("cudaGraphInstantiate: ") + cudaGetErrorString(e);
    else if (const cudaError_t u = cudaGraphUpload(impl->exec, st); u != cudaSuccess)
      why = std::string("cudaGraphUpload: ") + cudaGetErrorString(u);
  }
  if (!why.empty()) {
    cudaGetLastError();  // a broken capture leaves its error behind; the device itself is fine
    impl.reset();
    EP_THROW(DeviceError, "[cuda graph] capture failed: ", why);
  }
  cuda::context(d.index).graph_made();
  impl->counted = true;
  CudaGraph g;
  g.impl_ = std::move(impl);
  return g;
}

void CudaGraph::launch() const {
  EP_CHECK(impl_ != nullptr, DeviceError, "[cuda graph] launch of an empty graph");
  cuda::set_device(impl_->device.index);
  CUDA_CHECK(cudaGraphLaunch(impl_->exec, current_stream(impl_->device)));
}

}  // namespace ep
