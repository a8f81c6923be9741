// softmax.cpp — CPU reference for softmax / log_softmax over rows (OpenMP across rows), sums in double.
// Not vectorized by hand; the CUDA twin is engine/cuda/softmax.cu.
#include <cmath>
#include <limits>

#include "engine/ops/softmax_kernels.h"

namespace ep {

constexpr int64_t kParallelMin = 32768;  // below this many elements, threads cost more than they save

void softmax_forward_cpu(DType dt, bool log, const void* x, void* y, int64_t rows, int64_t cols) {
  if (rows * cols == 0) return;
  dispatch_float(dt, log ? "log_softmax" : "softmax", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    const T* xp = static_cast<const T*>(x);
    T* yp = static_cast<T*>(y);
#pragma omp parallel for if (rows * cols > kParallelMin)
    for (int64_t r = 0; r < rows; ++r) {
      const T* xr = xp + r * cols;
      T* yr = yp + r * cols;
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
    }
  });
}

void softmax_backward_cpu(DType dt, bool log, const void* y, const void* dy, void* dx, int64_t rows, int64_t cols) {
  if (rows * cols == 0) return;
  dispatch_float(dt, log ? "log_softmax backward" : "softmax backward", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    const T* yp = static_cast<const T*>(y);
    const T* gp = static_cast<const T*>(dy);
    T* dp = static_cast<T*>(dx);
#pragma omp parallel for if (rows * cols > kParallelMin)
    for (int64_t r = 0; r < rows; ++r) {
      const T* yr = yp + r * cols;
      const T* gr = gp + r * cols;
      T* dr = dp + r * cols;
      double s = 0;
      if (log) {
        for (int64_t c = 0; c < cols; ++c) s += double(gr[c]);
        for (int64_t c = 0; c < cols; ++c) dr[c] = T(double(gr[c]) - std::exp(double(yr[c])) * s);
      } else {
        for (int64_t c = 0; c < cols; ++c) s += double(gr[c]) * double(yr[c]);
        for (int64_t c = 0; c < cols; ++c) dr[c] = T(double(yr[c]) * (double(gr[c]) - s));
      }
    }
  });
}

}  // namespace ep
