// cublas_gemm.cpp — row-major GEMM on cuBLAS (single and strided-batched) for f32 and f64, host code only.
// Not cuBLASLt epilogues and no algorithm search: linear adds its bias with engine/cuda/bias.cu, and cuBLAS's own
// heuristics pick the kernel. A host .cpp, not a .cu, so changing it does not cost an nvcc build (llm.c #386).
#include <climits>

#include "engine/cuda/context.h"
#include "engine/ops/convert_kernels.h"
#include "engine/ops/gemm_kernels.h"

namespace ep {

namespace {

// The device that owns `st`: ops pass the current stream of the tensor's device, which may not be this thread's
// current device, and cuBLAS handles are per device.
int stream_device(cudaStream_t st) {
  int dev = 0;
#if CUDART_VERSION >= 12080
  if (st) {
    CUDA_CHECK(cudaStreamGetDevice(st, &dev));
    return dev;
  }
#endif
  CUDA_CHECK(cudaGetDevice(&dev));
  return dev;
}

void check_sizes(int64_t M, int64_t N, int64_t K, int64_t batch) {
  EP_CHECK(M >= 0 && N >= 0 && K >= 0 && batch >= 0, ValueError, "[gemm] negative size M=", M, " N=", N, " K=", K,
           " batch=", batch);
  EP_CHECK(M <= INT_MAX && N <= INT_MAX && K <= INT_MAX && batch <= INT_MAX, ValueError, "[gemm] M=", M, " N=", N,
           " K=", K, " batch=", batch, " exceeds the int32 range of cuBLAS");
}

// Column-major view of the row-major product (C^T = op(B)^T op(A)^T): cuBLAS's first operand is our B.
struct ColMajor {
  cublasOperation_t op_b, op_a;
  int m, n, k, ldb, lda, ldc;
};
ColMajor col_major(bool ta, bool tb, int64_t M, int64_t N, int64_t K) {
  return {tb ? CUBLAS_OP_T : CUBLAS_OP_N,
          ta ? CUBLAS_OP_T : CUBLAS_OP_N,
          int(N),
          int(M),
          int(K),
          int(tb ? K : N),
          int(ta ? M : K),
          int(N)};
}

// C = beta * C over `batch` blocks of M*N for an empty inner dimension (cuBLAS rejects lda = 0). beta == 0 writes
// zeros without reading C.
void scale_c(cublasHandle_t h, DType dt, double beta, void* C, int64_t mn, int64_t stride_c, int64_t batch,
             cudaStream_t st) {
  size_t esize = dtype_size(dt);
  for (int64_t i = 0; i < batch; ++i) {
    char* c = static_cast<char*>(C) + size_t(i * stride_c) * esize;
    if (beta == 0) {
      CUDA_CHECK(cudaMemsetAsync(c, 0, size_t(mn) * esize, st));
    } else if (beta != 1) {
      EP_CHECK(mn <= INT_MAX, ValueError, "[gemm] ", mn, " outputs exceed the int32 range of cuBLAS");
      if (dt == DType::f32) {
        float b = float(beta);
        CUBLAS_CHECK(cublasSscal(h, int(mn), &b, static_cast<float*>(static_cast<void*>(c)), 1));
      } else {
        CUBLAS_CHECK(cublasDscal(h, int(mn), &beta, static_cast<double*>(static_cast<void*>(c)), 1));
      }
    }
  }
}

}  // namespace

void gemm_strided_batched_cuda(DType dt, bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha,
                               const void* A, int64_t stride_a, const void* B, int64_t stride_b, double beta, void* C,
                               int64_t stride_c, int64_t batch, cudaStream_t st) {
  EP_CHECK(dt == DType::f32 || dt == DType::f64, DTypeError, "[gemm] unsupported dtype ", dtype_name(dt),
           " (expected f32 or f64)");
  check_sizes(M, N, K, batch);
  EP_CHECK(stride_a >= 0 && stride_b >= 0, ValueError, "[gemm] negative stride");
  EP_CHECK(batch <= 1 || stride_c >= M * N, ValueError, "[gemm] stride_c ", stride_c, " overlaps the ", M, "x", N,
           " outputs");
  if (M == 0 || N == 0 || batch == 0) return;
  int dev = stream_device(st);
  cuda::set_device(dev);
  cuda::DeviceContext& ctx = cuda::context(dev);
  std::lock_guard<std::mutex> guard(ctx.stream_lock(st));  // this stream's workspaces, until the GEMM is queued
  cublasHandle_t h = cuda::thread_handles(dev).cublas;
  CUBLAS_CHECK(cublasSetStream(h, st));
  // A workspace of this stream's own (cublasSetStream has just reset it to cuBLAS's shared pool). cuBLAS's results
  // are bitwise reproducible only when streams running at the same time, as pipeline stages on one GPU do, do not
  // share one (cuBLAS guide, "Results reproducibility"). 32 MiB: NVIDIA's recommendation for Hopper.
  constexpr size_t kCublasWorkspace = size_t(32) << 20;
  CUBLAS_CHECK(cublasSetWorkspace(h, ctx.ensure_workspace(kCublasWorkspace, st, /*slot=*/1), kCublasWorkspace));
  CUBLAS_CHECK(cublasSetPointerMode(h, CUBLAS_POINTER_MODE_HOST));  // alpha/beta live on the host
  if (K == 0) return scale_c(h, dt, beta, C, M * N, stride_c, batch, st);
  // Strict fp32 by default so CPU-vs-CUDA parity holds; TF32 only when asked for (DESIGN.md §3, --deterministic).
  CUBLAS_CHECK(cublasSetMathMode(h, cuda::allow_tf32() ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  ColMajor g = col_major(ta, tb, M, N, K);
  if (dt == DType::f32 && gemm_precision() == GemmPrecision::bf16) {
    // bf16 copies of the extents the batch reads, in this stream's workspace (stream-ordered: the previous user of
    // the workspace on this stream has finished), then bf16 x bf16 -> fp32 with fp32 accumulation.
    const int64_t na = stride_a * (batch - 1) + M * K, nb = stride_b * (batch - 1) + K * N;
    const size_t a_bytes = (size_t(na) * 2 + 255) / 256 * 256;
    char* ws = static_cast<char*>(ctx.ensure_workspace(a_bytes + size_t(nb) * 2, st));
    cast_cuda(A, DType::f32, ws, DType::bf16, na, st);
    cast_cuda(B, DType::f32, ws + a_bytes, DType::bf16, nb, st);
    float al = float(alpha), be = float(beta);
    CUBLAS_CHECK(cublasGemmStridedBatchedEx(h, g.op_b, g.op_a, g.m, g.n, g.k, &al, ws + a_bytes, CUDA_R_16BF, g.ldb,
                                            stride_b, ws, CUDA_R_16BF, g.lda, stride_a, &be, C, CUDA_R_32F, g.ldc,
                                            stride_c, int(batch), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return;
  }
  if (dt == DType::f32) {
    float al = float(alpha), be = float(beta);
    const float* a = static_cast<const float*>(A);
    const float* b = static_cast<const float*>(B);
    float* c = static_cast<float*>(C);
    if (batch == 1)
      CUBLAS_CHECK(cublasSgemm(h, g.op_b, g.op_a, g.m, g.n, g.k, &al, b, g.ldb, a, g.lda, &be, c, g.ldc));
    else
      CUBLAS_CHECK(cublasSgemmStridedBatched(h, g.op_b, g.op_a, g.m, g.n, g.k, &al, b, g.ldb, stride_b, a, g.lda,
                                             stride_a, &be, c, g.ldc, stride_c, int(batch)));
  } else {
    const double* a = static_cast<const double*>(A);
    const double* b = static_cast<const double*>(B);
    double* c = static_cast<double*>(C);
    if (batch == 1)
      CUBLAS_CHECK(cublasDgemm(h, g.op_b, g.op_a, g.m, g.n, g.k, &alpha, b, g.ldb, a, g.lda, &beta, c, g.ldc));
    else
      CUBLAS_CHECK(cublasDgemmStridedBatched(h, g.op_b, g.op_a, g.m, g.n, g.k, &alpha, b, g.ldb, stride_b, a, g.lda,
                                             stride_a, &beta, c, g.ldc, stride_c, int(batch)));
  }
}

void gemm_cuda(DType dt, bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const void* A,
               const void* B, double beta, void* C, cudaStream_t st) {
  gemm_strided_batched_cuda(dt, ta, tb, M, N, K, alpha, A, 0, B, 0, beta, C, M * N, 1, st);
}

}  // namespace ep
