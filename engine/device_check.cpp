// device_check.cpp — the device-independent half of check_on_device: validation of the words and the CPU's immediate
// verdict. Not the deferral: engine/cuda/device_check.cpp queues GPU words behind events and judges them later.
#include "engine/device_check.h"

#include "engine/check.h"

namespace ep {

void check_on_device(const Tensor& words, CheckJudge judge) {
  EP_CHECK(words.defined() && words.dtype() == DType::i64 && words.dim() == 1 && words.numel() >= 1 &&
               words.numel() <= kMaxCheckWords,
           ValueError, "[check_on_device] expected 1 to ", kMaxCheckWords, " i64 words, got ",
           words.defined() ? words.str() : std::string("an undefined tensor"));
  if (!words.is_cuda()) {
    judge(static_cast<const int64_t*>(words.raw_data()));
    return;
  }
  detail::defer_cuda_check(words, std::move(judge));
}

}  // namespace ep
