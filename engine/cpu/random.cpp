// random.cpp (cpu) — OpenMP loops filling tensors from Philox streams; the reference for engine/cuda/random.cu.
// Not stateful: every element is a pure function of (seed, offset, i), so thread count never changes the values.
#include "engine/ops/random_kernels.h"

namespace ep {

static constexpr int64_t kRandomParallelMin = 4096;  // Philox is ~100 ops per element: threads pay off early

void uniform_cpu(DType dt, void* out, int64_t n, double low, double high, uint64_t seed, uint64_t offset) {
  dispatch_float(dt, "uniform_", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    T* o = static_cast<T*>(out);
    T lo = T(low), width = T(high - low);
#pragma omp parallel for if (n > kRandomParallelMin)
    for (int64_t i = 0; i < n; ++i) o[i] = uniform_value<T>(seed, offset, uint64_t(i), lo, width);
  });
}

void normal_cpu(DType dt, void* out, int64_t n, double mean, double std, uint64_t seed, uint64_t offset) {
  dispatch_float(dt, "normal_", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    T* o = static_cast<T*>(out);
#pragma omp parallel for if (n > kRandomParallelMin)
    for (int64_t i = 0; i < n; ++i) o[i] = normal_value<T>(seed, offset, uint64_t(i), mean, std);
  });
}

void bernoulli_cpu(uint8_t* out, int64_t n, double p_keep, uint64_t seed, uint64_t offset) {
#pragma omp parallel for if (n > kRandomParallelMin)
  for (int64_t i = 0; i < n; ++i) out[i] = bernoulli_keep(seed, offset, uint64_t(i), p_keep) ? 1 : 0;
}

}  // namespace ep
