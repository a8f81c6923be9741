// runtime_stub.cpp — device.h and storage.h for a build without CUDA: CPU works, every CUDA request throws
// "[op] built without CUDA", and cuda_device_count() is 0 so CUDA tests skip. Not compiled when CUDA is on.
#include <cstdlib>
#include <cstring>

#include "engine/check.h"
#include "engine/cuda_graph.h"
#include "engine/device.h"
#include "engine/device_check.h"
#include "engine/kernel_profile.h"
#include "engine/storage.h"

namespace ep {

bool cuda_built() { return false; }
int cuda_device_count() { return 0; }

[[noreturn]] static void no_cuda(const char* what) { EP_THROW(DeviceError, "[", what, "] built without CUDA"); }

cudaStream_t current_stream(Device d) {
  if (d.is_cuda()) no_cuda("current_stream");
  return nullptr;
}
uint64_t peak_memory_bytes(Device d) { return d.is_cpu() ? peak_host_memory_bytes() : 0; }
uint64_t peak_tensor_bytes(Device d) { return d.is_cpu() ? peak_host_tensor_bytes() : 0; }
void reset_peak_tensor_bytes(Device d) {
  if (d.is_cpu()) reset_peak_host_tensor_bytes();
}

void synchronize(Device d) {
  if (d.is_cuda()) no_cuda("synchronize");
}

struct CudaGraph::Impl {};
CudaGraph::CudaGraph(CudaGraph&&) noexcept = default;
CudaGraph& CudaGraph::operator=(CudaGraph&&) noexcept = default;
CudaGraph::~CudaGraph() = default;
CudaGraph CudaGraph::capture(Device, const std::function<void()>&) { no_cuda("cuda graph"); }
void CudaGraph::launch() const { no_cuda("cuda graph"); }
StreamGuard::StreamGuard(const Stream& s) : StreamGuard(s.device(), s.handle()) {}
StreamGuard::StreamGuard(Device d, cudaStream_t) : device_(d), previous_(nullptr) {
  if (d.is_cuda()) no_cuda("stream guard");
}
StreamGuard::~StreamGuard() = default;

Stream::Stream(Device d) : device_(d) {
  if (d.is_cuda()) no_cuda("stream");
}
Stream::~Stream() = default;
void Stream::synchronize() const {}
Event::Event(Device d) : device_(d) {
  if (d.is_cuda()) no_cuda("event");
}
Event::~Event() = default;
void Event::record(cudaStream_t) {}
void Event::wait_on(cudaStream_t) const {}
void Event::synchronize() const {}
float Event::elapsed_ms(const Event&) const { no_cuda("event"); }

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  if (device.is_cuda()) no_cuda("storage");
  data_ = host_alloc(nbytes);
}
Storage::~Storage() { host_free(data_); }

void copy_bytes(void* dst, Device dst_dev, const void* src, Device src_dev, size_t nbytes) {
  if (dst_dev.is_cuda() || src_dev.is_cuda()) no_cuda("copy");
  if (nbytes) std::memcpy(dst, src, nbytes);
}
void copy_ready_to_host(void* dst, const void* src, Device src_dev, size_t nbytes) {
  copy_bytes(dst, Device::cpu(), src, src_dev, nbytes);
}
void fill_bytes_zero(void* dst, Device dev, size_t nbytes) {
  if (dev.is_cuda()) no_cuda("zeros");
  if (nbytes) std::memset(dst, 0, nbytes);
}

namespace detail {
void defer_cuda_check(const Tensor&, CheckJudge) { no_cuda("check_on_device"); }
}  // namespace detail
void judge_device_checks() {}
int64_t pending_device_checks() { return 0; }

KernelProfile::KernelProfile() { no_cuda("kernel profile"); }
KernelProfile::~KernelProfile() = default;
std::vector<KernelTime> KernelProfile::stop() { no_cuda("kernel profile"); }

}  // namespace ep
