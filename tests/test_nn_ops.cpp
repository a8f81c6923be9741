// test_nn_ops.cpp — max/min/argmax, softmax/log_softmax, cross_entropy and layer_norm: hand-computed values,
// float64 gradchecks on the device under test, CPU-vs-CUDA parity (skipped without a GPU) and the typed errors.
// Not a benchmark; shapes stay small except the parity cases that exercise the block-per-row CUDA paths.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "tests/test_util.h"

using namespace ep;

namespace {

Tensor f64(const std::vector<double>& v, const Shape& s) {
  return from_vector(v, s, DType::f64, test::test_device());
}
// Distinct values in (-3, 3), at least 1e-3 apart in practice, so max/min never tie under +-eps perturbations.
Tensor distinct(const Shape& s, uint64_t seed) {
  const int64_t n = shape_numel(s);
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = -3.0 + 6.0 * double((i * 37 + int64_t(seed)) % n) / double(n);
  // A fixed permutation (37 is coprime to the sizes used) plus a little noise that keeps the spacing.
  Tensor noise = test::rand_uniform(s, seed, 0.0, 0.3 / double(n), DType::f64);
  std::vector<double> nz = noise.to_vector<double>();
  for (size_t i = 0; i < v.size(); ++i) v[i] += nz[i];
  return from_vector(v, s, DType::f64, test::test_device());
}

}  // namespace

// ---- max / min / argmax ---------------------------------------------------------------------------------------------

TEST_CASE("max/min/argmax: hand-computed values, first index on ties, keepdim and 0-D") {
  // x = [[1, 3, 3],
  //      [2,-1, 0]]
  Tensor x = f64({1, 3, 3, 2, -1, 0}, {2, 3});
  CHECK(max(x, 1).to_vector<double>() == std::vector<double>{3, 2});
  CHECK(min(x, 0).to_vector<double>() == std::vector<double>{1, -1, 0});
  CHECK(min(x, -1).to_vector<double>() == std::vector<double>{1, -1});
  CHECK(argmax(x, 1).dtype() == DType::i64);
  CHECK(argmax(x, 1).to_vector<int64_t>() == std::vector<int64_t>{1, 0});  // the tie 3,3 picks index 1
  CHECK(argmax(x, 0).to_vector<int64_t>() == std::vector<int64_t>{1, 0, 0});
  CHECK(max(x, 1, true).shape() == Shape{2, 1});
  CHECK(argmax(x, 0, true).shape() == Shape{1, 3});
  CHECK(max(x, 0).shape() == Shape{3});
  // 0-D: dim 0 or -1 reduce over the single element.
  Tensor s = scalar_tensor(4.5, DType::f64, test::test_device());
  CHECK(max(s, 0).shape().empty());
  CHECK(max(s, -1).item() == 4.5);
  CHECK(argmax(s, 0).item() == 0.0);
  // Integer inputs work for values and argmax.
  Tensor xi = from_vector({5, 9, 9, 1}, {4}, DType::i32, test::test_device());
  CHECK(max(xi, 0).item() == 9.0);
  CHECK(min(xi, 0).item() == 1.0);
  CHECK(argmax(xi, 0).item() == 1.0);
  // NaN propagates (and is the argmax), as in PyTorch.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  Tensor xn = f64({1, nan, 3, nan}, {4});
  CHECK(std::isnan(max(xn, 0).item()));
  CHECK(std::isnan(min(xn, 0).item()));
  CHECK(argmax(xn, 0).item() == 1.0);
  // Middle dim of a 3-D tensor (the strided kernel): x3[o, k, i] = 10*o + (k == 1 ? 5 : k) + i.
  std::vector<double> v;
  for (int o = 0; o < 2; ++o)
    for (int k = 0; k < 3; ++k)
      for (int i = 0; i < 2; ++i) v.push_back(10 * o + (k == 1 ? 5 : k) + i);
  Tensor x3 = f64(v, {2, 3, 2});
  CHECK(max(x3, 1).to_vector<double>() == std::vector<double>{5, 6, 15, 16});
  CHECK(argmax(x3, 1).to_vector<int64_t>() == std::vector<int64_t>{1, 1, 1, 1});
  CHECK(min(x3, 1).to_vector<double>() == std::vector<double>{0, 1, 10, 11});
}

TEST_CASE("max/min backward: the gradient goes only to the first extreme element") {
  Tensor x = test::leaf(f64({1, 3, 3, 2, -1, 0}, {2, 3}));
  sum(max(x, 1)).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{0, 1, 0, 1, 0, 0});
  Tensor y = test::leaf(f64({1, 3, 3, 2, -1, -1}, {2, 3}));
  Tensor g = f64({10, 20}, {2, 1});
  min(y, 1, true).backward(g);
  CHECK(y.grad().to_vector<double>() == std::vector<double>{10, 0, 0, 0, 20, 0});
}

TEST_CASE("max/min gradcheck over every dim, with and without keepdim") {
  Tensor x = test::leaf(distinct({3, 4, 5}, 7));
  for (int64_t dim : {0, 1, 2, -1})
    for (bool keep : {false, true}) {
      INFO("dim " << dim << " keepdim " << keep);
      test::gradcheck([&](const std::vector<Tensor>& in) { return max(in[0], dim, keep); }, {x});
      test::gradcheck([&](const std::vector<Tensor>& in) { return min(in[0], dim, keep); }, {x});
    }
  Tensor s = test::leaf(scalar_tensor(0.7, DType::f64, test::test_device()));
  test::gradcheck([](const std::vector<Tensor>& in) { return max(in[0], 0); }, {s});
}

TEST_CASE("max/min/argmax CPU-vs-CUDA parity, awkward shapes") {
  auto r = [](const Shape& s, uint64_t seed) { return test::leaf(test::randn(s, seed, DType::f32)); };
  struct Case { Shape shape; int64_t dim; };
  for (const Case& c : std::vector<Case>{{{917, 1029}, 1},   // block per row (r > 1024)
                                         {{917, 1029}, 0},   // strided
                                         {{33, 1000}, -1},   // warp per row
                                         {{3, 5000}, 1},
                                         {{7, 1, 3}, 1},     // r = 1
                                         {{0, 4}, 1},        // empty outer
                                         {{5, 6, 0}, 1},     // empty inner
                                         {{1, 1}, 0},
                                         {{13, 17, 19}, 1}}) {
    INFO("shape " << shape_str(c.shape) << " dim " << c.dim);
    Tensor x = r(c.shape, 11);
    test::check_parity([&](const std::vector<Tensor>& in) { return max(in[0], c.dim); }, {x});
    test::check_parity([&](const std::vector<Tensor>& in) { return min(in[0], c.dim, true); }, {x});
    test::check_parity([&](const std::vector<Tensor>& in) { return argmax(in[0], c.dim); }, {x.detach()});
  }
  Tensor xd = test::randn({6, 1100}, 3, DType::f64);  // double on the block path
  xd.requires_grad_();
  test::check_parity([&](const std::vector<Tensor>& in) { return max(in[0], 1); }, {xd}, 1e-12, 1e-12);
  Tensor xi = test::randint({40, 2000}, 5, -1000, 1000, DType::i64);  // many ties: both must pick the first
  test::check_parity([&](const std::vector<Tensor>& in) { return argmax(in[0], 1); }, {xi}, 0, 0);
  test::check_parity([&](const std::vector<Tensor>& in) { return argmax(in[0], 0); }, {xi}, 0, 0);
  Tensor xs = test::randint({300, 40}, 6, -3, 3, DType::i32);
  test::check_parity([&](const std::vector<Tensor>& in) { return argmax(in[0], 1); }, {xs}, 0, 0);
}

TEST_CASE("max/min/argmax errors") {
  Tensor x = zeros({2, 0, 3});
  CHECK_THROWS_WITH_AS(max(x, 1), "[max] cannot reduce dim 1 of size 0 in [2,0,3]", ShapeError);
  CHECK_THROWS_WITH_AS(min(zeros({2, 3}), 2), "[min] dim 2 out of range for a 2-D tensor", ShapeError);
  CHECK_THROWS_WITH_AS(argmax(scalar_tensor(1), 1), "[argmax] dim 1 out of range for a 0-D tensor", ShapeError);
  CHECK_THROWS_WITH_AS(argmax(zeros({3}, DType::u8), 0),
                       "[argmax] unsupported dtype u8 (expected f32, f64, i32 or i64)", DTypeError);
  CHECK_THROWS_WITH_AS(max(zeros({3}, DType::bf16), 0), "[max] unsupported dtype bf16 (expected f32, f64, i32 or i64)",
                       DTypeError);
  CHECK(max(zeros({0, 3}), 1).shape() == Shape{0});  // reducing a non-empty dim of an empty tensor is fine
}

// ---- softmax / log_softmax ------------------------------------------------------------------------------------------

TEST_CASE("softmax/log_softmax: hand-computed values and stability") {
  // softmax([1,2,3]) = e^x / (e + e^2 + e^3); lse = 3 + ln(1 + e^-1 + e^-2) = 3.4076059644443806
  Tensor x = f64({1, 2, 3, 1000, 1000, 1000}, {2, 3});
  std::vector<double> s = softmax(x).to_vector<double>();
  const std::vector<double> want{0.09003057317038043, 0.24472847105479759, 0.6652409557748217,
                                 1.0 / 3, 1.0 / 3, 1.0 / 3};  // no overflow at 1000
  for (size_t i = 0; i < want.size(); ++i) CHECK(s[i] == doctest::Approx(want[i]).epsilon(1e-14));
  std::vector<double> ls = log_softmax(x).to_vector<double>();
  const std::vector<double> lwant{-2.4076059644443806, -1.4076059644443806, -0.4076059644443806,
                                  -std::log(3.0), -std::log(3.0), -std::log(3.0)};
  for (size_t i = 0; i < lwant.size(); ++i) CHECK(ls[i] == doctest::Approx(lwant[i]).epsilon(1e-12));
  // log_softmax([1000, 0]) = [0, -1000] exactly: no exp(-1000) underflow to log(0).
  CHECK(log_softmax(f64({1000, 0}, {2})).to_vector<double>() == std::vector<double>{0, -1000});
  // Rows sum to one; 0-D input is one row of one element; empty inputs stay empty.
  Tensor r = softmax(test::randn({4, 9}, 3, DType::f64, test::test_device()));
  CHECK_ALLCLOSE(sum(r, {1}), ones({4}, DType::f64), 1e-14, 0);
  CHECK(softmax(scalar_tensor(5, DType::f64)).item() == 1.0);
  CHECK(log_softmax(scalar_tensor(5, DType::f64)).item() == 0.0);
  CHECK(softmax(zeros({3, 0})).shape() == Shape{3, 0});
  CHECK(log_softmax(zeros({0, 4})).shape() == Shape{0, 4});
  CHECK_THROWS_WITH_AS(softmax(zeros({3}, DType::i64)), "[softmax] expected an f32 or f64 tensor, got i64",
                       DTypeError);
  CHECK_THROWS_WITH_AS(log_softmax(zeros({3}, DType::f16)), "[log_softmax] expected an f32 or f64 tensor, got f16",
                       DTypeError);
}

TEST_CASE("softmax/log_softmax gradcheck") {
  for (const Shape& s : {Shape{4, 7}, Shape{2, 3, 5}, Shape{6}, Shape{3, 1}}) {
    INFO("shape " << shape_str(s));
    Tensor x = test::leaf(test::randn(s, 21, DType::f64, test::test_device(), 2.0));
    test::gradcheck([](const std::vector<Tensor>& in) { return softmax(in[0]); }, {x});
    test::gradcheck([](const std::vector<Tensor>& in) { return log_softmax(in[0]); }, {x});
  }
}

TEST_CASE("softmax/log_softmax CPU-vs-CUDA parity, awkward shapes") {
  for (const Shape& s : {Shape{917, 1029}, Shape{33, 100}, Shape{3, 5000}, Shape{5, 1}, Shape{1, 1}, Shape{0, 7},
                         Shape{4, 0}, Shape{2, 3, 31}, Shape{1025}, Shape{8, 1024}, Shape{2, 9000}}) {
    INFO("shape " << shape_str(s));
    Tensor x = test::leaf(test::randn(s, 9, DType::f32, Device::cpu(), 3.0));
    test::check_parity([](const std::vector<Tensor>& in) { return softmax(in[0]); }, {x});
    test::check_parity([](const std::vector<Tensor>& in) { return log_softmax(in[0]); }, {x});
  }
  Tensor xd = test::leaf(test::randn({5, 2000}, 4, DType::f64));
  test::check_parity([](const std::vector<Tensor>& in) { return log_softmax(in[0]); }, {xd}, 1e-12, 1e-10);
}

// ---- cross_entropy --------------------------------------------------------------------------------------------------

// logits = [[1,2,3],[1,1,1]], targets = [2,0], K = 3:
//   row 0: lse0 = 3 + ln(1 + e^-1 + e^-2) = 3.4076059644443806, -log p_{0,2} = lse0 - 3 = 0.4076059644443806
//   row 1: lse1 = 1 + ln 3,                  -log p_{1,0} = ln 3 = 1.0986122886681098
//   mean = (0.4076059644443806 + 1.0986122886681098) / 2 = 0.7531091265562452
// label_smoothing 0.3: loss_i = lse_i - 0.7 x_{i,y_i} - 0.1 sum_k x_ik
//   row 0: 3.4076059644443806 - 2.1 - 0.6 = 0.7076059644443806;  row 1: (1 + ln 3) - 0.7 - 0.3 = ln 3
//   mean = (0.7076059644443806 + 1.0986122886681098) / 2 = 0.9031091265562452
TEST_CASE("cross_entropy: hand-computed 2x3 example, label smoothing, ignore_index") {
  Tensor x = f64({1, 2, 3, 1, 1, 1}, {2, 3});
  auto tgt = [](std::vector<double> v, DType dt = DType::i64) {
    return from_vector(v, {int64_t(v.size())}, dt, test::test_device());
  };
  CHECK(cross_entropy(x, tgt({2, 0})).item() == doctest::Approx(0.7531091265562452).epsilon(1e-14));
  CHECK(cross_entropy(x, tgt({2, 0}, DType::i32)).item() == doctest::Approx(0.7531091265562452).epsilon(1e-14));
  CHECK(cross_entropy(x, tgt({2, 0}), 0.3).item() == doctest::Approx(0.9031091265562452).epsilon(1e-14));
  CHECK(cross_entropy(x, tgt({2, 0})).shape().empty());
  // ignore_index: the mean runs over the kept rows only.
  CHECK(cross_entropy(x, tgt({2, -100})).item() == doctest::Approx(0.4076059644443806).epsilon(1e-14));
  CHECK(cross_entropy(x, tgt({2, 0}), 0.3, 0).item() == doctest::Approx(0.7076059644443806).epsilon(1e-14));
  CHECK(cross_entropy(x, tgt({-100, 0}), 0.3).item() == doctest::Approx(std::log(3.0)).epsilon(1e-14));
  // Every row ignored (or no rows): NaN, as PyTorch.
  CHECK(std::isnan(cross_entropy(x, tgt({-100, -100})).item()));
  CHECK(std::isnan(cross_entropy(zeros({0, 3}, DType::f64), zeros({0}, DType::i64)).item()));
  // K = 1: log p = 0 whatever the logit, with or without smoothing.
  CHECK(cross_entropy(f64({4, -2, 7}, {3, 1}), tgt({0, 0, 0}), 0.2).item() == 0.0);

  // Gradient = (softmax - one_hot) / count on kept rows, 0 on ignored rows.
  Tensor xl = test::leaf(f64({1, 2, 3, 1, 1, 1}, {2, 3}));
  cross_entropy(xl, tgt({2, 0})).backward();
  const std::vector<double> p0{0.09003057317038043, 0.24472847105479759, 0.6652409557748217};
  std::vector<double> g = xl.grad().to_vector<double>();
  const std::vector<double> want{p0[0] / 2, p0[1] / 2, (p0[2] - 1) / 2, (1.0 / 3 - 1) / 2, 1.0 / 6, 1.0 / 6};
  for (size_t i = 0; i < want.size(); ++i) CHECK(g[i] == doctest::Approx(want[i]).epsilon(1e-13));
  Tensor xm = test::leaf(f64({1, 2, 3, 1, 1, 1}, {2, 3}));
  cross_entropy(xm, tgt({2, -100}), 0.3).backward(scalar_tensor(2.0, DType::f64, test::test_device()));
  g = xm.grad().to_vector<double>();
  // Kept row 0, count 1, dout 2: 2 * (p - 0.1 - 0.7 [k == 2]); ignored row 1: 0.
  const std::vector<double> want2{2 * (p0[0] - 0.1), 2 * (p0[1] - 0.1), 2 * (p0[2] - 0.8), 0, 0, 0};
  for (size_t i = 0; i < want2.size(); ++i) CHECK(g[i] == doctest::Approx(want2[i]).epsilon(1e-13));
  Tensor xa = test::leaf(f64({1, 2, 3, 1, 1, 1}, {2, 3}));
  cross_entropy(xa, tgt({-100, -100})).backward();
  CHECK(xa.grad().to_vector<double>() == std::vector<double>(6, 0.0));
}

TEST_CASE("cross_entropy matches log_softmax on random inputs") {
  const int64_t n = 7, k = 5;
  Tensor x = test::randn({n, k}, 31, DType::f64, test::test_device(), 2.0);
  std::vector<double> t{0, 4, -100, 2, 2, 1, 3};
  Tensor tt = from_vector(t, {n}, DType::i64, test::test_device());
  std::vector<double> ls = log_softmax(x).to_vector<double>();
  for (double eps : {0.0, 0.25}) {
    double total = 0;
    int kept = 0;
    for (int64_t i = 0; i < n; ++i) {
      if (t[size_t(i)] == -100) continue;
      double smooth = 0;
      for (int64_t c = 0; c < k; ++c) smooth -= ls[size_t(i * k + c)];
      total += (1 - eps) * -ls[size_t(i * k + int64_t(t[size_t(i)]))] + eps / double(k) * smooth;
      ++kept;
    }
    CHECK(cross_entropy(x, tt, eps).item() == doctest::Approx(total / kept).epsilon(1e-13));
  }
}

TEST_CASE("cross_entropy gradcheck") {
  Tensor x = test::leaf(test::randn({5, 4}, 41, DType::f64, test::test_device(), 1.5));
  Tensor t64 = from_vector({3, 0, 1, 1, 2}, {5}, DType::i64, test::test_device());
  Tensor t32 = from_vector({3, -100, 1, 1, 2}, {5}, DType::i32, test::test_device());
  Tensor tig = from_vector({3, 0, 7, 1, 7}, {5}, DType::i64, test::test_device());
  test::gradcheck([](const std::vector<Tensor>& in) { return cross_entropy(in[0], in[1]); }, {x, t64});
  test::gradcheck([](const std::vector<Tensor>& in) { return cross_entropy(in[0], in[1], 0.1); }, {x, t32});
  test::gradcheck([](const std::vector<Tensor>& in) { return cross_entropy(in[0], in[1], 1.0, 7); }, {x, tig});
  Tensor x1 = test::leaf(test::randn({3, 1}, 42, DType::f64, test::test_device()));
  test::gradcheck([](const std::vector<Tensor>& in) { return cross_entropy(in[0], in[1], 0.2); },
                  {x1, from_vector({0, 0, 0}, {3}, DType::i64, test::test_device())});
}

TEST_CASE("cross_entropy CPU-vs-CUDA parity, awkward shapes") {
  struct Case { int64_t n, k; double eps; DType it; };
  for (const Case& c : std::vector<Case>{{917, 10, 0.0, DType::i64},
                                         {64, 1, 0.1, DType::i64},    // K = 1
                                         {1, 1, 0.0, DType::i32},
                                         {8, 3000, 0.1, DType::i64},  // block per row
                                         {33, 1024, 0.0, DType::i32},
                                         {5000, 7, 0.3, DType::i32}}) {
    INFO("n " << c.n << " k " << c.k << " eps " << c.eps);
    Tensor x = test::leaf(test::randn({c.n, c.k}, 17, DType::f32, Device::cpu(), 2.0));
    std::vector<double> t = test::randint({c.n}, 18, 0, c.k, DType::i64).to_double_vector();
    for (size_t i = 4; i < t.size(); i += 5) t[i] = -100;  // some ignored rows (n = 1 keeps its row)
    Tensor tt = from_vector(t, {c.n}, c.it);
    test::check_parity([&](const std::vector<Tensor>& in) { return cross_entropy(in[0], in[1], c.eps); }, {x, tt},
                       1e-4, 1e-4);
  }
}

TEST_CASE("cross_entropy errors") {
  Tensor x = zeros({4, 10});
  CHECK_THROWS_WITH_AS(cross_entropy(x, from_vector({1, 2, 3, 12}, {4}, DType::i64)),
                       "[cross_entropy] target 12 out of range [0,10) at row 3", ValueError);
  CHECK_THROWS_WITH_AS(cross_entropy(x, from_vector({-5, 2, 30, 1}, {4}, DType::i32)),
                       "[cross_entropy] target -5 out of range [0,10) at row 0", ValueError);
  // ignore_index is the only target allowed outside [0, K).
  CHECK_NOTHROW(cross_entropy(x, from_vector({-100, 2, 3, 1}, {4}, DType::i64)));
  CHECK_THROWS_WITH_AS(cross_entropy(x, from_vector({-100, 2, 3, 1}, {4}, DType::i64), 0.0, 5),
                       "[cross_entropy] target -100 out of range [0,10) at row 0", ValueError);
  CHECK_THROWS_WITH_AS(cross_entropy(zeros({3}), zeros({3}, DType::i64)),
                       "[cross_entropy] expected logits [N,K], got [3]", ShapeError);
  CHECK_THROWS_WITH_AS(cross_entropy(x, zeros({3}, DType::i64)),
                       "[cross_entropy] targets [3] do not match logits [4,10] (expected [4])", ShapeError);
  CHECK_THROWS_WITH_AS(cross_entropy(x, zeros({4, 1}, DType::i64)),
                       "[cross_entropy] targets [4,1] do not match logits [4,10] (expected [4])", ShapeError);
  CHECK_THROWS_WITH_AS(cross_entropy(x, zeros({4})), "[cross_entropy] index tensor must be i32 or i64, got f32",
                       DTypeError);
  CHECK_THROWS_WITH_AS(cross_entropy(zeros({4, 10}, DType::i32), zeros({4}, DType::i64)),
                       "[cross_entropy] expected an f32 or f64 tensor, got i32", DTypeError);
  CHECK_THROWS_WITH_AS(cross_entropy(x, zeros({4}, DType::i64), 1.5),
                       "[cross_entropy] label_smoothing must be in [0,1], got 1.5", ValueError);
  CHECK_THROWS_WITH_AS(cross_entropy(x, zeros({4}, DType::i64), -0.1),
                       "[cross_entropy] label_smoothing must be in [0,1], got -0.1", ValueError);
}

// ---- layer_norm -----------------------------------------------------------------------------------------------------

TEST_CASE("layer_norm: hand-computed values, optional affine, empty inputs") {
  // x = [1,2,3,4]: mean 2.5, biased var (2.25+0.25+0.25+2.25)/4 = 1.25, eps 0 -> rstd = 1/sqrt(1.25)
  // xhat = [-1.5,-0.5,0.5,1.5] * 0.894427190999916; w = [1,-1,2,0.5], b = [0,1,0,-1]
  Tensor x = f64({1, 2, 3, 4}, {1, 4});
  Tensor w = f64({1, -1, 2, 0.5}, {4}), b = f64({0, 1, 0, -1}, {4});
  std::vector<double> y = layer_norm(x, w, b, 0.0).to_vector<double>();
  const std::vector<double> want{-1.3416407864998738, 1.4472135954999579, 0.8944271909999159, -0.3291796067500631};
  for (size_t i = 0; i < 4; ++i) CHECK(y[i] == doctest::Approx(want[i]).epsilon(1e-14));
  std::vector<double> yn = layer_norm(x, Tensor(), Tensor(), 0.0).to_vector<double>();
  CHECK(yn[0] == doctest::Approx(-1.3416407864998738).epsilon(1e-14));
  CHECK(yn[3] == doctest::Approx(1.3416407864998738).epsilon(1e-14));
  // eps sits inside the sqrt: a constant row normalizes to 0 and the bias comes through.
  std::vector<double> yc = layer_norm(f64({7, 7, 7}, {3}), Tensor(), f64({1, 2, 3}, {3})).to_vector<double>();
  CHECK(yc == std::vector<double>{1, 2, 3});
  // eps = 1: rstd = 1/sqrt(1.25 + 1) = 2/3, so xhat[0] = -1.5 * 2/3 = -1.
  CHECK(layer_norm(x, Tensor(), Tensor(), 1.0).to_vector<double>()[0] == doctest::Approx(-1.0).epsilon(1e-14));
  // Rows of a 3-D input are normalized independently.
  Tensor x3 = test::randn({2, 3, 8}, 5, DType::f64, test::test_device(), 3.0);
  Tensor y3 = layer_norm(x3, Tensor(), Tensor(), 0.0);
  CHECK_ALLCLOSE(mean(y3, {2}), zeros({2, 3}, DType::f64), 1e-14, 0);
  CHECK_ALLCLOSE(mean(y3 * y3, {2}), ones({2, 3}, DType::f64), 1e-13, 0);
  // No rows: the output is empty and weight/bias gradients are zero.
  Tensor we = test::leaf(f64({1, 2, 3}, {3})), be = test::leaf(f64({1, 2, 3}, {3}));
  Tensor ye = layer_norm(zeros({0, 3}, DType::f64, test::test_device()), we, be);
  CHECK(ye.shape() == Shape{0, 3});
  ye.backward(zeros({0, 3}, DType::f64, test::test_device()));
  CHECK(we.grad().to_vector<double>() == std::vector<double>{0, 0, 0});
  CHECK(be.grad().to_vector<double>() == std::vector<double>{0, 0, 0});
}

TEST_CASE("layer_norm backward: bias gradient is the column sum, weight gradient sum(dy * xhat)") {
  // x rows [1,2,3,4] and [2,2,2,6] (mean 3, var 3): xhat1 = [-1,-1,-1,3]/sqrt(3) with eps 0.
  Tensor x = f64({1, 2, 3, 4, 2, 2, 2, 6}, {2, 4});
  Tensor w = test::leaf(f64({1, 1, 1, 1}, {4})), b = test::leaf(f64({0, 0, 0, 0}, {4}));
  Tensor dy = f64({1, 2, 3, 4, 5, 6, 7, 8}, {2, 4});
  layer_norm(x, w, b, 0.0).backward(dy);
  CHECK(b.grad().to_vector<double>() == std::vector<double>{6, 8, 10, 12});
  const double r0 = 1 / std::sqrt(1.25), r1 = 1 / std::sqrt(3.0);
  const std::vector<double> dw{1 * -1.5 * r0 + 5 * -r1, 2 * -0.5 * r0 + 6 * -r1, 3 * 0.5 * r0 + 7 * -r1,
                               4 * 1.5 * r0 + 8 * 3 * r1};
  std::vector<double> got = w.grad().to_vector<double>();
  for (size_t i = 0; i < 4; ++i) CHECK(got[i] == doctest::Approx(dw[i]).epsilon(1e-13));
}

TEST_CASE("layer_norm gradcheck: with weight and bias, weight only, neither") {
  Tensor x = test::leaf(test::randn({3, 6}, 51, DType::f64, test::test_device(), 2.0));
  Tensor w = test::leaf(test::randn({6}, 52, DType::f64, test::test_device()));
  Tensor b = test::leaf(test::randn({6}, 53, DType::f64, test::test_device()));
  test::gradcheck([](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], in[2]); }, {x, w, b});
  test::gradcheck([](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], Tensor(), 1e-3); }, {x, w});
  test::gradcheck([](const std::vector<Tensor>& in) { return layer_norm(in[0], Tensor(), in[1]); }, {x, b});
  test::gradcheck([](const std::vector<Tensor>& in) { return layer_norm(in[0], Tensor(), Tensor()); }, {x});
  Tensor x3 = test::leaf(test::randn({2, 3, 5}, 54, DType::f64, test::test_device()));
  Tensor w5 = test::leaf(test::randn({5}, 55, DType::f64, test::test_device()));
  test::gradcheck([](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], Tensor()); }, {x3, w5});
  // Only weight/bias require grad (a frozen input).
  Tensor xf = test::randn({4, 6}, 56, DType::f64, test::test_device());
  test::gradcheck([](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], in[2]); }, {xf, w, b});
}

TEST_CASE("layer_norm CPU-vs-CUDA parity, awkward shapes") {
  struct Case { Shape shape; bool affine; };
  for (const Case& c : std::vector<Case>{{{917, 1029}, true},  // block per row
                                         {{64, 768}, true},    // warp per row, many dw/db chunks
                                         {{4, 768}, false},
                                         {{5, 1}, true},       // D = 1
                                         {{0, 8}, true},       // no rows
                                         {{2, 3, 17}, true},
                                         {{1, 1}, false},
                                         {{300, 33}, true}}) {
    INFO("shape " << shape_str(c.shape) << " affine " << c.affine);
    const int64_t d = c.shape.back();
    Tensor x = test::leaf(test::randn(c.shape, 61, DType::f32, Device::cpu(), 2.0));
    Tensor w = c.affine ? test::leaf(test::randn({d}, 62, DType::f32)) : Tensor();
    Tensor b = c.affine ? test::leaf(test::randn({d}, 63, DType::f32)) : Tensor();
    test::check_parity([](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], in[2]); }, {x, w, b},
                       2e-3, 2e-3);
  }
}

TEST_CASE("layer_norm errors") {
  Tensor x = zeros({2, 4});
  CHECK_THROWS_WITH_AS(layer_norm(x, zeros({5}), Tensor()),
                       "[layer_norm] weight shape [5] does not match the last dim of x [2,4] (expected [4])",
                       ShapeError);
  CHECK_THROWS_WITH_AS(layer_norm(x, Tensor(), zeros({1, 4})),
                       "[layer_norm] bias shape [1,4] does not match the last dim of x [2,4] (expected [4])",
                       ShapeError);
  CHECK_THROWS_WITH_AS(layer_norm(x, zeros({4}, DType::f64), Tensor()), "[layer_norm] dtype mismatch: f32 and f64",
                       DTypeError);
  CHECK_THROWS_WITH_AS(layer_norm(scalar_tensor(1), Tensor(), Tensor()),
                       "[layer_norm] expected at least a 1-D input, got []", ShapeError);
  CHECK_THROWS_WITH_AS(layer_norm(zeros({2, 4}, DType::i32), Tensor(), Tensor()),
                       "[layer_norm] expected an f32 or f64 tensor, got i32", DTypeError);
  CHECK_THROWS_WITH_AS(layer_norm(x, Tensor(), Tensor(), -1.0), "[layer_norm] eps must be >= 0, got -1", ValueError);
}
