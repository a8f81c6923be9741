// test_embedding.cpp — embedding (gather, scatter-add backward, padding_idx, range checks) and dropout (mask equal to
// bernoulli_mask at the generator's (seed, offset), scaling, identity cases, keep-rate, CPU == CUDA masks):
// hand-computed values, float64 gradchecks, CPU-vs-CUDA parity and the exact error messages.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>

#include "engine/random.h"
#include "tests/test_util.h"

using namespace ep;

namespace {

Tensor grad_input(const Shape& s, uint64_t seed) {
  Tensor t = test::randn(s, seed, DType::f64, test::test_device());
  t.requires_grad_();
  return t;
}

}  // namespace

// ---- embedding -----------------------------------------------------------------------------------------------------
TEST_CASE("embedding: hand values, i32 and i64 indices, any index shape") {
  Device d = test::test_device();
  // weight rows: 0:[0,1] 1:[2,3] 2:[4,5] 3:[6,7]
  Tensor w = from_vector({0, 1, 2, 3, 4, 5, 6, 7}, {4, 2}, DType::f32, d);
  for (DType it : {DType::i64, DType::i32}) {
    INFO("indices " << dtype_name(it));
    Tensor out = embedding(w, from_vector({1, 3, 0, 1}, {2, 2}, it, d));
    CHECK(out.shape() == Shape{2, 2, 2});
    CHECK(out.to_vector<float>() == std::vector<float>{2, 3, 6, 7, 0, 1, 2, 3});
  }
  CHECK(embedding(w, from_vector({2}, {}, DType::i64, d)).to_vector<float>() == std::vector<float>{4, 5});
  CHECK(embedding(w, zeros({0, 3}, DType::i64, d)).shape() == Shape{0, 3, 2});
  // A gather moves bytes: integer and half weights work forward.
  Tensor wi = from_vector({10, 20, 30}, {3, 1}, DType::i64, d);
  CHECK(embedding(wi, from_vector({2, 0, 2}, {3}, DType::i32, d)).to_vector<int64_t>() ==
        std::vector<int64_t>{30, 10, 30});
  Tensor wh = from_vector({0.5, -1, 2, 4}, {2, 2}, DType::bf16, d);
  CHECK(embedding(wh, from_vector({1}, {1}, DType::i64, d)).to_double_vector() == std::vector<double>{2, 4});
}

TEST_CASE("embedding: backward sums repeated rows and skips padding_idx") {
  Device d = test::test_device();
  Tensor idx = from_vector({1, 3, 0, 1, 1}, {5}, DType::i64, d);
  // dout row t = [t+1, 10(t+1)]: row 1 gets tokens 0, 3, 4 -> [1+4+5, 10+40+50]; row 3 token 1; row 0 token 2
  Tensor dout = from_vector({1, 10, 2, 20, 3, 30, 4, 40, 5, 50}, {5, 2}, DType::f64, d);
  Tensor w = zeros({4, 2}, DType::f64, d);
  w.requires_grad_();
  embedding(w, idx).backward(dout);
  CHECK(w.grad().to_vector<double>() == std::vector<double>{3, 30, 10, 100, 0, 0, 2, 20});
  Tensor wp = zeros({4, 2}, DType::f64, d);
  wp.requires_grad_();
  embedding(wp, idx, 1).backward(dout);
  CHECK(wp.grad().to_vector<double>() == std::vector<double>{3, 30, 0, 0, 0, 0, 2, 20});
  // Forward still reads the padding row (padding only affects the gradient, as torch.nn.functional.embedding).
  Tensor w2 = from_vector({1, 2, 3, 4}, {2, 2}, DType::f32, d);
  CHECK(embedding(w2, from_vector({0}, {1}, DType::i64, d), 0).to_vector<float>() == std::vector<float>{1, 2});
}

TEST_CASE("embedding: gradcheck and parity") {
  Device d = test::test_device();
  Tensor idx = from_vector({2, 4, 2, 0, 1, 4, 4, 3}, {2, 4}, DType::i64, d);
  test::gradcheck([idx](const std::vector<Tensor>& in) { return embedding(in[0], idx); }, {grad_input({5, 3}, 61)});
  // With padding_idx the forward still reads row 4 while its gradient is dropped, so finite differences only agree
  // once the padded positions are masked out of the output (the hand test above checks the dropped gradient).
  Tensor pad_mask = from_vector({0, 1, 0, 0, 0, 1, 1, 0}, {2, 4, 1}, DType::u8, d);
  test::gradcheck(
      [idx, pad_mask](const std::vector<Tensor>& in) {
        return masked_fill(embedding(in[0], idx.to(DType::i32), 4), pad_mask, 0);
      },
      {grad_input({5, 3}, 62)});

  struct Case { int64_t v, dim; Shape idx; int64_t pad; DType it; };
  for (const Case& c : {Case{50, 17, {7, 13}, -1, DType::i64}, Case{50, 17, {7, 13}, 3, DType::i32},
                        Case{1, 1, {1, 1}, -1, DType::i64}, Case{9, 5, {0}, -1, DType::i64},
                        Case{1029, 64, {4096}, 0, DType::i32}, Case{3, 917, {2, 3, 5}, 2, DType::i64}}) {
    INFO("V " << c.v << " D " << c.dim << " indices " << shape_str(c.idx));
    Tensor w = test::randn({c.v, c.dim}, 63, DType::f32);
    w.requires_grad_();
    Tensor ix = test::randint(c.idx, 64, 0, c.v, c.it);
    // Repeated rows sum in a different order on the GPU (atomics): compare with a float tolerance.
    test::check_parity([c](const std::vector<Tensor>& in) { return embedding(in[0], in[1], c.pad); }, {w, ix}, 1e-4,
                       1e-4);
  }
}

TEST_CASE("embedding: errors") {
  Device d = test::test_device();
  Tensor w = zeros({50265, 1}, DType::f32, d);
  CHECK_THROWS_WITH_AS(embedding(w, from_vector({0, 50265, 7}, {3}, DType::i64, d)),
                       "[embedding] index 50265 out of range [0,50265)", ValueError);
  CHECK_THROWS_WITH_AS(embedding(w, from_vector({3, -1}, {2}, DType::i32, d)),
                       "[embedding] index -1 out of range [0,50265)", ValueError);
  CHECK_THROWS_WITH_AS(embedding(zeros({4}), zeros({2}, DType::i64)), "[embedding] expected 2-D weight [V,D], got [4]",
                       ShapeError);
  CHECK_THROWS_WITH_AS(embedding(zeros({4, 2}), zeros({2})), "[embedding] indices must be i32 or i64, got f32",
                       DTypeError);
  CHECK_THROWS_WITH_AS(embedding(zeros({4, 2}), zeros({2}, DType::i64), 4),
                       "[embedding] padding_idx 4 out of range [0,4) (-1 for none)", ValueError);
  CHECK_THROWS_WITH_AS(embedding(zeros({4, 2}), zeros({2}, DType::i64), -2),
                       "[embedding] padding_idx -2 out of range [0,4) (-1 for none)", ValueError);
  if (test::have_cuda())
    CHECK_THROWS_WITH_AS(embedding(zeros({4, 2}), zeros({2}, DType::i64, Device::cuda())),
                         "[embedding] weight is on cpu but indices are on cuda:0", DeviceError);
}

// ---- dropout -------------------------------------------------------------------------------------------------------
TEST_CASE("dropout: the mask is bernoulli_mask at the generator's (seed, offset), scaled by 1/(1-p)") {
  Device d = test::test_device();
  Tensor x = test::randn({6, 7}, 71, DType::f32, d);
  Generator g(2718);
  g.offset = 100;
  Tensor y = dropout(x, 0.3, true, g);
  CHECK(g.offset == 142);  // one counter per element
  std::vector<uint8_t> m = bernoulli_mask({6, 7}, 0.7, 2718, 100, d).to_vector<uint8_t>();
  std::vector<float> xv = x.to_vector<float>(), yv = y.to_vector<float>();
  const float scale = float(1.0 / 0.7);
  int64_t bad = 0;
  for (size_t i = 0; i < xv.size(); ++i) bad += yv[i] != (m[i] ? xv[i] * scale : 0.0f);
  CHECK(bad == 0);
  // The next call draws a fresh mask; replaying (seed, offset) reproduces the first.
  Tensor y2 = dropout(x, 0.3, true, g);
  CHECK(y2.to_vector<float>() != yv);
  Generator replay(2718);
  replay.offset = 100;
  CHECK(dropout(x, 0.3, true, replay).to_vector<float>() == yv);
}

TEST_CASE("dropout: identity, p == 1, keep-rate and backward with the same mask") {
  Device d = test::test_device();
  Generator g(5);
  Tensor x = test::randn({4, 5}, 72, DType::f64, d);
  CHECK(dropout(x, 0.5, false, g).same(x));  // eval: the input itself, nothing drawn
  CHECK(dropout(x, 0.0, true, g).same(x));
  CHECK(g.offset == 0);
  CHECK(dropout(x, 1.0, true, g).to_double_vector() == std::vector<double>(20, 0.0));
  CHECK(g.offset == 20);  // p == 1 still reserves its counters, so later draws do not depend on p
  CHECK(dropout(zeros({0, 3}, DType::f32, d), 0.5, true, g).numel() == 0);

  Tensor ones_ = ones({100000}, DType::f32, d);
  std::vector<float> v = dropout(ones_, 0.25, true, g).to_vector<float>();
  int64_t kept = 0, other = 0;
  for (float f : v) {
    kept += f != 0;
    other += f != 0 && f != float(1.0 / 0.75);
  }
  CHECK(other == 0);
  CHECK(std::fabs(double(kept) / 1e5 - 0.75) < 0.01);  // binomial sd ~ 0.0014

  Tensor xl = test::randn({3, 4}, 73, DType::f64, d);
  xl.requires_grad_();
  Generator h(9);
  Tensor y = dropout(xl, 0.4, true, h);
  y.backward(ones({3, 4}, DType::f64, d));
  std::vector<double> gx = xl.grad().to_vector<double>(), yv = y.to_vector<double>();
  for (size_t i = 0; i < gx.size(); ++i) CHECK(gx[i] == (yv[i] != 0 ? 1.0 / 0.6 : 0.0));
  Tensor z = zeros({3}, DType::f64, d);
  z.requires_grad_();
  Generator k(1);
  dropout(z, 1.0, true, k).backward(ones({3}, DType::f64, d));
  CHECK(z.grad().to_vector<double>() == std::vector<double>{0, 0, 0});
}

TEST_CASE("dropout: gradcheck and parity") {
  // The generator is rebuilt inside fn, so every evaluation of the finite differences sees the same mask.
  test::gradcheck(
      [](const std::vector<Tensor>& in) {
        Generator g(77);
        return dropout(in[0], 0.35, true, g);
      },
      {grad_input({6, 9}, 74)});
  auto fn = [](const std::vector<Tensor>& in) {
    Generator g(31337);
    g.offset = 12345;
    return dropout(in[0], 0.2, true, g);
  };
  for (Shape s : {Shape{1029, 917}, Shape{1, 1}, Shape{0, 5}, Shape{3, 1, 7}}) {
    Tensor x = test::randn(s, 75, DType::f32);
    x.requires_grad_();
    // Same mask and one multiply per element: CPU and CUDA agree exactly.
    test::check_parity(fn, {x}, 0, 0);
  }
}

TEST_CASE("dropout: CPU and CUDA drop the same elements") {
  if (!test::have_cuda()) return;
  Tensor x = ones({1029, 917}, DType::f32);
  Generator gc(42), gg(42);
  gc.offset = gg.offset = (uint64_t(1) << 32) - 1000;  // the counter's high word changes inside this draw
  std::vector<float> a = dropout(x, 0.5, true, gc).to_vector<float>();
  std::vector<float> b = dropout(x.to(Device::cuda()), 0.5, true, gg).to_vector<float>();
  CHECK(a.size() == b.size());
  CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
  CHECK(gc.offset == gg.offset);
}

TEST_CASE("dropout: errors") {
  Generator g(0);
  Tensor x = zeros({3});
  CHECK_THROWS_WITH_AS(dropout(x, 1.5, true, g), "[dropout] p must be in [0,1], got 1.5", ValueError);
  CHECK_THROWS_WITH_AS(dropout(x, -0.1, false, g), "[dropout] p must be in [0,1], got -0.1", ValueError);
  CHECK_THROWS_WITH_AS(dropout(zeros({3}, DType::i32), 0.5, true, g),
                       "[dropout] expected an f32 or f64 tensor, got i32", DTypeError);
  CHECK(g.offset == 0);
}
