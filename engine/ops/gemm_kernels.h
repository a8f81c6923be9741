// gemm_kernels.h — the raw row-major GEMM launchers (OpenBLAS on the CPU, cuBLAS on CUDA) and the bias add / bias
// gradient kernels of linear. Not autograd (engine/ops/matmul.cpp); public so conv2d and the benchmarks can call them.
// M, N, K: C [M,N] = alpha * op(A) [M,K] @ op(B) [K,N] + beta * C. op(A) = A stored [M,K], or A stored [K,M] when ta
// (likewise B stored [K,N], or [N,K] when tb). All buffers are contiguous row-major; `dt` is f32 or f64.
#pragma once
#include <cstdint>
#include <string>

#include "engine/device.h"
#include "engine/dispatch.h"

namespace ep {

// The precision of f32 GEMMs (torch.autocast's bf16 matmul, without bf16 tensors in the graph): `f32` computes in
// full fp32; `bf16` rounds both operands to bfloat16 (nearest even) and accumulates in fp32 into an fp32 result, so
// parameters, activations and gradients all stay fp32 (the master weights) and only the GEMMs run at bf16 speed.
// Per thread, so pipeline stages choose for themselves; it covers every GEMM launched while it is set (linear,
// matmul, the CPU's im2col convolutions), forward and backward alike. f64 GEMMs are never affected.
// The CPU computes bf16 mode as an fp32 GEMM of the rounded operands: the reference for cuBLAS's bf16 path.
enum class GemmPrecision : uint8_t { f32, bf16 };
GemmPrecision gemm_precision();
const char* gemm_precision_name(GemmPrecision p);
GemmPrecision parse_gemm_precision(const std::string& name);  // "f32" | "bf16"; ValueError otherwise
class GemmPrecisionGuard {
 public:
  explicit GemmPrecisionGuard(GemmPrecision p);
  ~GemmPrecisionGuard();
  GemmPrecisionGuard(const GemmPrecisionGuard&) = delete;
  GemmPrecisionGuard& operator=(const GemmPrecisionGuard&) = delete;

 private:
  GemmPrecision previous_;
};

// OpenBLAS's name for the kernels it picked ("SkylakeX", "Haswell", ...), and the OPENBLAS_CORETYPE worth asking for
// instead, or null. OpenBLAS picks kernels by CPU model when it loads and falls back to its SSE3 "Prescott" ones on a
// model newer than it knows: Debian 12's 0.3.21 did on an Emerald Rapids VM, where sgemm ran at 30 GFLOP/s instead of
// 103-127 with the AVX-512 kernels. Then this names the kernels for the instructions the CPU and OS do support
// (AVX-512 F/BW/DQ/VL: "SkylakeX"; AVX2 and FMA: "Haswell"). The apps set it before OpenBLAS loads (apps/cli.h).
const char* blas_kernels();
const char* blas_kernels_worth_asking_for();

// K == 0 gives C = beta * C (zeros when beta == 0, without reading C); M == 0 or N == 0 does nothing. Sizes must fit
// in int32 (BLAS and cuBLAS take int), else ValueError "[gemm] ...".
void gemm_cpu(DType dt, bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const void* A, const void* B,
              double beta, void* C);
// For i < batch: C + i*stride_c = alpha * op(A + i*stride_a) op(B + i*stride_b) + beta * C_i. Strides count elements;
// a stride of 0 shares that operand across the batch (never for C).
void gemm_strided_batched_cpu(DType dt, bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha,
                              const void* A, int64_t stride_a, const void* B, int64_t stride_b, double beta, void* C,
                              int64_t stride_c, int64_t batch);
// y [rows, cols] += bias [cols] (broadcast over rows)
void bias_add_cpu(DType dt, void* y, const void* bias, int64_t rows, int64_t cols);
// dbias [cols] = sum over rows of dy [rows, cols] (accumulated in double)
void bias_grad_cpu(DType dt, const void* dy, void* dbias, int64_t rows, int64_t cols);

// cuBLAS: row-major through the column-major swap (C^T = op(B)^T op(A)^T), on stream `st` of the device that owns it,
// under that device context's lock. f32 uses strict fp32 unless cuda::allow_tf32() (then TF32 tensor cores), or
// bf16 operands with fp32 accumulation under GemmPrecision::bf16.
EP_CUDA_API void gemm_cuda(DType dt, bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const void* A,
                           const void* B, double beta, void* C, cudaStream_t st) EP_CUDA_BODY("gemm")
EP_CUDA_API void gemm_strided_batched_cuda(DType dt, bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha,
                                           const void* A, int64_t stride_a, const void* B, int64_t stride_b,
                                           double beta, void* C, int64_t stride_c, int64_t batch, cudaStream_t st)
    EP_CUDA_BODY("gemm")
EP_CUDA_API void bias_add_cuda(DType dt, void* y, const void* bias, int64_t rows, int64_t cols, cudaStream_t st)
    EP_CUDA_BODY("linear")
// Deterministic two-pass column sums (block partials, then one pass over the partials): no atomics.
EP_CUDA_API void bias_grad_cuda(DType dt, const void* dy, void* dbias, int64_t rows, int64_t cols, cudaStream_t st)
    EP_CUDA_BODY("linear backward")

}  // namespace ep
