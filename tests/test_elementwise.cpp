// test_elementwise.cpp — unary and broadcasting binary ops, sum/mean, reshape, casts and device copies:
// float64 gradchecks, CPU-vs-CUDA parity on awkward shapes, hand-computed values and errors.
#include <doctest/doctest.h>

#include <cmath>

#include "tests/test_util.h"

using namespace ep;
using test::OpFn;

namespace {

struct UnaryCase {
  const char* name;
  Tensor (*fn)(const Tensor&);
  double lo, hi;
  std::vector<double> kinks;
};

const UnaryCase kUnary[] = {
    {"neg", [](const Tensor& x) { return neg(x); }, -3, 3, {}},
    {"exp", [](const Tensor& x) { return exp(x); }, -3, 3, {}},
    {"log", [](const Tensor& x) { return log(x); }, 0.1, 5, {}},
    {"sqrt", [](const Tensor& x) { return sqrt(x); }, 0.1, 5, {}},
    {"pow", [](const Tensor& x) { return pow(x, 2.5); }, 0.1, 3, {}},
    {"relu", [](const Tensor& x) { return relu(x); }, -3, 3, {0}},
    {"relu6", [](const Tensor& x) { return relu6(x); }, -2, 8, {0, 6}},
    {"gelu", [](const Tensor& x) { return gelu(x); }, -4, 4, {}},
    {"tanh", [](const Tensor& x) { return tanh(x); }, -3, 3, {}},
    {"sigmoid", [](const Tensor& x) { return sigmoid(x); }, -5, 5, {}},
    {"add_scalar", [](const Tensor& x) { return add(x, 0.75); }, -3, 3, {}},
    {"mul_scalar", [](const Tensor& x) { return mul(x, -1.5); }, -3, 3, {}},
};

}  // namespace

TEST_CASE("unary ops: gradcheck in float64") {
  for (const auto& c : kUnary) {
    INFO("op " << c.name);
    Tensor x = test::rand_away_from({3, 5}, 1, c.kinks, 0.05, c.lo, c.hi, DType::f64, test::test_device())
                   .requires_grad_();
    test::gradcheck([&](const std::vector<Tensor>& in) { return c.fn(in[0]); }, {x});
  }
}

TEST_CASE("unary ops: CUDA matches CPU on awkward shapes") {
  for (const auto& c : kUnary) {
    for (Shape s : {Shape{0}, Shape{1}, Shape{7}, Shape{1029, 917}, Shape{2, 1, 3}}) {
      INFO("op " << c.name << " shape " << shape_str(s));
      Tensor x = test::rand_away_from(s, 2, c.kinks, 0.01, c.lo, c.hi, DType::f32).requires_grad_();
      test::check_parity([&](const std::vector<Tensor>& in) { return c.fn(in[0]); }, {x});
    }
  }
}

TEST_CASE("unary ops: hand values") {
  Tensor x = from_vector({-1, 0, 0.5, 7}, {4}, DType::f64);
  CHECK(relu(x).to_vector<double>() == std::vector<double>{0, 0, 0.5, 7});
  CHECK(relu6(x).to_vector<double>() == std::vector<double>{0, 0, 0.5, 6});
  // gelu(1) = 0.5 * (1 + erf(1/sqrt 2)) = 0.8413447460685429 (the normal CDF at 1)
  CHECK(gelu(from_vector({1.0}, {1}, DType::f64)).item() == doctest::Approx(0.8413447460685429).epsilon(1e-12));
  CHECK(sigmoid(from_vector({0.0}, {1}, DType::f64)).item() == 0.5);
  CHECK(pow(from_vector({3.0}, {1}, DType::f64), 2).item() == 9.0);
  CHECK_THROWS_WITH_AS(relu(zeros({2}, DType::i32)), "[relu] expected an f32 or f64 tensor, got i32", DTypeError);
}

namespace {
const std::pair<Shape, Shape> kBroadcast[] = {
    {{3, 4}, {3, 4}}, {{3, 4}, {4}}, {{3, 1}, {1, 4}}, {{2, 3, 4}, {3, 1}}, {{1}, {2, 3}}, {{}, {2, 2}},
    {{2, 1, 3, 1}, {4, 1, 1}},
};
OpFn binary_fn(int k) {
  return [k](const std::vector<Tensor>& in) {
    switch (k) {
      case 0: return add(in[0], in[1]);
      case 1: return sub(in[0], in[1]);
      case 2: return mul(in[0], in[1]);
      default: return div(in[0], in[1]);
    }
  };
}
}  // namespace

TEST_CASE("binary ops: gradcheck with broadcasting in float64") {
  for (int k = 0; k < 4; ++k)
    for (const auto& [sa, sb] : kBroadcast) {
      INFO("op " << k << " shapes " << shape_str(sa) << " " << shape_str(sb));
      Device d = test::test_device();
      Tensor a = test::rand_uniform(sa, 3, 0.5, 2, DType::f64, d).requires_grad_();
      Tensor b = test::rand_uniform(sb, 4, 0.5, 2, DType::f64, d).requires_grad_();
      test::gradcheck(binary_fn(k), {a, b});
    }
}

TEST_CASE("binary ops: CUDA matches CPU, broadcasting and odd sizes") {
  std::vector<std::pair<Shape, Shape>> shapes(std::begin(kBroadcast), std::end(kBroadcast));
  shapes.push_back({{1029, 917}, {1029, 917}});
  shapes.push_back({{1029, 917}, {917}});
  shapes.push_back({{0, 3}, {3}});
  shapes.push_back({{8}, {5, 8}});      // the row first: the order of a non-commutative op must survive
  shapes.push_back({{64, 1028}, {1028}});  // a bias-add row pattern with float4 rows
  for (int k = 0; k < 4; ++k)
    for (const auto& [sa, sb] : shapes) {
      INFO("op " << k << " shapes " << shape_str(sa) << " " << shape_str(sb));
      Tensor a = test::rand_uniform(sa, 5, 0.5, 2, DType::f32).requires_grad_();
      Tensor b = test::rand_uniform(sb, 6, 0.5, 2, DType::f32).requires_grad_();
      test::check_parity(binary_fn(k), {a, b});
    }
}

TEST_CASE("binary ops: hand values and broadcasting shapes") {
  Tensor a = from_vector({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = from_vector({10, 20, 30}, {3});
  CHECK(add(a, b).to_vector<float>() == std::vector<float>{11, 22, 33, 14, 25, 36});
  CHECK(div(b, a).to_vector<float>() == std::vector<float>{10, 10, 10, 2.5, 4, 5});
  CHECK(broadcast_shapes("t", {2, 1, 3}, {4, 1}) == Shape{2, 4, 3});
  CHECK_THROWS_AS(broadcast_shapes("t", {2, 3}, {2}), ShapeError);
  Tensor s = sub(from_vector({5}, {1}), a);
  CHECK(s.to_vector<float>() == std::vector<float>{4, 3, 2, 1, 0, -1});
}

TEST_CASE("sum and mean: gradcheck over dims, keepdim and all") {
  Device d = test::test_device();
  Tensor x = test::randn({2, 3, 4}, 7, DType::f64, d).requires_grad_();
  for (std::vector<int64_t> dims : {std::vector<int64_t>{0}, {1}, {2}, {-1}, {0, 2}, {0, 1}, {1, 2}, {0, 1, 2}})
    for (bool keep : {false, true}) {
      INFO("dims size " << dims.size() << " first " << dims[0] << " keepdim " << keep);
      test::gradcheck([&](const std::vector<Tensor>& in) { return sum(in[0], dims, keep); }, {x});
      test::gradcheck([&](const std::vector<Tensor>& in) { return mean(in[0], dims, keep); }, {x});
    }
  test::gradcheck([](const std::vector<Tensor>& in) { return mean(in[0]); }, {x});
}

TEST_CASE("sum and mean: CUDA matches CPU") {
  for (Shape s : {Shape{1029, 917}, Shape{3, 1, 5}, Shape{0, 4}, Shape{7}, Shape{3, 70001}, Shape{300, 40}, Shape{2, 500, 3}})
    for (int64_t dim = 0; dim < int64_t(s.size()); ++dim) {
      INFO("shape " << shape_str(s) << " dim " << dim);
      Tensor x = test::randn(s, 8, DType::f32).requires_grad_();
      test::check_parity([&](const std::vector<Tensor>& in) { return sum(in[0], {dim}); }, {x}, 1e-3, 1e-3);
      test::check_parity([&](const std::vector<Tensor>& in) { return mean(in[0], {dim}, true); }, {x});
    }
}

TEST_CASE("sum and mean: hand values, scalar shape, errors") {
  Tensor a = from_vector({1, 2, 3, 4, 5, 6}, {2, 3}, DType::f64);
  CHECK(sum(a).shape().empty());
  CHECK(sum(a).item() == 21);
  CHECK(sum(a, {0}).to_vector<double>() == std::vector<double>{5, 7, 9});
  CHECK(sum(a, {1}, true).shape() == Shape{2, 1});
  CHECK(mean(a, {1}).to_vector<double>() == std::vector<double>{2, 5});
  CHECK(sum(zeros({0, 3}), {0}).to_vector<float>() == std::vector<float>{0, 0, 0});
  CHECK_THROWS_WITH_AS(sum(a, {2}), "[sum] dim 2 out of range for a 2-D tensor", ShapeError);
  CHECK_THROWS_WITH_AS(sum(a, {1, -1}), "[sum] repeated dim", ShapeError);
}

TEST_CASE("reshape, flatten, casts and copies: gradcheck, parity, storage sharing") {
  Device d = test::test_device();
  Tensor x = test::randn({2, 6}, 9, DType::f64, d).requires_grad_();
  test::gradcheck([](const std::vector<Tensor>& in) { return reshape(in[0], {3, -1}); }, {x});
  test::gradcheck([](const std::vector<Tensor>& in) { return mul(in[0].clone(), 2.0); }, {x});
  test::gradcheck([](const std::vector<Tensor>& in) { return in[0].to(DType::f32).to(DType::f64); }, {x},
                  {1e-3, 1e-4, 1e-3});  // a round trip through f32 loses precision: eps 1e-3 keeps it visible
  // Widening and back, so the float32 directional check sees the casts too (in float64 both are no-ops).
  test::gradcheck([](const std::vector<Tensor>& in) { return mul(in[0].to(DType::f64), 3.0).to(in[0].dtype()); }, {x});
  // A device round trip records to_device nodes only when a second device exists.
  Device other = d.is_cuda() ? Device::cpu() : (test::have_cuda() ? Device::cuda() : Device::cpu());
  test::gradcheck([other](const std::vector<Tensor>& in) { return in[0].to(other).to(in[0].device()); }, {x});
  CHECK(reshape(x, {12}).raw_data() == x.raw_data());
  CHECK(flatten(test::randn({2, 3, 4}, 1), 1).shape() == Shape{2, 12});
  CHECK_THROWS_WITH_AS(reshape(x, {5, -1}), "[reshape] cannot reshape [2,6] into [5,-1]", ShapeError);
  Tensor c = test::randn({4, 5}, 10, DType::f32).requires_grad_();
  test::check_parity([](const std::vector<Tensor>& in) { return reshape(in[0], {5, 4}); }, {c});
  test::check_parity([](const std::vector<Tensor>& in) { return in[0].clone(); }, {c});
  test::check_parity([](const std::vector<Tensor>& in) { return in[0].to(DType::f64).to(DType::f32); }, {c});
  test::check_parity([](const std::vector<Tensor>& in) { return in[0].to(Device::cpu()).to(in[0].device()); }, {c});
}

TEST_CASE("casts to half storage round to nearest even, on CPU and CUDA alike") {
  Tensor v = from_vector({1.0, 65504, 1e-8, -0.1, 3.14159}, {5});
  std::vector<double> back = v.to(DType::bf16).to(DType::f32).to_double_vector();
  CHECK(back[0] == 1.0);
  CHECK(back[4] == 3.140625);
  CHECK(v.to(DType::f16).to(DType::f32).to_double_vector()[1] == 65504);
  if (test::have_cuda()) {
    Tensor g = v.to(Device::cuda());
    for (DType dt : {DType::f16, DType::bf16, DType::i8, DType::u8, DType::i64})
      CHECK(g.to(dt).cpu().to(DType::f64).to_vector<double>() == v.to(dt).to(DType::f64).to_vector<double>());
  }
}
