// reduce_minmax.cpp — CPU reference for max/min/argmax along one dim and their gradient scatter (OpenMP).
// Not the dim bookkeeping (engine/ops/reduce_minmax.cpp); a plain sequential scan per output, first index on ties.
#include <type_traits>

#include "engine/ops/reduce_minmax_kernels.h"

namespace ep {

constexpr int64_t kParallelMin = 32768;  // below this many elements, threads cost more than they save

void minmax_forward_cpu(DType dt, bool is_max, const void* x, void* values, int64_t* indices, int64_t outer,
                        int64_t r, int64_t inner) {
  dispatch_minmax(dt, is_max ? "max" : "min", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    const T* xp = static_cast<const T*>(x);
    T* vp = static_cast<T*>(values);
    auto scan = [&](auto is_max_c) {
      constexpr bool M = decltype(is_max_c)::value;
#pragma omp parallel for collapse(2) if (outer * r * inner > kParallelMin)
      for (int64_t o = 0; o < outer; ++o)
        for (int64_t i = 0; i < inner; ++i) {
          int64_t bi;
          const T best = minmax_scan<M>(xp + o * r * inner + i, r, inner, bi);
          if (vp) vp[o * inner + i] = best;
          indices[o * inner + i] = bi;
        }
    };
    if (is_max) scan(std::true_type{});
    else scan(std::false_type{});
  });
}

void minmax_backward_cpu(DType dt, const void* dout, const int64_t* indices, void* dx, int64_t outer, int64_t r,
                         int64_t inner) {
  dispatch_float(dt, "max/min backward", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    const T* gp = static_cast<const T*>(dout);
    T* dp = static_cast<T*>(dx);
#pragma omp parallel for collapse(2) if (outer * r * inner > kParallelMin)
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t k = 0; k < r; ++k) {
        T* row = dp + (o * r + k) * inner;
        const int64_t* ix = indices + o * inner;
        const T* g = gp + o * inner;
        for (int64_t i = 0; i < inner; ++i) row[i] = ix[i] == k ? g[i] : T(0);
      }
  });
}

}  // namespace ep
