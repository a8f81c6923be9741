// matmul.cpp — matmul (2-D, batched 3-D, shared 2-D operand, transposed operands) and linear, forward and backward,
// all as GEMM launches (engine/ops/gemm_kernels.h). Not a general N-D broadcasting matmul: 2-D and 3-D only.
// B = batch, M/N/K = the product's sizes (op(a) [M,K] @ op(b) [K,N]), rows = all leading dims of linear's input.
#include "engine/ops.h"
#include "engine/op_registry.h"
#include "engine/ops/gemm_kernels.h"

namespace ep {

EP_DIFFERENTIABLE_OPS("matmul", "linear");

namespace {

const char* at(const void* p, int64_t elems, DType dt) {
  return static_cast<const char*>(p) + size_t(elems) * dtype_size(dt);
}

// One strided-batched GEMM on `dev`: C_i = op(A_i) op(B_i), i < batch, with C_i contiguous blocks of M*N. A zero
// stride shares that operand. With `sum_batch` the products are summed into a single C instead (the gradient of a
// shared operand), in batch order, so the result does not depend on threading.
void batched_gemm(Device dev, DType dt, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const void* A, int64_t sa,
                  const void* B, int64_t sb, void* C, int64_t batch, bool sum_batch) {
  auto call = [&](bool ta_, bool tb_, int64_t m, int64_t n, int64_t k, const void* a, int64_t sa_, const void* b,
                  int64_t sb_, double beta, void* c, int64_t nb) {
    if (dev.is_cuda())
      gemm_strided_batched_cuda(dt, ta_, tb_, m, n, k, 1.0, a, sa_, b, sb_, beta, c, m * n, nb, current_stream(dev));
    else
      gemm_strided_batched_cpu(dt, ta_, tb_, m, n, k, 1.0, a, sa_, b, sb_, beta, c, m * n, nb);
  };
  if (!sum_batch) {
    // Untransposed A blocks stacked on a shared B are one taller product: [B*M, K] @ op(B) (one BLAS call on the CPU).
    if (batch > 1 && !ta && sa == M * K && sb == 0) return call(false, tb, batch * M, N, K, A, 0, B, 0, 0.0, C, 1);
    return call(ta, tb, M, N, K, A, sa, B, sb, 0.0, C, batch);
  }
  // sum_i A_i^T B_i with A_i [K,M], B_i [K,N] stacked is (A stacked [B*K,M])^T (B stacked [B*K,N]): one GEMM whose
  // inner dimension runs over the batch too. An empty batch falls here as well (K' = 0 writes zeros).
  if ((ta && !tb && sa == K * M && sb == K * N) || batch == 0)
    return call(ta, tb, M, N, batch * K, A, 0, B, 0, 0.0, C, 1);
  for (int64_t i = 0; i < batch; ++i)
    call(ta, tb, M, N, K, at(A, i * sa, dt), 0, at(B, i * sb, dt), 0, i == 0 ? 0.0 : 1.0, C, 1);
}

int64_t leading_rows(const Shape& s) {  // product of all dims but the last
  int64_t r = 1;
  for (size_t i = 0; i + 1 < s.size(); ++i) r *= s[i];
  return r;
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b) {
  check_floating("matmul", a);
  check_same_dtype("matmul", a, b);
  check_same_device("matmul", a, b);
  EP_CHECK(a.dim() == 2 || a.dim() == 3, ShapeError, "[matmul] expected a 2-D or 3-D a, got ", shape_str(a.shape()));
  EP_CHECK(b.dim() == 2 || b.dim() == 3, ShapeError, "[matmul] expected a 2-D or 3-D b, got ", shape_str(b.shape()));
  EP_CHECK(a.dim() == 2 || b.dim() == 2 || a.size(0) == b.size(0), ShapeError, "[matmul] batch sizes differ: a ",
           shape_str(a.shape()), " and b ", shape_str(b.shape()));
  const bool batched = a.dim() == 3 || b.dim() == 3;
  const int64_t batch = a.dim() == 3 ? a.size(0) : b.dim() == 3 ? b.size(0) : 1;
  const int64_t M = trans_a ? a.size(-1) : a.size(-2), K = trans_a ? a.size(-2) : a.size(-1);
  const int64_t N = trans_b ? b.size(-2) : b.size(-1), Kb = trans_b ? b.size(-1) : b.size(-2);
  EP_CHECK(K == Kb, ShapeError, "[matmul] inner dimensions differ: a ", shape_str(a.shape()),
           trans_a ? " (transposed)" : "", " has K=", K, ", b ", shape_str(b.shape()), trans_b ? " (transposed)" : "",
           " has K=", Kb);
  // A zero stride marks the 2-D operand shared by every batch element.
  const int64_t sa = a.dim() == 3 ? M * K : 0, sb = b.dim() == 3 ? K * N : 0;
  Shape shape = batched ? Shape{batch, M, N} : Shape{M, N};
  Tensor out = empty(shape, a.dtype(), a.device());
  batched_gemm(a.device(), a.dtype(), trans_a, trans_b, M, N, K, a.raw_data(), sa, b.raw_data(), sb, out.raw_data(),
               batch, false);

  record(out, "matmul", {a, b},
         [as = saved(a), bs = saved(b), trans_a, trans_b, M, N, K, sa, sb, batch, batched](const Tensor& dc,
                                                                                            const NeedsGrad& need) {
           Device dev = dc.device();
           DType dt = dc.dtype();
           const int64_t sc = M * N;
           Tensor da, db;
           // C = op(A) op(B):  d op(A) = dC op(B)^T,  d op(B) = op(A)^T dC; a transposed operand takes the transpose
           // of its gradient, written as a GEMM with swapped operands. A shared operand sums over the batch.
           if (need[0]) {
             da = empty(as.shape(), dt, dev);
             bool sum = batched && sa == 0;
             if (!trans_a)  // dA [M,K] = dC [M,N] @ op(B)^T
               batched_gemm(dev, dt, false, !trans_b, M, K, N, dc.raw_data(), sc, bs.raw_data(), sb, da.raw_data(),
                            batch, sum);
             else  // dA [K,M] = op(B) [K,N] @ dC^T
               batched_gemm(dev, dt, trans_b, true, K, M, N, bs.raw_data(), sb, dc.raw_data(), sc, da.raw_data(),
                            batch, sum);
           }
           if (need[1]) {
             db = empty(bs.shape(), dt, dev);
             bool sum = batched && sb == 0;
             if (!trans_b)  // dB [K,N] = op(A)^T @ dC
               batched_gemm(dev, dt, !trans_a, false, K, N, M, as.raw_data(), sa, dc.raw_data(), sc, db.raw_data(),
                            batch, sum);
             else  // dB [N,K] = dC^T @ op(A)
               batched_gemm(dev, dt, true, trans_a, N, K, M, dc.raw_data(), sc, as.raw_data(), sa, db.raw_data(),
                            batch, sum);
           }
           return std::vector<Tensor>{da, db};
         });
  return out;
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_floating("linear", x);
  check_same_dtype("linear", x, weight);
  check_same_device("linear", x, weight);
  EP_CHECK(weight.dim() == 2, ShapeError, "[linear] expected a 2-D weight [out,in], got ", shape_str(weight.shape()));
  EP_CHECK(x.dim() >= 1, ShapeError, "[linear] expected an input [..., in], got ", shape_str(x.shape()));
  const int64_t out_f = weight.size(0), in_f = weight.size(1);
  EP_CHECK(x.size(-1) == in_f, ShapeError, "[linear] input ", shape_str(x.shape()), " does not match weight ",
           shape_str(weight.shape()), ": last dim ", x.size(-1), " != in_features ", in_f);
  if (bias.defined()) {
    check_same_dtype("linear", x, bias);
    check_same_device("linear", x, bias);
    EP_CHECK(bias.shape() == Shape{out_f}, ShapeError, "[linear] expected a bias [", out_f, "] for weight ",
             shape_str(weight.shape()), ", got ", shape_str(bias.shape()));
  }
  const int64_t rows = leading_rows(x.shape());
  Shape shape = x.shape();
  shape.back() = out_f;
  Tensor y = empty(shape, x.dtype(), x.device());
  const DType dt = x.dtype();
  const Device dev = x.device();
  // y [rows,out] = x [rows,in] @ W^T
  if (dev.is_cuda()) {
    cudaStream_t st = current_stream(dev);
    gemm_cuda(dt, false, true, rows, out_f, in_f, 1.0, x.raw_data(), weight.raw_data(), 0.0, y.raw_data(), st);
    if (bias.defined()) bias_add_cuda(dt, y.raw_data(), bias.raw_data(), rows, out_f, st);
  } else {
    gemm_cpu(dt, false, true, rows, out_f, in_f, 1.0, x.raw_data(), weight.raw_data(), 0.0, y.raw_data());
    if (bias.defined()) bias_add_cpu(dt, y.raw_data(), bias.raw_data(), rows, out_f);
  }

  record(y, "linear", {x, weight, bias},
         [xs = saved(x), ws = saved(weight), bias_shape = bias.defined() ? bias.shape() : Shape{}, rows, in_f,
          out_f](const Tensor& dy, const NeedsGrad& need) {
           Device dev = dy.device();
           DType dt = dy.dtype();
           cudaStream_t st = dev.is_cuda() ? current_stream(dev) : nullptr;
           Tensor dx, dw, db;
           if (need[0]) {  // dx [rows,in] = dy [rows,out] @ W [out,in]
             dx = empty(xs.shape(), dt, dev);
             if (dev.is_cuda())
               gemm_cuda(dt, false, false, rows, in_f, out_f, 1.0, dy.raw_data(), ws.raw_data(), 0.0, dx.raw_data(),
                         st);
             else
               gemm_cpu(dt, false, false, rows, in_f, out_f, 1.0, dy.raw_data(), ws.raw_data(), 0.0, dx.raw_data());
           }
           if (need[1]) {  // dW [out,in] = dy^T @ x, summed over every leading dim through the GEMM's inner dim
             dw = empty(ws.shape(), dt, dev);
             if (dev.is_cuda())
               gemm_cuda(dt, true, false, out_f, in_f, rows, 1.0, dy.raw_data(), xs.raw_data(), 0.0, dw.raw_data(),
                         st);
             else
               gemm_cpu(dt, true, false, out_f, in_f, rows, 1.0, dy.raw_data(), xs.raw_data(), 0.0, dw.raw_data());
           }
           if (need[2]) {  // db [out] = column sums of dy
             db = empty(bias_shape, dt, dev);
             if (dev.is_cuda())
               bias_grad_cuda(dt, dy.raw_data(), db.raw_data(), rows, out_f, st);
             else
               bias_grad_cpu(dt, dy.raw_data(), db.raw_data(), rows, out_f);
           }
           return std::vector<Tensor>{dx, dw, db};
         });
  return y;
}

}  // namespace ep
