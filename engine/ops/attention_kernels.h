// attention_kernels.h — the fused attention softmax over [rows, cols] = [B*H*Tq, Tk]: scale, key mask, softmax and
// Philox dropout in one pass, and the fused backward. CPU and CUDA launchers. Not autograd (engine/ops/attention.cpp).
#pragma once
#include <cstdint>

#include "engine/device.h"
#include "engine/dispatch.h"

namespace ep {

// The key mask's element type; `none` means every key attends.
enum class MaskKind : uint8_t { none, u8, i32, i64, f32, f64 };

// key_mask [B, cols] seen by row r of the scores: mask row r / rows_per_batch (rows_per_batch = H * Tq).
struct AttentionMask {
  const void* data = nullptr;
  MaskKind kind = MaskKind::none;
  int64_t rows_per_batch = 1;
};

// Whether key `col` of mask row `mrow` attends (nonzero = attend; a NaN in a float mask is nonzero, so it attends).
// A runtime switch rather than a template: the branch is the same for every thread, and one kernel serves every kind.
EP_HD bool mask_attends(const AttentionMask& m, int64_t mrow, int64_t col, int64_t cols) {
  const int64_t i = mrow * cols + col;
  switch (m.kind) {
    case MaskKind::none: return true;
    case MaskKind::u8: return static_cast<const uint8_t*>(m.data)[i] != 0;
    case MaskKind::i32: return static_cast<const int32_t*>(m.data)[i] != 0;
    case MaskKind::i64: return static_cast<const int64_t*>(m.data)[i] != 0;
    case MaskKind::f32: return static_cast<const float*>(m.data)[i] != 0.0f;
    case MaskKind::f64: return static_cast<const double*>(m.data)[i] != 0.0;
  }
  return true;
}

// Dropout as engine/ops/dropout.cpp applies it: element i = r * cols + c is kept when
// bernoulli_keep(seed, offset, i, p_keep), and a kept probability is multiplied by T(scale) = T(1 / p_keep).
struct AttentionDropout {
  bool on = false;
  double p_keep = 1.0;
  double scale = 1.0;
  uint64_t seed = 0, offset = 0;
};

// probs = softmax(scale * scores, masked keys at -inf) per row; a row with no attending key is all zeros (not NaN).
// When drop.on, out = dropout(probs) is written too (out may be null otherwise). dt is f32 or f64.
void attention_softmax_forward_cpu(DType dt, const void* scores, const AttentionMask& mask, double scale,
                                   const AttentionDropout& drop, void* probs, void* out, int64_t rows, int64_t cols);
// dscores = scale * P * (g' - sum(g' * P)) per row, g' = dout * keep * drop.scale (g' = dout without dropout), from
// the saved pre-dropout probabilities P and the mask regenerated from (seed, offset).
void attention_softmax_backward_cpu(DType dt, const void* probs, const void* dout, double scale,
                                    const AttentionDropout& drop, void* dscores, int64_t rows, int64_t cols);

EP_CUDA_API void attention_softmax_forward_cuda(DType dt, const void* scores, const AttentionMask& mask, double scale,
                                                const AttentionDropout& drop, void* probs, void* out, int64_t rows,
                                                int64_t cols, cudaStream_t st) EP_CUDA_BODY("attention_softmax")
EP_CUDA_API void attention_softmax_backward_cuda(DType dt, const void* probs, const void* dout, double scale,
                                                 const AttentionDropout& drop, void* dscores, int64_t rows,
                                                 int64_t cols, cudaStream_t st)
    EP_CUDA_BODY("attention_softmax backward")

}  // namespace ep
