// test_pool.cpp — max_pool2d, avg_pool2d and adaptive_avg_pool2d: hand-computed values (first-max ties, padding as
// -inf, count_include_pad, PyTorch's adaptive bins), gradchecks, CPU-vs-CUDA parity and the typed errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "engine/ops/pool_kernels.h"
#include "tests/test_util.h"

using namespace ep;

namespace {

Pool2dOptions pool_opt(std::array<int64_t, 2> kernel, std::array<int64_t, 2> stride,
                       std::array<int64_t, 2> padding = {0, 0}) {
  Pool2dOptions o;
  o.kernel = kernel;
  o.stride = stride;
  o.padding = padding;
  return o;
}

std::vector<double> iota(int n) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) v[size_t(i)] = i;
  return v;
}

}  // namespace

TEST_CASE("pooling: hand-computed values") {
  Device d = test::test_device();
  //  x = [[ 0,  1,  2,  3],     2x2 stride 2: max [[5, 7], [13, 15]], mean [[2.5, 4.5], [10.5, 12.5]]
  //       [ 4,  5,  6,  7],
  //       [ 8,  9, 10, 11],
  //       [12, 13, 14, 15]]
  Tensor x = test::leaf(from_vector(iota(16), {1, 1, 4, 4}, DType::f64, d));
  Tensor m = max_pool2d(x, pool_opt({2, 2}, {2, 2}));
  CHECK(m.shape() == Shape{1, 1, 2, 2});
  CHECK(m.to_vector<double>() == std::vector<double>{5, 7, 13, 15});
  m.backward(from_vector({1, 2, 3, 4}, {1, 1, 2, 2}, DType::f64, d));
  CHECK(x.grad().to_vector<double>() ==
        std::vector<double>{0, 0, 0, 0, 0, 1, 0, 2, 0, 0, 0, 0, 0, 3, 0, 4});
  CHECK(avg_pool2d(x, pool_opt({2, 2}, {2, 2})).to_vector<double>() == std::vector<double>{2.5, 4.5, 10.5, 12.5});
  // 3x3 stride 1 on 4x4: the max of each window is its bottom-right corner.
  CHECK(max_pool2d(x, pool_opt({3, 3}, {1, 1})).to_vector<double>() == std::vector<double>{10, 11, 14, 15});
}

TEST_CASE("max_pool2d: ties route the gradient to the first maximum; padding counts as -inf") {
  Device d = test::test_device();
  // All equal: each 2x2 window's first element (row-major) gets the gradient: flat 0, 2, 8, 10.
  Tensor x = test::leaf(ones({1, 1, 4, 4}, DType::f64, d));
  max_pool2d(x, pool_opt({2, 2}, {2, 2})).backward(ones({1, 1, 2, 2}, DType::f64, d));
  CHECK(x.grad().to_vector<double>() == std::vector<double>{1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0});
  // Overlapping 2x2 stride-1 windows over ties: window (r, c) picks element (r, c), so each of the four top-left
  // elements receives exactly one gradient.
  Tensor x3 = test::leaf(ones({1, 1, 3, 3}, DType::f64, d));
  max_pool2d(x3, pool_opt({2, 2}, {1, 1})).backward(ones({1, 1, 2, 2}, DType::f64, d));
  CHECK(x3.grad().to_vector<double>() == std::vector<double>{1, 1, 0, 1, 1, 0, 0, 0, 0});
  // All -1 with padding 1: zero padding would win, -inf padding does not.
  Tensor neg = full({1, 1, 2, 2}, -1.0, DType::f64, d);
  Tensor mp = max_pool2d(neg, pool_opt({2, 2}, {1, 1}, {1, 1}));
  CHECK(mp.shape() == Shape{1, 1, 3, 3});
  CHECK(mp.to_vector<double>() == std::vector<double>(9, -1.0));
  // NaN propagates (as PyTorch).
  Tensor withnan = from_vector({1, NAN, 3, 4}, {1, 1, 2, 2}, DType::f64, d);
  CHECK(std::isnan(max_pool2d(withnan, pool_opt({2, 2}, {2, 2})).item()));
}

TEST_CASE("avg_pool2d: count_include_pad divides by the full window") {
  Device d = test::test_device();
  // ones 2x2, kernel 2, stride 1, padding 1: a corner window holds 1 real element (1/4), an edge 2 (2/4), the
  // centre 4 (4/4).
  Tensor x = test::leaf(ones({1, 1, 2, 2}, DType::f64, d));
  Tensor y = avg_pool2d(x, pool_opt({2, 2}, {1, 1}, {1, 1}));
  CHECK(y.to_vector<double>() == std::vector<double>{0.25, 0.5, 0.25, 0.5, 1, 0.5, 0.25, 0.5, 0.25});
  // Each input element lies in 4 windows of weight 1/4.
  y.backward(ones({1, 1, 3, 3}, DType::f64, d));
  CHECK(x.grad().to_vector<double>() == std::vector<double>{1, 1, 1, 1});
}

TEST_CASE("adaptive_avg_pool2d: PyTorch's bins") {
  Device d = test::test_device();
  // W = 5 -> 3 bins: [floor(0), ceil(5/3)) = [0,2), [floor(5/3), ceil(10/3)) = [1,4), [floor(10/3), 5) = [3,5)
  // over 0..4: means 0.5, 2, 3.5 (torch.nn.functional.adaptive_avg_pool1d(torch.arange(5.)[None], 3)).
  Tensor x = test::leaf(from_vector(iota(5), {1, 1, 1, 5}, DType::f64, d));
  Tensor y = adaptive_avg_pool2d(x, 1, 3);
  CHECK(y.to_vector<double>() == std::vector<double>{0.5, 2, 3.5});
  // Overlapping bins: element 1 is in bins 0 and 1 (1/2 + 1/3), element 3 in bins 1 and 2 (1/3 + 1/2).
  y.backward(ones({1, 1, 1, 3}, DType::f64, d));
  std::vector<double> g = x.grad().to_vector<double>(), want = {0.5, 0.5 + 1.0 / 3, 1.0 / 3, 1.0 / 3 + 0.5, 0.5};
  for (size_t i = 0; i < 5; ++i) CHECK(g[i] == doctest::Approx(want[i]).epsilon(1e-14));
  // Upsampling 2 -> 3: bins {0}, {0,1}, {1}.  x = [[1,2],[3,4]].
  Tensor u = adaptive_avg_pool2d(from_vector({1, 2, 3, 4}, {1, 1, 2, 2}, DType::f64, d), 3, 3);
  CHECK(u.to_vector<double>() == std::vector<double>{1, 1.5, 2, 2, 2.5, 3, 3, 3.5, 4});
  // Global average pooling (MobileNetV2's head) is the plane mean.
  Tensor z = test::randn({2, 3, 7, 7}, 5, DType::f64, d);
  CHECK_ALLCLOSE(reshape(adaptive_avg_pool2d(z, 1, 1), {2, 3}), mean(z, {2, 3}), 1e-12, 1e-12);
}

TEST_CASE("adaptive_avg_pool2d: the global pool's backward is the per-element rule's value, bit for bit") {
  // The CPU fills each plane with one value instead of running adaptive_avg_pool_grad_at per element; the rule itself
  // (which the GPU runs) is the reference. dy holds -0 too: the rule's 0 + (-0) is +0.
  for (DType dt : {DType::f32, DType::f64})
    for (const Shape& s : {Shape{3, 5, 7, 7}, Shape{2, 4, 1, 9}, Shape{64, 33, 4, 4}}) {
      INFO(dtype_name(dt) << " " << shape_str(s));
      Tensor x = test::leaf(test::randn(s, 90, dt));
      Tensor dy = test::randn({s[0], s[1], 1, 1}, 91, dt);
      std::vector<double> dyv = dy.to_double_vector();
      dyv[1] = -0.0;
      dy = from_vector(dyv, dy.shape(), dt);
      adaptive_avg_pool2d(x, 1, 1).backward(dy);
      Pool2dGeom g;
      g.NC = s[0] * s[1], g.H = s[2], g.W = s[3], g.OH = 1, g.OW = 1;
      const std::vector<double> got = x.grad().to_double_vector();
      bool same = true;
      for (int64_t nc = 0; nc < g.NC; ++nc)
        for (int64_t ih = 0; ih < g.H; ++ih)
          for (int64_t iw = 0; iw < g.W; ++iw) {
            const double want = dt == DType::f32
                                    ? double(adaptive_avg_pool_grad_at(g, dy.data<float>() + nc, ih, iw))
                                    : adaptive_avg_pool_grad_at(g, dy.data<double>() + nc, ih, iw);
            const double have = got[size_t((nc * g.H + ih) * g.W + iw)];
            same = same && std::memcmp(&want, &have, sizeof want) == 0;
          }
      CHECK(same);
    }
}

TEST_CASE("pooling: an empty batch gives empty outputs and gradients") {
  Device d = test::test_device();
  Tensor x = test::leaf(zeros({0, 4, 6, 6}, DType::f64, d));
  Tensor m = max_pool2d(x, pool_opt({2, 2}, {2, 2}));
  Tensor a = avg_pool2d(x, pool_opt({3, 3}, {1, 1}, {1, 1}));
  Tensor p = adaptive_avg_pool2d(x, 2, 3);
  CHECK(m.shape() == Shape{0, 4, 3, 3});
  CHECK(a.shape() == Shape{0, 4, 6, 6});
  CHECK(p.shape() == Shape{0, 4, 2, 3});
  m.backward(zeros(m.shape(), DType::f64, d));
  CHECK(x.grad().shape() == Shape{0, 4, 6, 6});
}

TEST_CASE("pooling: gradcheck (float64 on the test device)") {
  Device d = test::test_device();
  auto x = [&](const Shape& s, uint64_t seed) { return test::leaf(test::randn(s, seed, DType::f64, d)); };
  struct MaxCase {
    Shape s;
    Pool2dOptions o;
  };
  for (const MaxCase& c : {MaxCase{{2, 3, 4, 5}, pool_opt({2, 2}, {2, 2})},          // odd width: last column unused
                           MaxCase{{1, 2, 7, 7}, pool_opt({3, 3}, {2, 2}, {1, 1})},  // overlapping, padded
                           MaxCase{{1, 2, 5, 6}, pool_opt({2, 3}, {1, 2}, {1, 1})}}) {
    INFO("max_pool2d " << shape_str(c.s));
    Pool2dOptions o = c.o;
    test::gradcheck([o](const std::vector<Tensor>& v) { return max_pool2d(v[0], o); }, {x(c.s, 70)});
    test::gradcheck([o](const std::vector<Tensor>& v) { return avg_pool2d(v[0], o); }, {x(c.s, 71)});
  }
  struct AdaptiveCase {
    Shape s;
    int64_t oh, ow;
  };
  for (const AdaptiveCase& c : {AdaptiveCase{{2, 2, 5, 7}, 3, 2}, AdaptiveCase{{1, 2, 3, 2}, 4, 5},
                                AdaptiveCase{{2, 3, 4, 4}, 1, 1}}) {
    INFO("adaptive_avg_pool2d " << shape_str(c.s) << " -> " << c.oh << "x" << c.ow);
    const int64_t oh = c.oh, ow = c.ow;
    test::gradcheck([oh, ow](const std::vector<Tensor>& v) { return adaptive_avg_pool2d(v[0], oh, ow); },
                    {x(c.s, 72)});
  }
}

TEST_CASE("pooling: CPU vs CUDA parity") {
  if (!test::have_cuda()) return;  // skip building the large inputs
  struct Case {
    const char* name;
    Shape s;
    Pool2dOptions o;
    int64_t oh, ow;
  };
  const std::vector<Case> cases = {
      {"1029x917, 3x3 s2 p1", {1, 2, 1029, 917}, pool_opt({3, 3}, {2, 2}, {1, 1}), 7, 7},
      {"odd 17x13, 2x2 s2", {2, 5, 17, 13}, pool_opt({2, 2}, {2, 2}), 5, 3},
      {"MobileNetV2 head", {2, 64, 7, 7}, pool_opt({7, 7}, {7, 7}), 1, 1},
      {"size-1", {1, 1, 1, 1}, pool_opt({1, 1}, {1, 1}), 1, 1},
      {"rectangular", {3, 2, 6, 9}, pool_opt({2, 3}, {1, 2}, {1, 1}), 4, 10},
      {"empty batch", {0, 4, 6, 6}, pool_opt({2, 2}, {2, 2}), 3, 3},
  };
  for (const Case& c : cases) {
    INFO(c.name);
    Pool2dOptions o = c.o;
    const int64_t oh = c.oh, ow = c.ow;
    std::vector<Tensor> in = {test::leaf(test::randn(c.s, 80, DType::f32))};
    test::check_parity([o](const std::vector<Tensor>& v) { return max_pool2d(v[0], o); }, in);
    test::check_parity([o](const std::vector<Tensor>& v) { return avg_pool2d(v[0], o); }, in);
    test::check_parity([oh, ow](const std::vector<Tensor>& v) { return adaptive_avg_pool2d(v[0], oh, ow); }, in);
  }
}

TEST_CASE("pooling: bad inputs throw typed errors naming the shapes") {
  Tensor x = zeros({1, 1, 4, 4});
  CHECK_THROWS_WITH_AS(max_pool2d(zeros({3, 32}), pool_opt({2, 2}, {2, 2})),
                       "[max_pool2d] expected 4-D input, got [3,32]", ShapeError);
  CHECK_THROWS_WITH_AS(adaptive_avg_pool2d(zeros({3, 4, 4}), 1, 1),
                       "[adaptive_avg_pool2d] expected 4-D input, got [3,4,4]", ShapeError);
  CHECK_THROWS_WITH_AS(avg_pool2d(x, pool_opt({0, 2}, {2, 2})), "[avg_pool2d] kernel must be positive, got [0,2]",
                       ValueError);
  CHECK_THROWS_WITH_AS(max_pool2d(x, pool_opt({2, 2}, {0, 2})), "[max_pool2d] stride must be positive, got [0,2]",
                       ValueError);
  CHECK_THROWS_WITH_AS(avg_pool2d(x, pool_opt({2, 2}, {2, 2}, {2, 2})),
                       "[avg_pool2d] padding must be non-negative and at most half the kernel, got padding [2,2] for "
                       "kernel [2,2]",
                       ValueError);
  CHECK_THROWS_WITH_AS(max_pool2d(zeros({1, 1, 2, 2}), pool_opt({5, 5}, {1, 1}, {1, 1})),
                       "[max_pool2d] kernel [5,5] is larger than the padded input [4,4] (input [1,1,2,2], padding "
                       "[1,1])",
                       ShapeError);
  CHECK_THROWS_WITH_AS(adaptive_avg_pool2d(x, 0, 1), "[adaptive_avg_pool2d] output size must be positive, got [0,1]",
                       ValueError);
  CHECK_THROWS_WITH_AS(max_pool2d(zeros({1, 1, 4, 4}, DType::i64), pool_opt({2, 2}, {2, 2})),
                       "[max_pool2d] expected an f32 or f64 tensor, got i64", DTypeError);
  CHECK_THROWS_WITH_AS(avg_pool2d(zeros({1, 1, 0, 4}), pool_opt({2, 2}, {2, 2})),
                       "[avg_pool2d] expected non-empty channel and spatial dims (only the batch may be empty), got "
                       "input [1,1,0,4]",
                       ShapeError);
}

TEST_CASE("pool window helpers cover exactly the windows containing an index") {
  // Brute force over small sizes: the gather ranges used by both backends against the definition.
  for (int64_t k = 1; k <= 4; ++k)
    for (int64_t s = 1; s <= 3; ++s)
      for (int64_t p = 0; 2 * p <= k; ++p)
        for (int64_t in = std::max<int64_t>(1, k - 2 * p); in <= 9; ++in) {
          const int64_t out = (in + 2 * p - k) / s + 1;
          for (int64_t i = 0; i < in; ++i) {
            int64_t lo, hi;
            pool_windows_covering(i, k, s, p, out, lo, hi);
            for (int64_t o = 0; o < out; ++o) {
              const bool covers = o * s - p <= i && i < o * s - p + k;
              INFO("k " << k << " s " << s << " p " << p << " in " << in << " i " << i << " o " << o);
              CHECK(covers == (o >= lo && o < hi));
            }
          }
        }
  for (int64_t in = 1; in <= 9; ++in)
    for (int64_t out = 1; out <= 9; ++out)
      for (int64_t i = 0; i < in; ++i) {
        int64_t lo, hi;
        adaptive_bins_covering(i, in, out, lo, hi);
        for (int64_t o = 0; o < out; ++o)
          if (adaptive_start(o, in, out) <= i && i < adaptive_end(o, in, out)) CHECK((o >= lo && o < hi));
      }
}
