// convert.cu — CUDA dtype casts and fills; twins of engine/cpu/convert.cpp (same to_f64/from_f64 conversions).
#include <cuda_runtime.h>

#include "engine/cuda/launch.cuh"
#include "engine/ops/convert_kernels.h"

namespace ep {

template <class S, class D>
__global__ void cast_kernel(const S* src, D* dst, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = from_f64<D>(to_f64<S>(src[i]));
}

template <class T>
__global__ void fill_kernel(T* dst, T v, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = v;
}

void cast_cuda(const void* src, DType src_t, void* dst, DType dst_t, int64_t n, cudaStream_t s) {
  if (n == 0) return;
  dispatch_all(src_t, [&](auto tag_S) {
    using S = EP_TYPE(tag_S);
    dispatch_all(dst_t, [&](auto tag_D) {
    using D = EP_TYPE(tag_D);
      cast_kernel<<<grid_for(n), kBlock, 0, s>>>(static_cast<const S*>(src), static_cast<D*>(dst), n);
    });
  });
  CUDA_CHECK_LAUNCH();
}

void fill_cuda(void* dst, DType t, double value, int64_t n, cudaStream_t s) {
  if (n == 0) return;
  dispatch_all(t, [&](auto tag_T) {
    using T = EP_TYPE(tag_T); fill_kernel<<<grid_for(n), kBlock, 0, s>>>(static_cast<T*>(dst), from_f64<T>(value), n); });
  CUDA_CHECK_LAUNCH();
}

}  // namespace ep
