// batch_norm.cu — CUDA twins of engine/cpu/batch_norm.cpp. The per-channel reductions (statistics, backward sums) are
// split over several blocks per channel, each summing a fixed range of planes in double, and a second kernel adds each
// channel's partials in order: deterministic, no atomics, and enough blocks to fill the GPU when the channels are few
// and the planes large (MobileNetV2's first layers: 32 channels x 256 planes of 32x32). Element-wise y and dx use
// 32-bit index arithmetic whenever the tensor allows. Not a Welford single pass: the variance is centred in a second
// pass over x, as the CPU reference computes it.
// N = batch, C = channels, S = spatial size per plane; x is viewed as [N, C, S].
#include <cuda_runtime.h>

#include <climits>

#include "engine/cuda/row_reduce.cuh"
#include "engine/ops/batch_norm_kernels.h"

namespace ep {

namespace {

constexpr int kBnBlock = 256;                 // threads per (channel, plane range) block
constexpr int64_t kBnElemsPerBlock = 16384;  // values a reduction block aims to sum (64 per thread)

// Blocks per channel for a reduction over N planes of S values: enough to give each about kBnElemsPerBlock values,
// at most one per plane. A function of the shape only, so results do not depend on the GPU model.
int64_t bn_splits(int64_t N, int64_t S) {
  return std::max<int64_t>(1, std::min<int64_t>(N, (N * S + kBnElemsPerBlock - 1) / kBnElemsPerBlock));
}

// Block (p, c) of P covers planes [N*p/P, N*(p+1)/P) of channel c; their values are visited as one flat range with
// 32-bit index arithmetic (a block's range is small), f(offset) for each value's offset in x.
template <class F>
__device__ __forceinline__ void for_channel_range(int64_t N, int64_t C, int64_t S, int64_t P, F&& f) {
  const int64_t c = blockIdx.y, p = blockIdx.x;
  const int64_t n0 = N * p / P, n1 = N * (p + 1) / P;
  const uint32_t count = uint32_t((n1 - n0) * S), s32 = uint32_t(S);
  for (uint32_t i = threadIdx.x; i < count; i += blockDim.x) {
    const uint32_t plane = i / s32;
    f(((n0 + plane) * C + c) * S + (i - plane * s32));
  }
}

// partial[c * P + p] = sum over the block's values of x (kCentered: of (x - mean[c])^2), in double.
template <class T, bool kCentered>
__global__ void bn_partial_sums_kernel(const T* __restrict__ x, int64_t N, int64_t C, int64_t S, int64_t P,
                                       const double* __restrict__ mean, double* __restrict__ partial) {
  __shared__ double buf[32];
  const double mu = kCentered ? mean[blockIdx.y] : 0.0;
  double acc = 0;
  for_channel_range(N, C, S, P, [&](int64_t off) {
    const double v = double(x[off]);
    if constexpr (kCentered) acc += (v - mu) * (v - mu);
    else acc += v;
  });
  acc = row_sum<true>(acc, buf);
  if (threadIdx.x == 0) partial[blockIdx.y * P + blockIdx.x] = acc;
}

// mean_out[c] = (sum of channel c's partials, in order) / count.
__global__ void bn_mean_kernel(const double* __restrict__ partial, int64_t C, int64_t P, double count,
                               double* __restrict__ mean_out) {
  EP_GRID_STRIDE(c, C) {
    double sum = 0;
    for (int64_t p = 0; p < P; ++p) sum += partial[c * P + p];
    mean_out[c] = sum / count;
  }
}

template <class T>
__global__ void bn_stats_finish_kernel(const double* __restrict__ partial_sq, const double* __restrict__ mu,
                                       int64_t C, int64_t P, double count, double eps, T* __restrict__ mean,
                                       T* __restrict__ invstd, T* __restrict__ running_mean,
                                       T* __restrict__ running_var, double momentum) {
  EP_GRID_STRIDE(c, C) {
    double sq = 0;
    for (int64_t p = 0; p < P; ++p) sq += partial_sq[c * P + p];
    const double var = sq / count;
    mean[c] = T(mu[c]);
    invstd[c] = T(1.0 / sqrt(var + eps));
    if (running_mean) running_mean[c] = T((1.0 - momentum) * double(running_mean[c]) + momentum * mu[c]);
    if (running_var)
      running_var[c] = T((1.0 - momentum) * double(running_var[c]) + momentum * (count > 1 ? sq / (count - 1) : var));
  }
}

}  // namespace

template <class T>
__global__ void bn_invstd_kernel(const T* __restrict__ running_var, double eps, T* __restrict__ invstd, int64_t C) {
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < C; c += int64_t(gridDim.x) * blockDim.x)
    invstd[c] = T(1.0 / sqrt(double(running_var[c]) + eps));
}

template <class T>
__global__ void bn_merge_stats_kernel(double na, double nb, const T* __restrict__ mean_b, const T* __restrict__ var_b,
                                      double* __restrict__ mean, double* __restrict__ m2, int64_t C) {
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < C; c += int64_t(gridDim.x) * blockDim.x)
    bn_merge_channel(na, nb, double(mean_b[c]), double(var_b[c]), mean[c], m2[c]);
}

template <class T>
__global__ void bn_commit_stats_kernel(double count, double momentum, const double* __restrict__ mean,
                                       const double* __restrict__ m2, T* __restrict__ running_mean,
                                       T* __restrict__ running_var, int64_t C) {
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < C; c += int64_t(gridDim.x) * blockDim.x)
    bn_commit_channel(count, momentum, mean[c], m2[c], running_mean[c], running_var[c]);
}

// I: the index type, uint32_t when the tensor has fewer than 2^32 elements (cheaper division), else int64_t.
template <class T, class I>
__global__ void bn_forward_kernel(const T* __restrict__ x, const T* __restrict__ mean, const T* __restrict__ invstd,
                                  const T* __restrict__ weight, const T* __restrict__ bias, T* __restrict__ y,
                                  I total, I C, I S) {
  for (I i = I(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += I(gridDim.x) * blockDim.x) {
    const I c = (i / S) % C;
    const T scale = invstd[c] * (weight ? weight[c] : T(1));
    const T shift = (bias ? bias[c] : T(0)) - mean[c] * scale;
    y[i] = x[i] * scale + shift;
  }
}

// partial[c * P + p] = the block's sum of dy, partial[(C + c) * P + p] its sum of dy * (x - mean[c]), in double.
template <class T>
__global__ void bn_backward_partials_kernel(const T* __restrict__ x, const T* __restrict__ dy,
                                            const T* __restrict__ mean, int64_t N, int64_t C, int64_t S, int64_t P,
                                            double* __restrict__ partial) {
  __shared__ double buf[32];
  const double mu = double(mean[blockIdx.y]);
  double a = 0, b = 0;
  for_channel_range(N, C, S, P, [&](int64_t off) {
    const double g = double(dy[off]);
    a += g;
    b += g * (double(x[off]) - mu);
  });
  a = row_sum<true>(a, buf);
  b = row_sum<true>(b, buf);
  if (threadIdx.x == 0) {
    partial[blockIdx.y * P + blockIdx.x] = a;
    partial[(C + blockIdx.y) * P + blockIdx.x] = b;
  }
}

template <class T>
__global__ void bn_backward_sums_kernel(const double* __restrict__ partial, const T* __restrict__ invstd, int64_t C,
                                        int64_t P, T* __restrict__ sum_dy, T* __restrict__ sum_dy_xhat) {
  EP_GRID_STRIDE(c, C) {
    double a = 0, b = 0;
    for (int64_t p = 0; p < P; ++p) {
      a += partial[c * P + p];
      b += partial[(C + c) * P + p];
    }
    sum_dy[c] = T(a);
    sum_dy_xhat[c] = T(b * double(invstd[c]));
  }
}

template <class T, class I>
__global__ void bn_backward_kernel(const T* __restrict__ x, const T* __restrict__ dy, const T* __restrict__ mean,
                                   const T* __restrict__ invstd, const T* __restrict__ weight,
                                   const T* __restrict__ sum_dy, const T* __restrict__ sum_dy_xhat,
                                   T* __restrict__ dx, I total, I C, I S, T inv_n, bool training) {
  for (I i = I(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += I(gridDim.x) * blockDim.x) {
    const I c = (i / S) % C;
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

namespace {

// Runs launch(index_tag) with uint32_t when n elements can be indexed so (and a grid-stride step cannot wrap), else
// with int64_t.
template <class Launch> void with_index_type(int64_t n, Launch&& launch) {
  if (n + int64_t(65536) * kBlock <= int64_t(UINT32_MAX)) launch(type_tag<uint32_t>{});
  else launch(type_tag<int64_t>{});
}

void check_reduction_shape(int64_t C, int64_t S, const char* op) {
  EP_CHECK(C <= 65535 && S <= INT32_MAX, ValueError, "[", op, "] ", C, " channels of ", S,
           " values: at most 65535 channels of 2^31 values per plane on the GPU");
}

}  // namespace

void batch_norm_stats_cuda(DType dt, const void* x, int64_t N, int64_t C, int64_t S, double eps, void* mean,
                           void* invstd, void* running_mean, void* running_var, double momentum, cudaStream_t st) {
  if (C == 0 || N * S == 0) return;
  check_reduction_shape(C, S, "batch_norm");
  const int64_t P = bn_splits(N, S);
  // Scratch: P partial sums per channel, then the channel means in double (the centred pass uses them unrounded).
  StreamScratch scratch(size_t(C * P + C) * sizeof(double), st);
  double* partial = static_cast<double*>(scratch.ptr);
  double* mu = partial + C * P;
  const dim3 grid{unsigned(P), unsigned(C)};
  const double count = double(N * S);
  dispatch_float(dt, "batch_norm", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    const T* xt = static_cast<const T*>(x);
    bn_partial_sums_kernel<T, false><<<grid, kBnBlock, 0, st>>>(xt, N, C, S, P, nullptr, partial);
    CUDA_CHECK_LAUNCH();
    bn_mean_kernel<<<grid_for(C), kBlock, 0, st>>>(partial, C, P, count, mu);
    CUDA_CHECK_LAUNCH();
    bn_partial_sums_kernel<T, true><<<grid, kBnBlock, 0, st>>>(xt, N, C, S, P, mu, partial);
    CUDA_CHECK_LAUNCH();
    bn_stats_finish_kernel<T><<<grid_for(C), kBlock, 0, st>>>(partial, mu, C, P, count, eps, static_cast<T*>(mean),
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

void batch_norm_merge_stats_cuda(DType dt, double na, double nb, const void* mean_b, const void* var_b, double* mean,
                                 double* m2, int64_t C, cudaStream_t st) {
  if (C == 0) return;
  dispatch_float(dt, "batch_norm_merge_stats_", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    bn_merge_stats_kernel<<<grid_for(C), kBlock, 0, st>>>(na, nb, static_cast<const T*>(mean_b),
                                                          static_cast<const T*>(var_b), mean, m2, C);
  });
  CUDA_CHECK_LAUNCH();
}

void batch_norm_commit_stats_cuda(DType dt, double count, double momentum, const double* mean, const double* m2,
                                  void* running_mean, void* running_var, int64_t C, cudaStream_t st) {
  if (C == 0) return;
  dispatch_float(dt, "batch_norm_commit_stats_", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    bn_commit_stats_kernel<<<grid_for(C), kBlock, 0, st>>>(count, momentum, mean, m2, static_cast<T*>(running_mean),
                                                           static_cast<T*>(running_var), C);
  });
  CUDA_CHECK_LAUNCH();
}

void batch_norm_forward_cuda(DType dt, const void* x, const void* mean, const void* invstd, const void* weight,
                             const void* bias, void* y, int64_t N, int64_t C, int64_t S, cudaStream_t st) {
  const int64_t total = N * C * S;
  if (total == 0) return;
  dispatch_float(dt, "batch_norm", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    with_index_type(total, [&](auto itag_) {
      using I = EP_TYPE(itag_);
      bn_forward_kernel<T, I><<<grid_for(total), kBlock, 0, st>>>(
          static_cast<const T*>(x), static_cast<const T*>(mean), static_cast<const T*>(invstd),
          static_cast<const T*>(weight), static_cast<const T*>(bias), static_cast<T*>(y), I(total), I(C), I(S));
    });
  });
  CUDA_CHECK_LAUNCH();
}

void batch_norm_backward_reduce_cuda(DType dt, const void* x, const void* dy, const void* mean, const void* invstd,
                                     void* sum_dy, void* sum_dy_xhat, int64_t N, int64_t C, int64_t S,
                                     cudaStream_t st) {
  if (C == 0) return;
  check_reduction_shape(C, S, "batch_norm backward");
  // An empty batch still launches (one block per channel): every channel gets its zero sums.
  const int64_t P = bn_splits(N, S);
  StreamScratch scratch(size_t(2 * C * P) * sizeof(double), st);
  double* partial = static_cast<double*>(scratch.ptr);
  dispatch_float(dt, "batch_norm backward", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    bn_backward_partials_kernel<T><<<dim3(unsigned(P), unsigned(C)), kBnBlock, 0, st>>>(
        static_cast<const T*>(x), static_cast<const T*>(dy), static_cast<const T*>(mean), N, C, S, P, partial);
    CUDA_CHECK_LAUNCH();
    bn_backward_sums_kernel<T><<<grid_for(C), kBlock, 0, st>>>(partial, static_cast<const T*>(invstd), C, P,
                                                              static_cast<T*>(sum_dy), static_cast<T*>(sum_dy_xhat));
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
    with_index_type(total, [&](auto itag_) {
      using I = EP_TYPE(itag_);
      bn_backward_kernel<T, I><<<grid_for(total), kBlock, 0, st>>>(
          static_cast<const T*>(x), static_cast<const T*>(dy), static_cast<const T*>(mean),
          static_cast<const T*>(invstd), static_cast<const T*>(weight), static_cast<const T*>(sum_dy),
          static_cast<const T*>(sum_dy_xhat), static_cast<T*>(dx), I(total), I(C), I(S), T(1.0 / double(N * S)),
          training);
    });
  });
  CUDA_CHECK_LAUNCH();
}

}  // namespace ep
