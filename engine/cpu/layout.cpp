// layout.cpp (cpu) — strided gather/scatter and a cache-blocked batched transpose; the reference for
// engine/cuda/layout.cu. Not vectorized by hand: rows of the last merged dim are plain loops the compiler handles.
#include <algorithm>
#include <cstring>

#include "engine/ops/layout_kernels.h"

namespace ep {

static constexpr int64_t kLayoutParallelMin = 65536;  // elements; smaller copies are not worth waking threads

// Both directions walk rows of the last merged dim: one offset computation per row instead of per element.
template <bool kScatter>
static void strided_copy(size_t elem, const void* in, void* out, int64_t n, int64_t base, const StridedIndex& idx,
                         const char* op) {
  if (n == 0) return;
  if (idx.ndim == 1 && idx.stride[0] == 1) {  // contiguous on both sides
    if (kScatter)
      std::memcpy(static_cast<char*>(out) + base * int64_t(elem), in, size_t(n) * elem);
    else
      std::memcpy(out, static_cast<const char*>(in) + base * int64_t(elem), size_t(n) * elem);
    return;
  }
  dispatch_elem_size(elem, op, [&](auto tag_) {
    using U = EP_TYPE(tag_);
    const U* src = static_cast<const U*>(in);
    U* dst = static_cast<U*>(out);
    const int last = idx.ndim - 1;
    const int64_t len = idx.size[last], step = idx.stride[last];
    const int64_t rows = n / len;
    // Offset of row r: the index of its first element with the last dim dropped.
    StridedIndex outer = idx;
    outer.ndim = last;
#pragma omp parallel for if (n > kLayoutParallelMin)
    for (int64_t r = 0; r < rows; ++r) {
      int64_t o = base + outer.offset(r);
      if (kScatter) {
        const U* s = src + r * len;
        if (step == 1) std::memcpy(dst + o, s, size_t(len) * sizeof(U));
        else for (int64_t j = 0; j < len; ++j) dst[o + j * step] = s[j];
      } else {
        U* d = dst + r * len;
        if (step == 1) std::memcpy(d, src + o, size_t(len) * sizeof(U));
        else for (int64_t j = 0; j < len; ++j) d[j] = src[o + j * step];
      }
    }
  });
}

void strided_gather_cpu(size_t elem, const void* in, void* out, int64_t n, int64_t base, const StridedIndex& idx) {
  strided_copy<false>(elem, in, out, n, base, idx, "strided gather");
}

void strided_scatter_cpu(size_t elem, const void* in, void* out, int64_t n, int64_t base, const StridedIndex& idx) {
  strided_copy<true>(elem, in, out, n, base, idx, "strided scatter");
}

void transpose_cpu(size_t elem, const void* in, void* out, int64_t batch, int64_t rows, int64_t cols) {
  if (batch * rows * cols == 0) return;
  dispatch_elem_size(elem, "transpose", [&](auto tag_) {
    using U = EP_TYPE(tag_);
    const U* src = static_cast<const U*>(in);
    U* dst = static_cast<U*>(out);
    constexpr int64_t kTile = 32;  // a 32x32 tile of 8-byte elements is 8 KiB: both sides stay in L1
    const int64_t tr = (rows + kTile - 1) / kTile, tc = (cols + kTile - 1) / kTile;
#pragma omp parallel for collapse(2) if (batch * rows * cols > kLayoutParallelMin)
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t t = 0; t < tr * tc; ++t) {
        const int64_t r0 = (t / tc) * kTile, c0 = (t % tc) * kTile;
        const int64_t r1 = std::min(rows, r0 + kTile), c1 = std::min(cols, c0 + kTile);
        const U* s = src + b * rows * cols;
        U* d = dst + b * rows * cols;
        for (int64_t c = c0; c < c1; ++c)
          for (int64_t r = r0; r < r1; ++r) d[c * rows + r] = s[r * cols + c];
      }
  });
}

}  // namespace ep
