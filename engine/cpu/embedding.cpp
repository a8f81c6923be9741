// embedding.cpp (cpu) — row gather, deterministic scatter-add and index min/max; the reference for
// engine/cuda/embedding.cu. Not sorted by index: the backward splits rows between threads instead (see below).
#include <algorithm>
#include <cstring>
#include <limits>

#include "engine/cpu/openmp.h"
#include "engine/ops/embedding_kernels.h"

namespace ep {

static constexpr int64_t kEmbeddingParallelMin = 65536;  // elements moved

void embedding_forward_cpu(size_t elem, DType index_dt, const void* weight, const void* indices, void* out, int64_t n,
                           int64_t dim) {
  dispatch_index(index_dt, "embedding", [&](auto tag_) {
    using I = EP_TYPE(tag_);
    const I* ix = static_cast<const I*>(indices);
    const char* w = static_cast<const char*>(weight);
    char* o = static_cast<char*>(out);
    const size_t row = size_t(dim) * elem;
#pragma omp parallel for if (n * dim > kEmbeddingParallelMin)
    for (int64_t t = 0; t < n; ++t) std::memcpy(o + size_t(t) * row, w + size_t(ix[t]) * row, row);
  });
}

void embedding_backward_cpu(DType dt, DType index_dt, const void* dout, const void* indices, void* dweight, int64_t n,
                            int64_t dim, int64_t rows, int64_t padding_idx) {
  dispatch_float(dt, "embedding backward", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    dispatch_index(index_dt, "embedding backward", [&](auto itag_) {
      using I = EP_TYPE(itag_);
      const I* ix = static_cast<const I*>(indices);
      const T* g = static_cast<const T*>(dout);
      T* dw = static_cast<T*>(dweight);
      // Thread k owns the rows r with r % threads == k and scans every token: no two threads touch a row, and each
      // row sums its tokens in token order, so the result does not depend on the thread count.
#pragma omp parallel if (n * dim > kEmbeddingParallelMin)
      {
        const int64_t k = omp_get_thread_num(), threads = omp_get_num_threads();
        for (int64_t t = 0; t < n; ++t) {
          const int64_t r = int64_t(ix[t]);
          if (r == padding_idx || r % threads != k) continue;
          T* d = dw + r * dim;
          const T* s = g + t * dim;
          for (int64_t j = 0; j < dim; ++j) d[j] += s[j];
        }
      }
    });
  });
  (void)rows;
}

void padded_position_ids_cpu(const int64_t* ids, int64_t* pos, int64_t B, int64_t T, int64_t pad) {
  for (int64_t b = 0; b < B; ++b) padded_positions_row(ids + b * T, pos + b * T, T, pad);
}

void index_minmax_cpu(DType index_dt, const void* indices, int64_t n, int64_t* lo, int64_t* hi) {
  dispatch_index(index_dt, "embedding", [&](auto tag_) {
    using I = EP_TYPE(tag_);
    const I* ix = static_cast<const I*>(indices);
    int64_t mn = std::numeric_limits<int64_t>::max(), mx = std::numeric_limits<int64_t>::min();
#pragma omp parallel for reduction(min : mn) reduction(max : mx) if (n > kEmbeddingParallelMin)
    for (int64_t t = 0; t < n; ++t) {
      mn = std::min(mn, int64_t(ix[t]));
      mx = std::max(mx, int64_t(ix[t]));
    }
    *lo = mn;
    *hi = mx;
  });
}

}  // namespace ep
