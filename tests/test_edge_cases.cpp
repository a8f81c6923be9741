// test_edge_cases.cpp — reliability.md goal 3 for the shape-generic ops: unary, broadcasting binary, reductions and
// softmax on the shapes (0,), (1,0,3), (), (20,), (812,), (1029,917), in f32 and f64 on the device under test, against
// float64 references written here; NaN, ±Inf and ±0 inputs give what PyTorch 1.13's CPU gives (its values quoted).
// Not gradchecks or CPU-vs-CUDA parity (the ops' own files); views do not exist here (tensors are always contiguous).
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <limits>

#include "engine/random.h"
#include "tests/test_util.h"

using namespace ep;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

const Shape kEdgeShapes[] = {{0}, {1, 0, 3}, {}, {20}, {812}, {1029, 917}};

// test::allclose with NaN equal to NaN: an infinity only matches the same infinity, finite values within
// atol + rtol·|want|.
void check_values(const std::vector<double>& got, const std::vector<double>& want, double atol, double rtol) {
  REQUIRE(got.size() == want.size());
  const Shape s{int64_t(got.size())};
  CHECK_ALLCLOSE(from_vector(got, s, DType::f64), from_vector(want, s, DType::f64), atol, rtol, true);
}

// n uniform values as the dtype stores them, so the float64 references start from the same inputs.
std::vector<double> uniform(int64_t n, uint64_t seed, double lo, double hi, DType dt) {
  return test::rand_uniform({n}, seed, lo, hi, dt).to_double_vector();
}

// Tolerances of a float32 (or float64) result against a float64 reference of the same inputs.
double atol_of(DType dt) { return dt == DType::f32 ? 1e-5 : 1e-12; }
double rtol_of(DType dt) { return dt == DType::f32 ? 2e-6 : 1e-12; }

// ---- unary ---------------------------------------------------------------------------------------------------------

// Inputs NaN, +Inf, -Inf, -0, +0, and for each op the output and the gradient (dy = 1) PyTorch 1.13 gives on the CPU.
const double kSpecials[] = {kNaN, kInf, -kInf, -0.0, 0.0};

struct UnaryEdgeCase {
  const char* name;
  std::function<Tensor(const Tensor&)> op;
  double lo, hi;                       // finite inputs are drawn from here
  std::function<double(double)> f, df;  // float64 reference and its derivative, for finite inputs
  std::vector<double> torch_f, torch_df;  // at kSpecials
};

double phi(double x) { return std::exp(-0.5 * x * x) / std::sqrt(2 * M_PI); }
double Phi(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }
double logistic(double x) { return 1 / (1 + std::exp(-x)); }

const std::vector<UnaryEdgeCase>& unary_cases() {
  static const std::vector<UnaryEdgeCase> cases = {
      {"neg", [](const Tensor& x) { return neg(x); }, -4, 4, [](double x) { return -x; },
       [](double) { return -1.0; }, {kNaN, -kInf, kInf, 0, 0}, {-1, -1, -1, -1, -1}},
      {"exp", [](const Tensor& x) { return exp(x); }, -4, 4, [](double x) { return std::exp(x); },
       [](double x) { return std::exp(x); }, {kNaN, kInf, 0, 1, 1}, {kNaN, kInf, 0, 1, 1}},
      {"log", [](const Tensor& x) { return log(x); }, 0.05, 5, [](double x) { return std::log(x); },
       [](double x) { return 1 / x; }, {kNaN, kInf, kNaN, -kInf, -kInf}, {kNaN, 0, 0, -kInf, kInf}},
      {"sqrt", [](const Tensor& x) { return sqrt(x); }, 0.05, 5, [](double x) { return std::sqrt(x); },
       [](double x) { return 0.5 / std::sqrt(x); }, {kNaN, kInf, kNaN, 0, 0}, {kNaN, 0, kNaN, -kInf, kInf}},
      {"pow 2.5", [](const Tensor& x) { return pow(x, 2.5); }, 0.05, 3, [](double x) { return std::pow(x, 2.5); },
       [](double x) { return 2.5 * std::pow(x, 1.5); }, {kNaN, kInf, kInf, 0, 0}, {kNaN, kInf, kInf, 0, 0}},
      {"relu", [](const Tensor& x) { return relu(x); }, -4, 4, [](double x) { return std::max(x, 0.0); },
       [](double x) { return x > 0 ? 1.0 : 0.0; }, {kNaN, kInf, 0, 0, 0}, {1, 1, 0, 0, 0}},
      {"relu6", [](const Tensor& x) { return relu6(x); }, -3, 9,
       [](double x) { return std::min(std::max(x, 0.0), 6.0); }, [](double x) { return x > 0 && x < 6 ? 1.0 : 0.0; },
       {kNaN, 6, 0, 0, 0}, {1, 0, 0, 0, 0}},
      {"gelu", [](const Tensor& x) { return gelu(x); }, -5, 5, [](double x) { return x * Phi(x); },
       [](double x) { return Phi(x) + x * phi(x); }, {kNaN, kInf, kNaN, 0, 0}, {kNaN, kNaN, kNaN, 0.5, 0.5}},
      {"tanh", [](const Tensor& x) { return tanh(x); }, -4, 4, [](double x) { return std::tanh(x); },
       [](double x) { return 1 / (std::cosh(x) * std::cosh(x)); }, {kNaN, 1, -1, 0, 0}, {kNaN, 0, 0, 1, 1}},
      {"sigmoid", [](const Tensor& x) { return sigmoid(x); }, -6, 6, logistic,
       [](double x) { return logistic(x) * logistic(-x); }, {kNaN, 1, 0, 0.5, 0.5}, {kNaN, 0, 0, 0.25, 0.25}},
      {"add 0.75", [](const Tensor& x) { return add(x, 0.75); }, -4, 4, [](double x) { return x + 0.75; },
       [](double) { return 1.0; }, {kNaN, kInf, -kInf, 0.75, 0.75}, {1, 1, 1, 1, 1}},
      {"mul -1.5", [](const Tensor& x) { return mul(x, -1.5); }, -4, 4, [](double x) { return -1.5 * x; },
       [](double) { return -1.5; }, {kNaN, -kInf, kInf, 0, 0}, {-1.5, -1.5, -1.5, -1.5, -1.5}},
  };
  return cases;
}

// Runs `op` on `xv` (shape s) and checks the output and the gradient for dy = ones against the expectations.
void check_unary(const UnaryEdgeCase& c, const std::vector<double>& xv, const Shape& s, DType dt,
                 const std::vector<double>& want_y, const std::vector<double>& want_dx) {
  Tensor x = from_vector(xv, s, dt, test::test_device()).requires_grad_();
  Tensor y = c.op(x);
  CHECK(y.shape() == s);
  CHECK(y.dtype() == dt);
  y.backward(ones(s, dt, y.device()));
  REQUIRE(x.grad().defined());
  CHECK(x.grad().shape() == s);
  {
    INFO("forward");
    check_values(y.to_double_vector(), want_y, atol_of(dt), rtol_of(dt));
  }
  INFO("gradient");
  check_values(x.grad().to_double_vector(), want_dx, atol_of(dt), 8 * rtol_of(dt));
}

}  // namespace

TEST_CASE("edge cases: unary ops on every edge shape, f32 and f64, with NaN/±Inf/±0 as PyTorch gives them") {
  for (const UnaryEdgeCase& c : unary_cases())
    for (DType dt : {DType::f32, DType::f64})
      for (const Shape& s : kEdgeShapes) {
        INFO(c.name << " " << dtype_name(dt) << " " << shape_str(s));
        const int64_t n = shape_numel(s);
        std::vector<double> xv = uniform(n, 11 + uint64_t(n), c.lo, c.hi, dt);
        std::vector<double> want_y(xv.size()), want_dx(xv.size());
        for (size_t i = 0; i < xv.size(); ++i) {
          want_y[i] = c.f(xv[i]);
          want_dx[i] = c.df(xv[i]);
        }
        // The specials sit at the front of every shape large enough, so the vectorized loops' heads see them
        // too (the largest shape also at its end, in the tails).
        for (size_t k = 0; k < 5 && xv.size() >= 20; ++k)
          for (size_t at : {k, xv.size() >= 1000 ? xv.size() - 1 - k : k}) {
            xv[at] = kSpecials[k];
            want_y[at] = c.torch_f[k];
            want_dx[at] = c.torch_df[k];
          }
        check_unary(c, xv, s, dt, want_y, want_dx);
      }
  // Each special alone, as a 0-D tensor.
  for (const UnaryEdgeCase& c : unary_cases())
    for (size_t k = 0; k < 5; ++k) {
      INFO(c.name << " of the 0-D special " << kSpecials[k]);
      check_unary(c, {kSpecials[k]}, {}, DType::f32, {c.torch_f[k]}, {c.torch_df[k]});
    }
}

// ---- binary, broadcasting -------------------------------------------------------------------------------------------

namespace {

// Row-major broadcast of out index i to the flat index of an input of shape `in` (right-aligned with `out`).
int64_t broadcast_source(int64_t i, const Shape& out, const Shape& in) {
  int64_t src = 0, stride = 1;
  for (int64_t d = int64_t(out.size()) - 1, e = int64_t(in.size()) - 1; d >= 0; --d, --e) {
    const int64_t coord = i % out[size_t(d)];
    i /= out[size_t(d)];
    if (e >= 0) {
      if (in[size_t(e)] != 1) src += coord * stride;
      stride *= in[size_t(e)];
    }
  }
  return src;
}

struct BinaryEdgeCase {
  const char* name;
  Tensor (*op)(const Tensor&, const Tensor&);
  std::function<double(double, double)> f, dfa, dfb;  // float64 reference; partials as PyTorch's backward writes them
};

const BinaryEdgeCase kBinary[] = {
    {"add", [](const Tensor& a, const Tensor& b) { return add(a, b); }, [](double a, double b) { return a + b; },
     [](double, double) { return 1.0; }, [](double, double) { return 1.0; }},
    {"sub", [](const Tensor& a, const Tensor& b) { return sub(a, b); }, [](double a, double b) { return a - b; },
     [](double, double) { return 1.0; }, [](double, double) { return -1.0; }},
    {"mul", [](const Tensor& a, const Tensor& b) { return mul(a, b); }, [](double a, double b) { return a * b; },
     [](double, double b) { return b; }, [](double a, double) { return a; }},
    // torch: grad_self = grad / other; grad_other = -grad * ((self / other) / other)
    {"div", [](const Tensor& a, const Tensor& b) { return div(a, b); }, [](double a, double b) { return a / b; },
     [](double, double b) { return 1 / b; }, [](double a, double b) { return -((a / b) / b); }},
};

const std::pair<Shape, Shape> kEdgePairs[] = {
    {{0}, {0}},        {{0}, {1}},     {{1, 0, 3}, {3}}, {{1, 0, 3}, {}},         {{}, {}},
    {{}, {20}},        {{812}, {}},    {{20}, {20}},     {{812, 1}, {20}},        {{1029, 917}, {917}},
    {{1029, 1}, {1, 917}}, {{1029, 917}, {1029, 917}},
};

}  // namespace

TEST_CASE("edge cases: broadcasting binary ops on edge shape pairs, f32 and f64, IEEE specials in both operands") {
  // IEEE arithmetic, which PyTorch follows: inf - inf, 0 * inf and 0 / 0 are NaN, 1 / ±0 is ±inf, and NaN wins.
  const double kA[] = {kInf, kInf, 0.0, 0.0, 1.0, -1.0, kNaN, 2.0};
  const double kB[] = {kInf, -kInf, kInf, 0.0, 0.0, -0.0, 3.0, kNaN};
  for (const BinaryEdgeCase& c : kBinary)
    for (DType dt : {DType::f32, DType::f64})
      for (const auto& [sa, sb] : kEdgePairs) {
        INFO(c.name << " " << dtype_name(dt) << " " << shape_str(sa) << " with " << shape_str(sb));
        const int64_t na = shape_numel(sa), nb = shape_numel(sb);
        std::vector<double> av = uniform(na, 21 + uint64_t(na), 0.5, 2, dt);
        std::vector<double> bv = uniform(nb, 22 + uint64_t(nb), -2, -0.5, dt);
        if (av.size() >= 20 && bv.size() >= 20)
          for (size_t k = 0; k < 8; ++k) {
            av[k] = kA[k];
            bv[k] = kB[k];
          }
        Device dev = test::test_device();
        Tensor a = from_vector(av, sa, dt, dev).requires_grad_(), b = from_vector(bv, sb, dt, dev).requires_grad_();
        Tensor y = c.op(a, b);
        const Shape so = broadcast_shapes("test", sa, sb);
        REQUIRE(y.shape() == so);
        const int64_t no = shape_numel(so);
        std::vector<double> dy = uniform(no, 23, -1, 1, dt), want(static_cast<size_t>(no)), want_da(size_t(na), 0.0),
                            want_db(size_t(nb), 0.0);
        for (int64_t i = 0; i < no; ++i) {
          const int64_t ia = broadcast_source(i, so, sa), ib = broadcast_source(i, so, sb);
          const double x = av[size_t(ia)], z = bv[size_t(ib)];
          want[size_t(i)] = c.f(x, z);
          want_da[size_t(ia)] += dy[size_t(i)] * c.dfa(x, z);
          want_db[size_t(ib)] += dy[size_t(i)] * c.dfb(x, z);
        }
        y.backward(from_vector(dy, so, dt, dev));
        {
          INFO("forward");
          check_values(y.to_double_vector(), want, atol_of(dt), rtol_of(dt));
        }
        // Summed over up to 1029 broadcast rows in the operand's precision: a looser bound in float32.
        const double atol = dt == DType::f32 ? 2e-4 : 1e-11, rtol = dt == DType::f32 ? 1e-4 : 1e-11;
        {
          INFO("gradient of a");
          check_values(a.grad().to_double_vector(), want_da, atol, rtol);
        }
        INFO("gradient of b");
        check_values(b.grad().to_double_vector(), want_db, atol, rtol);
      }
}

// ---- reductions -----------------------------------------------------------------------------------------------------

TEST_CASE("edge cases: sum and mean over edge shapes; empty sums are 0, empty means NaN, as PyTorch") {
  Device dev = test::test_device();
  for (DType dt : {DType::f32, DType::f64}) {
    INFO("dtype " << dtype_name(dt));
    // torch.sum(torch.zeros(0)) = 0, torch.mean(torch.zeros(0)) = nan; over dim 1 of (1,0,3): zeros / nan of (1,3).
    Tensor e = zeros({0}, dt, dev), e3 = zeros({1, 0, 3}, dt, dev);
    CHECK(sum(e).item() == 0.0);
    CHECK(std::isnan(mean(e).item()));
    CHECK(sum(e3).item() == 0.0);
    Tensor s1 = sum(e3, {1}), m1 = mean(e3, {1});
    CHECK(s1.shape() == Shape{1, 3});
    check_values(s1.to_double_vector(), {0, 0, 0}, 0, 0);
    check_values(m1.to_double_vector(), {kNaN, kNaN, kNaN}, 0, 0);
    CHECK(sum(e3, {0, 2}).shape() == Shape{0});
    CHECK(sum(e3, {1}, true).shape() == Shape{1, 1, 3});
    // 0-D: the sum of a scalar is itself, over no dims or all.
    Tensor z = from_vector({2.5}, {}, dt, dev);
    CHECK(sum(z).item() == 2.5);
    CHECK(mean(z).item() == 2.5);
    // Gradients of empty reductions are empty, of the right shape.
    Tensor eg = zeros({1, 0, 3}, dt, dev).requires_grad_();
    sum(mean(eg, {1})).backward();
    CHECK(eg.grad().shape() == Shape{1, 0, 3});
    // IEEE specials: inf + -inf = NaN, NaN wins, one inf stays.
    check_values(sum(from_vector({kInf, -kInf, 1}, {3}, dt, dev)).to_double_vector(), {kNaN}, 0, 0);
    check_values(sum(from_vector({kNaN, 1, 2}, {3}, dt, dev)).to_double_vector(), {kNaN}, 0, 0);
    check_values(mean(from_vector({-kInf, 1, 2}, {3}, dt, dev)).to_double_vector(), {-kInf}, 0, 0);
    // Large shapes against a float64 sum of the same inputs.
    for (const Shape& s : {Shape{20}, Shape{812}, Shape{1029, 917}}) {
      INFO(shape_str(s));
      std::vector<double> v = uniform(shape_numel(s), 31, -1, 1, dt);
      Tensor x = from_vector(v, s, dt, dev);
      double total = 0;
      for (double t : v) total += t;
      const double atol = dt == DType::f32 ? 1e-3 : 1e-9;
      check_values(sum(x).to_double_vector(), {total}, atol, 0);
      check_values(mean(x).to_double_vector(), {total / double(v.size())}, atol / double(v.size()), 1e-5);
      if (s.size() == 2) {
        std::vector<double> cols(size_t(s[1]), 0.0), rows(size_t(s[0]), 0.0);
        for (int64_t i = 0; i < s[0]; ++i)
          for (int64_t j = 0; j < s[1]; ++j) {
            cols[size_t(j)] += v[size_t(i * s[1] + j)];
            rows[size_t(i)] += v[size_t(i * s[1] + j)];
          }
        check_values(sum(x, {0}).to_double_vector(), cols, dt == DType::f32 ? 1e-4 : 1e-11, 0);
        check_values(sum(x, {1}).to_double_vector(), rows, dt == DType::f32 ? 1e-4 : 1e-11, 0);
      }
    }
  }
}

TEST_CASE("edge cases: max/min/argmax propagate NaN and refuse an empty reduced dim, as PyTorch") {
  Device dev = test::test_device();
  for (DType dt : {DType::f32, DType::f64}) {
    INFO("dtype " << dtype_name(dt));
    // torch.max(t([1, nan, 3]), 0) = (nan, 1); torch.min(t([-inf, nan]), 0) = (nan, 1); argmax([1,nan,3,nan]) = 1.
    Tensor x = from_vector({1, kNaN, 3}, {3}, dt, dev).requires_grad_();
    Tensor m = max(x, 0);
    CHECK(std::isnan(m.item()));
    m.backward();  // torch: the gradient goes to the NaN, [0, 1, 0]
    check_values(x.grad().to_double_vector(), {0, 1, 0}, 0, 0);
    CHECK(std::isnan(min(from_vector({-kInf, kNaN}, {2}, dt, dev), 0).item()));
    CHECK(argmax(from_vector({1, kNaN, 3, kNaN}, {4}, dt, dev), 0).item() == 1);
    CHECK(max(from_vector({-kInf, -kInf}, {2}, dt, dev), 0).item() == -kInf);
    // 0-D: the value itself (torch.max(tensor(5.), 0) = (5, 0)).
    CHECK(max(from_vector({5}, {}, dt, dev), 0).item() == 5.0);
    CHECK(argmax(from_vector({5}, {}, dt, dev), 0).item() == 0);
    // (1,0,3): over the empty dim there is nothing to pick (torch: "Expected reduction dim 1 to have non-zero
    // size"); over dim 2 the result is empty, shape (1,0).
    Tensor e = zeros({1, 0, 3}, dt, dev);
    CHECK_THROWS_AS(max(e, 1), ShapeError);
    CHECK_THROWS_AS(min(e, 1), ShapeError);
    CHECK_THROWS_AS(argmax(e, 1), ShapeError);
    CHECK(max(e, 2).shape() == Shape{1, 0});
    CHECK(argmax(e, 2).shape() == Shape{1, 0});
    // (1029, 917) with NaN planted in some columns: those columns' maxima are NaN, at the first NaN's row.
    const int64_t R = 1029, C = 917;
    std::vector<double> v = uniform(R * C, 41, -5, 5, dt);
    for (int64_t j = 0; j < C; j += 100) {
      v[size_t(((j * 7) % R) * C + j)] = kNaN;
      v[size_t(R - 1) * size_t(C) + size_t(j)] = kNaN;
    }
    Tensor big = from_vector(v, {R, C}, dt, dev);
    std::vector<double> got = max(big, 0).to_double_vector(), idx = argmax(big, 0).to_double_vector();
    for (int64_t j = 0; j < C; ++j) {
      double want = -kInf;
      int64_t at = 0;
      for (int64_t i = 0; i < R; ++i) {
        const double t = v[size_t(i * C + j)];
        if (std::isnan(t)) {
          want = t;
          at = i;
          break;
        }
        if (t > want) want = t, at = i;
      }
      INFO("column " << j);
      if (std::isnan(want)) REQUIRE(std::isnan(got[size_t(j)]));
      else REQUIRE(got[size_t(j)] == want);
      REQUIRE(idx[size_t(j)] == double(at));
    }
  }
}

// ---- softmax, log_softmax, layer_norm, cross_entropy ----------------------------------------------------------------

TEST_CASE("edge cases: softmax and log_softmax with -inf (masked), +inf and NaN rows, and empty shapes, as PyTorch") {
  Device dev = test::test_device();
  for (DType dt : {DType::f32, DType::f64}) {
    INFO("dtype " << dtype_name(dt));
    // torch 1.13, rows of 2: [-inf, 0] -> [0, 1] / [-inf, 0]; every other row below -> NaN, NaN in both.
    Tensor x = from_vector({-kInf, 0, -kInf, -kInf, kInf, 0, kNaN, 0, kInf, kInf}, {5, 2}, dt, dev);
    check_values(softmax(x).to_double_vector(), {0, 1, kNaN, kNaN, kNaN, kNaN, kNaN, kNaN, kNaN, kNaN}, 0, 0);
    check_values(log_softmax(x).to_double_vector(), {-kInf, 0, kNaN, kNaN, kNaN, kNaN, kNaN, kNaN, kNaN, kNaN}, 0, 0);
    // Gradients of the masked row for dy = [1, 2]: softmax [0, 0], log_softmax [1, -1].
    Tensor r = from_vector({-kInf, 0}, {1, 2}, dt, dev).requires_grad_();
    softmax(r).backward(from_vector({1, 2}, {1, 2}, dt, dev));
    check_values(r.grad().to_double_vector(), {0, 0}, 0, 0);
    Tensor q = from_vector({-kInf, 0}, {1, 2}, dt, dev).requires_grad_();
    log_softmax(q).backward(from_vector({1, 2}, {1, 2}, dt, dev));
    check_values(q.grad().to_double_vector(), {1, -1}, 0, 0);
    // Empty shapes go through; 0-D is one row of one element: softmax 1, log_softmax 0.
    CHECK(softmax(zeros({0}, dt, dev)).shape() == Shape{0});
    CHECK(log_softmax(zeros({1, 0, 3}, dt, dev)).shape() == Shape{1, 0, 3});
    CHECK(softmax(zeros({3, 0}, dt, dev)).shape() == Shape{3, 0});
    CHECK(softmax(from_vector({7}, {}, dt, dev)).item() == 1.0);
    CHECK(log_softmax(from_vector({7}, {}, dt, dev)).item() == 0.0);
    // (1029, 917) and (812,) rows against float64 references of the same inputs, a -inf planted per row.
    for (const Shape& s : {Shape{812}, Shape{1029, 917}}) {
      INFO(shape_str(s));
      const int64_t cols = s.back(), rows = shape_numel(s) / cols;
      std::vector<double> v = uniform(shape_numel(s), 51, -8, 8, dt);
      for (int64_t i = 0; i < rows; ++i) v[size_t(i * cols + (i * 13) % cols)] = -kInf;
      std::vector<double> want_p(v.size()), want_l(v.size());
      for (int64_t i = 0; i < rows; ++i) {
        double mx = -kInf, z = 0;
        for (int64_t j = 0; j < cols; ++j) mx = std::max(mx, v[size_t(i * cols + j)]);
        for (int64_t j = 0; j < cols; ++j) z += std::exp(v[size_t(i * cols + j)] - mx);
        for (int64_t j = 0; j < cols; ++j) {
          want_l[size_t(i * cols + j)] = v[size_t(i * cols + j)] - mx - std::log(z);
          want_p[size_t(i * cols + j)] = std::exp(want_l[size_t(i * cols + j)]);
        }
      }
      Tensor xs = from_vector(v, s, dt, dev);
      check_values(softmax(xs).to_double_vector(), want_p, atol_of(dt), 1e-5);
      check_values(log_softmax(xs).to_double_vector(), want_l, atol_of(dt), 1e-5);
    }
  }
}

TEST_CASE("edge cases: layer_norm and cross_entropy with infinities, as PyTorch") {
  Device dev = test::test_device();
  for (DType dt : {DType::f32, DType::f64}) {
    INFO("dtype " << dtype_name(dt));
    // torch layer_norm([[1, inf, 2]]) = [[nan, nan, nan]]; a finite row beside it is untouched by it.
    Tensor x = from_vector({1, kInf, 2, 1, 2, 3}, {2, 3}, dt, dev);
    std::vector<double> y = layer_norm(x, Tensor(), Tensor()).to_double_vector();
    check_values({y[0], y[1], y[2]}, {kNaN, kNaN, kNaN}, 0, 0);
    const double sd = std::sqrt(2.0 / 3.0 + 1e-5);  // population variance of {1,2,3} plus eps
    check_values({y[3], y[4], y[5]}, {-1 / sd, 0, 1 / sd}, atol_of(dt), 1e-6);
    // torch cross_entropy([[-inf, 1, 2]], [1]) = 1.3133 with gradient [0, -0.7311, 0.7311];
    // with target 0 (the -inf logit) the loss is inf and the gradient [-1, 0.2689, 0.7311].
    const double p1 = 1 / (1 + std::exp(1.0)), p2 = 1 - p1;  // softmax of [1, 2]
    Tensor l = from_vector({-kInf, 1, 2}, {1, 3}, dt, dev).requires_grad_();
    Tensor loss = cross_entropy(l, from_vector({1}, {1}, DType::i64, dev));
    check_values(loss.to_double_vector(), {-std::log(p1)}, atol_of(dt), 1e-6);
    loss.backward();
    check_values(l.grad().to_double_vector(), {0, p1 - 1, p2}, atol_of(dt), 1e-6);
    Tensor l0 = from_vector({-kInf, 1, 2}, {1, 3}, dt, dev).requires_grad_();
    Tensor loss0 = cross_entropy(l0, from_vector({0}, {1}, DType::i64, dev));
    check_values(loss0.to_double_vector(), {kInf}, 0, 0);
    loss0.backward();
    check_values(l0.grad().to_double_vector(), {-1, p1, p2}, atol_of(dt), 1e-6);
    // With label smoothing 0.1 the -inf logit is in the smoothing sum: torch gives inf, gradient [-0.0333, -0.6644,
    // 0.6977] (= p - 0.1/3 - 0.9 [k == target]).
    Tensor ls = from_vector({-kInf, 1, 2}, {1, 3}, dt, dev).requires_grad_();
    Tensor lossls = cross_entropy(ls, from_vector({1}, {1}, DType::i64, dev), 0.1);
    check_values(lossls.to_double_vector(), {kInf}, 0, 0);
    lossls.backward();
    check_values(ls.grad().to_double_vector(), {-0.1 / 3, p1 - 0.1 / 3 - 0.9, p2 - 0.1 / 3}, atol_of(dt), 1e-6);
  }
}

// ---- the structured ops on an empty batch ---------------------------------------------------------------------------

TEST_CASE("edge cases: every structured op takes an empty batch, as PyTorch: empty outputs, zero parameter gradients") {
  // A micro-batch or a data shard can be empty. PyTorch 1.13 runs every op below on N = 0; parameter gradients are
  // zero, batch norm leaves its running statistics alone (5 and 7 stay 5 and 7), and the mean cross entropy of no
  // rows is NaN.
  Device dev = test::test_device();
  for (DType dt : {DType::f32, DType::f64}) {
    INFO("dtype " << dtype_name(dt));
    auto empty_leaf = [&](const Shape& s) { return zeros(s, dt, dev).requires_grad_(); };
    auto param = [&](const Shape& s, double v) { return full(s, v, dt, dev).requires_grad_(); };
    auto all_zero = [](const Tensor& g) {
      REQUIRE(g.defined());
      for (double v : g.to_double_vector())
        if (v != 0) return false;
      return true;
    };
    {
      INFO("conv2d, dense and depthwise");
      for (int64_t groups : {int64_t(1), int64_t(4)}) {
        Tensor x = empty_leaf({0, 4, 8, 8}), w = param({4, 4 / groups, 3, 3}, 0.5), b = param({4}, 1);
        Conv2dOptions o;
        o.padding = {1, 1};
        o.stride = {2, 2};
        o.groups = groups;
        Tensor y = conv2d(x, w, b, o);
        CHECK(y.shape() == Shape{0, 4, 4, 4});
        sum(y).backward();
        CHECK(x.grad().shape() == Shape{0, 4, 8, 8});
        CHECK(all_zero(w.grad()));
        CHECK(all_zero(b.grad()));
      }
    }
    {
      INFO("batch_norm, training and eval");
      for (bool training : {true, false}) {
        Tensor x = empty_leaf({0, 3, 4, 4}), w = param({3}, 2), b = param({3}, 3);
        Tensor rm = full({3}, 5, dt, dev), rv = full({3}, 7, dt, dev);
        Tensor y = batch_norm(x, w, b, rm, rv, training);
        CHECK(y.shape() == Shape{0, 3, 4, 4});
        sum(y).backward();
        CHECK(all_zero(w.grad()));
        CHECK(all_zero(b.grad()));
        CHECK(rm.to_double_vector() == std::vector<double>{5, 5, 5});
        CHECK(rv.to_double_vector() == std::vector<double>{7, 7, 7});
      }
    }
    {
      INFO("layer_norm, linear");
      Tensor x = empty_leaf({0, 5}), w = param({5}, 2), b = param({5}, 3);
      sum(layer_norm(x, w, b)).backward();
      CHECK(x.grad().shape() == Shape{0, 5});
      CHECK(all_zero(w.grad()));
      CHECK(all_zero(b.grad()));
      Tensor x2 = empty_leaf({2, 0, 5}), lw = param({3, 5}, 0.5), lb = param({3}, 1);
      Tensor y = linear(x2, lw, lb);
      CHECK(y.shape() == Shape{2, 0, 3});
      sum(y).backward();
      CHECK(all_zero(lw.grad()));
      CHECK(all_zero(lb.grad()));
    }
    {
      INFO("pooling");
      Tensor x = empty_leaf({0, 3, 4, 4});
      Tensor y = add(add(sum(max_pool2d(x, {})), sum(avg_pool2d(x, {}))), sum(adaptive_avg_pool2d(x, 1, 1)));
      CHECK(max_pool2d(x, {}).shape() == Shape{0, 3, 2, 2});
      CHECK(adaptive_avg_pool2d(x, 1, 1).shape() == Shape{0, 3, 1, 1});
      y.backward();
      CHECK(x.grad().shape() == Shape{0, 3, 4, 4});
    }
    {
      INFO("embedding, attention_softmax, dropout");
      Tensor table = param({10, 4}, 1);
      Tensor e = embedding(table, zeros({2, 0}, DType::i64, dev));
      CHECK(e.shape() == Shape{2, 0, 4});
      sum(e).backward();
      CHECK(all_zero(table.grad()));
      Generator gen(7);
      Tensor scores = empty_leaf({0, 2, 3, 3});
      Tensor p = attention_softmax(scores, ones({0, 3}, DType::i64, dev), 0.5, 0.1, true, gen);
      CHECK(p.shape() == Shape{0, 2, 3, 3});
      sum(p).backward();
      CHECK(scores.grad().shape() == Shape{0, 2, 3, 3});
      Tensor d = empty_leaf({0, 7});
      CHECK(dropout(d, 0.5, true, gen).shape() == Shape{0, 7});
    }
    {
      INFO("cross_entropy of no rows: NaN, and an empty gradient");
      Tensor logits = empty_leaf({0, 5});
      Tensor loss = cross_entropy(logits, zeros({0}, DType::i64, dev));
      CHECK(std::isnan(loss.item()));
      loss.backward();
      CHECK(logits.grad().shape() == Shape{0, 5});
    }
  }
}
