// test_batch_norm.cpp — batch_norm in training and eval mode: a hand-worked [2,2,1,2] example (normalization and the
// running-stat update), float64 gradchecks, CPU-vs-CUDA parity on awkward shapes, the empty batch, and typed errors.
// Also batch_norm_relu/relu6 against the unfused ops, bit for bit, and the deferred bookkeeping ops (merge_stats_,
// commit_stats_) against two-pass statistics. Not the micro-batch-aware BatchNorm2d layer of the pipeline
// (test_layers.cpp).
#include <doctest/doctest.h>

#include <cmath>

#include "tests/test_util.h"

using namespace ep;
using test::OpFn;

namespace {

Tensor leaf(const Shape& s, uint64_t seed) {
  return test::randn(s, seed, DType::f64, test::test_device()).requires_grad_();
}

// in = {x, weight, bias, running_mean, running_var}; any of the last four may be undefined.
OpFn bn_fn(bool training, double momentum = 0.1, double eps = 1e-5) {
  return [=](const std::vector<Tensor>& in) {
    Tensor rm = in[3], rv = in[4];  // handles: the in-place update reaches the caller's tensors
    return batch_norm(in[0], in[1], in[2], rm, rv, training, momentum, eps);
  };
}

// The [N=2, C=2, H=1, W=2] example, flat in memory order n0c0, n0c1, n1c0, n1c1:
//   channel 0 holds 1, 3 (n=0) and 5, 7 (n=1): mean 4, biased var (9+1+1+9)/4 = 5, unbiased 20/3
//   channel 1 holds 0, 4 (n=0) and 2, 2 (n=1): mean 2, biased var (4+4+0+0)/4 = 2, unbiased 8/3
const std::vector<double> kX = {1, 3, 0, 4, 5, 7, 2, 2};

}  // namespace

TEST_CASE("batch_norm: hand-worked [2,2,1,2] example, training mode and the running-stat update") {
  Device d = test::test_device();
  const double eps = 1e-5;
  for (DType dt : {DType::f64, DType::f32}) {
    INFO("dtype " << dtype_name(dt));
    Tensor x = from_vector(kX, {2, 2, 1, 2}, dt, d);
    Tensor w = from_vector({2, 0.5}, {2}, dt, d), b = from_vector({1, -1}, {2}, dt, d);
    Tensor rm = from_vector({0.5, -1}, {2}, dt, d), rv = from_vector({1, 2}, {2}, dt, d);
    Tensor y = batch_norm(x, w, b, rm, rv, true, 0.1, eps);
    // y = (x - mean) / sqrt(var_biased + eps) * w + b
    const double i0 = 1 / std::sqrt(5 + eps), i1 = 1 / std::sqrt(2 + eps);
    std::vector<double> expect = {(1 - 4) * i0 * 2 + 1,   (3 - 4) * i0 * 2 + 1,   (0 - 2) * i1 * 0.5 - 1,
                                  (4 - 2) * i1 * 0.5 - 1, (5 - 4) * i0 * 2 + 1,   (7 - 4) * i0 * 2 + 1,
                                  (2 - 2) * i1 * 0.5 - 1, (2 - 2) * i1 * 0.5 - 1};
    CHECK_ALLCLOSE(y, from_vector(expect, {2, 2, 1, 2}, DType::f64), 1e-6, 1e-6);
    // running = 0.9 * running + 0.1 * batch stat, with the unbiased variance:
    //   mean [0.9*0.5 + 0.1*4, 0.9*(-1) + 0.1*2] = [0.85, -0.7]
    //   var  [0.9*1 + 0.1*20/3, 0.9*2 + 0.1*8/3] = [1.5666..., 2.0666...]
    CHECK_ALLCLOSE(rm, from_vector({0.85, -0.7}, {2}, DType::f64), 1e-6, 1e-6);
    CHECK_ALLCLOSE(rv, from_vector({0.9 + 2.0 / 3.0, 1.8 + 0.8 / 3.0}, {2}, DType::f64), 1e-6, 1e-6);
    // Undefined running stats: the same output, nothing to update.
    Tensor none_m, none_v;
    CHECK_ALLCLOSE(batch_norm(x, w, b, none_m, none_v, true, 0.1, eps), y, 1e-6, 1e-6);
    CHECK(!none_m.defined());
  }
}

TEST_CASE("batch_norm: hand-worked backward, training and eval") {
  Device d = test::test_device();
  Tensor x = from_vector(kX, {2, 2, 1, 2}, DType::f64, d).requires_grad_();
  Tensor w = from_vector({2, 0.5}, {2}, DType::f64, d).requires_grad_();
  Tensor b = from_vector({1, -1}, {2}, DType::f64, d).requires_grad_();
  Tensor rm, rv;
  // Training, dy = ones: the normalized values sum to zero per channel, so dx = 0 and dw = sum(xhat) = 0; db = n = 4.
  batch_norm(x, w, b, rm, rv, true).backward(ones({2, 2, 1, 2}, DType::f64, d));
  CHECK_ALLCLOSE(x.grad(), zeros({2, 2, 1, 2}, DType::f64), 1e-9, 0);
  CHECK_ALLCLOSE(w.grad(), zeros({2}, DType::f64), 1e-9, 0);
  CHECK(b.grad().to_double_vector() == std::vector<double>{4, 4});
  // Eval with running mean [1, 2] and var [3, 0.25] (eps 0): invstd [1/sqrt(3), 2]. With dy = ones,
  //   dx = w * invstd = [2/sqrt(3), 1] per channel, db = 4,
  //   dw = sum (x - rm) * invstd = [(0+2+4+6)/sqrt(3), (-2+2+0+0)*2] = [12/sqrt(3), 0].
  x.zero_grad();
  w.zero_grad();
  b.zero_grad();
  Tensor em = from_vector({1, 2}, {2}, DType::f64, d), ev = from_vector({3, 0.25}, {2}, DType::f64, d);
  Tensor y = batch_norm(x, w, b, em, ev, false, 0.1, 0.0);
  // y = (x - rm) * invstd * w + b
  const double s3 = std::sqrt(3.0);
  CHECK_ALLCLOSE(y,
                 from_vector({0 / s3 * 2 + 1, 2 / s3 * 2 + 1, -2 * 2 * 0.5 - 1, 2 * 2 * 0.5 - 1, 4 / s3 * 2 + 1,
                              6 / s3 * 2 + 1, 0 * 2 * 0.5 - 1, 0 * 2 * 0.5 - 1},
                             {2, 2, 1, 2}, DType::f64),
                 1e-12, 1e-12);
  y.backward(ones({2, 2, 1, 2}, DType::f64, d));
  CHECK_ALLCLOSE(x.grad(), from_vector({2 / s3, 2 / s3, 1, 1, 2 / s3, 2 / s3, 1, 1}, {2, 2, 1, 2}, DType::f64), 1e-12,
                 1e-12);
  CHECK_ALLCLOSE(w.grad(), from_vector({12 / s3, 0}, {2}, DType::f64), 1e-12, 1e-12);
  CHECK(b.grad().to_double_vector() == std::vector<double>{4, 4});
  // Eval leaves the running statistics alone.
  CHECK(em.to_double_vector() == std::vector<double>{1, 2});
  CHECK(ev.to_double_vector() == std::vector<double>{3, 0.25});
}

TEST_CASE("batch_norm: gradcheck in float64, training and eval, with and without affine parameters") {
  Device d = test::test_device();
  auto rm = [&](int64_t c, uint64_t seed) { return test::randn({c}, seed, DType::f64, d); };
  auto rv = [&](int64_t c, uint64_t seed) { return test::rand_uniform({c}, seed, 0.5, 2.0, DType::f64, d); };
  // training: batch statistics, dx through mean and variance
  test::gradcheck(bn_fn(true), {leaf({3, 2, 2, 3}, 1), leaf({2}, 2), leaf({2}, 3), rm(2, 4), rv(2, 5)});
  test::gradcheck(bn_fn(true), {leaf({4, 3, 5}, 6), Tensor(), Tensor(), Tensor(), Tensor()});
  test::gradcheck(bn_fn(true, 0.3, 1e-3), {leaf({6, 4}, 7), leaf({4}, 8), Tensor(), rm(4, 9), rv(4, 10)});
  test::gradcheck(bn_fn(true), {leaf({1, 3, 2, 2}, 11), Tensor(), leaf({3}, 12), Tensor(), Tensor()});
  // eval: running statistics are constants
  test::gradcheck(bn_fn(false), {leaf({3, 2, 2, 3}, 13), leaf({2}, 14), leaf({2}, 15), rm(2, 16), rv(2, 17)});
  test::gradcheck(bn_fn(false), {leaf({5, 3}, 18), Tensor(), Tensor(), rm(3, 19), rv(3, 20)});
  test::gradcheck(bn_fn(false), {leaf({1, 4, 3}, 21), leaf({4}, 22), Tensor(), rm(4, 23), rv(4, 24)});
  // Only the affine parameters need gradients.
  Tensor x = test::randn({3, 2, 4}, 25, DType::f64, d);
  test::gradcheck(bn_fn(true), {x, leaf({2}, 26), leaf({2}, 27), Tensor(), Tensor()});
}

TEST_CASE("batch_norm: CUDA matches CPU on awkward shapes") {
  auto x = [](const Shape& s, uint64_t seed) { return test::randn(s, seed, DType::f32, Device::cpu(), 2.0) + 0.5; };
  auto p = [](int64_t c, uint64_t seed) { return test::randn({c}, seed, DType::f32).requires_grad_(); };
  auto rv = [](int64_t c, uint64_t seed) { return test::rand_uniform({c}, seed, 0.5, 2.0, DType::f32); };
  auto rm = [](int64_t c, uint64_t seed) { return test::randn({c}, seed, DType::f32); };
  struct Case {
    Shape shape;
    bool training;
  };
  const Case cases[] = {{{8, 16, 7, 9}, true},  {{1029, 33}, true},   {{2, 3, 1, 1}, true}, {{1, 4, 3, 1}, true},
                        {{3, 5, 17, 13}, false}, {{1029, 33}, false}, {{0, 3, 4, 4}, true}, {{0, 3}, false},
                        {{4, 1, 300, 301}, true},
                        // Several blocks per channel (uneven plane ranges), and fewer planes than blocks would want.
                        {{37, 6, 33, 17}, true}, {{64, 3, 32, 32}, true}, {{3, 2, 5000, 7}, true},
                        {{37, 6, 33, 17}, false}};
  uint64_t seed = 100;
  for (const Case& c : cases) {
    INFO("shape " << shape_str(c.shape) << " training " << c.training);
    const int64_t C = c.shape[1];
    Tensor xi = x(c.shape, seed++).detach();
    xi.requires_grad_();
    test::check_parity(bn_fn(c.training), {xi, p(C, seed++), p(C, seed++), rm(C, seed++), rv(C, seed++)});
    test::check_parity(bn_fn(c.training), {xi, Tensor(), Tensor(), rm(C, seed++), rv(C, seed++)});
  }
}

TEST_CASE("batch_norm: the running-stat update on CUDA matches the CPU") {
  if (!test::have_cuda()) return;
  Tensor x = test::randn({6, 5, 11, 3}, 200, DType::f32, Device::cpu(), 3.0) + 1.0;
  Tensor rm = test::randn({5}, 201, DType::f32), rv = test::rand_uniform({5}, 202, 0.5, 2, DType::f32);
  Tensor grm = rm.to(Device::cuda()), grv = rv.to(Device::cuda());
  batch_norm(x, Tensor(), Tensor(), rm, rv, true, 0.25);
  batch_norm(x.to(Device::cuda()), Tensor(), Tensor(), grm, grv, true, 0.25);
  CHECK_ALLCLOSE(grm, rm, 1e-5, 1e-5);
  CHECK_ALLCLOSE(grv, rv, 1e-5, 1e-5);
}

TEST_CASE("batch_norm: an empty batch normalizes nothing and keeps the running statistics") {
  Device d = test::test_device();
  Tensor x = leaf({0, 3, 2, 2}, 300), w = leaf({3}, 301), b = leaf({3}, 302);
  Tensor rm = from_vector({1, 2, 3}, {3}, DType::f64, d), rv = from_vector({4, 5, 6}, {3}, DType::f64, d);
  Tensor y = batch_norm(x, w, b, rm, rv, true);
  CHECK(y.shape() == Shape{0, 3, 2, 2});
  CHECK(rm.to_double_vector() == std::vector<double>{1, 2, 3});
  CHECK(rv.to_double_vector() == std::vector<double>{4, 5, 6});
  y.backward(zeros({0, 3, 2, 2}, DType::f64, d));
  CHECK(w.grad().to_double_vector() == std::vector<double>{0, 0, 0});
  CHECK(b.grad().to_double_vector() == std::vector<double>{0, 0, 0});
  CHECK(x.grad().shape() == Shape{0, 3, 2, 2});
}

TEST_CASE("batch_norm: bad inputs name the op and the shapes") {
  Tensor x = zeros({2, 2, 1, 2}), w = zeros({2}), rm = zeros({2}), rv = ones({2});
  Tensor none;
  CHECK_THROWS_WITH_AS(batch_norm(zeros({3}), none, none, rm, rv, true),
                       "[batch_norm] expected an input [N,C,*] with at least 2 dims, got [3]", ShapeError);
  CHECK_THROWS_WITH_AS(batch_norm(x, zeros({3}), none, rm, rv, true),
                       "[batch_norm] expected weight [2] for input [2,2,1,2], got [3]", ShapeError);
  CHECK_THROWS_WITH_AS(batch_norm(x, w, zeros({2, 1}), rm, rv, true),
                       "[batch_norm] expected bias [2] for input [2,2,1,2], got [2,1]", ShapeError);
  Tensor bad_var = ones({4});
  CHECK_THROWS_WITH_AS(batch_norm(x, w, none, rm, bad_var, true),
                       "[batch_norm] expected running_var [2] for input [2,2,1,2], got [4]", ShapeError);
  CHECK_THROWS_WITH_AS(batch_norm(x, zeros({2}, DType::f64), none, rm, rv, true),
                       "[batch_norm] dtype mismatch: f32 and f64", DTypeError);
  Tensor rm64 = zeros({2}, DType::f64);
  CHECK_THROWS_WITH_AS(batch_norm(x, w, none, rm64, rv, true), "[batch_norm] dtype mismatch: f32 and f64",
                       DTypeError);
  CHECK_THROWS_WITH_AS(batch_norm(zeros({2, 2}, DType::i64), none, none, none, none, true),
                       "[batch_norm] expected an f32 or f64 tensor, got i64", DTypeError);
  Tensor none2;
  CHECK_THROWS_WITH_AS(batch_norm(x, w, none, none, none2, false),
                       "[batch_norm] eval mode needs running_mean and running_var", ValueError);
  CHECK_THROWS_WITH_AS(batch_norm(x, w, none, rm, none2, true),
                       "[batch_norm] running_mean and running_var must be both defined or both undefined", ValueError);
  CHECK_THROWS_WITH_AS(batch_norm(zeros({1, 3}), none, none, none, none2, true),
                       "[batch_norm] expected more than 1 value per channel when training, got input [1,3]",
                       ValueError);
  CHECK_THROWS_WITH_AS(batch_norm(x, w, none, rm, rv, true, 0.1, -1.0), "[batch_norm] eps must be >= 0, got -1",
                       ValueError);
  // One value per channel is fine in eval mode.
  Tensor rm3 = zeros({3}), rv3 = ones({3});
  CHECK(batch_norm(ones({1, 3}), none, none, rm3, rv3, false).shape() == Shape{1, 3});
  if (cuda_available()) {
    Tensor gw = zeros({2}, DType::f32, Device::cuda());
    CHECK_THROWS_WITH_AS(batch_norm(x, gw, none, rm, rv, true),
                         "[batch_norm] tensors on different devices: cpu and cuda:0", DeviceError);
  }
}

// ---- batch_norm_relu / batch_norm_relu6: the activation fused ---------------------------------------------------

namespace {

// fused(x, ...) against act(batch_norm(x, ...)): outputs, running statistics and the gradients of x, weight and bias
// under the upstream gradient dz, compared bit for bit.
void check_fused_equals_unfused(BatchNormFn fused, Tensor (*act)(const Tensor&), const Shape& shape,
                                bool training, DType dt, uint64_t seed, bool x_needs_grad = true) {
  const Device d = test::test_device();
  const int64_t C = shape[1];
  // Channel 0 is pinned exactly onto the kink at 0 (weight 0, bias 0) and channel 1 onto relu6's kink at 6 (weight
  // 0, bias 6): both gradients are 0 there. The others spread across both kinks (bias around 3, weight 4).
  std::vector<double> w = test::randn({C}, seed, DType::f64).to_double_vector();
  std::vector<double> b = test::randn({C}, seed + 1, DType::f64).to_double_vector();
  for (int64_t c = 0; c < C; ++c) w[size_t(c)] *= 4, b[size_t(c)] += 3;
  w[0] = 0, b[0] = 0;
  if (C > 1) w[1] = 0, b[1] = 6;
  const Tensor x0 = test::randn(shape, seed + 2, dt, d, 2.0) + 0.5;
  const Tensor dz = test::randn(shape, seed + 3, dt, d);
  const Tensor rm0 = test::randn({C}, seed + 4, dt, d), rv0 = test::rand_uniform({C}, seed + 5, 0.5, 2.0, dt, d);
  struct Run {
    Tensor out, rm, rv, dx, dw, db;
  };
  auto run = [&](bool use_fused) {
    Tensor x = x0.detach().clone();
    if (x_needs_grad) x.requires_grad_();  // else only weight and bias: the backward's sums without dx
    Tensor wt = from_vector(w, {C}, dt, d).requires_grad_(), bt = from_vector(b, {C}, dt, d).requires_grad_();
    Run r;
    r.rm = rm0.clone(), r.rv = rv0.clone();
    r.out = use_fused ? fused(x, wt, bt, r.rm, r.rv, training, 0.1, 1e-5)
                      : act(batch_norm(x, wt, bt, r.rm, r.rv, training, 0.1, 1e-5));
    r.out.backward(dz);
    r.dx = x.grad(), r.dw = wt.grad(), r.db = bt.grad();
    return r;
  };
  const Run a = run(true), u = run(false);
  CHECK(a.out.to_double_vector() == u.out.to_double_vector());
  CHECK(a.rm.to_double_vector() == u.rm.to_double_vector());
  CHECK(a.rv.to_double_vector() == u.rv.to_double_vector());
  CHECK(a.dx.defined() == x_needs_grad);
  if (x_needs_grad) CHECK(a.dx.to_double_vector() == u.dx.to_double_vector());
  CHECK(a.dw.to_double_vector() == u.dw.to_double_vector());
  CHECK(a.db.to_double_vector() == u.db.to_double_vector());
  // The pinned channels: the output sits on the kink, and so no gradient reaches x, weight or bias there.
  const std::vector<double> out = a.out.to_double_vector(), db = a.db.to_double_vector();
  CHECK(out[0] == 0.0);
  CHECK(db[0] == 0.0);
  if (C > 1 && fused == batch_norm_relu6) {
    const int64_t S = a.out.numel() / (shape[0] * C);
    CHECK(out[size_t(S)] == 6.0);
    CHECK(db[1] == 0.0);
  }
}

}  // namespace

TEST_CASE("batch_norm_relu / batch_norm_relu6 equal relu / relu6 after batch_norm bit for bit, training and eval") {
  const std::pair<BatchNormFn, Tensor (*)(const Tensor&)> ops[] = {{batch_norm_relu, relu}, {batch_norm_relu6, relu6}};
  const Shape shapes[] = {{4, 5, 3, 7}, {9, 3}, {1, 4, 2, 17}, {3, 6, 33, 31}};
  uint64_t seed = 500;
  for (const auto& [fused, act] : ops)
    for (DType dt : {DType::f32, DType::f64})
      for (const Shape& shape : shapes)
        for (bool training : {true, false}) {
          const std::string what = std::string(fused == batch_norm_relu ? "relu " : "relu6 ") + dtype_name(dt) + " " +
                                   shape_str(shape) + " training " + (training ? "true" : "false");
          INFO(what);
          check_fused_equals_unfused(fused, act, shape, training, dt, seed);
          check_fused_equals_unfused(fused, act, shape, training, dt, seed + 5, /*x_needs_grad=*/false);
          seed += 10;
        }
}

TEST_CASE("batch_norm_relu / batch_norm_relu6: gradcheck in float64, training and eval") {
  Device d = test::test_device();
  auto fn = [](BatchNormFn op, bool training) {
    return [=](const std::vector<Tensor>& in) {
      Tensor rm = in[3], rv = in[4];
      return op(in[0], in[1], in[2], rm, rv, training, 0.1, 1e-5);
    };
  };
  auto rv = [&](int64_t c, uint64_t seed) { return test::rand_uniform({c}, seed, 0.5, 2.0, DType::f64, d); };
  // Bias 3 and weight 4 put values on both sides of 0 and of 6, away from the kinks by far more than the step.
  Tensor b = full({3}, 3.0, DType::f64, d).requires_grad_(), w = full({3}, 4.0, DType::f64, d).requires_grad_();
  for (BatchNormFn op : {batch_norm_relu, batch_norm_relu6}) {
    test::gradcheck(fn(op, true), {leaf({3, 3, 2, 3}, 600), w, b, rv(3, 601), rv(3, 602)});
    test::gradcheck(fn(op, true), {leaf({5, 4}, 603), Tensor(), Tensor(), Tensor(), Tensor()});
    test::gradcheck(fn(op, false), {leaf({2, 3, 4}, 604), w, b, test::randn({3}, 605, DType::f64, d), rv(3, 606)});
  }
}

TEST_CASE("batch_norm_relu / batch_norm_relu6: CUDA matches CPU") {
  auto x = [](const Shape& s, uint64_t seed) {
    return (test::randn(s, seed, DType::f32, Device::cpu(), 3.0) + 2.0).detach().requires_grad_();
  };
  auto p = [](int64_t c, uint64_t seed) { return test::randn({c}, seed, DType::f32).requires_grad_(); };
  auto rv = [](int64_t c, uint64_t seed) { return test::rand_uniform({c}, seed, 0.5, 2.0, DType::f32); };
  for (BatchNormFn op : {batch_norm_relu, batch_norm_relu6})
    for (bool training : {true, false}) {
      auto fn = [=](const std::vector<Tensor>& in) {
        Tensor rm = in[3], rvar = in[4];
        return op(in[0], in[1], in[2], rm, rvar, training, 0.1, 1e-5);
      };
      test::check_parity(fn, {x({8, 16, 7, 9}, 700), p(16, 701), p(16, 702), p(16, 703).detach(), rv(16, 704)});
      test::check_parity(fn, {x({37, 6}, 705), Tensor(), Tensor(), p(6, 706).detach(), rv(6, 707)});
    }
}

// ---- the deferred BatchNorm's bookkeeping ops ----------------------------------------------------------------------

namespace {

// Per channel, the mean and centred sum of squares of values[c] by two passes in double (the reference).
void two_pass(const std::vector<std::vector<double>>& values, std::vector<double>& mean, std::vector<double>& m2) {
  for (size_t c = 0; c < values.size(); ++c) {
    double s = 0, q = 0;
    for (double v : values[c]) s += v;
    mean[c] = s / double(values[c].size());
    for (double v : values[c]) q += (v - mean[c]) * (v - mean[c]);
    m2[c] = q;
  }
}

}  // namespace

TEST_CASE("batch_norm_merge_stats_ / commit_stats_: groups merged equal the whole set's two-pass statistics") {
  const int64_t C = 5;
  const std::vector<int64_t> group_sizes = {7, 2, 31, 3, 12};  // uneven micro-batches
  for (DType dt : {DType::f32, DType::f64}) {
    INFO(dtype_name(dt));
    std::vector<Device> devices = {Device::cpu()};
    if (test::have_cuda()) devices.push_back(Device::cuda());
    for (Device dev : devices) {
      INFO(dev.str());
      std::vector<std::vector<double>> all(C);
      Tensor mean = zeros({C}, DType::f64, dev), m2 = zeros({C}, DType::f64, dev);
      int64_t count = 0;
      uint64_t seed = 40;
      for (int64_t n : group_sizes) {
        // A group's batch mean and unbiased variance, from its values (rounded to dt as batch_norm's outputs are).
        const std::vector<double> g = test::randn({C, n}, seed++, DType::f64).to_double_vector();
        std::vector<double> gm(C), gv(C);
        for (int64_t c = 0; c < C; ++c) {
          std::vector<double> vals(g.begin() + c * n, g.begin() + (c + 1) * n);
          for (double& v : vals) v = v * 3.0 + double(c);  // channels at different offsets and scales
          double s = 0, q = 0;
          for (double v : vals) s += v;
          gm[size_t(c)] = s / double(n);
          for (double v : vals) q += (v - gm[size_t(c)]) * (v - gm[size_t(c)]);
          gv[size_t(c)] = q / double(n - 1);
          if (dt == DType::f32) {  // the whole set then holds what the f32 statistics describe: compare loosely
            gm[size_t(c)] = double(float(gm[size_t(c)]));
            gv[size_t(c)] = double(float(gv[size_t(c)]));
          }
          all[size_t(c)].insert(all[size_t(c)].end(), vals.begin(), vals.end());
        }
        batch_norm_merge_stats_(mean, m2, count, from_vector(gm, {C}, dt, dev), from_vector(gv, {C}, dt, dev), n);
        count += n;
      }
      std::vector<double> ref_mean(C), ref_m2(C);
      two_pass(all, ref_mean, ref_m2);
      const double tol = dt == DType::f64 ? 1e-12 : 1e-6;
      CHECK_MESSAGE(test::allclose(mean.cpu(), from_vector(ref_mean, {C}, DType::f64), tol, tol), "mean");
      CHECK_MESSAGE(test::allclose(m2.cpu(), from_vector(ref_m2, {C}, DType::f64), tol, tol), "m2");

      // commit: PyTorch's momentum rule with the unbiased variance, from running values 0.5 and 2 (hand formula)
      Tensor rm = full({C}, 0.5, dt, dev), rv = full({C}, 2.0, dt, dev);
      batch_norm_commit_stats_(rm, rv, mean, m2, count, 0.1);
      const std::vector<double> got_m = rm.to_double_vector(), got_v = rv.to_double_vector();
      const std::vector<double> mm = mean.to_double_vector(), qq = m2.to_double_vector();
      for (int64_t c = 0; c < C; ++c) {
        CHECK(got_m[size_t(c)] == doctest::Approx(0.9 * 0.5 + 0.1 * mm[size_t(c)]).epsilon(1e-7));
        CHECK(got_v[size_t(c)] == doctest::Approx(0.9 * 2.0 + 0.1 * qq[size_t(c)] / double(count - 1)).epsilon(1e-7));
      }
    }
  }
}

TEST_CASE("batch_norm_merge_stats_ / commit_stats_: CUDA equals the CPU bit for bit") {
  if (!test::have_cuda()) return;
  const Device gpu = Device::cuda();
  for (DType dt : {DType::f32, DType::f64}) {
    const int64_t C = 300;  // more channels than one block's threads
    Tensor mean = zeros({C}, DType::f64), m2 = zeros({C}, DType::f64);
    Tensor mean_d = mean.to(gpu), m2_d = m2.to(gpu);
    int64_t count = 0;
    for (int64_t n : {9, 4, 17}) {
      Tensor mb = test::randn({C}, uint64_t(50 + n), dt), vb = test::rand_uniform({C}, uint64_t(60 + n), 0, 4, dt);
      batch_norm_merge_stats_(mean, m2, count, mb, vb, n);
      batch_norm_merge_stats_(mean_d, m2_d, count, mb.to(gpu), vb.to(gpu), n);
      count += n;
    }
    CHECK(mean_d.cpu().to_double_vector() == mean.to_double_vector());
    CHECK(m2_d.cpu().to_double_vector() == m2.to_double_vector());
    Tensor rm = test::randn({C}, 70, dt), rv = test::rand_uniform({C}, 71, 0, 2, dt);
    Tensor rm_d = rm.to(gpu), rv_d = rv.to(gpu);
    batch_norm_commit_stats_(rm, rv, mean, m2, count, 0.3);
    batch_norm_commit_stats_(rm_d, rv_d, mean_d, m2_d, count, 0.3);
    CHECK(rm_d.cpu().to_double_vector() == rm.to_double_vector());
    CHECK(rv_d.cpu().to_double_vector() == rv.to_double_vector());
  }
}

TEST_CASE("batch_norm_merge_stats_ / commit_stats_: bad inputs are typed errors naming the op") {
  Tensor mean = zeros({3}, DType::f64), m2 = zeros({3}, DType::f64), a = zeros({3}), b = zeros({3});
  Tensor f32_mean = zeros({3}), short_b = zeros({2});
  CHECK_THROWS_WITH_AS(batch_norm_merge_stats_(f32_mean, m2, 0, a, b, 4),
                       doctest::Contains("[batch_norm_merge_stats_]"), DTypeError);
  CHECK_THROWS_AS(batch_norm_merge_stats_(mean, m2, 0, a, short_b, 4), ShapeError);
  CHECK_THROWS_AS(batch_norm_merge_stats_(mean, m2, -1, a, b, 4), ValueError);
  CHECK_THROWS_AS(batch_norm_merge_stats_(mean, m2, 0, a, b, 0), ValueError);
  CHECK_THROWS_AS(batch_norm_commit_stats_(a, b, mean, m2, 0, 0.1), ValueError);
  CHECK_THROWS_AS(batch_norm_commit_stats_(a, b, mean, short_b, 3, 0.1), ShapeError);
}
