// loss.cu — CUDA twins of engine/cpu/loss.cpp: a warp (K <= 1024) or a block per row for log-sum-exp and the row
// loss, one block for the deterministic mean, one thread per logit for the fused backward.
// Not atomics on the loss: only the first bad row (range check) uses atomicMin, so the loss is run-to-run exact.
#include <cuda_runtime.h>

#include <limits>

#include "engine/cuda/row_reduce.cuh"
#include "engine/ops/loss_kernels.h"
#include "engine/ops/scalar_ops.h"

namespace ep {

namespace {

// Each row's branch (ignored / bad / kept) depends only on its target, so whole warps (blocks) take it together.
template <bool kBlockRow, class T, class I>
__global__ void ce_rows_kernel(const T* __restrict__ x, const I* __restrict__ targets, int64_t n, int64_t k, T eps,
                               int64_t ignore_index, T* __restrict__ loss_rows, T* __restrict__ lse,
                               unsigned long long* __restrict__ bad_row) {
  __shared__ T smem[32];
  RowGroup<kBlockRow> g;
  for (int64_t i = g.row0; i < n; i += g.step) {
    const int64_t t = int64_t(targets[i]);
    if (t == ignore_index) {
      if (g.tid == 0) loss_rows[i] = lse[i] = T(0);
      continue;
    }
    if (t < 0 || t >= k) {
      if (g.tid == 0) atomicMin(bad_row, static_cast<unsigned long long>(i));
      continue;
    }
    const T* xr = x + i * k;
    T m = -std::numeric_limits<T>::infinity();
    for (int64_t c = g.tid; c < k; c += g.group) m = larger(m, xr[c]);
    m = row_max<kBlockRow>(m, smem);
    T s = 0, sd = 0;
    for (int64_t c = g.tid; c < k; c += g.group) {
      s += m_exp(xr[c] - m);
      sd += m - xr[c];
    }
    s = row_sum<kBlockRow>(s, smem);
    if (eps != T(0)) sd = row_sum<kBlockRow>(sd, smem);
    if (g.tid == 0) {
      const T ls = m_log(s);
      lse[i] = m + ls;
      // Zero-weight terms left out, not multiplied (0 * inf at a -inf logit), as the CPU twin.
      loss_rows[i] = ls + (eps != T(1) ? (T(1) - eps) * (m - xr[t]) : T(0)) + (eps != T(0) ? eps / T(k) * sd : T(0));
    }
  }
}

// One block: out = sum of kept rows' losses / their count, in a fixed order (no atomics).
template <class T, class I>
__global__ void ce_mean_kernel(const T* __restrict__ loss_rows, const I* __restrict__ targets, int64_t n,
                               int64_t ignore_index, T* __restrict__ out, T* __restrict__ count) {
  __shared__ T s_sum[kBlock];
  __shared__ T s_cnt[kBlock];
  T sum = 0, cnt = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
    if (int64_t(targets[i]) != ignore_index) {
      sum += loss_rows[i];
      cnt += T(1);
    }
  s_sum[threadIdx.x] = sum;
  s_cnt[threadIdx.x] = cnt;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) {
      s_sum[threadIdx.x] += s_sum[threadIdx.x + w];
      s_cnt[threadIdx.x] += s_cnt[threadIdx.x + w];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    out[0] = s_sum[0] / s_cnt[0];  // 0 / 0 = NaN when every row is ignored, as PyTorch
    count[0] = s_cnt[0];
  }
}

template <class T, class I>
__global__ void ce_backward_kernel(const T* __restrict__ x, const I* __restrict__ targets, const T* __restrict__ lse,
                                   const T* __restrict__ dout, const T* __restrict__ count, T* __restrict__ dx,
                                   int64_t n, int64_t k, T eps, int64_t ignore_index) {
  const int64_t total = n * k;
  const T scale = dout[0] / count[0];
  const T smooth = eps / T(k);
  for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < total; j += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = j / k, c = j - i * k;
    const int64_t t = int64_t(targets[i]);
    if (t == ignore_index) {
      dx[j] = T(0);
      continue;
    }
    dx[j] = (m_exp(x[j] - lse[i]) - smooth - (c == t ? T(1) - eps : T(0))) * scale;
  }
}

}  // namespace

void cross_entropy_forward_cuda(DType dt, DType it, const void* logits, const void* targets, int64_t n, int64_t k,
                                double eps, int64_t ignore_index, void* loss_rows, void* lse, void* out, void* count,
                                int64_t* bad_row, cudaStream_t st) {
  // All ones = -1 as int64 = "no bad row"; atomicMin over unsigned keeps the smallest real row index.
  CUDA_CHECK(cudaMemsetAsync(bad_row, 0xff, sizeof(int64_t), st));
  dispatch_float(dt, "cross_entropy", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    dispatch_index(it, "cross_entropy", [&](auto itag_) {
      using I = EP_TYPE(itag_);
      const T* xp = static_cast<const T*>(logits);
      const I* tp = static_cast<const I*>(targets);
      T* lp = static_cast<T*>(loss_rows);
      T* sp = static_cast<T*>(lse);
      auto* bp = reinterpret_cast<unsigned long long*>(bad_row);
      if (n > 0) {
        launch_rows(n, k, [&](auto block_row, unsigned grid) {
          ce_rows_kernel<decltype(block_row)::value>
              <<<grid, kBlock, 0, st>>>(xp, tp, n, k, T(eps), ignore_index, lp, sp, bp);
        });
        CUDA_CHECK_LAUNCH();
      }
      ce_mean_kernel<<<1, kBlock, 0, st>>>(lp, tp, n, ignore_index, static_cast<T*>(out), static_cast<T*>(count));
      CUDA_CHECK_LAUNCH();
    });
  });
}

void cross_entropy_backward_cuda(DType dt, DType it, const void* logits, const void* targets, const void* lse,
                                 const void* dout, const void* count, void* dlogits, int64_t n, int64_t k, double eps,
                                 int64_t ignore_index, cudaStream_t st) {
  if (n * k == 0) return;
  dispatch_float(dt, "cross_entropy backward", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    dispatch_index(it, "cross_entropy backward", [&](auto itag_) {
      using I = EP_TYPE(itag_);
      ce_backward_kernel<<<grid_for(n * k), kBlock, 0, st>>>(
          static_cast<const T*>(logits), static_cast<const I*>(targets), static_cast<const T*>(lse),
          static_cast<const T*>(dout), static_cast<const T*>(count), static_cast<T*>(dlogits), n, k, T(eps),
          ignore_index);
    });
  });
  CUDA_CHECK_LAUNCH();
}

}  // namespace ep
