// attention.cpp — attention_softmax: dropout(softmax(scale * scores + key mask)) in one kernel per direction, with the
// dropout mask of engine/ops/dropout.cpp regenerated from Philox (seed, offset) in backward instead of stored.
// Not the attention layer (the GEMMs around it are the caller's matmul calls). Kernels: engine/cpu/attention.cpp,
// engine/cuda/attention.cu.
#include <cmath>

#include "engine/ops.h"
#include "engine/op_registry.h"
#include "engine/ops/attention_kernels.h"
#include "engine/random.h"

namespace ep {

EP_DIFFERENTIABLE_OPS("attention_softmax");

static MaskKind mask_kind(const Tensor& key_mask) {
  switch (key_mask.dtype()) {
    case DType::u8: return MaskKind::u8;
    case DType::i32: return MaskKind::i32;
    case DType::i64: return MaskKind::i64;
    case DType::f32: return MaskKind::f32;
    case DType::f64: return MaskKind::f64;
    default: break;
  }
  EP_THROW(DTypeError, "[attention_softmax] key_mask must be u8, i32, i64, f32 or f64, got ",
           dtype_name(key_mask.dtype()));
}

static void forward_dispatch(const Tensor& scores, const AttentionMask& mask, double scale,
                             const AttentionDropout& drop, Tensor& probs, Tensor& out, int64_t rows, int64_t cols) {
  void* out_ptr = drop.on ? out.raw_data() : nullptr;
  if (scores.is_cuda())
    attention_softmax_forward_cuda(scores.dtype(), scores.raw_data(), mask, scale, drop, probs.raw_data(), out_ptr,
                                   rows, cols, current_stream(scores.device()));
  else
    attention_softmax_forward_cpu(scores.dtype(), scores.raw_data(), mask, scale, drop, probs.raw_data(), out_ptr,
                                  rows, cols);
}

static Tensor backward_dispatch(const Tensor& probs, const Tensor& dout, double scale, const AttentionDropout& drop,
                                int64_t rows, int64_t cols) {
  Tensor dscores = empty_like(probs);
  if (probs.is_cuda())
    attention_softmax_backward_cuda(probs.dtype(), probs.raw_data(), dout.raw_data(), scale, drop,
                                    dscores.raw_data(), rows, cols, current_stream(probs.device()));
  else
    attention_softmax_backward_cpu(probs.dtype(), probs.raw_data(), dout.raw_data(), scale, drop, dscores.raw_data(),
                                   rows, cols);
  return dscores;
}

Tensor attention_softmax(const Tensor& scores, const Tensor& key_mask, double scale, double dropout_p, bool training,
                         Generator& gen) {
  check_floating("attention_softmax", scores);
  EP_CHECK(scores.dim() == 4, ShapeError, "[attention_softmax] scores must be 4-D [B, H, Tq, Tk], got ",
           shape_str(scores.shape()));
  // NaN fails both comparisons, so it is rejected too.
  EP_CHECK(dropout_p >= 0 && dropout_p < 1, ValueError, "[attention_softmax] dropout_p must be in [0, 1), got ",
           dropout_p);
  EP_CHECK(std::isfinite(scale), ValueError, "[attention_softmax] scale must be finite, got ", scale);
  const int64_t batch = scores.size(0), heads_queries = scores.size(1) * scores.size(2), cols = scores.size(3);
  const int64_t rows = batch * heads_queries;

  AttentionMask mask;
  if (key_mask.defined()) {
    EP_CHECK(key_mask.dim() == 2 && key_mask.size(0) == batch && key_mask.size(1) == cols, ShapeError,
             "[attention_softmax] key_mask must be [B, Tk] = [", batch, ",", cols, "] for scores ",
             shape_str(scores.shape()), ", got ", shape_str(key_mask.shape()));
    EP_CHECK(key_mask.device() == scores.device(), DeviceError, "[attention_softmax] key_mask is on ",
             key_mask.device().str(), " but scores are on ", scores.device().str());
    mask.kind = mask_kind(key_mask);
    mask.data = key_mask.raw_data();
    mask.rows_per_batch = heads_queries > 0 ? heads_queries : 1;  // no rows at all when 0: never divides
  }

  // As dropout(): only a training call with p > 0 draws, and it reserves one counter per element.
  AttentionDropout drop;
  if (training && dropout_p > 0) {
    drop.on = true;
    drop.p_keep = 1.0 - dropout_p;
    drop.scale = 1.0 / drop.p_keep;
    drop.seed = gen.seed;
    drop.offset = gen.advance(uint64_t(scores.numel()));
  }

  Tensor probs = empty_like(scores);
  Tensor out = drop.on ? empty_like(scores) : probs;
  forward_dispatch(scores, mask, scale, drop, probs, out, rows, cols);
  // Backward needs the pre-dropout probabilities and the (seed, offset) of the mask, not the scores nor the mask.
  record(out, "attention_softmax", {scores},
         [scale, drop, rows, cols, ps = saved(probs)](const Tensor& dout, const NeedsGrad&) {
           return std::vector<Tensor>{backward_dispatch(ps, dout, scale, drop, rows, cols)};
         });
  return out;
}

}  // namespace ep
