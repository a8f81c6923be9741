// test_init.cpp — torch.nn.init's fans and gains against hand values, Kaiming/Xavier bounds and empirical moments on
// large tensors, per-seed determinism, constants, CPU==CUDA draws, and bad inputs. Not random.h's own stream tests
// (tests/test_random.cpp).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include "engine/init.h"
#include "tests/test_util.h"

using namespace ep;

namespace {
struct Moments {
  double mean = 0, std = 0, max_abs = 0;
};
Moments moments(const Tensor& t) {
  std::vector<double> v = t.to_double_vector();
  Moments m;
  for (double x : v) m.mean += x;
  m.mean /= double(v.size());
  for (double x : v) {
    m.std += (x - m.mean) * (x - m.mean);
    m.max_abs = std::max(m.max_abs, std::abs(x));
  }
  m.std = std::sqrt(m.std / double(v.size()));
  return m;
}
}  // namespace

TEST_CASE("fans: [out, in, *receptive field] as torch.nn.init._calculate_fan_in_and_fan_out") {
  // Linear weight [out 3, in 5]: fan_in 5, fan_out 3.
  CHECK(calculate_fan_in_and_fan_out({3, 5}).fan_in == 5);
  CHECK(calculate_fan_in_and_fan_out({3, 5}).fan_out == 3);
  // Conv [16, 4, 3, 3]: receptive 9 -> fan_in 4*9 = 36, fan_out 16*9 = 144.
  CHECK(calculate_fan_in_and_fan_out({16, 4, 3, 3}).fan_in == 36);
  CHECK(calculate_fan_in_and_fan_out({16, 4, 3, 3}).fan_out == 144);
  // Depthwise conv (groups = 32): weight [32, 1, 3, 3] -> fan_in 9, fan_out 288.
  CHECK(calculate_fan_in_and_fan_out({32, 1, 3, 3}).fan_in == 9);
  CHECK(calculate_fan_in_and_fan_out({32, 1, 3, 3}).fan_out == 288);
  // 3-D conv [2, 3, 4, 5, 6]: receptive 120 -> 360 and 240.
  CHECK(calculate_fan_in_and_fan_out({2, 3, 4, 5, 6}).fan_in == 360);
  CHECK(calculate_fan_in_and_fan_out({2, 3, 4, 5, 6}).fan_out == 240);
  CHECK(calculate_fan_in_and_fan_out({0, 7}).fan_in == 7);
  CHECK_THROWS_WITH_AS(calculate_fan_in_and_fan_out({5}),
                       "[calculate_fan_in_and_fan_out] fan in and fan out can not be computed for a tensor with fewer "
                       "than 2 dimensions, got [5]",
                       ValueError);
}

TEST_CASE("gains: torch.nn.init.calculate_gain's table") {
  for (const char* unit : {"linear", "conv1d", "conv2d", "conv3d", "conv_transpose2d", "sigmoid"})
    CHECK(calculate_gain(unit) == 1.0);
  CHECK(calculate_gain("tanh") == doctest::Approx(5.0 / 3.0).epsilon(1e-15));
  CHECK(calculate_gain("relu") == doctest::Approx(1.4142135623730951).epsilon(1e-15));
  CHECK(calculate_gain("selu") == 0.75);
  // leaky_relu: sqrt(2 / (1 + slope^2)); default slope 0.01 -> sqrt(2/1.0001) = 1.41414285...; 0.2 -> sqrt(2/1.04).
  CHECK(calculate_gain("leaky_relu") == doctest::Approx(1.4141428569978354).epsilon(1e-14));
  CHECK(calculate_gain("leaky_relu", 0.2) == doctest::Approx(1.3867504905630728).epsilon(1e-14));
  CHECK(calculate_gain("leaky_relu", 0.0) == doctest::Approx(std::sqrt(2.0)).epsilon(1e-15));
  // A parameter is ignored by the others, as PyTorch.
  CHECK(calculate_gain("tanh", 0.3) == doctest::Approx(5.0 / 3.0).epsilon(1e-15));
  CHECK_THROWS_WITH_AS(calculate_gain("swish"), "[calculate_gain] unsupported nonlinearity 'swish'", ValueError);
}

TEST_CASE("kaiming_uniform_: within +-gain*sqrt(3/fan), std gain/sqrt(fan), on the device under test") {
  Generator gen(1);
  // [512, 1024] relu, fan_in 1024: bound = sqrt(2)*sqrt(3/1024) = 0.0765466, std = sqrt(2/1024) = 0.0441942.
  Tensor w = empty({512, 1024}, DType::f32, test::test_device());
  kaiming_uniform_(w, 0, "fan_in", "relu", gen);
  const double bound = std::sqrt(2.0) * std::sqrt(3.0 / 1024.0);
  Moments m = moments(w);
  CHECK(m.max_abs <= bound * (1 + 1e-6));
  CHECK(m.max_abs >= bound * 0.999);  // 524288 draws reach the edge
  CHECK(m.std == doctest::Approx(std::sqrt(2.0 / 1024.0)).epsilon(0.01));
  CHECK(std::abs(m.mean) < 5 * m.std / std::sqrt(double(w.numel())));
  CHECK(gen.offset == uint64_t(w.numel()));
  // Defaults (a = 0, fan_in, leaky_relu -> gain sqrt(2)) on a conv weight [64, 32, 3, 3]: fan_in 288, fan_out 576.
  Tensor c = empty({64, 32, 3, 3}, DType::f64, test::test_device());
  Generator g2(2);
  kaiming_uniform_(c, 0, "fan_in", "leaky_relu", g2);
  CHECK(moments(c).max_abs <= std::sqrt(6.0 / 288.0));
  CHECK(moments(c).std == doctest::Approx(std::sqrt(2.0 / 288.0)).epsilon(0.02));
  // fan_out with a = sqrt(5) (nn.Linear's choice): gain sqrt(2/6) = 1/sqrt(3), bound = 1/sqrt(576) = 1/24.
  kaiming_uniform_(c, std::sqrt(5.0), "fan_out", "leaky_relu", g2);
  CHECK(moments(c).max_abs <= 1.0 / 24.0 + 1e-12);
  CHECK(moments(c).max_abs >= 0.99 / 24.0);
}

TEST_CASE("kaiming_normal_ and xavier_*: empirical std matches the formula") {
  Generator gen(3);
  // kaiming_normal_ fan_out, leaky_relu a = 0.1 on [256, 64, 3, 3]: fan_out 2304, std sqrt(2/1.01)/48.
  Tensor k = empty({256, 64, 3, 3}, DType::f32, test::test_device());
  kaiming_normal_(k, 0.1, "fan_out", "leaky_relu", gen);
  Moments mk = moments(k);
  CHECK(mk.std == doctest::Approx(std::sqrt(2.0 / 1.01) / 48.0).epsilon(0.01));
  CHECK(std::abs(mk.mean) < 5 * mk.std / std::sqrt(double(k.numel())));
  // xavier_uniform_ gain 5/3 on [300, 200]: bound = 5/3*sqrt(6/500) = 0.182574, std = bound/sqrt(3).
  Tensor xu = empty({300, 200}, DType::f64, test::test_device());
  xavier_uniform_(xu, 5.0 / 3.0, gen);
  const double b = 5.0 / 3.0 * std::sqrt(6.0 / 500.0);
  Moments mu = moments(xu);
  CHECK(mu.max_abs <= b * (1 + 1e-12));
  CHECK(mu.max_abs >= b * 0.99);
  CHECK(mu.std == doctest::Approx(b / std::sqrt(3.0)).epsilon(0.01));
  // xavier_normal_ gain 1 on [200, 300]: std = sqrt(2/500) = 0.0632456.
  Tensor xn = empty({200, 300}, DType::f32, test::test_device());
  xavier_normal_(xn, 1.0, gen);
  CHECK(moments(xn).std == doctest::Approx(std::sqrt(2.0 / 500.0)).epsilon(0.01));
  // Conv fans count the receptive field: [80, 40, 5, 5] -> fan_in 1000, fan_out 2000, std sqrt(2/3000).
  Tensor xc = empty({80, 40, 5, 5}, DType::f32, test::test_device());
  xavier_normal_(xc, 1.0, gen);
  CHECK(moments(xc).std == doctest::Approx(std::sqrt(2.0 / (1000.0 + 2000.0))).epsilon(0.02));
}

TEST_CASE("initializers are deterministic per seed and advance the generator") {
  auto draw = [](uint64_t seed) {
    Generator g(seed);
    Tensor a = empty({16, 8}, DType::f32, test::test_device());
    Tensor b = empty({16, 8}, DType::f32, test::test_device());
    kaiming_uniform_(a, 0, "fan_in", "relu", g);
    xavier_normal_(b, 1.0, g);
    return std::make_pair(a.to_vector<float>(), b.to_vector<float>());
  };
  auto [a1, b1] = draw(11);
  auto [a2, b2] = draw(11);
  auto [a3, b3] = draw(12);
  CHECK(a1 == a2);
  CHECK(b1 == b2);
  CHECK(a1 != a3);
  // Consecutive draws from one generator differ (the offset moved on by 128).
  Generator g1(11);
  Tensor c1 = empty({16, 8}, DType::f32, test::test_device()), c2 = empty({16, 8}, DType::f32, test::test_device());
  kaiming_uniform_(c1, 0, "fan_in", "relu", g1);
  kaiming_uniform_(c2, 0, "fan_in", "relu", g1);
  CHECK(c1.to_vector<float>() == a1);
  CHECK(c2.to_vector<float>() != a1);
  CHECK(g1.offset == 256);
  // The default generator: manual_seed replays.
  manual_seed(5);
  Tensor x = empty({4, 4}, DType::f64, test::test_device());
  kaiming_normal_(x);
  manual_seed(5);
  Tensor y = empty({4, 4}, DType::f64, test::test_device());
  kaiming_normal_(y);
  CHECK(x.to_double_vector() == y.to_double_vector());
  // Zero-element tensors: no draws, no error.
  Generator g(1);
  Tensor e = empty({0, 3}, DType::f32, test::test_device());
  kaiming_uniform_(e, 0, "fan_in", "leaky_relu", g);
  xavier_uniform_(e, 1.0, g);
  CHECK(g.offset == 0);
}

TEST_CASE("zeros_, ones_ and constant_ fill any dtype and return their tensor") {
  Tensor t = empty({2, 3}, DType::f32, test::test_device());
  CHECK(zeros_(t).to_vector<float>() == std::vector<float>(6, 0.0f));
  CHECK(ones_(t).to_vector<float>() == std::vector<float>(6, 1.0f));
  CHECK(constant_(t, -0.25).to_vector<float>() == std::vector<float>(6, -0.25f));
  Tensor i = empty({3}, DType::i64, test::test_device());
  CHECK(constant_(i, 7).to_vector<int64_t>() == std::vector<int64_t>{7, 7, 7});
  Tensor& r = ones_(t);
  CHECK(r.same(t));
}

TEST_CASE("cpu vs cuda: initializers draw the same values for the same seed") {
  if (!test::have_cuda()) return;
  for (DType dt : {DType::f32, DType::f64}) {
    CAPTURE(dtype_name(dt));
    const double tol = dt == DType::f32 ? 1e-6 : 1e-14;
    for (const Shape& s : std::vector<Shape>{{1029, 917}, {1, 1}, {5, 3, 3, 3}}) {
      Generator gc(21), gg(21);
      Tensor c = empty(s, dt), g = empty(s, dt, Device::cuda());
      kaiming_uniform_(c, 0, "fan_in", "relu", gc);
      kaiming_uniform_(g, 0, "fan_in", "relu", gg);
      CHECK_ALLCLOSE(g.cpu(), c, tol, tol);
      kaiming_normal_(c, 0.2, "fan_out", "leaky_relu", gc);
      kaiming_normal_(g, 0.2, "fan_out", "leaky_relu", gg);
      CHECK_ALLCLOSE(g.cpu(), c, tol, 1e-5);
      xavier_uniform_(c, 1.0, gc);
      xavier_uniform_(g, 1.0, gg);
      CHECK_ALLCLOSE(g.cpu(), c, tol, tol);
      xavier_normal_(c, 2.0, gc);
      xavier_normal_(g, 2.0, gg);
      CHECK_ALLCLOSE(g.cpu(), c, tol, 1e-5);
      CHECK(gc.offset == gg.offset);
    }
  }
}

TEST_CASE("initializers reject bad tensors and modes with the op named first") {
  Tensor ints = zeros({4, 4}, DType::i64);
  CHECK_THROWS_WITH_AS(kaiming_uniform_(ints), "[kaiming_uniform_] unsupported dtype i64 (expected f32 or f64)",
                       DTypeError);
  CHECK_THROWS_AS(xavier_normal_(ints), DTypeError);
  Tensor w = zeros({4, 4});
  CHECK_THROWS_WITH_AS(kaiming_normal_(w, 0, "fan_avg"),
                       "[kaiming_normal_] mode 'fan_avg' not supported, use fan_in or fan_out", ValueError);
  CHECK_THROWS_WITH_AS(kaiming_uniform_(w, 0, "fan_in", "swish"),
                       "[calculate_gain] unsupported nonlinearity 'swish'", ValueError);
  Tensor v = zeros({6});
  CHECK_THROWS_AS(kaiming_uniform_(v), ValueError);  // a 1-D tensor has no fans
  CHECK_THROWS_AS(xavier_uniform_(v), ValueError);
  Tensor undef;
  CHECK_THROWS_AS(zeros_(undef), ValueError);
  // Nothing was drawn for the failed calls.
  CHECK(w.to_vector<float>() == std::vector<float>(16, 0.0f));
}
