// test_embedding.cpp — embedding (gather, scatter-add backward, padding_idx, range checks) and dropout (mask equal to
// bernoulli_mask at the generator's (seed, offset), scaling, identity cases, keep-rate, CPU == CUDA masks):
// hand-computed values, float64 gradchecks, a token-order reference the backward must match bit for bit on both
// backends (and run to run on the GPU), CPU-vs-CUDA parity and the exact error messages.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "engine/dispatch.h"
#include "engine/random.h"
#include "tests/test_util.h"

using namespace ep;

namespace {

Tensor grad_input(const Shape& s, uint64_t seed) {
  Tensor t = test::randn(s, seed, DType::f64, test::test_device());
  t.requires_grad_();
  return t;
}

// Gradient values spread over 2^-20 .. 2^20 and rounded to `dt`, so that adding a row's tokens in another order
// changes the bits of the sum (the order-sensitivity check below makes sure of it).
std::vector<double> spread_values(int64_t count, uint64_t seed, DType dt) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  std::uniform_int_distribution<int> exponent(-20, 20);
  std::vector<double> v(static_cast<size_t>(count));
  for (double& x : v) {
    x = std::ldexp(normal(rng), exponent(rng));
    if (dt == DType::f32) x = double(float(x));
  }
  return v;
}

// The order both backends promise, written out independently of them: dweight starts at zero and row indices[t]
// gets += dout[t] for t = 0, 1, ..., n-1 (or n-1 down to 0 when `reversed`), padding_idx skipped.
template <class T>
std::vector<T> scatter_in_order(const std::vector<double>& g, const std::vector<int64_t>& ix, int64_t rows,
                                int64_t dim, int64_t padding_idx, bool reversed) {
  std::vector<T> dw(size_t(rows * dim), T(0));
  const int64_t n = int64_t(ix.size());
  for (int64_t k = 0; k < n; ++k) {
    const int64_t t = reversed ? n - 1 - k : k, r = ix[size_t(t)];
    if (r == padding_idx) continue;
    for (int64_t j = 0; j < dim; ++j) dw[size_t(r * dim + j)] += T(g[size_t(t * dim + j)]);
  }
  return dw;
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// embedding's weight gradient on `device` for the gradient rows g [n, dim] of the tokens ix.
Tensor weight_grad(int64_t rows, int64_t dim, const std::vector<int64_t>& ix, DType index_dt,
                   const std::vector<double>& g, DType dt, int64_t padding_idx, Device device) {
  Tensor w = test::leaf(zeros({rows, dim}, dt, device));
  const int64_t n = int64_t(ix.size());
  Tensor idx = from_vector(std::vector<double>(ix.begin(), ix.end()), {n}, index_dt, device);
  embedding(w, idx, padding_idx).backward(from_vector(g, {n, dim}, dt, device));
  return w.grad();
}

// Token patterns for the bit-exact backward cases.
struct BackwardCase {
  const char* what;
  int64_t rows, dim;
  std::vector<int64_t> ix;
  int64_t padding_idx;
  bool f64_too;  // the largest case runs in f32 only, to keep the suite's memory and time small
};

std::vector<int64_t> random_tokens(int64_t n, int64_t rows, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> pick(0, rows - 1);
  std::vector<int64_t> ix(static_cast<size_t>(n));
  for (int64_t& r : ix) r = pick(rng);
  return ix;
}

std::vector<BackwardCase> backward_cases() {
  std::vector<BackwardCase> cases;
  cases.push_back({"7 rows, 5000 tokens (~700 per row), dim 33", 7, 33, random_tokens(5000, 7, 81), -1, true});
  cases.push_back({"same with padding_idx 3", 7, 33, random_tokens(5000, 7, 81), 3, true});
  std::vector<int64_t> run(4096, 2);  // one index 4096 times, a few others around it
  run[0] = 0;
  run[1000] = 4;
  run[4095] = 1;
  cases.push_back({"one row 4093 times, dim 45", 5, 45, run, -1, true});
  cases.push_back({"one row 4093 times, that row padding", 5, 45, run, 2, true});
  cases.push_back({"n = 1", 1029, 17, {1028}, -1, true});
  cases.push_back({"3 rows, dim 917, padding_idx 0", 3, 917, random_tokens(30, 3, 82), 0, true});
  // RoBERTa's vocabulary and width: the sort covers 16 key bits; the first and last rows are hit several times.
  std::vector<int64_t> vocab = random_tokens(512, 50265, 83);
  for (size_t k = 0; k < 40; ++k) vocab[k * 12] = k % 2 ? 50264 : 0;
  cases.push_back({"50265 x 768, 512 tokens, padding_idx 1", 50265, 768, vocab, 1, false});
  return cases;
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
    // Both backends add a row's tokens in token order, and check_parity feeds its random weights as dout
    // directly: the gradients agree exactly.
    test::check_parity([c](const std::vector<Tensor>& in) { return embedding(in[0], in[1], c.pad); }, {w, ix}, 0, 0);
  }
}

TEST_CASE("embedding: backward adds each row's tokens in token order, bit for bit on CPU and CUDA") {
  const bool cuda = test::have_cuda();
  for (const BackwardCase& c : backward_cases()) {
    for (DType dt : {DType::f32, DType::f64}) {
      if (dt == DType::f64 && !c.f64_too) continue;
      const std::vector<double> g = spread_values(int64_t(c.ix.size()) * c.dim, 84, dt);
      for (DType it : {DType::i32, DType::i64}) {
        INFO(c.what << ", " << dtype_name(dt) << " gradients, " << dtype_name(it) << " indices");
        Tensor cpu = weight_grad(c.rows, c.dim, c.ix, it, g, dt, c.padding_idx, Device::cpu());
        Tensor gpu = cuda ? weight_grad(c.rows, c.dim, c.ix, it, g, dt, c.padding_idx, Device::cuda()) : Tensor();
        auto check = [&](auto tag_) {
          using T = EP_TYPE(tag_);
          const std::vector<T> want = scatter_in_order<T>(g, c.ix, c.rows, c.dim, c.padding_idx, false);
          CHECK(same_bits(cpu.to_vector<T>(), want));
          if (cuda) CHECK(same_bits(gpu.to_vector<T>(), want));
        };
        dispatch_float(dt, "test", check);
      }
    }
  }
}

TEST_CASE("embedding: the bit-exact cases tell summation orders apart") {
  // Without this, an order-blind backward (atomics, a tree sum) could pass the case above by luck of the data.
  const std::vector<BackwardCase> cases = backward_cases();
  const BackwardCase& run = cases[2];
  REQUIRE(std::string(run.what) == "one row 4093 times, dim 45");
  const std::vector<double> g32 = spread_values(int64_t(run.ix.size()) * run.dim, 84, DType::f32);
  const std::vector<double> g64 = spread_values(int64_t(run.ix.size()) * run.dim, 84, DType::f64);
  CHECK(!same_bits(scatter_in_order<float>(g32, run.ix, run.rows, run.dim, -1, false),
                   scatter_in_order<float>(g32, run.ix, run.rows, run.dim, -1, true)));
  CHECK(!same_bits(scatter_in_order<double>(g64, run.ix, run.rows, run.dim, -1, false),
                   scatter_in_order<double>(g64, run.ix, run.rows, run.dim, -1, true)));
  // Hand case: in f32, (1 + 2^-24) + 2^-24 rounds to 1 twice, while 2^-24 + 2^-24 + 1 = 1 + 2^-23 exactly.
  const std::vector<double> g = {1.0, std::ldexp(1.0, -24), std::ldexp(1.0, -24)};
  const std::vector<float> forward = scatter_in_order<float>(g, {0, 0, 0}, 1, 1, -1, false);
  CHECK(forward[0] == 1.0f);
  CHECK(scatter_in_order<float>(g, {0, 0, 0}, 1, 1, -1, true)[0] == 1.0f + std::ldexp(1.0f, -23));
  CHECK(weight_grad(1, 1, {0, 0, 0}, DType::i64, g, DType::f32, -1, Device::cpu()).to_vector<float>() == forward);
  if (test::have_cuda())
    CHECK(weight_grad(1, 1, {0, 0, 0}, DType::i32, g, DType::f32, -1, Device::cuda()).to_vector<float>() == forward);
  // The sum starts from the zeroed dweight: 0 + (-0) is +0, so a backend that copied the first token's row instead of
  // adding it would leave -0 behind.
  for (Device d : {Device::cpu(), Device::cuda()}) {
    if (d.is_cuda() && !test::have_cuda()) continue;
    INFO(d.str());
    const std::vector<double> dw = weight_grad(2, 1, {1}, DType::i64, {-0.0}, DType::f64, -1, d).to_vector<double>();
    CHECK(!std::signbit(dw[1]));
  }
}

TEST_CASE("embedding: CUDA backward is identical run to run, also on a side stream") {
  const std::vector<int64_t> ix = random_tokens(3000, 11, 85);
  const std::vector<double> g = spread_values(3000 * 70, 86, DType::f32);
  const std::vector<float> want = scatter_in_order<float>(g, ix, 11, 70, -1, false);
  CHECK(same_bits(weight_grad(11, 70, ix, DType::i64, g, DType::f32, -1, Device::cpu()).to_vector<float>(), want));
  if (!test::have_cuda()) return;
  for (int rep = 0; rep < 3; ++rep) {
    INFO("run " << rep);
    CHECK(same_bits(weight_grad(11, 70, ix, DType::i64, g, DType::f32, -1, Device::cuda()).to_vector<float>(), want));
  }
  Stream side(Device::cuda());
  std::vector<float> on_side;
  {
    StreamGuard guard(side);
    Tensor dw = weight_grad(11, 70, ix, DType::i64, g, DType::f32, -1, Device::cuda());
    on_side = dw.to_vector<float>();  // waits for the side stream
  }
  CHECK(same_bits(on_side, want));
}

TEST_CASE("embedding: errors") {
  Device d = test::test_device();
  Tensor w = zeros({50265, 1}, DType::f32, d);
  // The range check throws from the op on the CPU and at the next synchronization point on CUDA.
  auto lookup = [&](const Tensor& ix) {
    embedding(w, ix);
    synchronize(d);
  };
  CHECK_THROWS_WITH_AS(lookup(from_vector({0, 50265, 7}, {3}, DType::i64, d)),
                       "[embedding] index 50265 out of range [0,50265)", ValueError);
  CHECK_THROWS_WITH_AS(lookup(from_vector({3, -1}, {2}, DType::i32, d)),
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
