// softmax.cpp — softmax and log_softmax over the last dim, forward and explicit backward from the saved output.
// Not a dim argument (callers transpose) and no masking: attention masks are added to the scores before softmax.
// Kernels: engine/cpu/softmax.cpp, engine/cuda/softmax.cu.
#include "engine/ops.h"
#include "engine/op_registry.h"
#include "engine/ops/softmax_kernels.h"

namespace ep {

EP_DIFFERENTIABLE_OPS("softmax", "log_softmax");

static Tensor softmax_apply(const char* op, bool log, const Tensor& a) {
  check_floating(op, a);
  // A 0-D tensor is one row of one element (softmax 1, log_softmax 0), as PyTorch.
  const int64_t cols = a.dim() == 0 ? 1 : a.shape().back();
  const int64_t rows = cols == 0 ? 0 : a.numel() / cols;
  Tensor y = empty_like(a);
  if (a.is_cuda())
    softmax_forward_cuda(a.dtype(), log, a.raw_data(), y.raw_data(), rows, cols, current_stream(a.device()));
  else
    softmax_forward_cpu(a.dtype(), log, a.raw_data(), y.raw_data(), rows, cols);
  // Both gradients need only the output, so the input is not kept alive.
  record(y, op, {a}, [log, rows, cols, ys = saved(y)](const Tensor& dy, const NeedsGrad&) {
    Tensor dx = empty_like(ys);
    if (ys.is_cuda())
      softmax_backward_cuda(ys.dtype(), log, ys.raw_data(), dy.raw_data(), dx.raw_data(), rows, cols,
                            current_stream(ys.device()));
    else
      softmax_backward_cpu(ys.dtype(), log, ys.raw_data(), dy.raw_data(), dx.raw_data(), rows, cols);
    return std::vector<Tensor>{dx};
  });
  return y;
}

Tensor softmax(const Tensor& a) { return softmax_apply("softmax", false, a); }
Tensor log_softmax(const Tensor& a) { return softmax_apply("log_softmax", true, a); }

}  // namespace ep
