// embedding.cpp — embedding lookup (row gather) with its scatter-add backward; rows equal to padding_idx get no
// gradient. Indices are range-checked: on the CPU before any kernel runs, on CUDA by their min/max, judged at the
// next synchronization point (engine/device_check.h). Also HF's padding-aware position ids, computed where the ids are.
// Not nn.Embedding: no max_norm, no sparse gradients, no negative padding_idx wrap-around (-1 means none).
#include <string>

#include "engine/device_check.h"
#include "engine/ops.h"
#include "engine/op_registry.h"
#include "engine/ops/embedding_kernels.h"

namespace ep {

EP_DIFFERENTIABLE_OPS("embedding");

Tensor embedding(const Tensor& weight, const Tensor& indices, int64_t padding_idx) {
  EP_CHECK(weight.dim() == 2, ShapeError, "[embedding] expected 2-D weight [V,D], got ", shape_str(weight.shape()));
  EP_CHECK(indices.dtype() == DType::i32 || indices.dtype() == DType::i64, DTypeError,
           "[embedding] indices must be i32 or i64, got ", dtype_name(indices.dtype()));
  EP_CHECK(weight.device() == indices.device(), DeviceError, "[embedding] weight is on ", weight.device().str(),
           " but indices are on ", indices.device().str());
  const int64_t rows = weight.shape()[0], dim = weight.shape()[1], n = indices.numel();
  EP_CHECK(padding_idx >= -1 && padding_idx < rows, ValueError, "[embedding] padding_idx ", padding_idx,
           " out of range [0,", rows, ") (-1 for none)");
  if (n > 0) {
    auto judge = [rows](const int64_t* lohi) {
      EP_CHECK(lohi[1] < rows, ValueError, "[embedding] index ", lohi[1], " out of range [0,", rows, ")");
      EP_CHECK(lohi[0] >= 0, ValueError, "[embedding] index ", lohi[0], " out of range [0,", rows, ")");
    };
    if (indices.is_cuda()) {
      // Judged at the next synchronization point, so the lookup never waits for the GPU (the kernels stay in bounds
      // meanwhile; engine/device_check.h).
      Tensor mm = empty({2}, DType::i64, indices.device());
      index_minmax_cuda(indices.dtype(), indices.raw_data(), n, mm.data<int64_t>(), current_stream(indices.device()));
      check_on_device(mm, judge);
    } else {
      int64_t lohi[2];
      index_minmax_cpu(indices.dtype(), indices.raw_data(), n, &lohi[0], &lohi[1]);
      judge(lohi);
    }
  }
  Shape os = indices.shape();
  os.push_back(dim);
  Tensor out = empty(os, weight.dtype(), weight.device());
  const size_t elem = dtype_size(weight.dtype());
  if (weight.is_cuda())
    embedding_forward_cuda(elem, indices.dtype(), weight.raw_data(), indices.raw_data(), out.raw_data(), n, dim, rows,
                           current_stream(weight.device()));
  else
    embedding_forward_cpu(elem, indices.dtype(), weight.raw_data(), indices.raw_data(), out.raw_data(), n, dim);
  record(out, "embedding", {weight},
         [ix = saved(indices), rows, dim, padding_idx](const Tensor& dout, const NeedsGrad&) {
           Tensor dw = zeros({rows, dim}, dout.dtype(), dout.device());
           const int64_t n = ix.numel();
           if (dout.is_cuda())
             embedding_backward_cuda(dout.dtype(), ix.dtype(), dout.raw_data(), ix.raw_data(), dw.raw_data(), n, dim,
                                     rows, padding_idx, current_stream(dout.device()));
           else
             embedding_backward_cpu(dout.dtype(), ix.dtype(), dout.raw_data(), ix.raw_data(), dw.raw_data(), n, dim,
                                    rows, padding_idx);
           return std::vector<Tensor>{dw};
         });
  return out;
}

Tensor padded_position_ids(const Tensor& ids, int64_t pad) {
  EP_CHECK(ids.dim() == 2 && ids.dtype() == DType::i64, ShapeError,
           "[padded_position_ids] expected i64 ids [B, T], got ", dtype_name(ids.dtype()), " ", shape_str(ids.shape()));
  Tensor pos = empty(ids.shape(), DType::i64, ids.device());
  const int64_t B = ids.size(0), T = ids.size(1);
  if (ids.is_cuda())
    padded_position_ids_cuda(ids.data<int64_t>(), pos.data<int64_t>(), B, T, pad, current_stream(ids.device()));
  else
    padded_position_ids_cpu(ids.data<int64_t>(), pos.data<int64_t>(), B, T, pad);
  return pos;
}

}  // namespace ep
