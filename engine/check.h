// check.h — the engine's error types and the check macros for CUDA, cuBLAS and cuDNN.
// Not a logger: library code throws, apps catch and print; nothing here aborts.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace ep {

// Base of every engine error. Messages start with the op or file name: "[conv2d] expected 4-D input, got [3,32]".
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct ShapeError : Error { using Error::Error; };   // incompatible or malformed shapes
struct DTypeError : Error { using Error::Error; };   // unsupported or mismatched dtypes
struct DeviceError : Error { using Error::Error; };  // wrong device, CUDA missing, cross-device mix
struct ValueError : Error { using Error::Error; };   // bad scalar arguments (negative sizes, p outside [0,1], ...)
struct CudaError : Error { using Error::Error; };    // a CUDA / cuBLAS / cuDNN call failed
struct IOError : Error { using Error::Error; };      // files: missing, truncated, corrupt
struct AnomalyError : Error { using Error::Error; }; // anomaly mode: an op made NaN/Inf (engine/anomaly.h)
// A device, or its --memory-limit, has no room for an allocation. Nothing is left half-done: the caller may free
// memory and retry smaller (the trainers retry a step in more micro-batches).
struct OutOfMemoryError : Error { using Error::Error; };

namespace detail {
template <class... Args>
std::string concat(Args&&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

}  // namespace ep

// EP_CHECK(cond, ErrorType, "[op] message parts", ...) throws ErrorType with the concatenated message.
#define EP_CHECK(cond, ErrType, ...)                                  \
  do {                                                                \
    if (!(cond)) throw ErrType(::ep::detail::concat(__VA_ARGS__));    \
  } while (0)

#define EP_THROW(ErrType, ...) throw ErrType(::ep::detail::concat(__VA_ARGS__))

// One generic macro for the NVIDIA libraries (ggml's CUDA_CHECK_GEN): file:line, the call, the library's message.
#define EP_LIB_CHECK(expr, ok, to_string)                                                              \
  do {                                                                                                 \
    auto ep_status_ = (expr);                                                                          \
    if (ep_status_ != (ok))                                                                            \
      throw ::ep::CudaError(::ep::detail::concat(__FILE__, ":", __LINE__, ": ", #expr, " failed: ",    \
                                                 to_string(ep_status_)));                              \
  } while (0)

#define CUDA_CHECK(expr) EP_LIB_CHECK(expr, cudaSuccess, cudaGetErrorString)
#define CUBLAS_CHECK(expr) EP_LIB_CHECK(expr, CUBLAS_STATUS_SUCCESS, cublasGetStatusString)
#define CUDNN_CHECK(expr) EP_LIB_CHECK(expr, CUDNN_STATUS_SUCCESS, cudnnGetErrorString)
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

// Destructors must not throw: print and continue (tiny-cuda-nn's *_CHECK_PRINT).
#define CUDA_CHECK_PRINT(expr)                                                                   \
  do {                                                                                           \
    auto ep_status_ = (expr);                                                                    \
    if (ep_status_ != cudaSuccess)                                                               \
      fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #expr,                       \
              cudaGetErrorString(ep_status_));                                                   \
  } while (0)
