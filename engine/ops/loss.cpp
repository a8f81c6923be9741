// loss.cpp — cross entropy over logits [N, K] with class-index targets, label smoothing and ignore_index, reduced by
// the mean over non-ignored rows exactly as torch.nn.functional.cross_entropy(reduction='mean'). Not probabilities
// as targets, class weights or other reductions. Kernels (fused log-softmax + loss, fused backward):
// engine/cpu/loss.cpp, engine/cuda/loss.cu.
#include <cmath>

#include "engine/device_check.h"
#include "engine/ops.h"
#include "engine/op_registry.h"
#include "engine/ops/loss_kernels.h"

namespace ep {

EP_DIFFERENTIABLE_OPS("cross_entropy");

// The value of targets[row], read from any device (the error path only).
static int64_t target_at(const Tensor& targets, int64_t row) {
  return dispatch_index(targets.dtype(), "cross_entropy", [&](auto tag_) {
    using I = EP_TYPE(tag_);
    I v{};
    copy_bytes(&v, Device::cpu(), static_cast<const I*>(targets.raw_data()) + row, targets.device(), sizeof(I));
    return int64_t(v);
  });
}

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, double label_smoothing, int64_t ignore_index) {
  check_floating("cross_entropy", logits);
  EP_CHECK(logits.dim() == 2, ShapeError, "[cross_entropy] expected logits [N,K], got ", shape_str(logits.shape()));
  dispatch_index(targets.dtype(), "cross_entropy", [](auto) {});
  const int64_t n = logits.size(0), k = logits.size(1);
  EP_CHECK(targets.dim() == 1 && targets.size(0) == n, ShapeError, "[cross_entropy] targets ",
           shape_str(targets.shape()), " do not match logits ", shape_str(logits.shape()), " (expected [", n, "])");
  check_same_device("cross_entropy", logits, targets);
  EP_CHECK(label_smoothing >= 0.0 && label_smoothing <= 1.0, ValueError,
           "[cross_entropy] label_smoothing must be in [0,1], got ", label_smoothing);

  const DType dt = logits.dtype();
  const Device dev = logits.device();
  Tensor out = empty({}, dt, dev);
  Tensor count = empty({1}, dt, dev);
  Tensor lse = empty({n}, dt, dev);
  Tensor loss_rows = empty({n}, dt, dev);
  Tensor bad = empty({1}, DType::i64, dev);
  auto* bad_p = static_cast<int64_t*>(bad.raw_data());
  if (logits.is_cuda())
    cross_entropy_forward_cuda(dt, targets.dtype(), logits.raw_data(), targets.raw_data(), n, k, label_smoothing,
                               ignore_index, loss_rows.raw_data(), lse.raw_data(), out.raw_data(), count.raw_data(),
                               bad_p, current_stream(dev));
  else
    cross_entropy_forward_cpu(dt, targets.dtype(), logits.raw_data(), targets.raw_data(), n, k, label_smoothing,
                              ignore_index, loss_rows.raw_data(), lse.raw_data(), out.raw_data(), count.raw_data(),
                              bad_p);
  // The kernels skip a target outside [0, k) and report its row. On the CPU the verdict is immediate; on CUDA it is
  // judged at the next synchronization point (the trainers' loss.item(), a pipeline stage's end of step), so the loss
  // never stalls the host, yet bad labels still raise this catchable error rather than PyTorch's device-side assert.
  check_on_device(bad, [targets, k](const int64_t* bad_row) {
    EP_CHECK(bad_row[0] < 0, ValueError, "[cross_entropy] target ", target_at(targets, bad_row[0]),
             " out of range [0,", k, ") at row ", bad_row[0]);
  });

  record(out, "cross_entropy", {logits, targets},
         [xs = saved(logits), ts = saved(targets), lse, count, n, k, label_smoothing, ignore_index](
             const Tensor& dout, const NeedsGrad&) {
           Tensor dx = empty_like(xs);
           if (xs.is_cuda())
             cross_entropy_backward_cuda(xs.dtype(), ts.dtype(), xs.raw_data(), ts.raw_data(), lse.raw_data(),
                                         dout.raw_data(), count.raw_data(), dx.raw_data(), n, k, label_smoothing,
                                         ignore_index, current_stream(xs.device()));
           else
             cross_entropy_backward_cpu(xs.dtype(), ts.dtype(), xs.raw_data(), ts.raw_data(), lse.raw_data(),
                                        dout.raw_data(), count.raw_data(), dx.raw_data(), n, k, label_smoothing,
                                        ignore_index);
           return std::vector<Tensor>{dx, Tensor()};
         });
  return out;
}

}  // namespace ep
