// test_matmul.cpp — matmul (every trans combination, 3-D batches, a shared 2-D operand), linear, and the raw GEMM
// launchers: float64 gradchecks, CPU-vs-CUDA parity on awkward shapes, hand-computed products and typed errors.
// Not a GEMM benchmark (apps/bench does that).
#include <doctest/doctest.h>

#include <cmath>

#include "engine/ops/gemm_kernels.h"
#include "tests/test_util.h"

using namespace ep;
using test::OpFn;

namespace {

Tensor leaf(const Shape& s, uint64_t seed) {
  return test::randn(s, seed, DType::f64, test::test_device()).requires_grad_();
}

Tensor pf32(const Shape& s, uint64_t seed) { return test::randn(s, seed, DType::f32).requires_grad_(); }

// Stored shape of an operand whose op() is [rows, cols].
Shape stored(int64_t rows, int64_t cols, bool trans) { return trans ? Shape{cols, rows} : Shape{rows, cols}; }
Shape stored3(int64_t b, int64_t rows, int64_t cols, bool trans) {
  return trans ? Shape{b, cols, rows} : Shape{b, rows, cols};
}

// Host reference: C = alpha * op(A) op(B) + beta * C, row-major, in double.
std::vector<double> naive_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha,
                               const std::vector<double>& A, const std::vector<double>& B, double beta,
                               std::vector<double> C) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double acc = 0;
      for (int64_t k = 0; k < K; ++k) {
        double a = ta ? A[size_t(k * M + i)] : A[size_t(i * K + k)];
        double b = tb ? B[size_t(j * K + k)] : B[size_t(k * N + j)];
        acc += a * b;
      }
      C[size_t(i * N + j)] = alpha * acc + beta * C[size_t(i * N + j)];
    }
  return C;
}

}  // namespace

TEST_CASE("matmul: hand-computed 2x3 @ 3x2 under every transpose flag") {
  // [[1,2,3],[4,5,6]] @ [[7,8],[9,10],[11,12]]
  //   = [[1*7+2*9+3*11, 1*8+2*10+3*12], [4*7+5*9+6*11, 4*8+5*10+6*12]] = [[58,64],[139,154]]
  const std::vector<double> expect{58, 64, 139, 154};
  for (DType dt : {DType::f32, DType::f64}) {
    Device d = test::test_device();
    Tensor a = from_vector({1, 2, 3, 4, 5, 6}, {2, 3}, dt, d);
    Tensor at = from_vector({1, 4, 2, 5, 3, 6}, {3, 2}, dt, d);  // a^T stored
    Tensor b = from_vector({7, 8, 9, 10, 11, 12}, {3, 2}, dt, d);
    Tensor bt = from_vector({7, 9, 11, 8, 10, 12}, {2, 3}, dt, d);  // b^T stored
    CHECK(matmul(a, b).to_double_vector() == expect);
    CHECK(matmul(at, b, true, false).to_double_vector() == expect);
    CHECK(matmul(a, bt, false, true).to_double_vector() == expect);
    CHECK(matmul(at, bt, true, true).to_double_vector() == expect);
    CHECK(matmul(a, b).shape() == Shape{2, 2});
  }
}

TEST_CASE("matmul: hand-computed batches, with and without a shared b") {
  Device d = test::test_device();
  // batch 0: [1,2] . [3,4] = 11; batch 1: [5,6] . [7,8] = 83
  Tensor a = from_vector({1, 2, 5, 6}, {2, 1, 2}, DType::f64, d);
  Tensor b = from_vector({3, 4, 7, 8}, {2, 2, 1}, DType::f64, d);
  CHECK(matmul(a, b).shape() == Shape{2, 1, 1});
  CHECK(matmul(a, b).to_double_vector() == std::vector<double>{11, 83});
  // shared b = [[0,1],[1,0]] swaps the columns of every batch element; trans_b of a symmetric b changes nothing.
  Tensor a2 = from_vector({1, 2, 3, 4, 5, 6, 7, 8}, {2, 2, 2}, DType::f64, d);
  Tensor swap = from_vector({0, 1, 1, 0}, {2, 2}, DType::f64, d);
  CHECK(matmul(a2, swap).to_double_vector() == std::vector<double>{2, 1, 4, 3, 6, 5, 8, 7});
  CHECK(matmul(a2, swap, false, true).to_double_vector() == std::vector<double>{2, 1, 4, 3, 6, 5, 8, 7});
  // trans_a with a shared b: a2[0]^T = [[1,3],[2,4]] -> columns swapped [[3,1],[4,2]]
  CHECK(matmul(a2, swap, true, false).to_double_vector() == std::vector<double>{3, 1, 4, 2, 7, 5, 8, 6});
  // shared 2-D a against a 3-D b: swap @ b[i] swaps the rows
  CHECK(matmul(swap, a2).to_double_vector() == std::vector<double>{3, 4, 1, 2, 7, 8, 5, 6});
}

TEST_CASE("matmul: empty M, N, K and batch") {
  Device d = test::test_device();
  // M = 0: empty result; the gradient of b is a sum over no rows, so zeros.
  Tensor a = leaf({0, 3}, 1), b = leaf({3, 4}, 2);
  Tensor c = matmul(a, b);
  CHECK(c.shape() == Shape{0, 4});
  c.backward(zeros({0, 4}, DType::f64, d));
  CHECK(b.grad().to_double_vector() == std::vector<double>(12, 0.0));
  CHECK(a.grad().shape() == Shape{0, 3});
  // K = 0: a product over an empty inner dimension is zeros (never the uninitialized output buffer).
  for (int rep = 0; rep < 3; ++rep) {
    Tensor k0 = matmul(full({5, 0}, 1.0, DType::f32, d), full({0, 7}, 1.0, DType::f32, d));
    CHECK(k0.shape() == Shape{5, 7});
    CHECK(k0.to_double_vector() == std::vector<double>(35, 0.0));
  }
  Tensor k0b = matmul(zeros({2, 5, 0}, DType::f64, d), zeros({0, 3}, DType::f64, d), false, false);
  CHECK(k0b.to_double_vector() == std::vector<double>(30, 0.0));
  // N = 0
  CHECK(matmul(zeros({3, 2}, DType::f32, d), zeros({2, 0}, DType::f32, d)).shape() == Shape{3, 0});
  // batch 0 with a shared b: empty output, zero gradient for b
  Tensor a3 = leaf({0, 2, 3}, 3), b2 = leaf({3, 4}, 4);
  Tensor c3 = matmul(a3, b2);
  CHECK(c3.shape() == Shape{0, 2, 4});
  c3.backward(zeros({0, 2, 4}, DType::f64, d));
  CHECK(b2.grad().to_double_vector() == std::vector<double>(12, 0.0));
}

TEST_CASE("matmul: gradcheck in float64, every transpose flag, 2-D and batched") {
  const int64_t M = 3, N = 4, K = 5, B = 2;
  OpFn fn;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      INFO("trans_a " << ta << " trans_b " << tb);
      auto f = [ta, tb](const std::vector<Tensor>& in) { return matmul(in[0], in[1], ta, tb); };
      test::gradcheck(f, {leaf(stored(M, K, ta), 10), leaf(stored(K, N, tb), 11)});                       // 2-D
      test::gradcheck(f, {leaf(stored3(B, M, K, ta), 12), leaf(stored3(B, K, N, tb), 13)});               // 3-D
      test::gradcheck(f, {leaf(stored3(B + 1, M, K, ta), 14), leaf(stored(K, N, tb), 15)});               // shared b
      test::gradcheck(f, {leaf(stored(M, K, ta), 16), leaf(stored3(B + 1, K, N, tb), 17)});               // shared a
      test::gradcheck(f, {leaf(stored3(B, 1, K, ta), 18), leaf(stored3(B, K, 1, tb), 19)});               // size-1
    }
  // Only one input needing a gradient.
  Tensor w = test::randn({4, 2}, 20, DType::f64, test::test_device());
  // (The constant follows the input's dtype: gradcheck also runs the function in float32.)
  test::gradcheck([&](const std::vector<Tensor>& in) { return matmul(in[0], w.to(in[0].dtype())); },
                  {leaf({2, 3, 4}, 21)});
}

TEST_CASE("matmul: CUDA matches CPU on awkward shapes") {
  auto f = [](bool ta, bool tb) {
    return OpFn([ta, tb](const std::vector<Tensor>& in) { return matmul(in[0], in[1], ta, tb); });
  };
  test::check_parity(f(false, false), {pf32({1029, 917}, 1), pf32({917, 33}, 2)});
  test::check_parity(f(true, true), {pf32({917, 1029}, 3), pf32({33, 917}, 4)});
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      INFO("trans_a " << ta << " trans_b " << tb);
      test::check_parity(f(ta, tb), {pf32(stored(37, 19, ta), 5), pf32(stored(19, 1, tb), 6)});
      test::check_parity(f(ta, tb), {pf32(stored3(3, 17, 5, ta), 7), pf32(stored3(3, 5, 11, tb), 8)});
      test::check_parity(f(ta, tb), {pf32(stored3(5, 1, 7, ta), 9), pf32(stored(7, 3, tb), 10)});
      test::check_parity(f(ta, tb), {pf32(stored(6, 7, ta), 11), pf32(stored3(4, 7, 9, tb), 12)});
      test::check_parity(f(ta, tb), {pf32(stored(0, 6, ta), 13), pf32(stored(6, 5, tb), 14)});  // M = 0
      test::check_parity(f(ta, tb), {pf32(stored(4, 0, ta), 15), pf32(stored(0, 5, tb), 16)});  // K = 0
      test::check_parity(f(ta, tb), {pf32(stored3(0, 4, 6, ta), 17), pf32(stored(6, 5, tb), 18)});  // batch 0
    }
}

TEST_CASE("linear: hand-computed forward and backward") {
  Device d = test::test_device();
  // x = [[1,2,3],[4,5,6]], W = [[1,0,-1],[2,1,0]], b = [10,20]
  // y = x W^T + b = [[1-3+10, 2+2+20], [4-6+10, 8+5+20]] = [[8,24],[8,33]]
  Tensor x = from_vector({1, 2, 3, 4, 5, 6}, {2, 3}, DType::f64, d).requires_grad_();
  Tensor w = from_vector({1, 0, -1, 2, 1, 0}, {2, 3}, DType::f64, d).requires_grad_();
  Tensor b = from_vector({10, 20}, {2}, DType::f64, d).requires_grad_();
  Tensor y = linear(x, w, b);
  CHECK(y.to_double_vector() == std::vector<double>{8, 24, 8, 33});
  // dy = ones: dx = ones @ W = [[3,1,-1],[3,1,-1]], dW = ones^T @ x = [[5,7,9],[5,7,9]], db = [2,2]
  y.backward(ones({2, 2}, DType::f64, d));
  CHECK(x.grad().to_double_vector() == std::vector<double>{3, 1, -1, 3, 1, -1});
  CHECK(w.grad().to_double_vector() == std::vector<double>{5, 7, 9, 5, 7, 9});
  CHECK(b.grad().to_double_vector() == std::vector<double>{2, 2});
  // Without bias, and a 1-D input: [1,2,3] W^T = [-2, 4]
  CHECK(linear(from_vector({1, 2, 3}, {3}, DType::f64, d), w.detach(), Tensor()).to_double_vector() ==
        std::vector<double>{-2, 4});
}

TEST_CASE("linear: gradcheck in float64, with and without bias, 1-D, 2-D and 3-D x") {
  auto with_bias = [](const std::vector<Tensor>& in) { return linear(in[0], in[1], in[2]); };
  auto no_bias = [](const std::vector<Tensor>& in) { return linear(in[0], in[1], Tensor()); };
  test::gradcheck(with_bias, {leaf({4, 5}, 30), leaf({3, 5}, 31), leaf({3}, 32)});
  test::gradcheck(no_bias, {leaf({4, 5}, 33), leaf({3, 5}, 34)});
  test::gradcheck(with_bias, {leaf({2, 3, 5}, 35), leaf({4, 5}, 36), leaf({4}, 37)});
  test::gradcheck(no_bias, {leaf({2, 3, 5}, 38), leaf({4, 5}, 39)});
  test::gradcheck(with_bias, {leaf({5}, 40), leaf({2, 5}, 41), leaf({2}, 42)});
  test::gradcheck(with_bias, {leaf({3, 1}, 43), leaf({1, 1}, 44), leaf({1}, 45)});
  // Frozen weight (only x and bias need gradients).
  Tensor frozen = test::randn({3, 5}, 46, DType::f64, test::test_device());
  test::gradcheck([&](const std::vector<Tensor>& in) { return linear(in[0], frozen.to(in[0].dtype()), in[1]); },
                  {leaf({2, 5}, 47), leaf({3}, 48)});
}

TEST_CASE("linear: CUDA matches CPU on awkward shapes") {
  auto with_bias = [](const std::vector<Tensor>& in) { return linear(in[0], in[1], in[2]); };
  auto no_bias = [](const std::vector<Tensor>& in) { return linear(in[0], in[1], Tensor()); };
  test::check_parity(with_bias, {pf32({1029, 917}, 50), pf32({33, 917}, 51), pf32({33}, 52)});
  test::check_parity(with_bias, {pf32({3, 343, 64}, 53), pf32({65, 64}, 54), pf32({65}, 55)});  // 1029 rows, 3-D x
  test::check_parity(no_bias, {pf32({7, 1, 5}, 56), pf32({1, 5}, 57)});
  test::check_parity(with_bias, {pf32({0, 5}, 58), pf32({3, 5}, 59), pf32({3}, 60)});   // no rows: dW, db zero
  test::check_parity(with_bias, {pf32({4, 0}, 61), pf32({3, 0}, 62), pf32({3}, 63)});   // in = 0: y = bias
  test::check_parity(with_bias, {pf32({5000, 3}, 64), pf32({2, 3}, 65), pf32({2}, 66)});  // tall: multi-chunk db
}

TEST_CASE("linear: empty dimensions give zeros and bias, not garbage") {
  Device d = test::test_device();
  // in_features = 0: x W^T is an empty sum, so y is the bias on every row.
  Tensor y = linear(zeros({2, 0}, DType::f64, d), zeros({3, 0}, DType::f64, d), from_vector({1, 2, 3}, {3},
                                                                                            DType::f64, d));
  CHECK(y.to_double_vector() == std::vector<double>{1, 2, 3, 1, 2, 3});
  // No rows: the weight and bias gradients are zeros.
  Tensor x = leaf({0, 4}, 70), w = leaf({2, 4}, 71), b = leaf({2}, 72);
  Tensor y0 = linear(x, w, b);
  CHECK(y0.shape() == Shape{0, 2});
  y0.backward(zeros({0, 2}, DType::f64, d));
  CHECK(w.grad().to_double_vector() == std::vector<double>(8, 0.0));
  CHECK(b.grad().to_double_vector() == std::vector<double>(2, 0.0));
}

TEST_CASE("matmul and linear: bad inputs name the op and the shapes") {
  Tensor a = zeros({2, 3}), b = zeros({4, 5});
  CHECK_THROWS_WITH_AS(matmul(a, b), "[matmul] inner dimensions differ: a [2,3] has K=3, b [4,5] has K=4", ShapeError);
  CHECK_THROWS_WITH_AS(matmul(a, zeros({2, 5}), true, true),
                       "[matmul] inner dimensions differ: a [2,3] (transposed) has K=2, b [2,5] (transposed) has K=5",
                       ShapeError);
  CHECK_THROWS_WITH_AS(matmul(zeros({3}), b), "[matmul] expected a 2-D or 3-D a, got [3]", ShapeError);
  CHECK_THROWS_WITH_AS(matmul(a, zeros({1, 1, 3, 2})), "[matmul] expected a 2-D or 3-D b, got [1,1,3,2]", ShapeError);
  CHECK_THROWS_WITH_AS(matmul(zeros({2, 3, 4}), zeros({3, 4, 5})),
                       "[matmul] batch sizes differ: a [2,3,4] and b [3,4,5]", ShapeError);
  CHECK_THROWS_WITH_AS(matmul(a, zeros({3, 2}, DType::f64)), "[matmul] dtype mismatch: f32 and f64", DTypeError);
  CHECK_THROWS_WITH_AS(matmul(zeros({2, 3}, DType::i32), zeros({3, 2}, DType::i32)),
                       "[matmul] expected an f32 or f64 tensor, got i32", DTypeError);

  Tensor x = zeros({4, 5}), w = zeros({3, 4});
  CHECK_THROWS_WITH_AS(linear(x, w, Tensor()),
                       "[linear] input [4,5] does not match weight [3,4]: last dim 5 != in_features 4", ShapeError);
  CHECK_THROWS_WITH_AS(linear(x, zeros({5}), Tensor()), "[linear] expected a 2-D weight [out,in], got [5]",
                       ShapeError);
  CHECK_THROWS_WITH_AS(linear(x, zeros({3, 5}), zeros({4})),
                       "[linear] expected a bias [3] for weight [3,5], got [4]", ShapeError);
  CHECK_THROWS_WITH_AS(linear(x, zeros({3, 5}, DType::f64), Tensor()), "[linear] dtype mismatch: f32 and f64",
                       DTypeError);
  CHECK_THROWS_WITH_AS(linear(zeros({}), zeros({3, 5}), Tensor()), "[linear] expected an input [..., in], got []",
                       ShapeError);
  if (cuda_available()) {
    CHECK_THROWS_WITH_AS(matmul(a, zeros({3, 2}, DType::f32, Device::cuda())),
                         "[matmul] tensors on different devices: cpu and cuda:0", DeviceError);
    CHECK_THROWS_WITH_AS(linear(x, zeros({3, 5}), zeros({3}, DType::f32, Device::cuda())),
                         "[linear] tensors on different devices: cpu and cuda:0", DeviceError);
  } else if (!cuda_built()) {
    float buf[1] = {0};
    CHECK_THROWS_WITH_AS(gemm_cuda(DType::f32, false, false, 1, 1, 1, 1.0, buf, buf, 0.0, buf, nullptr),
                         "[gemm] built without CUDA", DeviceError);
  }
}

TEST_CASE("gemm: the raw launchers against a naive product (alpha, beta, strides, shared operand)") {
  const int64_t M = 5, N = 3, K = 4, B = 3;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      INFO("ta " << ta << " tb " << tb);
      std::vector<double> A = test::randn({B, M, K}, 80).to_double_vector();
      std::vector<double> Bm = test::randn({K, N}, 81).to_double_vector();  // shared across the batch
      std::vector<double> C0 = test::randn({B, M, N}, 82).to_double_vector();
      std::vector<double> expect;
      for (int64_t i = 0; i < B; ++i) {
        std::vector<double> Ai(A.begin() + i * M * K, A.begin() + (i + 1) * M * K);
        std::vector<double> Ci(C0.begin() + i * M * N, C0.begin() + (i + 1) * M * N);
        std::vector<double> r = naive_gemm(ta, tb, M, N, K, 0.5, Ai, Bm, -2.0, Ci);
        expect.insert(expect.end(), r.begin(), r.end());
      }
      for (DType dt : {DType::f32, DType::f64}) {
        Tensor a = from_vector(A, {B, M, K}, dt), b = from_vector(Bm, {K, N}, dt), c = from_vector(C0, {B, M, N}, dt);
        gemm_strided_batched_cpu(dt, ta, tb, M, N, K, 0.5, a.raw_data(), M * K, b.raw_data(), 0, -2.0, c.raw_data(),
                                 M * N, B);
        CHECK_ALLCLOSE(c, from_vector(expect, {B, M, N}, DType::f64), 1e-5, 1e-5);
        // The single GEMM writes the first M*N block only.
        Tensor c1 = from_vector(C0, {B, M, N}, dt);
        gemm_cpu(dt, ta, tb, M, N, K, 0.5, a.raw_data(), b.raw_data(), -2.0, c1.raw_data());
        std::vector<double> expect1(expect.begin(), expect.begin() + M * N);
        expect1.insert(expect1.end(), C0.begin() + M * N, C0.end());
        CHECK_ALLCLOSE(c1, from_vector(expect1, {B, M, N}, DType::f64), 1e-5, 1e-5);
        if (test::have_cuda()) {
          Device g = Device::cuda();
          Tensor ga = a.to(g), gb = b.to(g), gc = from_vector(C0, {B, M, N}, dt, g);
          gemm_strided_batched_cuda(dt, ta, tb, M, N, K, 0.5, ga.raw_data(), M * K, gb.raw_data(), 0, -2.0,
                                    gc.raw_data(), M * N, B, current_stream(g));
          CHECK_ALLCLOSE(gc, from_vector(expect, {B, M, N}, DType::f64), 1e-5, 1e-5);
        }
      }
    }
  // K = 0: C = beta * C; beta = 0 writes zeros even over NaN.
  std::vector<float> c = {1, 2, NAN, 4};
  gemm_cpu(DType::f32, false, false, 2, 2, 0, 1.0, nullptr, nullptr, 3.0, c.data());
  CHECK(c[0] == 3.0f);
  CHECK(c[1] == 6.0f);
  gemm_cpu(DType::f32, false, false, 2, 2, 0, 1.0, nullptr, nullptr, 0.0, c.data());
  CHECK(c == std::vector<float>{0, 0, 0, 0});
  if (test::have_cuda()) {
    Tensor gc = from_vector({1, 2, NAN, 4}, {4}, DType::f32, Device::cuda());
    gemm_cuda(DType::f32, false, false, 2, 2, 0, 1.0, nullptr, nullptr, 0.0, gc.raw_data(),
              current_stream(Device::cuda()));
    CHECK(gc.to_vector<float>() == std::vector<float>{0, 0, 0, 0});
  }
  CHECK_THROWS_WITH_AS(gemm_cpu(DType::i32, false, false, 1, 1, 1, 1.0, c.data(), c.data(), 0.0, c.data()),
                       "[gemm] unsupported dtype i32 (expected f32 or f64)", DTypeError);
  CHECK_THROWS_AS(gemm_cpu(DType::f32, false, false, int64_t(1) << 32, 1, 1, 1.0, c.data(), c.data(), 0.0, c.data()),
                  ValueError);
}

TEST_CASE("linear: bias kernels against hand sums") {
  // y [2,3] += [1,2,3]; column sums of [[1,2,3],[4,5,6]] are [5,7,9]
  std::vector<double> y = {0, 0, 0, 1, 1, 1};
  const double bias[3] = {1, 2, 3};
  bias_add_cpu(DType::f64, y.data(), bias, 2, 3);
  CHECK(y == std::vector<double>{1, 2, 3, 2, 3, 4});
  const double dy[6] = {1, 2, 3, 4, 5, 6};
  double db[3] = {};
  bias_grad_cpu(DType::f64, dy, db, 2, 3);
  CHECK(db[0] == 5);
  CHECK(db[1] == 7);
  CHECK(db[2] == 9);
  // Many columns (more than one 64-wide tile) and rows.
  Tensor g = test::randn({300, 130}, 90);
  std::vector<double> gv = g.to_double_vector();
  Tensor out = empty({130}, DType::f64);
  bias_grad_cpu(DType::f64, g.raw_data(), out.raw_data(), 300, 130);
  std::vector<double> ov = out.to_double_vector();
  for (int64_t c2 = 0; c2 < 130; c2 += 43) {
    double s = 0;
    for (int64_t r = 0; r < 300; ++r) s += gv[size_t(r * 130 + c2)];
    CHECK(ov[size_t(c2)] == doctest::Approx(s).epsilon(1e-12));
  }
}

namespace {
// x with every element rounded to bfloat16 (nearest even) and widened back: what a bf16 GEMM operand holds.
Tensor bf16_rounded(const Tensor& x) { return x.detach().to(DType::bf16).to(DType::f32); }
}  // namespace

TEST_CASE("gemm precision bf16: an fp32 GEMM of the bf16-rounded operands, forward and backward; f64 untouched") {
  Tensor a = pf32({37, 53}, 31), b = pf32({53, 29}, 32);
  const Tensor full = matmul(a, b);
  Tensor reduced;
  {
    GemmPrecisionGuard bf16(GemmPrecision::bf16);
    CHECK(gemm_precision() == GemmPrecision::bf16);
    reduced = matmul(a, b);
  }
  CHECK(gemm_precision() == GemmPrecision::f32);  // the guard restores
  CHECK(reduced.to_double_vector() == matmul(bf16_rounded(a), bf16_rounded(b)).to_double_vector());
  CHECK(reduced.to_double_vector() != full.to_double_vector());  // randn values are not bf16-exact
  std::string why;
  CHECK_MESSAGE(test::allclose(reduced, full, 0.05, 0.02, &why), why);  // bf16 keeps 8 bits of mantissa

  // Backward GEMMs run in bf16 too: linear's dweight = dyᵀ x and dx = dy W on rounded operands, batched x included.
  Tensor x = pf32({3, 5, 24}, 33), w = pf32({7, 24}, 34), bias = pf32({7}, 35);
  Tensor dy = test::randn({3, 5, 7}, 36, DType::f32);
  {
    GemmPrecisionGuard bf16(GemmPrecision::bf16);
    linear(x, w, bias).backward(dy);
  }
  Tensor dy2 = reshape(bf16_rounded(dy), {15, 7}), x2 = reshape(bf16_rounded(x), {15, 24});
  CHECK(w.grad().to_double_vector() == matmul(dy2, x2, /*trans_a=*/true).to_double_vector());
  CHECK(x.grad().to_double_vector() ==
        reshape(matmul(dy2, bf16_rounded(w)), {3, 5, 24}).to_double_vector());
  CHECK(bias.grad().to_double_vector() == sum(dy, {0, 1}).to_double_vector());  // not a GEMM: exact fp32

  Tensor a64 = a.detach().to(DType::f64), b64 = b.detach().to(DType::f64);
  Tensor exact64 = matmul(a64, b64);
  GemmPrecisionGuard bf16(GemmPrecision::bf16);
  CHECK(matmul(a64, b64).to_double_vector() == exact64.to_double_vector());
  CHECK(parse_gemm_precision("bf16") == GemmPrecision::bf16);
  CHECK_THROWS_AS(parse_gemm_precision("fp16"), ValueError);
}

TEST_CASE("gemm precision bf16: cuBLAS's bf16 path matches the CPU's rounded-operand reference") {
  GemmPrecisionGuard bf16(GemmPrecision::bf16);
  auto f = [](bool ta, bool tb) {
    return OpFn([ta, tb](const std::vector<Tensor>& in) { return matmul(in[0], in[1], ta, tb); });
  };
  // Same rounded operands on both sides; only the fp32 accumulation order differs.
  test::check_parity(f(false, false), {pf32({129, 257}, 41), pf32({257, 65}, 42)}, 1e-4, 1e-4);
  test::check_parity(f(true, true), {pf32({3, 33, 17}, 43), pf32({3, 9, 33}, 44)}, 1e-4, 1e-4);
  test::check_parity(f(false, true), {pf32({4, 6, 7}, 45), pf32({5, 7}, 46)}, 1e-4, 1e-4);
}
