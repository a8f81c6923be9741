// reduce_minmax_kernels.h — max/min/argmax along one dim of an [outer, r, inner] view, CPU and CUDA launchers, and
// the comparison rule both backends share. Not autograd (engine/ops/reduce_minmax.cpp) and not sum/mean (reduce.cpp).
#pragma once
#include <cstdint>

#include "engine/device.h"
#include "engine/dispatch.h"

namespace ep {

// Whether candidate (v at index i) replaces the current best (b at index j); j < 0 means "nothing seen yet".
// NaN beats every number (max and min propagate NaN, as PyTorch) and ties go to the lower index, so the winner is the
// first maximal (minimal) element whatever order the elements are combined in (CPU scan or CUDA tree).
template <bool IsMax, class T>
EP_HD bool minmax_better(T v, int64_t i, T b, int64_t j) {
  if (i < 0) return false;
  if (j < 0) return true;
  bool vn = v != v, bn = b != b;  // NaN test that also compiles for integer types (always false there)
  if (vn || bn) return vn && bn ? i < j : vn;
  if (v == b) return i < j;
  return IsMax ? v > b : v < b;
}

// The first maximum (minimum) of the r values base[0], base[stride], ..., base[(r-1)*stride]: returns it and sets bi
// to its k. The scan both backends run for one output (r >= 1).
template <bool IsMax, class T> EP_HD T minmax_scan(const T* base, int64_t r, int64_t stride, int64_t& bi) {
  T best = base[0];
  bi = 0;
  for (int64_t k = 1; k < r; ++k)
    if (minmax_better<IsMax>(base[k * stride], k, best, bi)) {
      best = base[k * stride];
      bi = k;
    }
  return best;
}

// The dtypes max/min/argmax accept: f32, f64, i32, i64.
template <class F> auto dispatch_minmax(DType dt, const char* op, F&& f) {
  switch (dt) {
    case DType::f32: return f(type_tag<float>{});
    case DType::f64: return f(type_tag<double>{});
    case DType::i32: return f(type_tag<int32_t>{});
    case DType::i64: return f(type_tag<int64_t>{});
    default: break;
  }
  EP_THROW(DTypeError, "[", op, "] unsupported dtype ", dtype_name(dt), " (expected f32, f64, i32 or i64)");
}

// values[o, i] = max (or min) over k of x[o, k, inner] and indices[o, i] = the first such k. `values` may be null
// (argmax). r >= 1.
void minmax_forward_cpu(DType dt, bool is_max, const void* x, void* values, int64_t* indices, int64_t outer,
                        int64_t r, int64_t inner);
// dx[o, k, i] = dout[o, i] where k == indices[o, i], else 0 (dx fully written).
void minmax_backward_cpu(DType dt, const void* dout, const int64_t* indices, void* dx, int64_t outer, int64_t r,
                         int64_t inner);

EP_CUDA_API void minmax_forward_cuda(DType dt, bool is_max, const void* x, void* values, int64_t* indices,
                                     int64_t outer, int64_t r, int64_t inner, cudaStream_t st)
    EP_CUDA_BODY(is_max ? "max" : "min")
EP_CUDA_API void minmax_backward_cuda(DType dt, const void* dout, const int64_t* indices, void* dx, int64_t outer,
                                      int64_t r, int64_t inner, cudaStream_t st) EP_CUDA_BODY("max/min backward")

}  // namespace ep
