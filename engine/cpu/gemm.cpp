// gemm.cpp — CPU GEMM through OpenBLAS (cblas, row-major) and the bias add / bias gradient loops of linear.
// Not a GEMM implementation of our own: OpenBLAS threads each call, so batches simply loop (no nested parallelism).
#include <cblas.h>

#include <algorithm>
#include <climits>
#include <string>
#include <type_traits>
#include <vector>

#include "engine/ops/gemm_kernels.h"

namespace ep {

constexpr int64_t kParallelMin = 32768;  // below this, threads cost more than they save

// ---- GEMM precision (the setting lives here, in code every build has; cuBLAS reads it too) ----------------------
static thread_local GemmPrecision t_gemm_precision = GemmPrecision::f32;
GemmPrecision gemm_precision() { return t_gemm_precision; }
const char* gemm_precision_name(GemmPrecision p) { return p == GemmPrecision::bf16 ? "bf16" : "f32"; }
GemmPrecision parse_gemm_precision(const std::string& name) {
  if (name == "f32") return GemmPrecision::f32;
  if (name == "bf16") return GemmPrecision::bf16;
  EP_THROW(ValueError, "[gemm] unknown precision '", name, "' (expected f32 or bf16)");
}
GemmPrecisionGuard::GemmPrecisionGuard(GemmPrecision p) : previous_(t_gemm_precision) { t_gemm_precision = p; }
GemmPrecisionGuard::~GemmPrecisionGuard() { t_gemm_precision = previous_; }

const char* blas_kernels() { return openblas_get_corename(); }

const char* blas_kernels_worth_asking_for() {
#if defined(__x86_64__)
  if (std::string(openblas_get_corename()) != "Prescott") return nullptr;  // a model it knows: its own choice
  __builtin_cpu_init();  // libgcc's feature bits count AVX and AVX-512 only where the OS saves their registers
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl"))
    return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
  return nullptr;
}

// The first `n` floats of `src` rounded to bfloat16 and widened back (what a bf16 operand holds).
static std::vector<float> round_to_bf16(const float* src, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
#pragma omp parallel for if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) out[size_t(i)] = bf16_to_float(float_to_bf16(src[i]));
  return out;
}

static void check_blas_int(int64_t M, int64_t N, int64_t K) {
  EP_CHECK(M <= INT_MAX && N <= INT_MAX && K <= INT_MAX, ValueError, "[gemm] M=", M, " N=", N, " K=", K,
           " exceeds the int32 range of BLAS");
  EP_CHECK(M >= 0 && N >= 0 && K >= 0, ValueError, "[gemm] negative size M=", M, " N=", N, " K=", K);
}

// C = beta * C for an empty inner dimension (BLAS would reject lda = 0); beta == 0 writes zeros without reading C,
// as BLAS does, so uninitialized C (maybe NaN) never leaks through.
template <class T> static void scale_c(T* c, int64_t n, double beta) {
  if (beta == 0) {
    for (int64_t i = 0; i < n; ++i) c[i] = T(0);
  } else if (beta != 1) {
    for (int64_t i = 0; i < n; ++i) c[i] = T(beta * c[i]);
  }
}

template <class T>
static void gemm_one(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const T* A, const T* B,
                     double beta, T* C) {
  if (M == 0 || N == 0) return;
  if (K == 0) return scale_c(C, M * N, beta);
  // Row-major leading dimensions: the stored row length of each operand.
  int lda = int(ta ? M : K), ldb = int(tb ? K : N), ldc = int(N);
  CBLAS_TRANSPOSE opa = ta ? CblasTrans : CblasNoTrans, opb = tb ? CblasTrans : CblasNoTrans;
  if constexpr (std::is_same_v<T, float>)
    cblas_sgemm(CblasRowMajor, opa, opb, int(M), int(N), int(K), float(alpha), A, lda, B, ldb, float(beta), C, ldc);
  else
    cblas_dgemm(CblasRowMajor, opa, opb, int(M), int(N), int(K), alpha, A, lda, B, ldb, beta, C, ldc);
}

void gemm_cpu(DType dt, bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const void* A, const void* B,
              double beta, void* C) {
  check_blas_int(M, N, K);
  if (dt == DType::f32 && gemm_precision() == GemmPrecision::bf16)
    return gemm_strided_batched_cpu(dt, ta, tb, M, N, K, alpha, A, 0, B, 0, beta, C, M * N, 1);
  dispatch_float(dt, "gemm", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    gemm_one<T>(ta, tb, M, N, K, alpha, static_cast<const T*>(A), static_cast<const T*>(B), beta, static_cast<T*>(C));
  });
}

void gemm_strided_batched_cpu(DType dt, bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha,
                              const void* A, int64_t stride_a, const void* B, int64_t stride_b, double beta, void* C,
                              int64_t stride_c, int64_t batch) {
  check_blas_int(M, N, K);
  EP_CHECK(batch >= 0 && stride_a >= 0 && stride_b >= 0, ValueError, "[gemm] negative batch ", batch, " or stride");
  EP_CHECK(batch <= 1 || stride_c >= M * N, ValueError, "[gemm] stride_c ", stride_c, " overlaps the ", M, "x", N,
           " outputs");
  if (dt == DType::f32 && gemm_precision() == GemmPrecision::bf16 && batch > 0 && M > 0 && N > 0 && K > 0) {
    // The extents the batch reads: one operand block, plus a stride per further batch entry.
    std::vector<float> a = round_to_bf16(static_cast<const float*>(A), stride_a * (batch - 1) + M * K);
    std::vector<float> b = round_to_bf16(static_cast<const float*>(B), stride_b * (batch - 1) + K * N);
    float* c = static_cast<float*>(C);
    for (int64_t i = 0; i < batch; ++i)
      gemm_one<float>(ta, tb, M, N, K, alpha, a.data() + i * stride_a, b.data() + i * stride_b, beta, c + i * stride_c);
    return;
  }
  dispatch_float(dt, "gemm", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    const T* a = static_cast<const T*>(A);
    const T* b = static_cast<const T*>(B);
    T* c = static_cast<T*>(C);
    for (int64_t i = 0; i < batch; ++i)
      gemm_one<T>(ta, tb, M, N, K, alpha, a + i * stride_a, b + i * stride_b, beta, c + i * stride_c);
  });
}

void bias_add_cpu(DType dt, void* y, const void* bias, int64_t rows, int64_t cols) {
  dispatch_float(dt, "linear", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    T* yp = static_cast<T*>(y);
    const T* bp = static_cast<const T*>(bias);
#pragma omp parallel for if (rows * cols > kParallelMin)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) yp[r * cols + c] += bp[c];
  });
}

void bias_grad_cpu(DType dt, const void* dy, void* dbias, int64_t rows, int64_t cols) {
  dispatch_float(dt, "linear backward", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    const T* g = static_cast<const T*>(dy);
    T* db = static_cast<T*>(dbias);
    // Tiles of columns in parallel, each column summed in a fixed row order (the same bits for any thread count);
    // a tile walks the rows so reads stay sequential.
    constexpr int64_t kTile = 64;
    int64_t tiles = (cols + kTile - 1) / kTile;
#pragma omp parallel for if (rows * cols > kParallelMin)
    for (int64_t t = 0; t < tiles; ++t) {
      int64_t c0 = t * kTile, w = std::min(kTile, cols - c0);
      double acc[kTile] = {};
      for (int64_t r = 0; r < rows; ++r) {
        const T* row = g + r * cols + c0;
        for (int64_t j = 0; j < w; ++j) acc[j] += double(row[j]);
      }
      for (int64_t j = 0; j < w; ++j) db[c0 + j] = T(acc[j]);
    }
  });
}

}  // namespace ep
