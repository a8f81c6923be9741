// batch_norm.cu — CUDA twins of engine/cpu/batch_norm.cpp: one block per channel for the statistics and the backward
// reduction (double accumulators, fixed-order tree: deterministic, no atomics), grid-stride loops for y and dx.
// Not a Welford single pass or a multi-block-per-channel split: enough for MobileNetV2-sized activations.
// N = batch, C = channels, S = spatial size per plane; x is viewed as [N, C, S].
#include <cuda_runtime.h>

#include "engine/cuda/row_reduce.cuh"
#include "engine/ops/batch_norm_kernels.h"

namespace ep {

constexpr int kBnBlock = 512;  // threads per channel block (a multiple of 32); a channel is one block-wide row_sum row

// Offset of the i-th value (i < N*S) of channel c.
__device__ __forceinline__ int64_t channel_offset(int64_t i, int64_t c, int64_t C, int64_t S) {
  int64_t b = i / S;
  return (b * C + c) * S + (i - b * S);
}

template <class T>
__global__ void bn_stats_kernel(const T* __restrict__ x, int64_t N, int64_t C, int64_t S, double eps,
                                T* __restrict__ mean, T* __restrict__ invstd, T* __restrict__ running_mean,
                                T* __restrict__ running_var, double momentum) {
  __shared__ double buf[32];
  const int64_t c = blockIdx.x, count = N * S;
  double sum = 0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) sum += double(x[channel_offset(i, c, C, S)]);
  const double mu = row_sum<true>(sum, buf) / double(count);
  double sq = 0;  // centred second pass, as the CPU reference
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
    double d = double(x[channel_offset(i, c, C, S)]) - mu;
    sq += d * d;
  }
  sq = row_sum<true>(sq, buf);
  if (threadIdx.x == 0) {
    const double n = double(count), var = sq / n;
    mean[c] = T(mu);
    invstd[c] = T(1.0 / sqrt(var + eps));
    if (running_mean) running_mean[c] = T((1.0 - momentum) * double(running_mean[c]) + momentum * mu);
    if (running_var)
      running_var[c] = T((1.0 - momentum) * double(running_var[c]) + momentum * (n > 1 ? sq / (n - 1) : var));
  }
}

template <class T>
__global__ void bn_invstd_kernel(const T* __restrict__ running_var, double eps, T* __restrict__ invstd, int64_t C) {
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < C; c += int64_t(gridDim.x) * blockDim.x)
    invstd[c] = T(1.0 / sqrt(double(running_var[c]) + eps));
}

template <class T>
__global__ void bn_forward_kernel(const T* __restrict__ x, const T* __restrict__ mean, const T* __restrict__ invstd,
                                  const T* __restrict__ weight, const T* __restrict__ bias, T* __restrict__ y,
                                  int64_t total, int64_t C, int64_t S) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = (i / S) % C;
    const T scale = invstd[c] * (weight ? weight[c] : T(1));
    const T shift = (bias ? bias[c] : T(0)) - mean[c] * scale;
    y[i] = x[i] * scale + shift;
  }
}

template <class T>
__global__ void bn_backward_reduce_kernel(const T* __restrict__ x, const T* __restrict__ dy,
                                          const T* __restrict__ mean, const T* __restrict__ invstd,
                                          T* __restrict__ sum_dy, T* __restrict__ sum_dy_xhat, int64_t N, int64_t C,
                                          int64_t S) {
  __shared__ double buf[32];
  const int64_t c = blockIdx.x, count = N * S;
  const double mu = double(mean[c]);
  double a = 0, b = 0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
    const int64_t off = channel_offset(i, c, C, S);
    const double g = double(dy[off]);
    a += g;
    b += g * (double(x[off]) - mu);
  }
  a = row_sum<true>(a, buf);
  b = row_sum<true>(b, buf);
  if (threadIdx.x == 0) {
    sum_dy[c] = T(a);
    sum_dy_xhat[c] = T(b * double(invstd[c]));
  }
}

template <class T>
__global__ void bn_backward_kernel(const T* __restrict__ x, const T* __restrict__ dy, const T* __restrict__ mean,
                                   const T* __restrict__ invstd, const T* __restrict__ weight,
                                   const T* __restrict__ sum_dy, const T* __restrict__ sum_dy_xhat,
                                   T* __restrict__ dx, int64_t total, int64_t C, int64_t S, T inv_n, bool training) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = (i / S) % C;
    const T inv = invstd[c];
    const T k = inv * (weight ? weight[c] : T(1));
    if (!training) {
      dx[i] = k * dy[i];
    } else {
      const T xhat = (x[i] - mean[c]) * inv;
      dx[i] = k * (dy[i] - sum_dy[c] * inv_n - xhat * (sum_dy_xhat[c] * inv_n));
    }
  }
}

void batch_norm_stats_cuda(DType dt, const void* x, int64_t N, int64_t C, int64_t S, double eps, void* mean,
                           void* invstd, void* running_mean, void* running_var, double momentum, cudaStream_t st) {
  if (C == 0 || N * S == 0) return;
  EP_CHECK(C <= INT32_MAX, ValueError, "[batch_norm] ", C, " channels are too many for one block each");
  dispatch_float(dt, "batch_norm", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    bn_stats_kernel<<<unsigned(C), kBnBlock, 0, st>>>(static_cast<const T*>(x), N, C, S, eps, static_cast<T*>(mean),
                                                      static_cast<T*>(invstd), static_cast<T*>(running_mean),
                                                      static_cast<T*>(running_var), momentum);
  });
  CUDA_CHECK_LAUNCH();
}

void batch_norm_invstd_cuda(DType dt, const void* running_var, double eps, void* invstd, int64_t C, cudaStream_t st) {
  if (C == 0) return;
  dispatch_float(dt, "batch_norm", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    bn_invstd_kernel<<<grid_for(C), kBlock, 0, st>>>(static_cast<const T*>(running_var), eps, static_cast<T*>(invstd),
                                                     C);
  });
  CUDA_CHECK_LAUNCH();
}

void batch_norm_forward_cuda(DType dt, const void* x, const void* mean, const void* invstd, const void* weight,
                             const void* bias, void* y, int64_t N, int64_t C, int64_t S, cudaStream_t st) {
  const int64_t total = N * C * S;
  if (total == 0) return;
  dispatch_float(dt, "batch_norm", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    bn_forward_kernel<<<grid_for(total), kBlock, 0, st>>>(
        static_cast<const T*>(x), static_cast<const T*>(mean), static_cast<const T*>(invstd),
        static_cast<const T*>(weight), static_cast<const T*>(bias), static_cast<T*>(y), total, C, S);
  });
  CUDA_CHECK_LAUNCH();
}

void batch_norm_backward_reduce_cuda(DType dt, const void* x, const void* dy, const void* mean, const void* invstd,
                                     void* sum_dy, void* sum_dy_xhat, int64_t N, int64_t C, int64_t S,
                                     cudaStream_t st) {
  if (C == 0) return;
  EP_CHECK(C <= INT32_MAX, ValueError, "[batch_norm backward] ", C, " channels are too many for one block each");
  dispatch_float(dt, "batch_norm backward", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    // An empty batch still launches: every channel block writes its zero sums.
    bn_backward_reduce_kernel<<<unsigned(C), kBnBlock, 0, st>>>(
        static_cast<const T*>(x), static_cast<const T*>(dy), static_cast<const T*>(mean),
        static_cast<const T*>(invstd), static_cast<T*>(sum_dy), static_cast<T*>(sum_dy_xhat), N, C, S);
  });
  CUDA_CHECK_LAUNCH();
}

void batch_norm_backward_cuda(DType dt, const void* x, const void* dy, const void* mean, const void* invstd,
                              const void* weight, const void* sum_dy, const void* sum_dy_xhat, void* dx, int64_t N,
                              int64_t C, int64_t S, bool training, cudaStream_t st) {
  const int64_t total = N * C * S;
  if (total == 0) return;
  dispatch_float(dt, "batch_norm backward", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    bn_backward_kernel<<<grid_for(total), kBlock, 0, st>>>(
        static_cast<const T*>(x), static_cast<const T*>(dy), static_cast<const T*>(mean),
        static_cast<const T*>(invstd), static_cast<const T*>(weight), static_cast<const T*>(sum_dy),
        static_cast<const T*>(sum_dy_xhat), static_cast<T*>(dx), total, C, S, T(1.0 / double(N * S)), training);
  });
  CUDA_CHECK_LAUNCH();
}

}  // namespace ep
