// elementwise.cpp — CPU loops (OpenMP) over the shared functors of scalar_ops.h, and the sum reduction.
// The reference for engine/cuda/elementwise.cu. Sums accumulate in double.
#include <algorithm>

#include "engine/ops/elementwise_kernels.h"

namespace ep {

constexpr int64_t kParallelMin = 32768;  // below this, threads cost more than they save

void unary_forward_cpu(UnaryOp op, DType dt, const void* x, void* y, int64_t n, double s) {
  dispatch_float(dt, "unary", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    visit_unary(op, [&](auto f) {
      const T* xp = static_cast<const T*>(x);
      T* yp = static_cast<T*>(y);
      T sv = T(s);
#pragma omp parallel for if (n > kParallelMin)
      for (int64_t i = 0; i < n; ++i) yp[i] = f(xp[i], sv);
    });
  });
}

void unary_backward_cpu(UnaryOp op, DType dt, const void* x, const void* y, const void* dy, void* dx, int64_t n,
                        double s) {
  dispatch_float(dt, "unary backward", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    visit_unary(op, [&](auto f) {
      const T* xp = static_cast<const T*>(x);
      const T* yp = static_cast<const T*>(y);
      const T* dyp = static_cast<const T*>(dy);
      T* dxp = static_cast<T*>(dx);
      T sv = T(s);
#pragma omp parallel for if (n > kParallelMin)
      for (int64_t i = 0; i < n; ++i) {
        // The local keeps GCC from sinking the multiply into the branches of a select (which blocks vectorizing).
        const T g = f.grad(xp[i], yp[i], sv);
        dxp[i] = dyp[i] * g;
      }
    });
  });
}

void binary_forward_cpu(BinaryOp op, DType dt, const void* a, const void* b, void* out, int64_t n,
                        const BroadcastIndex& idx) {
  dispatch_float(dt, "binary", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    visit_binary(op, [&](auto f) {
      const T* ap = static_cast<const T*>(a);
      const T* bp = static_cast<const T*>(b);
      T* op_ = static_cast<T*>(out);
      if (idx.ndim == 1 && idx.stride_a[0] == 1 && idx.stride_b[0] == 1) {
#pragma omp parallel for if (n > kParallelMin)
        for (int64_t i = 0; i < n; ++i) op_[i] = f(ap[i], bp[i]);
        return;
      }
#pragma omp parallel for if (n > kParallelMin)
      for (int64_t i = 0; i < n; ++i) {
        int64_t oa, ob;
        idx.offsets(i, oa, ob);
        op_[i] = f(ap[oa], bp[ob]);
      }
    });
  });
}

void axpy_cpu(DType dt, void* a, const void* b, double alpha, int64_t n) {
  dispatch_float(dt, "add_", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    T* ap = static_cast<T*>(a);
    const T* bp = static_cast<const T*>(b);
    T al = T(alpha);
#pragma omp parallel for if (n > kParallelMin)
    for (int64_t i = 0; i < n; ++i) ap[i] += al * bp[i];
  });
}

void sum_dim_cpu(DType dt, const void* x, void* out, int64_t outer, int64_t r, int64_t inner) {
  dispatch_float(dt, "sum", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    const T* xp = static_cast<const T*>(x);
    T* op_ = static_cast<T*>(out);
    if (inner == 1) {
#pragma omp parallel for if (outer * r > kParallelMin)
      for (int64_t o = 0; o < outer; ++o) {
        double acc = 0;
        const T* row = xp + o * r;
        for (int64_t k = 0; k < r; ++k) acc += double(row[k]);
        op_[o] = T(acc);
      }
      return;
    }
    // inner > 1: walk each [r, inner] slab row by row (contiguous reads), accumulating a block of columns in double.
    constexpr int64_t kCols = 256;
    const int64_t col_blocks = (inner + kCols - 1) / kCols;
#pragma omp parallel for collapse(2) if (outer * inner * r > kParallelMin)
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t cb = 0; cb < col_blocks; ++cb) {
        const int64_t c0 = cb * kCols, c1 = std::min(inner, c0 + kCols);
        double acc[kCols] = {};
        const T* slab = xp + o * r * inner;
        for (int64_t k = 0; k < r; ++k)
          for (int64_t i = c0; i < c1; ++i) acc[i - c0] += double(slab[k * inner + i]);
        for (int64_t i = c0; i < c1; ++i) op_[o * inner + i] = T(acc[i - c0]);
      }
  });
}

}  // namespace ep
