// device_check.cpp (CUDA) — deferred checks: each queues a copy of its words into pinned host memory and an event on
// the current stream; judge_device_checks() judges those whose event has completed. Not a device-side assert: the
// process keeps running, and the error is the op's own exception, thrown at the next synchronization point.
#include <cuda_runtime.h>

#include <array>
#include <deque>
#include <exception>
#include <mutex>
#include <utility>
#include <vector>

#include "engine/check.h"
#include "engine/cuda/context.h"
#include "engine/device_check.h"

namespace ep {
namespace {

// A pinned landing place for one check's words and the event that says they have landed. Reused, never freed.
struct Slot {
  int64_t* host = nullptr;
  cudaEvent_t done = nullptr;
};

struct Pending {
  Slot slot;
  int device = 0;
  CheckJudge judge;
  Tensor words;  // kept until judged: its storage must outlive the queued copy whatever stream frees it
};

std::mutex g_mu;
auto& g_pending = *new std::deque<Pending>;                // queue order; guarded by g_mu
auto& g_free = *new std::array<std::vector<Slot>, 64>;     // per device; guarded by g_mu
thread_local bool t_judging = false;

Slot take_slot(int device) {
  {
    std::lock_guard<std::mutex> g(g_mu);
    auto& free = g_free.at(size_t(device));
    if (!free.empty()) {
      Slot s = free.back();
      free.pop_back();
      return s;
    }
  }
  Slot s;
  cuda::set_device(device);
  CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&s.host), kMaxCheckWords * sizeof(int64_t), cudaHostAllocDefault));
  const cudaError_t e = cudaEventCreateWithFlags(&s.done, cudaEventDisableTiming);
  if (e != cudaSuccess) {
    cudaFreeHost(s.host);
    CUDA_CHECK(e);
  }
  return s;
}

}  // namespace

namespace detail {
void defer_cuda_check(const Tensor& words, CheckJudge judge) {
  const int device = words.device().index;
  if (cuda::capturing(device)) return;  // a captured step's inputs are those its eager runs checked (cuda_graph.h)
  judge_device_checks();  // keeps the queue short when nothing else synchronizes for a while
  Slot slot = take_slot(device);
  cudaStream_t st = current_stream(words.device());
  // Pinned destination: the copy is queued, not waited for.
  cudaError_t e = cudaMemcpyAsync(slot.host, words.raw_data(), words.nbytes(), cudaMemcpyDeviceToHost, st);
  if (e == cudaSuccess) e = cudaEventRecord(slot.done, st);
  if (e != cudaSuccess) {
    {
      std::lock_guard<std::mutex> g(g_mu);
      g_free.at(size_t(device)).push_back(slot);
    }
    CUDA_CHECK(e);
  }
  std::lock_guard<std::mutex> g(g_mu);
  g_pending.push_back(Pending{slot, device, std::move(judge), words});
}
}  // namespace detail

void judge_device_checks() {
  if (t_judging) return;
  std::vector<Pending> arrived;
  {
    std::lock_guard<std::mutex> g(g_mu);
    if (g_pending.empty()) return;
    for (auto it = g_pending.begin(); it != g_pending.end();) {
      const cudaError_t q = cudaEventQuery(it->slot.done);
      if (q == cudaErrorNotReady) {
        ++it;
        continue;
      }
      // Any other status is the stream's sticky error: the stream's next synchronization reports it; the words
      // are not trustworthy, so the check is dropped rather than judged.
      if (q != cudaSuccess) cudaGetLastError();
      if (q == cudaSuccess) arrived.push_back(std::move(*it));
      else g_free.at(size_t(it->device)).push_back(it->slot);
      it = g_pending.erase(it);
    }
  }
  t_judging = true;
  std::exception_ptr first;
  for (Pending& p : arrived) {
    if (!first) {
      try {
        p.judge(p.slot.host);
      } catch (...) {
        first = std::current_exception();
      }
    }
    p.words = Tensor();
  }
  t_judging = false;
  {
    std::lock_guard<std::mutex> g(g_mu);
    for (Pending& p : arrived) g_free.at(size_t(p.device)).push_back(p.slot);
  }
  if (first) std::rethrow_exception(first);
}

int64_t pending_device_checks() {
  std::lock_guard<std::mutex> g(g_mu);
  return int64_t(g_pending.size());
}

}  // namespace ep
