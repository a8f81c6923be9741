// random_kernels.h — fills from Philox streams (uniform, normal, Bernoulli keep-mask), CPU and CUDA, plus the
// per-element value functions both backends share. Not a Generator: offsets are reserved by engine/random.cpp.
#pragma once
#include <cstdint>

#include "engine/device.h"
#include "engine/dispatch.h"
#include "engine/ops/scalar_ops.h"  // mul_add_exact
#include "engine/philox.h"

namespace ep {

// Element i of a uniform [low, high) fill: 24 random bits for f32, 53 for f64.
template <class T> EP_HD T uniform_value(uint64_t seed, uint64_t offset, uint64_t i, T low, T width);
template <> EP_HD float uniform_value<float>(uint64_t seed, uint64_t offset, uint64_t i, float low, float width) {
  return mul_add_exact(philox_uniform(seed, offset, i), width, low);
}
template <> EP_HD double uniform_value<double>(uint64_t seed, uint64_t offset, uint64_t i, double low,
                                               double width) {
  return mul_add_exact(philox_uniform_f64(seed, offset, i), width, low);
}
// Element i of a normal fill, computed in double and rounded once to T.
template <class T> EP_HD T normal_value(uint64_t seed, uint64_t offset, uint64_t i, double mean, double std) {
  return T(mul_add_exact(philox_normal(seed, offset, i), std, mean));
}
// Element i of a Bernoulli keep-mask: kept with probability p_keep (exact at 0 and 1, since u is in [0, 1)). Dropout
// applies this same predicate, so its mask equals bernoulli_mask drawn at the same (seed, offset).
EP_HD bool bernoulli_keep(uint64_t seed, uint64_t offset, uint64_t i, double p_keep) {
  return double(philox_uniform(seed, offset, i)) < p_keep;
}

// `dt` is f32 or f64; out has n elements; element i uses counter offset + i.
void uniform_cpu(DType dt, void* out, int64_t n, double low, double high, uint64_t seed, uint64_t offset);
void normal_cpu(DType dt, void* out, int64_t n, double mean, double std, uint64_t seed, uint64_t offset);
void bernoulli_cpu(uint8_t* out, int64_t n, double p_keep, uint64_t seed, uint64_t offset);

EP_CUDA_API void uniform_cuda(DType dt, void* out, int64_t n, double low, double high, uint64_t seed,
                              uint64_t offset, cudaStream_t st) EP_CUDA_BODY("uniform_")
EP_CUDA_API void normal_cuda(DType dt, void* out, int64_t n, double mean, double std, uint64_t seed,
                             uint64_t offset, cudaStream_t st) EP_CUDA_BODY("normal_")
EP_CUDA_API void bernoulli_cuda(uint8_t* out, int64_t n, double p_keep, uint64_t seed, uint64_t offset,
                                cudaStream_t st) EP_CUDA_BODY("bernoulli_mask")

}  // namespace ep
