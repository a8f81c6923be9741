// device_check.h — input checks whose verdict a GPU kernel computes (a target or an index out of range): the op
// queues a copy of the kernel's few words and returns; the check is judged at the next synchronization point.
// Not for data the host already holds: CPU tensors are judged at once, and ops check host-side facts themselves.
#pragma once
#include <cstdint>
#include <functional>

#include "engine/tensor.h"

namespace ep {

// Throws the op's own error when the words show bad input; returns normally otherwise.
using CheckJudge = std::function<void(const int64_t* words)>;
constexpr int64_t kMaxCheckWords = 4;

// `words`: i64, 1..kMaxCheckWords elements, written by work already queued on the current stream of its device.
// On the CPU `judge` runs now. On a GPU the words travel to pinned host memory behind an event, so the op never waits
// for the GPU; `judge` runs at the next synchronization point that finds them arrived: synchronize(), a Stream's or
// an Event's synchronize(), a copy to the host (item(), to_vector()), or a later check_on_device(). The error then
// surfaces there, as an asynchronous CUDA error would, but as the op's catchable error with the op's message. Kernels
// fed unchecked input must stay in bounds (they skip what is out of range) until the check is judged.
void check_on_device(const Tensor& words, CheckJudge judge);

// Judges every deferred check whose words have arrived, in the order they were queued, and throws the first failure
// (the others of that batch are dropped: the caller is already failing). Re-entrant calls (a judge that itself
// copies from the GPU) return at once. The synchronization points above call it.
void judge_device_checks();

// Checks queued and not yet judged, on every device (tests).
int64_t pending_device_checks();

namespace detail {
// The CUDA half (engine/cuda/device_check.cpp, or the stub without CUDA).
void defer_cuda_check(const Tensor& words, CheckJudge judge);
}  // namespace detail

}  // namespace ep
