// dispatch.h — turns a runtime DType into a C++ type for templated kernels (host and .cu files alike).
// Not type promotion: ops require matching dtypes and say so.
#pragma once
#include "engine/check.h"
#include "engine/dtype.h"

// Dispatch by function, not by macro argument, so kernel bodies may hold `#pragma omp` lines. Usage:
//   dispatch_float(dt, "op", [&](auto tag) { using T = EP_TYPE(tag); ... });
#define EP_TYPE(tag) typename decltype(tag)::type

namespace ep {

template <class T> struct type_tag { using type = T; };

// f32 or f64 (the dtypes ops compute in).
template <class F> auto dispatch_float(DType dt, const char* op, F&& f) {
  switch (dt) {
    case DType::f32: return f(type_tag<float>{});
    case DType::f64: return f(type_tag<double>{});
    default: break;
  }
  EP_THROW(DTypeError, "[", op, "] unsupported dtype ", dtype_name(dt), " (expected f32 or f64)");
}

// i32 or i64 (index tensors).
template <class F> auto dispatch_index(DType dt, const char* op, F&& f) {
  switch (dt) {
    case DType::i32: return f(type_tag<int32_t>{});
    case DType::i64: return f(type_tag<int64_t>{});
    default: break;
  }
  EP_THROW(DTypeError, "[", op, "] index tensor must be i32 or i64, got ", dtype_name(dt));
}

// Every storage dtype.
template <class F> auto dispatch_all(DType dt, F&& f) {
  switch (dt) {
    case DType::f32: return f(type_tag<float>{});
    case DType::f64: return f(type_tag<double>{});
    case DType::f16: return f(type_tag<f16_t>{});
    case DType::bf16: return f(type_tag<bf16_t>{});
    case DType::u8: return f(type_tag<uint8_t>{});
    case DType::i8: return f(type_tag<int8_t>{});
    case DType::i16: return f(type_tag<int16_t>{});
    case DType::i32: return f(type_tag<int32_t>{});
    case DType::i64: return f(type_tag<int64_t>{});
  }
  EP_THROW(DTypeError, "[dispatch] bad dtype");
}

}  // namespace ep

// CUDA entry points are declared in engine/ops/*_kernels.h with these macros: a CPU-only build gets an inline body
// that throws "[op] built without CUDA" (MLX's no_gpu backend, without a separate stub file to keep in sync).
#ifdef EP_CUDA
#define EP_CUDA_API
#define EP_CUDA_BODY(op) ;
#else
#define EP_CUDA_API [[noreturn]] inline
#define EP_CUDA_BODY(op) \
  { EP_THROW(::ep::DeviceError, "[", op, "] built without CUDA"); }
#endif
