// softmax.cpp — CPU reference for softmax / log_softmax over rows (OpenMP across rows), sums in double.
// Not vectorized by hand; the CUDA twin is engine/cuda/softmax.cu.
#include <cmath>
#include <limits>

#include "engine/cpu/row_kernels.h"
#include "engine/ops/softmax_kernels.h"

namespace ep {

void softmax_forward_cpu(DType dt, bool log, const void* x, void* y, int64_t rows, int64_t cols) {
  if (rows * cols == 0) return;
  dispatch_float(dt, log ? "log_softmax" : "softmax", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    for_each_row(rows, cols, [&](int64_t r) {
      const T* xr = typed<T>(x) + r * cols;
      T* yr = typed<T>(y) + r * cols;
      double m = -std::numeric_limits<double>::infinity();
      for (int64_t c = 0; c < cols; ++c) m = double(xr[c]) > m ? double(xr[c]) : m;
      double s = 0;
      for (int64_t c = 0; c < cols; ++c) s += std::exp(double(xr[c]) - m);
      if (log) {
        const double lse = m + std::log(s);
        for (int64_t c = 0; c < cols; ++c) yr[c] = T(double(xr[c]) - lse);
      } else {
        const double inv = 1.0 / s;
        for (int64_t c = 0; c < cols; ++c) yr[c] = T(std::exp(double(xr[c]) - m) * inv);
      }
    });
  });
}

void softmax_backward_cpu(DType dt, bool log, const void* y, const void* dy, void* dx, int64_t rows, int64_t cols) {
  if (rows * cols == 0) return;
  dispatch_float(dt, log ? "log_softmax backward" : "softmax backward", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    for_each_row(rows, cols, [&](int64_t r) {
      const T* yr = typed<T>(y) + r * cols;
      const T* gr = typed<T>(dy) + r * cols;
      T* dr = typed<T>(dx) + r * cols;
      double s = 0;
      if (log) {
        for (int64_t c = 0; c < cols; ++c) s += double(gr[c]);
        for (int64_t c = 0; c < cols; ++c) dr[c] = T(double(gr[c]) - std::exp(double(yr[c])) * s);
      } else {
        for (int64_t c = 0; c < cols; ++c) s += double(gr[c]) * double(yr[c]);
        for (int64_t c = 0; c < cols; ++c) dr[c] = T(double(yr[c]) * (double(gr[c]) - s));
      }
    });
  });
}

}  // namespace ep
