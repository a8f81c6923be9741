// dropout.cpp (cpu) — the fused inverted-dropout loop; the reference for engine/cuda/dropout.cu.
// Not a mask producer: bernoulli_mask (engine/random.cpp) draws the same predicate when a mask tensor is wanted.
#include "engine/ops/dropout_kernels.h"
#include "engine/ops/random_kernels.h"

namespace ep {

static constexpr int64_t kDropoutParallelMin = 4096;  // Philox per element: threads pay off early

void dropout_cpu(DType dt, const void* x, void* out, int64_t n, double p_keep, double scale, uint64_t seed,
                 uint64_t offset) {
  dispatch_float(dt, "dropout", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    const T* xp = static_cast<const T*>(x);
    T* o = static_cast<T*>(out);
    const T s = T(scale);
#pragma omp parallel for if (n > kDropoutParallelMin)
    for (int64_t i = 0; i < n; ++i) o[i] = bernoulli_keep(seed, offset, uint64_t(i), p_keep) ? xp[i] * s : T(0);
  });
}

}  // namespace ep
