// attention.cu — CUDA twin of engine/cpu/attention.cpp (f32, and f64 for parity runs): a warp per row holding the row
// in registers for Tk up to 1024, a 256-thread block per row beyond (registers up to 8192, then three reads of the
// row). Scale, key mask, softmax and Philox dropout in one read and one write. Not bf16/f16 and not flash attention:
// the scores come from and go back to the caller's GEMMs.
#include <cuda_runtime.h>

#include <limits>

#include "engine/cuda/row_reduce.cuh"
#include "engine/ops/attention_kernels.h"
#include "engine/ops/random_kernels.h"
#include "engine/ops/scalar_ops.h"

namespace ep {

namespace {

template <class T> __device__ __forceinline__ T neg_inf() { return -std::numeric_limits<T>::infinity(); }

// The logit of key c in row r: the scaled score, or -inf for a masked key (and for lanes past the end).
template <class T>
__device__ __forceinline__ T attention_logit(const T* sr, const AttentionMask& mask, int64_t mrow, int64_t c,
                                             int64_t cols, T scale) {
  if (c >= cols || !mask_attends(mask, mrow, c, cols)) return neg_inf<T>();
  return __ldg(sr + c) * scale;
}

// exp(v - m), and 0 for the whole row when m is -inf (no key attends), where exp(-inf - -inf) would be NaN.
template <class T> __device__ __forceinline__ T shifted_exp(T v, T m) {
  return m == neg_inf<T>() ? T(0) : m_exp(v - m);
}

// p after dropout: p * T(1 / p_keep) where element i is kept, as dropout_kernel writes it.
template <class T>
__device__ __forceinline__ T dropped(T p, const AttentionDropout& drop, uint64_t i, T drop_scale) {
  return bernoulli_keep(drop.seed, drop.offset, i, drop.p_keep) ? p * drop_scale : T(0);
}

// kVpt > 0: kVpt logits per thread in registers, one read of the scores; kVpt = 0: the row is read three times.
// A row with no attending key sums to 0, so 1 / s is guarded (a NaN sum still spreads NaN, as on the CPU). Every
// thread of a row group takes the same branches, so the row_max/row_sum barriers are reached by all of them.
template <bool kBlockRow, int kVpt, class T>
__global__ void attention_forward_kernel(const T* __restrict__ scores, AttentionMask mask, T scale,
                                         AttentionDropout drop, T drop_scale, T* __restrict__ probs,
                                         T* __restrict__ out, int64_t rows, int64_t cols) {
  __shared__ T smem[32];
  RowGroup<kBlockRow> g;
  for (int64_t r = g.row0; r < rows; r += g.step) {
    const T* sr = scores + r * cols;
    T* pr = probs + r * cols;
    T* orow = drop.on ? out + r * cols : nullptr;
    const int64_t mrow = r / mask.rows_per_batch;
    const uint64_t base = uint64_t(r) * uint64_t(cols);
    T m = neg_inf<T>();
    if constexpr (kVpt > 0) {
      T v[kVpt];
#pragma unroll
      for (int j = 0; j < kVpt; ++j) {
        v[j] = attention_logit(sr, mask, mrow, g.tid + int64_t(j) * g.group, cols, scale);
        m = larger(m, v[j]);
      }
      m = row_max<kBlockRow>(m, smem);
      T s = 0;
#pragma unroll
      for (int j = 0; j < kVpt; ++j) {
        v[j] = shifted_exp(v[j], m);  // lanes past the end hold -inf, so they add exp(-inf) = 0
        s += v[j];
      }
      s = row_sum<kBlockRow>(s, smem);
      const T inv = s == T(0) ? T(0) : T(1) / s;
#pragma unroll
      for (int j = 0; j < kVpt; ++j) {
        const int64_t c = g.tid + int64_t(j) * g.group;
        if (c < cols) {
          const T p = v[j] * inv;
          pr[c] = p;
          if (drop.on) orow[c] = dropped(p, drop, base + uint64_t(c), drop_scale);
        }
      }
    } else {
      for (int64_t c = g.tid; c < cols; c += g.group) m = larger(m, attention_logit(sr, mask, mrow, c, cols, scale));
      m = row_max<kBlockRow>(m, smem);
      T s = 0;
      for (int64_t c = g.tid; c < cols; c += g.group)
        s += shifted_exp(attention_logit(sr, mask, mrow, c, cols, scale), m);
      s = row_sum<kBlockRow>(s, smem);
      const T inv = s == T(0) ? T(0) : T(1) / s;
      for (int64_t c = g.tid; c < cols; c += g.group) {
        const T p = shifted_exp(attention_logit(sr, mask, mrow, c, cols, scale), m) * inv;
        pr[c] = p;
        if (drop.on) orow[c] = dropped(p, drop, base + uint64_t(c), drop_scale);
      }
    }
  }
}

// dscores = scale * P * (g' - sum(g' * P)), g' = dout through the regenerated dropout mask. kVpt > 0 keeps g' and P
// in registers, so each element's Philox block is drawn once; kVpt = 0 reads the row twice and draws twice.
template <bool kBlockRow, int kVpt, class T>
__global__ void attention_backward_kernel(const T* __restrict__ probs, const T* __restrict__ dout, T scale,
                                          AttentionDropout drop, T drop_scale, T* __restrict__ dscores, int64_t rows,
                                          int64_t cols) {
  __shared__ T smem[32];
  RowGroup<kBlockRow> g;
  for (int64_t r = g.row0; r < rows; r += g.step) {
    const T* pr = probs + r * cols;
    const T* gr = dout + r * cols;
    T* dr = dscores + r * cols;
    const uint64_t base = uint64_t(r) * uint64_t(cols);
    auto grad_p = [&](int64_t c) { return drop.on ? dropped(gr[c], drop, base + uint64_t(c), drop_scale) : gr[c]; };
    T s = 0;
    if constexpr (kVpt > 0) {
      T p[kVpt], gp[kVpt];
#pragma unroll
      for (int j = 0; j < kVpt; ++j) {
        const int64_t c = g.tid + int64_t(j) * g.group;
        p[j] = c < cols ? pr[c] : T(0);
        gp[j] = c < cols ? grad_p(c) : T(0);
        s += gp[j] * p[j];
      }
      s = row_sum<kBlockRow>(s, smem);
#pragma unroll
      for (int j = 0; j < kVpt; ++j) {
        const int64_t c = g.tid + int64_t(j) * g.group;
        if (c < cols) dr[c] = scale * p[j] * (gp[j] - s);
      }
    } else {
      for (int64_t c = g.tid; c < cols; c += g.group) s += grad_p(c) * pr[c];
      s = row_sum<kBlockRow>(s, smem);
      for (int64_t c = g.tid; c < cols; c += g.group) dr[c] = scale * pr[c] * (grad_p(c) - s);
    }
  }
}

// Calls go(kBlockRow, kVpt) with the register count that holds a row of `cols`, as softmax.cu chooses it.
template <class F> void launch_attention(int64_t rows, int64_t cols, F&& go) {
  launch_rows(rows, cols, [&](auto block_row, unsigned grid) {
    constexpr bool B = decltype(block_row)::value;
    const int64_t per_thread = (cols + (B ? kBlock : 32) - 1) / (B ? kBlock : 32);
    if (per_thread <= 1) go(block_row, std::integral_constant<int, 1>{}, grid);
    else if (per_thread <= 4) go(block_row, std::integral_constant<int, 4>{}, grid);
    else if (per_thread <= 8) go(block_row, std::integral_constant<int, 8>{}, grid);
    else if (per_thread <= 16) go(block_row, std::integral_constant<int, 16>{}, grid);
    else if (per_thread <= 32) go(block_row, std::integral_constant<int, 32>{}, grid);
    else go(block_row, std::integral_constant<int, 0>{}, grid);
  });
}

}  // namespace

void attention_softmax_forward_cuda(DType dt, const void* scores, const AttentionMask& mask, double scale,
                                    const AttentionDropout& drop, void* probs, void* out, int64_t rows, int64_t cols,
                                    cudaStream_t st) {
  if (rows * cols == 0) return;
  dispatch_float(dt, "attention_softmax", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    launch_attention(rows, cols, [&](auto block_row, auto vpt, unsigned grid) {
      attention_forward_kernel<decltype(block_row)::value, decltype(vpt)::value>
          <<<grid, kBlock, 0, st>>>(static_cast<const T*>(scores), mask, T(scale), drop, T(drop.scale),
                                    static_cast<T*>(probs), static_cast<T*>(out), rows, cols);
    });
  });
  CUDA_CHECK_LAUNCH();
}

void attention_softmax_backward_cuda(DType dt, const void* probs, const void* dout, double scale,
                                     const AttentionDropout& drop, void* dscores, int64_t rows, int64_t cols,
                                     cudaStream_t st) {
  if (rows * cols == 0) return;
  dispatch_float(dt, "attention_softmax backward", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    launch_attention(rows, cols, [&](auto block_row, auto vpt, unsigned grid) {
      attention_backward_kernel<decltype(block_row)::value, decltype(vpt)::value>
          <<<grid, kBlock, 0, st>>>(static_cast<const T*>(probs), static_cast<const T*>(dout), T(scale), drop,
                                    T(drop.scale), static_cast<T*>(dscores), rows, cols);
    });
  });
  CUDA_CHECK_LAUNCH();
}

}  // namespace ep
