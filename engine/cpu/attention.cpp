// attention.cpp (cpu) — reference for the fused attention softmax (OpenMP over rows, sums in double); the CUDA twin is
// engine/cuda/attention.cu. Not a different softmax: it rounds like mul(scores, scale) then softmax then dropout.
#include <cmath>
#include <limits>

#include "engine/cpu/row_kernels.h"
#include "engine/ops/attention_kernels.h"
#include "engine/ops/random_kernels.h"

namespace ep {

void attention_softmax_forward_cpu(DType dt, const void* scores, const AttentionMask& mask, double scale,
                                   const AttentionDropout& drop, void* probs, void* out, int64_t rows, int64_t cols) {
  if (rows * cols == 0) return;
  dispatch_float(dt, "attention_softmax", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    constexpr double kNegInf = -std::numeric_limits<double>::infinity();
    const T scale_t = T(scale), drop_scale = T(drop.scale);
    for_each_row(rows, cols, [&](int64_t r) {
      const T* sr = typed<T>(scores) + r * cols;
      T* pr = typed<T>(probs) + r * cols;
      const int64_t mrow = r / mask.rows_per_batch;
      // Pass 1 writes the logits into probs: the scaled score rounded to T, as the unfused mul(scores, scale) rounds
      // it, or -inf for a masked key. Passes 2 and 3 read them back instead of redoing the mask lookups.
      const T neg_inf = -std::numeric_limits<T>::infinity();
      double m = kNegInf;
      for (int64_t c = 0; c < cols; ++c) {
        pr[c] = mask_attends(mask, mrow, c, cols) ? T(sr[c] * scale_t) : neg_inf;
        m = double(pr[c]) > m ? double(pr[c]) : m;
      }
      if (m == kNegInf) {
        // No key attends (or every attending score is -inf): zeros, rather than the NaN of exp(-inf - -inf).
        for (int64_t c = 0; c < cols; ++c) pr[c] = T(0);
      } else {
        double s = 0;
        for (int64_t c = 0; c < cols; ++c) s += std::exp(double(pr[c]) - m);
        const double inv = 1.0 / s;
        for (int64_t c = 0; c < cols; ++c) pr[c] = T(std::exp(double(pr[c]) - m) * inv);
      }
      if (drop.on) {
        T* orow = typed<T>(out) + r * cols;
        const uint64_t base = uint64_t(r) * uint64_t(cols);
        for (int64_t c = 0; c < cols; ++c)
          orow[c] = bernoulli_keep(drop.seed, drop.offset, base + uint64_t(c), drop.p_keep) ? pr[c] * drop_scale
                                                                                           : T(0);
      }
    });
  });
}

void attention_softmax_backward_cpu(DType dt, const void* probs, const void* dout, double scale,
                                    const AttentionDropout& drop, void* dscores, int64_t rows, int64_t cols) {
  if (rows * cols == 0) return;
  dispatch_float(dt, "attention_softmax backward", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    for_each_row(rows, cols, [&](int64_t r) {
      const T* pr = typed<T>(probs) + r * cols;
      const T* gr = typed<T>(dout) + r * cols;
      T* dr = typed<T>(dscores) + r * cols;
      // g' = the gradient at the softmax output: dropout's backward of dout, T(dout * T(1 / p_keep)) or 0, staged in
      // dscores so each element's Philox block is drawn once. Rounded to T as the unfused dropout backward rounds it.
      const T* gp = gr;
      if (drop.on) {
        const T drop_scale = T(drop.scale);
        const uint64_t base = uint64_t(r) * uint64_t(cols);
        for (int64_t c = 0; c < cols; ++c)
          dr[c] = bernoulli_keep(drop.seed, drop.offset, base + uint64_t(c), drop.p_keep) ? gr[c] * drop_scale : T(0);
        gp = dr;
      }
      double s = 0;
      for (int64_t c = 0; c < cols; ++c) s += double(gp[c]) * double(pr[c]);
      for (int64_t c = 0; c < cols; ++c) dr[c] = T(scale * double(pr[c]) * (double(gp[c]) - s));
    });
  });
}

}  // namespace ep
