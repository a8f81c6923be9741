// test_conv.cpp — conv2d: hand-computed values, a naive float64 reference (forward and all three gradients) for every
// code path (im2col+GEMM, 1x1, grouped, direct depthwise), gradchecks, CPU-vs-CUDA parity on MobileNetV2-like shapes,
// and the typed errors. Not a benchmark.
#include <doctest/doctest.h>

#include <vector>

#include "engine/cpu/openmp.h"
#include "engine/ops/conv2d_kernels.h"
#include "tests/test_util.h"

using namespace ep;

namespace {

Conv2dOptions conv_opt(std::array<int64_t, 2> stride, std::array<int64_t, 2> padding,
                       std::array<int64_t, 2> dilation = {1, 1}, int64_t groups = 1) {
  Conv2dOptions o;
  o.stride = stride;
  o.padding = padding;
  o.dilation = dilation;
  o.groups = groups;
  return o;
}

// Naive float64 convolution straight from the definition (PyTorch's cross-correlation), with its three gradients
// for a given dy. Written independently of the engine's kernels (no im2col, no tap hoisting).
struct RefConv {
  std::vector<double> y, dx, dw, db;
};
RefConv ref_conv(const Tensor& xt, const Tensor& wt, const Tensor& bt, const Conv2dOptions& o, const Tensor& dyt) {
  const auto x = xt.to_double_vector(), w = wt.to_double_vector();
  const int64_t N = xt.size(0), C = xt.size(1), H = xt.size(2), W = xt.size(3);
  const int64_t K = wt.size(0), Cg = wt.size(1), kh = wt.size(2), kw = wt.size(3), G = o.groups, Kg = K / G;
  const int64_t OH = (H + 2 * o.padding[0] - o.dilation[0] * (kh - 1) - 1) / o.stride[0] + 1;
  const int64_t OW = (W + 2 * o.padding[1] - o.dilation[1] * (kw - 1) - 1) / o.stride[1] + 1;
  RefConv r;
  r.y.assign(size_t(N * K * OH * OW), 0.0);
  r.dx.assign(x.size(), 0.0);
  r.dw.assign(w.size(), 0.0);
  r.db.assign(size_t(K), 0.0);
  const auto b = bt.defined() ? bt.to_double_vector() : std::vector<double>(size_t(K), 0.0);
  const auto dy = dyt.to_double_vector();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          const size_t yi = size_t(((n * K + k) * OH + oh) * OW + ow);
          double acc = b[size_t(k)];
          r.db[size_t(k)] += dy[yi];
          for (int64_t c = 0; c < Cg; ++c)
            for (int64_t i = 0; i < kh; ++i)
              for (int64_t j = 0; j < kw; ++j) {
                const int64_t ih = oh * o.stride[0] - o.padding[0] + i * o.dilation[0];
                const int64_t iw = ow * o.stride[1] - o.padding[1] + j * o.dilation[1];
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                const size_t xi = size_t(((n * C + (k / Kg) * Cg + c) * H + ih) * W + iw);
                const size_t wi = size_t(((k * Cg + c) * kh + i) * kw + j);
                acc += x[xi] * w[wi];
                r.dx[xi] += dy[yi] * w[wi];
                r.dw[wi] += dy[yi] * x[xi];
              }
          r.y[yi] = acc;
        }
  return r;
}

// conv2d forward and backward (with dy) against ref_conv.
void check_against_reference(const Shape& xs, const Shape& ws, bool with_bias, const Conv2dOptions& o, DType dt,
                             double tol) {
  Tensor x = test::leaf(test::randn(xs, 1, dt));
  Tensor w = test::leaf(test::randn(ws, 2, dt));
  Tensor b = with_bias ? test::leaf(test::randn({ws[0]}, 3, dt)) : Tensor();
  Tensor y = conv2d(x, w, b, o);
  Tensor dy = test::randn(y.shape(), 4, dt);
  y.backward(dy);
  RefConv r = ref_conv(x, w, b, o, dy);
  INFO("x " << shape_str(xs) << " w " << shape_str(ws) << " groups " << o.groups << " " << dtype_name(dt));
  CHECK_ALLCLOSE(y, from_vector(r.y, y.shape(), DType::f64), tol, tol);
  CHECK_ALLCLOSE(x.grad(), from_vector(r.dx, xs, DType::f64), tol, tol);
  CHECK_ALLCLOSE(w.grad(), from_vector(r.dw, ws, DType::f64), tol, tol);
  if (with_bias) CHECK_ALLCLOSE(b.grad(), from_vector(r.db, {ws[0]}, DType::f64), tol, tol);
}

}  // namespace

TEST_CASE("conv2d: hand-computed 3x3 input with a 2x2 kernel") {
  // x = [[1,2,3],       w = [[1,2],
  //      [4,5,6],            [3,4]]
  //      [7,8,9]]
  // y[0,0] = 1*1 + 2*2 + 4*3 + 5*4 = 37    y[0,1] = 2*1 + 3*2 + 5*3 + 6*4 = 47
  // y[1,0] = 4*1 + 5*2 + 7*3 + 8*4 = 67    y[1,1] = 5*1 + 6*2 + 8*3 + 9*4 = 77      (+ bias 0.5)
  Tensor x = from_vector({1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 1, 3, 3}, DType::f64, test::test_device());
  Tensor w = from_vector({1, 2, 3, 4}, {1, 1, 2, 2}, DType::f64, test::test_device());
  Tensor b = from_vector({0.5}, {1}, DType::f64, test::test_device());
  Tensor y = conv2d(x, w, b);
  CHECK(y.shape() == Shape{1, 1, 2, 2});
  CHECK(y.to_vector<double>() == std::vector<double>{37.5, 47.5, 67.5, 77.5});
  // Padding 1, stride 2 on the zero-padded 5x5 input: the windows start at padded (0,0), (0,2), (2,0), (2,2):
  //   [[0,0],[0,1]] -> 1*4 = 4;  [[0,0],[2,3]] -> 2*3 + 3*4 = 18;  [[0,4],[0,7]] -> 4*2 + 7*4 = 36;
  //   [[5,6],[8,9]] -> 5 + 12 + 24 + 36 = 77
  Tensor y2 = conv2d(x, w, Tensor(), conv_opt({2, 2}, {1, 1}));
  CHECK(y2.shape() == Shape{1, 1, 2, 2});
  CHECK(y2.to_vector<double>() == std::vector<double>{4, 18, 36, 77});
  // Dilation 2 makes the 2x2 kernel read the corners: 1*1 + 3*2 + 7*3 + 9*4 = 64.
  CHECK(conv2d(x, w, Tensor(), conv_opt({1, 1}, {0, 0}, {2, 2})).to_vector<double>() == std::vector<double>{64});
  // Backward by hand: with dy = ones, db = 4 and dw[i][j] = sum of the 2x2 window sums = [[12,16],[24,28]].
  Tensor wq = test::leaf(w.detach().clone()), bq = test::leaf(b.detach().clone());
  conv2d(x, wq, bq).backward(ones({1, 1, 2, 2}, DType::f64, test::test_device()));
  CHECK(wq.grad().to_vector<double>() == std::vector<double>{12, 16, 24, 28});
  CHECK(bq.grad().to_vector<double>() == std::vector<double>{4});
}

TEST_CASE("conv2d: every CPU path matches a naive float64 reference, forward and backward") {
  struct Case {
    Shape x, w;
    bool bias;
    Conv2dOptions o;
  };
  const std::vector<Case> cases = {
      {{3, 4, 9, 8}, {5, 4, 3, 3}, true, conv_opt({1, 1}, {1, 1})},                    // im2col + GEMM, N > 1
      {{2, 3, 11, 7}, {4, 3, 3, 2}, false, conv_opt({2, 3}, {1, 0}, {2, 1})},          // rectangular, mixed
      {{3, 6, 5, 5}, {4, 3, 3, 3}, true, conv_opt({1, 1}, {1, 1}, {1, 1}, 2)},         // grouped
      {{3, 8, 6, 6}, {7, 8, 1, 1}, true, conv_opt({1, 1}, {0, 0})},                    // pointwise fast path
      {{2, 8, 7, 6}, {7, 8, 1, 1}, false, conv_opt({2, 2}, {0, 0})},                   // 1x1 stride 2: im2col
      {{3, 5, 9, 7}, {5, 1, 3, 3}, true, conv_opt({1, 1}, {1, 1}, {1, 1}, 5)},         // depthwise
      {{2, 4, 9, 8}, {8, 1, 3, 3}, false, conv_opt({2, 2}, {1, 1}, {1, 1}, 4)},        // depthwise x2, stride 2
      {{2, 3, 10, 9}, {3, 1, 3, 3}, true, conv_opt({1, 2}, {2, 2}, {2, 2}, 3)},        // depthwise, dilated
      {{1, 1, 6, 6}, {3, 1, 3, 3}, true, conv_opt({1, 1}, {0, 0})},                    // one input channel
      // The depthwise register blocks are 16 output columns: several blocks and a ragged last one (W 37),
      // exactly two (W 32), strides 2 and 3 (the generic column stride), unequal strides, a 5x5 filter, padding
      // wider than the filter reach (the input gradient's flipped padding goes negative), no padding.
      {{2, 3, 6, 37}, {3, 1, 3, 3}, true, conv_opt({1, 1}, {1, 1}, {1, 1}, 3)},
      {{2, 2, 5, 32}, {2, 1, 3, 3}, false, conv_opt({1, 1}, {1, 1}, {1, 1}, 2)},
      {{2, 2, 9, 41}, {2, 1, 3, 3}, true, conv_opt({2, 2}, {1, 1}, {1, 1}, 2)},
      {{1, 3, 8, 50}, {3, 1, 3, 3}, false, conv_opt({3, 3}, {1, 1}, {1, 1}, 3)},
      {{2, 2, 11, 35}, {2, 1, 3, 3}, true, conv_opt({2, 1}, {1, 1}, {1, 1}, 2)},
      {{1, 2, 9, 20}, {2, 1, 5, 5}, true, conv_opt({1, 1}, {2, 2}, {1, 1}, 2)},
      {{1, 2, 7, 19}, {2, 1, 3, 3}, true, conv_opt({1, 1}, {3, 3}, {1, 1}, 2)},
      {{2, 2, 7, 18}, {2, 1, 3, 3}, false, conv_opt({1, 1}, {0, 0}, {1, 1}, 2)},
      {{1, 2, 9, 21}, {2, 1, 3, 3}, true, conv_opt({1, 1}, {2, 3}, {2, 3}, 2)},
  };
  for (const Case& c : cases) {
    check_against_reference(c.x, c.w, c.bias, c.o, DType::f64, 1e-10);
    check_against_reference(c.x, c.w, c.bias, c.o, DType::f32, 1e-4);
  }
}

TEST_CASE("conv2d: depthwise and grouped results equal a dense conv with a block-diagonal weight") {
  // The direct depthwise loop and the grouped GEMMs against the groups=1 GEMM path on the same math.
  for (int64_t groups : {2, 4}) {
    const int64_t C = 4, K = 8, cg = C / groups, kg = K / groups;
    Tensor x = test::leaf(test::randn({2, C, 7, 6}, 10));
    Tensor w = test::leaf(test::randn({K, cg, 3, 3}, 11));
    std::vector<double> wv = w.to_double_vector(), dense(size_t(K * C * 9), 0.0);
    for (int64_t k = 0; k < K; ++k)
      for (int64_t c = 0; c < cg; ++c)
        for (int64_t t = 0; t < 9; ++t) dense[size_t((k * C + (k / kg) * cg + c) * 9 + t)] = wv[size_t((k * cg + c) * 9 + t)];
    Tensor x2 = test::leaf(x.detach().clone());
    Tensor wd = from_vector(dense, {K, C, 3, 3}, DType::f64);
    Tensor y = conv2d(x, w, Tensor(), conv_opt({2, 1}, {1, 1}, {1, 1}, groups));
    Tensor yd = conv2d(x2, wd, Tensor(), conv_opt({2, 1}, {1, 1}));
    INFO("groups " << groups);
    CHECK_ALLCLOSE(y, yd, 1e-12, 1e-12);
    Tensor dy = test::randn(y.shape(), 12);
    y.backward(dy);
    yd.backward(dy);
    CHECK_ALLCLOSE(x.grad(), x2.grad(), 1e-12, 1e-12);
  }
}

TEST_CASE("conv2d: CPU results are bit-identical across runs and across thread counts") {
  // The weight gradient sums fixed runs of samples in a fixed order, so 1, 2, 3, 4 or 7 threads give the same bits.
  // Shapes with one run (a 2x2 plane: few flops per sample), a few, and the most (16 of uneven length, N = 37).
  struct Case {
    Shape x, w;
    Conv2dOptions o;
  };
  const std::vector<Case> cases = {
      {{4, 6, 9, 9}, {8, 3, 3, 3}, conv_opt({2, 2}, {1, 1}, {1, 1}, 2)},
      {{37, 5, 8, 8}, {6, 5, 3, 3}, conv_opt({1, 1}, {1, 1})},
      {{37, 8, 16, 16}, {4, 8, 1, 1}, conv_opt({1, 1}, {0, 0})},
      {{37, 4, 3, 3}, {5, 4, 3, 3}, conv_opt({2, 2}, {1, 1})},
      {{9, 3, 12, 11}, {7, 3, 3, 3}, conv_opt({2, 1}, {1, 1})},
  };
  const int threads_before = omp_get_max_threads();
  for (const Case& c : cases) {
    INFO("x " << c.x[0] << "x" << c.x[1] << "x" << c.x[2] << "x" << c.x[3] << ", w " << c.w[0] << "x" << c.w[2]);
    Tensor x = test::leaf(test::randn(c.x, 20, DType::f32));
    Tensor w = test::leaf(test::randn(c.w, 21, DType::f32));
    const Shape ys = conv2d(x.detach(), w.detach(), Tensor(), c.o).shape();
    Tensor dy = test::randn(ys, 22, DType::f32);
    auto run = [&](int threads) {
      omp_set_num_threads(threads);
      x.zero_grad();
      w.zero_grad();
      Tensor y = conv2d(x, w, Tensor(), c.o);
      y.backward(dy);
      return std::vector<std::vector<float>>{y.to_vector<float>(), x.grad().to_vector<float>(),
                                             w.grad().to_vector<float>()};
    };
    const auto one = run(1);
    for (int threads : {1, 2, 3, 4, 7}) {
      INFO(threads << " threads");
      CHECK(run(threads) == one);
    }
  }
  omp_set_num_threads(threads_before);
}

TEST_CASE("conv2d: an empty batch gives an empty output and zero weight gradients") {
  Device d = test::test_device();
  Tensor x = test::leaf(zeros({0, 3, 5, 5}, DType::f64, d));
  Tensor w = test::leaf(test::randn({4, 3, 3, 3}, 30, DType::f64, d));
  Tensor b = test::leaf(test::randn({4}, 31, DType::f64, d));
  Tensor y = conv2d(x, w, b, conv_opt({1, 1}, {1, 1}));
  CHECK(y.shape() == Shape{0, 4, 5, 5});
  y.backward(zeros(y.shape(), DType::f64, d));
  CHECK(x.grad().shape() == Shape{0, 3, 5, 5});
  CHECK(w.grad().to_vector<double>() == std::vector<double>(108, 0.0));
  CHECK(b.grad().to_vector<double>() == std::vector<double>(4, 0.0));
}

TEST_CASE("conv2d: gradcheck (float64 on the test device)") {
  Device d = test::test_device();
  struct Case {
    const char* name;
    Shape x, w;
    bool bias;
    Conv2dOptions o;
  };
  const std::vector<Case> cases = {
      {"3x3 pad 1, N=2, bias", {2, 2, 4, 4}, {3, 2, 3, 3}, true, conv_opt({1, 1}, {1, 1})},
      {"stride 2 + padding", {1, 3, 5, 6}, {2, 3, 3, 3}, true, conv_opt({2, 2}, {1, 1})},
      {"dilation 2", {1, 2, 6, 6}, {2, 2, 3, 3}, false, conv_opt({1, 1}, {2, 2}, {2, 2})},
      {"groups 2", {2, 4, 4, 4}, {4, 2, 3, 3}, false, conv_opt({1, 1}, {1, 1}, {1, 1}, 2)},
      {"depthwise stride 2", {2, 3, 5, 5}, {3, 1, 3, 3}, true, conv_opt({2, 2}, {1, 1}, {1, 1}, 3)},
      {"depthwise multiplier 2", {1, 2, 5, 5}, {4, 1, 3, 3}, false, conv_opt({1, 1}, {1, 1}, {1, 1}, 2)},
      {"1x1 with bias", {2, 4, 3, 3}, {5, 4, 1, 1}, true, conv_opt({1, 1}, {0, 0})},
      {"1x1 stride 2 no bias", {1, 3, 5, 5}, {2, 3, 1, 1}, false, conv_opt({2, 2}, {0, 0})},
      {"rectangular, mixed stride/pad/dilation", {1, 2, 6, 7}, {2, 2, 2, 3}, true, conv_opt({2, 1}, {1, 0}, {1, 2})},
  };
  for (const Case& c : cases) {
    INFO(c.name);
    Conv2dOptions o = c.o;
    std::vector<Tensor> in = {test::leaf(test::randn(c.x, 40, DType::f64, d)), test::leaf(test::randn(c.w, 41, DType::f64, d)),
                              c.bias ? test::leaf(test::randn({c.w[0]}, 42, DType::f64, d)) : Tensor()};
    test::gradcheck([o](const std::vector<Tensor>& v) { return conv2d(v[0], v[1], v[2], o); }, in);
  }
  // Only one input wanting a gradient: the node saves only what that gradient needs.
  Conv2dOptions o = conv_opt({1, 1}, {1, 1});
  test::gradcheck([o](const std::vector<Tensor>& v) { return conv2d(v[0], v[1], Tensor(), o); },
                  {test::leaf(test::randn({1, 2, 4, 4}, 43, DType::f64, d)), test::randn({2, 2, 3, 3}, 44, DType::f64, d)});
  test::gradcheck([o](const std::vector<Tensor>& v) { return conv2d(v[0], v[1], v[2], o); },
                  {test::randn({1, 2, 4, 4}, 45, DType::f64, d), test::leaf(test::randn({2, 2, 3, 3}, 46, DType::f64, d)),
                   test::randn({2}, 47, DType::f64, d)});
}

TEST_CASE("conv2d: CPU vs CUDA parity on MobileNetV2-like and awkward shapes") {
  if (!test::have_cuda()) return;  // skip building the large inputs
  struct Case {
    const char* name;
    Shape x, w;
    bool bias;
    Conv2dOptions o;
  };
  const std::vector<Case> cases = {
      {"depthwise 3x3 s1", {2, 32, 16, 16}, {32, 1, 3, 3}, false, conv_opt({1, 1}, {1, 1}, {1, 1}, 32)},
      {"depthwise 3x3 s2", {2, 32, 16, 16}, {32, 1, 3, 3}, false, conv_opt({2, 2}, {1, 1}, {1, 1}, 32)},
      {"pointwise 32->96", {2, 32, 16, 16}, {96, 32, 1, 1}, true, conv_opt({1, 1}, {0, 0})},
      {"stem 3->32 s2, 17x13", {2, 3, 17, 13}, {32, 3, 3, 3}, true, conv_opt({2, 2}, {1, 1})},
      {"N=1 depthwise s2 odd", {1, 24, 17, 13}, {24, 1, 3, 3}, true, conv_opt({2, 2}, {1, 1}, {1, 1}, 24)},
      {"grouped + dilated", {2, 8, 11, 9}, {6, 4, 3, 3}, true, conv_opt({1, 1}, {2, 2}, {2, 2}, 2)},
      {"rectangular kernel, size-1 height", {3, 4, 1, 7}, {5, 4, 1, 3}, true, conv_opt({1, 2}, {0, 1})},
      {"1x1x1x1", {1, 1, 1, 1}, {1, 1, 1, 1}, true, conv_opt({1, 1}, {0, 0})},
      {"empty batch", {0, 8, 5, 5}, {4, 8, 3, 3}, true, conv_opt({1, 1}, {1, 1})},
  };
  for (const Case& c : cases) {
    INFO(c.name);
    Conv2dOptions o = c.o;
    std::vector<Tensor> in = {test::leaf(test::randn(c.x, 50, DType::f32)), test::leaf(test::randn(c.w, 51, DType::f32)),
                              c.bias ? test::leaf(test::randn({c.w[0]}, 52, DType::f32)) : Tensor()};
    test::check_parity([o](const std::vector<Tensor>& v) { return conv2d(v[0], v[1], v[2], o); }, in);
  }
}

TEST_CASE("conv2d: deterministic cuDNN algorithms give bit-identical reruns") {
  if (!test::have_cuda()) return;
  const bool before = conv_deterministic();
  set_conv_deterministic(true);
  Tensor x = test::leaf(test::randn({4, 32, 15, 15}, 60, DType::f32, Device::cuda()));
  Tensor w = test::leaf(test::randn({64, 32, 3, 3}, 61, DType::f32, Device::cuda()));
  Tensor dy = test::randn({4, 64, 15, 15}, 62, DType::f32, Device::cuda());
  auto run = [&] {
    x.zero_grad();
    w.zero_grad();
    Tensor y = conv2d(x, w, Tensor(), conv_opt({1, 1}, {1, 1}));
    y.backward(dy);
    return std::vector<std::vector<float>>{y.to_vector<float>(), x.grad().to_vector<float>(),
                                           w.grad().to_vector<float>()};
  };
  CHECK(run() == run());
  set_conv_deterministic(before);
}

TEST_CASE("conv2d: bad inputs throw typed errors naming the shapes") {
  Tensor x = zeros({1, 3, 8, 8}), w = zeros({8, 3, 3, 3});
  CHECK_THROWS_WITH_AS(conv2d(zeros({3, 32}), w, Tensor()), "[conv2d] expected 4-D input, got [3,32]", ShapeError);
  CHECK_THROWS_WITH_AS(conv2d(x, zeros({8, 3, 3}), Tensor()),
                       "[conv2d] expected 4-D weight [Cout,Cin/groups,kH,kW], got [8,3,3]", ShapeError);
  CHECK_THROWS_WITH_AS(conv2d(x, zeros({8, 4, 3, 3}), Tensor()),
                       "[conv2d] weight [8,4,3,3] with groups 1 expects 4 input channels, got input [1,3,8,8]",
                       ShapeError);
  CHECK_THROWS_WITH_AS(conv2d(x, zeros({8, 1, 3, 3}), Tensor(), conv_opt({1, 1}, {0, 0}, {1, 1}, 2)),
                       "[conv2d] input channels 3 are not divisible by groups 2 (input [1,3,8,8])", ShapeError);
  CHECK_THROWS_WITH_AS(conv2d(zeros({1, 4, 8, 8}), zeros({5, 2, 3, 3}), Tensor(), conv_opt({1, 1}, {0, 0}, {1, 1}, 2)),
                       "[conv2d] output channels 5 are not divisible by groups 2 (weight [5,2,3,3])", ShapeError);
  CHECK_THROWS_WITH_AS(conv2d(zeros({1, 4, 8, 8}), zeros({4, 4, 3, 3}), Tensor(), conv_opt({1, 1}, {0, 0}, {1, 1}, 4)),
                       "[conv2d] weight [4,4,3,3] with groups 4 expects 16 input channels, got input [1,4,8,8]",
                       ShapeError);
  CHECK_THROWS_WITH_AS(conv2d(zeros({1, 1, 2, 2}), zeros({1, 1, 5, 5}), Tensor(), conv_opt({1, 1}, {1, 1})),
                       "[conv2d] kernel [5,5] with dilation [1,1] is larger than the padded input [4,4] "
                       "(input [1,1,2,2], padding [1,1])",
                       ShapeError);
  CHECK_THROWS_WITH_AS(conv2d(zeros({1, 1, 5, 5}), zeros({1, 1, 3, 3}), Tensor(), conv_opt({1, 1}, {0, 0}, {3, 3})),
                       "[conv2d] kernel [3,3] with dilation [3,3] is larger than the padded input [5,5] "
                       "(input [1,1,5,5], padding [0,0])",
                       ShapeError);
  CHECK_THROWS_WITH_AS(conv2d(x, w, Tensor(), conv_opt({0, 1}, {0, 0})), "[conv2d] stride must be positive, got [0,1]",
                       ValueError);
  CHECK_THROWS_WITH_AS(conv2d(x, w, Tensor(), conv_opt({1, -2}, {0, 0})),
                       "[conv2d] stride must be positive, got [1,-2]", ValueError);
  CHECK_THROWS_WITH_AS(conv2d(x, w, Tensor(), conv_opt({1, 1}, {-1, 0})),
                       "[conv2d] padding must be non-negative, got [-1,0]", ValueError);
  CHECK_THROWS_WITH_AS(conv2d(x, w, Tensor(), conv_opt({1, 1}, {0, 0}, {0, 1})),
                       "[conv2d] dilation must be positive, got [0,1]", ValueError);
  CHECK_THROWS_WITH_AS(conv2d(x, w, Tensor(), conv_opt({1, 1}, {0, 0}, {1, 1}, 0)),
                       "[conv2d] groups must be positive, got 0", ValueError);
  CHECK_THROWS_WITH_AS(conv2d(x, w, zeros({4})), "[conv2d] expected bias [8], got [4]", ShapeError);
  CHECK_THROWS_WITH_AS(conv2d(x, zeros({8, 3, 3, 3}, DType::f64), Tensor()), "[conv2d] dtype mismatch: f32 and f64",
                       DTypeError);
  CHECK_THROWS_WITH_AS(conv2d(zeros({1, 3, 8, 8}, DType::i32), zeros({8, 3, 3, 3}, DType::i32), Tensor()),
                       "[conv2d] expected an f32 or f64 tensor, got i32", DTypeError);
  CHECK_THROWS_WITH_AS(conv2d(zeros({1, 0, 8, 8}), zeros({8, 0, 3, 3}), Tensor()),
                       "[conv2d] expected non-empty channel and spatial dims (only the batch may be empty), got input "
                       "[1,0,8,8]",
                       ShapeError);
  if (!cuda_built())
    CHECK_THROWS_WITH_AS(conv2d_forward_cuda(DType::f32, Conv2dGeom{}, 0, nullptr, nullptr, nullptr, nullptr, nullptr),
                         "[conv2d] built without CUDA", DeviceError);
}
