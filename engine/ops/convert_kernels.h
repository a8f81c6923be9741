// convert_kernels.h — dtype casts and constant fills, CPU and CUDA. Not differentiable ops (Tensor::to, full).
#pragma once
#include <cstdint>

#include "engine/device.h"
#include "engine/dispatch.h"

namespace ep {

void cast_cpu(const void* src, DType src_t, void* dst, DType dst_t, int64_t n);
void fill_cpu(void* dst, DType t, double value, int64_t n);

EP_CUDA_API void cast_cuda(const void* src, DType src_t, void* dst, DType dst_t, int64_t n, cudaStream_t s)
    EP_CUDA_BODY("cast")
EP_CUDA_API void fill_cuda(void* dst, DType t, double value, int64_t n, cudaStream_t s) EP_CUDA_BODY("fill")

}  // namespace ep
