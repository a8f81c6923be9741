// scalar_ops.h — the element-wise math, written once as __host__ __device__ functors used by the CPU loops
// (engine/cpu/elementwise.cpp) and the CUDA kernels (engine/cuda/elementwise.cu), so the CPU really is the reference.
// Each unary functor has forward `f(x)` and `grad(x, y)` = dy/dx given input x and output y.
// Not the broadcasting or the autograd wrappers (engine/ops/unary.cpp, binary.cpp).
#pragma once
#include <cmath>
#include <cstdint>

#include "engine/dtype.h"

namespace ep {

// a * b rounded as a product of its own: nvcc would otherwise contract it with an add that follows into an FMA on
// the GPU only (and a -mfma host build could do the same), and the two backends must agree bit for bit. __fmul_rn /
// __dmul_rn are never merged into a multiply-add; on the host, the volatile keeps the product rounded.
template <class T> EP_HD T mul_exact(T a, T b) {
#if defined(__CUDA_ARCH__)
  if constexpr (sizeof(T) == 4) return __fmul_rn(a, b);
  else return __dmul_rn(a, b);
#else
  volatile T p = a * b;
  return p;
#endif
}

// u * scale + shift with the product rounded before the add, the same on host and device.
template <class T> EP_HD T mul_add_exact(T u, T scale, T shift) { return mul_exact(u, scale) + shift; }

// Math functions resolving to the right float/double overloads on host and device.
#if defined(__CUDA_ARCH__)
#define EP_MATH1(name, fdev)                                   \
  EP_HD float m_##name(float x) { return fdev(x); }            \
  EP_HD double m_##name(double x) { return ::name(x); }
#else
#define EP_MATH1(name, fdev)                                   \
  inline float m_##name(float x) { return std::name(x); }      \
  inline double m_##name(double x) { return std::name(x); }
#endif
EP_MATH1(exp, expf)
EP_MATH1(log, logf)
EP_MATH1(sqrt, sqrtf)
EP_MATH1(tanh, tanhf)
EP_MATH1(erf, erff)
#undef EP_MATH1
#if defined(__CUDA_ARCH__)
EP_HD float m_pow(float x, float p) { return powf(x, p); }
EP_HD double m_pow(double x, double p) { return ::pow(x, p); }
#else
inline float m_pow(float x, float p) { return std::pow(x, p); }
inline double m_pow(double x, double p) { return std::pow(x, p); }
#endif

enum class UnaryOp : uint8_t { neg, exp, log, sqrt, relu, relu6, gelu, tanh, sigmoid, pow, add_scalar, mul_scalar };
enum class BinaryOp : uint8_t { add, sub, mul, div };

// `s` is the scalar parameter (exponent, addend, factor); unused by most ops.
struct NegOp {
  template <class T> EP_HD T operator()(T x, T) const { return -x; }
  template <class T> EP_HD T grad(T, T, T) const { return T(-1); }
};
struct ExpOp {
  template <class T> EP_HD T operator()(T x, T) const { return m_exp(x); }
  template <class T> EP_HD T grad(T, T y, T) const { return y; }
};
struct LogOp {
  template <class T> EP_HD T operator()(T x, T) const { return m_log(x); }
  template <class T> EP_HD T grad(T x, T, T) const { return T(1) / x; }
};
struct SqrtOp {
  template <class T> EP_HD T operator()(T x, T) const { return m_sqrt(x); }
  template <class T> EP_HD T grad(T, T y, T) const { return T(0.5) / y; }
};
// NaN goes through ReLU and ReLU6 as in PyTorch (a comparison with NaN is false, so NaN is never clamped), and their
// gradients are written as PyTorch's threshold_backward / hardtanh_backward: 0 at and beyond the kinks, 1 elsewhere,
// NaN inputs included.
struct ReluOp {
  template <class T> EP_HD T operator()(T x, T) const { return x < T(0) ? T(0) : x; }
  template <class T> EP_HD T grad(T x, T, T) const { return x <= T(0) ? T(0) : T(1); }
};
struct Relu6Op {
  template <class T> EP_HD T operator()(T x, T) const { return x < T(0) ? T(0) : (x > T(6) ? T(6) : x); }
  // `|`, not `||`: no short-circuit branch, so the CPU loop compiles to compares and a blend (vectorized).
  template <class T> EP_HD T grad(T x, T, T) const { return ((x <= T(0)) | (x >= T(6))) ? T(0) : T(1); }
};
struct GeluOp {  // exact: 0.5 x (1 + erf(x / sqrt 2))
  template <class T> EP_HD T operator()(T x, T) const { return T(0.5) * x * (T(1) + m_erf(x * T(0.70710678118654752440))); }
  template <class T> EP_HD T grad(T x, T, T) const {
    T cdf = T(0.5) * (T(1) + m_erf(x * T(0.70710678118654752440)));
    T pdf = m_exp(T(-0.5) * x * x) * T(0.39894228040143267794);
    return cdf + x * pdf;
  }
};
struct TanhOp {
  template <class T> EP_HD T operator()(T x, T) const { return m_tanh(x); }
  template <class T> EP_HD T grad(T, T y, T) const { return T(1) - y * y; }
};
struct SigmoidOp {
  template <class T> EP_HD T operator()(T x, T) const { return T(1) / (T(1) + m_exp(-x)); }
  template <class T> EP_HD T grad(T, T y, T) const { return y * (T(1) - y); }
};
struct PowOp {
  template <class T> EP_HD T operator()(T x, T p) const { return m_pow(x, p); }
  template <class T> EP_HD T grad(T x, T, T p) const { return p == T(0) ? T(0) : p * m_pow(x, p - T(1)); }
};
struct AddScalarOp {
  template <class T> EP_HD T operator()(T x, T s) const { return x + s; }
  template <class T> EP_HD T grad(T, T, T) const { return T(1); }
};
struct MulScalarOp {
  template <class T> EP_HD T operator()(T x, T s) const { return x * s; }
  template <class T> EP_HD T grad(T, T, T s) const { return s; }
};

struct AddOp { template <class T> EP_HD T operator()(T a, T b) const { return a + b; } };
struct SubOp { template <class T> EP_HD T operator()(T a, T b) const { return a - b; } };
struct MulOp { template <class T> EP_HD T operator()(T a, T b) const { return a * b; } };
struct DivOp { template <class T> EP_HD T operator()(T a, T b) const { return a / b; } };

// Calls f(functor) with the functor type selected by the runtime enum (host side, before launching).
template <class F> auto visit_unary(UnaryOp op, F&& f) {
  switch (op) {
    case UnaryOp::neg: return f(NegOp{});
    case UnaryOp::exp: return f(ExpOp{});
    case UnaryOp::log: return f(LogOp{});
    case UnaryOp::sqrt: return f(SqrtOp{});
    case UnaryOp::relu: return f(ReluOp{});
    case UnaryOp::relu6: return f(Relu6Op{});
    case UnaryOp::gelu: return f(GeluOp{});
    case UnaryOp::tanh: return f(TanhOp{});
    case UnaryOp::sigmoid: return f(SigmoidOp{});
    case UnaryOp::pow: return f(PowOp{});
    case UnaryOp::add_scalar: return f(AddScalarOp{});
    case UnaryOp::mul_scalar: return f(MulScalarOp{});
  }
  return f(NegOp{});
}
template <class F> auto visit_binary(BinaryOp op, F&& f) {
  switch (op) {
    case BinaryOp::add: return f(AddOp{});
    case BinaryOp::sub: return f(SubOp{});
    case BinaryOp::mul: return f(MulOp{});
    case BinaryOp::div: return f(DivOp{});
  }
  return f(AddOp{});
}

// Broadcast indexing: out index -> offsets into a and b (stride 0 along broadcast dims). Dims are merged where
// possible by the caller, so kMaxDims bounds the rank after merging.
constexpr int kMaxDims = 8;
struct BroadcastIndex {
  int ndim = 0;
  int64_t size[kMaxDims];
  int64_t stride_a[kMaxDims];
  int64_t stride_b[kMaxDims];
  // I is int64_t, or uint32_t when every index fits (64-bit division is several times slower on a GPU).
  template <class I = int64_t>
  EP_HD void offsets(I i, I& oa, I& ob) const {
    oa = 0;
    ob = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      I q = i / I(size[d]), r = i - q * I(size[d]);
      oa += r * I(stride_a[d]);
      ob += r * I(stride_b[d]);
      i = q;
    }
  }
};

}  // namespace ep
