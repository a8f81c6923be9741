// test_attention.cpp — attention_softmax: hand-computed values, equality with the unfused composition
// mul -> masked_fill(-inf) -> softmax -> dropout (forward and backward), every mask dtype, fully masked rows, float64
// gradchecks, awkward shapes, typed errors, and CPU-vs-CUDA parity (skipped without a GPU). Not a benchmark.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "engine/random.h"
#include "tests/test_util.h"

using namespace ep;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// A [B, Tk] key mask of `dtype` from 0/1-style values (any value; nonzero = attend).
Tensor key_mask_of(const std::vector<double>& v, int64_t batch, int64_t keys, DType dtype,
                   Device d = test::test_device()) {
  return from_vector(v, {batch, keys}, dtype, d);
}

// The reference: the engine's separate ops, as an unfused attention would chain them. The padding mask is built on
// the host from the key mask's values (nonzero = attend), broadcast over heads and queries as [B, 1, 1, Tk].
Tensor unfused(const Tensor& scores, const Tensor& key_mask, double scale, double p, bool training, Generator& gen) {
  Tensor x = mul(scores, scale);
  if (key_mask.defined()) {
    std::vector<double> km = key_mask.to_double_vector(), pad;
    for (double v : km) pad.push_back(v == 0 ? 1.0 : 0.0);
    Tensor pad_mask = from_vector(pad, {scores.size(0), 1, 1, scores.size(3)}, DType::u8, scores.device());
    x = masked_fill(x, pad_mask, -kInf);
  }
  return dropout(softmax(x), p, training, gen);
}

// Per row of a [.., Tk] tensor: the sum of its values.
std::vector<double> row_sums(const Tensor& t) {
  const int64_t cols = t.size(-1);
  std::vector<double> v = t.to_double_vector(), sums(size_t(t.numel() / cols), 0.0);
  for (size_t i = 0; i < v.size(); ++i) sums[i / size_t(cols)] += v[i];
  return sums;
}

// A mask with some padding in every batch row but at least one attending key (row b pads its last b % Tk keys).
std::vector<double> padding_pattern(int64_t batch, int64_t keys) {
  std::vector<double> v;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t k = 0; k < keys; ++k) v.push_back(k < keys - (b % keys) ? 1.0 : 0.0);
  return v;
}

}  // namespace

TEST_CASE("attention_softmax: hand-computed values, masked keys exactly 0, rows sum to 1") {
  Device d = test::test_device();
  Generator g(1);
  // softmax(0.5 * [1, 2]) with the third key masked: [1, e^0.5] / (1 + e^0.5), e^0.5 = 1.6487212707001282.
  Tensor s = from_vector({1, 2, 3}, {1, 1, 1, 3}, DType::f64, d);
  std::vector<double> p = attention_softmax(s, key_mask_of({1, 1, 0}, 1, 3, DType::u8), 0.5, 0.1, false, g)
                              .to_vector<double>();
  CHECK(p[0] == doctest::Approx(0.37754066879814546).epsilon(1e-14));
  CHECK(p[1] == doctest::Approx(0.62245933120185454).epsilon(1e-14));
  CHECK(p[2] == 0.0);
  CHECK(g.offset == 0);  // eval: nothing drawn
  // Without a mask: softmax(2 * [0, ln 2, ln 3] / 2) = [1, 2, 3] / 6.
  Tensor s2 = from_vector({0, std::log(2.0) * 2, std::log(3.0) * 2}, {1, 1, 1, 3}, DType::f64, d);
  std::vector<double> p2 = attention_softmax(s2, Tensor(), 0.5, 0.0, true, g).to_vector<double>();
  CHECK(p2[0] == doctest::Approx(1.0 / 6).epsilon(1e-14));
  CHECK(p2[1] == doctest::Approx(2.0 / 6).epsilon(1e-14));
  CHECK(p2[2] == doctest::Approx(3.0 / 6).epsilon(1e-14));
  CHECK(g.offset == 0);  // p == 0: nothing drawn, as dropout()

  // Random scores with large magnitudes: every masked key is exactly 0, every row sums to 1, for each mask dtype.
  const int64_t B = 3, H = 2, Tq = 4, Tk = 7;
  Tensor big = test::randn({B, H, Tq, Tk}, 11, DType::f64, d, 40.0);
  std::vector<double> pattern = padding_pattern(B, Tk);
  for (DType mdt : {DType::u8, DType::i32, DType::i64, DType::f32, DType::f64}) {
    INFO("mask dtype " << dtype_name(mdt));
    for (DType dt : {DType::f64, DType::f32}) {
      std::vector<double> pv =
          attention_softmax(big.to(dt), key_mask_of(pattern, B, Tk, mdt), 1.0, 0.0, false, g).to_double_vector();
      int64_t nonzero_masked = 0;
      for (size_t i = 0; i < pv.size(); ++i) {
        const int64_t b = int64_t(i) / (H * Tq * Tk), k = int64_t(i) % Tk;
        nonzero_masked += pattern[size_t(b * Tk + k)] == 0 && pv[i] != 0.0;
      }
      CHECK(nonzero_masked == 0);
      for (double rs : row_sums(from_vector(pv, {B * H * Tq, Tk}, DType::f64)))
        CHECK(rs == doctest::Approx(1.0).epsilon(dt == DType::f64 ? 1e-14 : 1e-6));
    }
  }
  // Nonzero means attend, whatever the value: a float mask of 0.5 or -2 is not truncated to 0.
  Tensor flat = zeros({1, 1, 1, 4}, DType::f64, d);
  std::vector<double> pf =
      attention_softmax(flat, key_mask_of({0.5, 0, -2, 1}, 1, 4, DType::f32), 1.0, 0.0, false, g).to_vector<double>();
  CHECK(pf == std::vector<double>{1.0 / 3, 0.0, 1.0 / 3, 1.0 / 3});
}

TEST_CASE("attention_softmax: a fully masked row is all zeros, with zero gradient") {
  Device d = test::test_device();
  Generator g(3);
  const int64_t B = 2, H = 2, Tq = 3, Tk = 5;
  // Batch 0 attends to keys 0..2; batch 1 to none.
  std::vector<double> km = {1, 1, 1, 0, 0, 0, 0, 0, 0, 0};
  for (DType dt : {DType::f64, DType::f32}) {
    for (bool train : {false, true}) {
      INFO(dtype_name(dt) << (train ? " with dropout" : " without dropout"));
      Tensor s = test::leaf(test::randn({B, H, Tq, Tk}, 21, dt, d));
      Tensor out = attention_softmax(s, key_mask_of(km, B, Tk, DType::i64), 0.3, 0.25, train, g);
      std::vector<double> ov = out.to_double_vector();
      const size_t half = ov.size() / 2;
      for (size_t i = half; i < ov.size(); ++i) CHECK(ov[i] == 0.0);  // no NaN from exp(-inf - -inf)
      if (!train) {
        std::vector<double> sums = row_sums(out.detach());
        for (size_t r = 0; r < sums.size() / 2; ++r) CHECK(sums[r] == doctest::Approx(1.0).epsilon(1e-6));
      }
      out.backward(test::randn({B, H, Tq, Tk}, 22, dt, d));
      std::vector<double> gv = s.grad().to_double_vector();
      for (size_t i = half; i < gv.size(); ++i) CHECK(gv[i] == 0.0);
      for (size_t i = 0; i < half; ++i)
        if (int64_t(i) % Tk >= 3) CHECK(gv[i] == 0.0);  // masked keys of the live batch get no gradient either
    }
  }
}

TEST_CASE("attention_softmax equals mul -> masked_fill -> softmax -> dropout, forward and backward") {
  Device d = test::test_device();
  const int64_t B = 3, H = 2, Tq = 5, Tk = 9;
  std::vector<double> pattern = padding_pattern(B, Tk);
  for (DType dt : {DType::f64, DType::f32}) {
    // f32: the fused kernel rounds the scaled score like mul() and sums in double like softmax(); only the
    // backward's order of rounding differs.
    const double tol = dt == DType::f64 ? 1e-13 : 1e-6;
    for (DType mdt : {DType::u8, DType::i32, DType::i64, DType::f32, DType::f64}) {
      for (double p : {0.0, 0.3}) {
        INFO(dtype_name(dt) << " mask " << dtype_name(mdt) << " p " << p);
        Tensor mask = key_mask_of(pattern, B, Tk, mdt);
        Tensor s1 = test::leaf(test::randn({B, H, Tq, Tk}, 31, dt, d, 3.0));
        Tensor s2 = test::leaf(s1.detach().clone());
        Generator g1(99), g2(99);
        g1.offset = g2.offset = 1000;
        Tensor fused = attention_softmax(s1, mask, 0.125, p, true, g1);
        Tensor ref = unfused(s2, mask, 0.125, p, true, g2);
        CHECK(g1.offset == g2.offset);
        CHECK(g1.offset == (p > 0 ? 1000 + uint64_t(B * H * Tq * Tk) : 1000));
        CHECK_ALLCLOSE(fused, ref, tol, tol);
        Tensor w = test::randn({B, H, Tq, Tk}, 32, dt, d);
        fused.backward(w);
        ref.backward(w);
        CHECK_ALLCLOSE(s1.grad(), s2.grad(), tol, 10 * tol);
      }
    }
    // No mask at all.
    Tensor s = test::randn({B, H, Tq, Tk}, 33, dt, d);
    Generator g1(5), g2(5);
    CHECK_ALLCLOSE(attention_softmax(s, Tensor(), 0.7, 0.5, true, g1), unfused(s, Tensor(), 0.7, 0.5, true, g2), tol,
                   tol);
  }
}

TEST_CASE("attention_softmax: the dropout mask is bernoulli_mask at the generator's (seed, offset)") {
  Device d = test::test_device();
  const Shape shape{2, 3, 4, 50};
  Tensor s = test::randn(shape, 41, DType::f32, d);
  Generator g(2718);
  g.offset = (uint64_t(1) << 32) - 500;  // the counter's high word changes inside this draw
  const uint64_t offset = g.offset;
  Generator eval_g = g;
  Tensor probs = attention_softmax(s, Tensor(), 0.5, 0.4, false, eval_g);
  Tensor out = attention_softmax(s, Tensor(), 0.5, 0.4, true, g);
  std::vector<uint8_t> keep = bernoulli_mask(shape, 0.6, 2718, offset, d).to_vector<uint8_t>();
  std::vector<float> pv = probs.to_vector<float>(), ov = out.to_vector<float>();
  const float scale = float(1.0 / 0.6);
  int64_t bad = 0, kept = 0;
  for (size_t i = 0; i < ov.size(); ++i) {
    bad += ov[i] != (keep[i] ? pv[i] * scale : 0.0f);
    kept += keep[i];
  }
  CHECK(bad == 0);
  CHECK(double(kept) / double(ov.size()) == doctest::Approx(0.6).epsilon(0.1));
  // The next call draws a new mask; replaying (seed, offset) gives the same output.
  CHECK(attention_softmax(s, Tensor(), 0.5, 0.4, true, g).to_vector<float>() != ov);
  Generator replay(2718);
  replay.offset = offset;
  CHECK(attention_softmax(s, Tensor(), 0.5, 0.4, true, replay).to_vector<float>() == ov);
}

TEST_CASE("attention_softmax gradcheck: plain, masked, with dropout") {
  Device d = test::test_device();
  const int64_t B = 2, H = 2, Tq = 3, Tk = 4;
  Tensor s = test::leaf(test::randn({B, H, Tq, Tk}, 51, DType::f64, d, 2.0));
  test::gradcheck([](const std::vector<Tensor>& in) {
    Generator g(0);
    return attention_softmax(in[0], Tensor(), 0.6, 0.0, true, g);
  }, {s});
  // Batch 1 pads its last key; a third batch (below) pads everything.
  Tensor mask = key_mask_of({1, 1, 1, 1, 1, 1, 1, 0}, B, Tk, DType::i64);
  test::gradcheck([](const std::vector<Tensor>& in) {
    Generator g(0);
    return attention_softmax(in[0], in[1], 0.6, 0.0, false, g);
  }, {s, mask});
  // The generator is rebuilt inside fn, so every finite-difference evaluation draws the same mask.
  test::gradcheck([](const std::vector<Tensor>& in) {
    Generator g(123);
    g.offset = 7;
    return attention_softmax(in[0], in[1], 0.6, 0.3, true, g);
  }, {s, mask});
  Tensor s3 = test::leaf(test::randn({3, 1, 2, 5}, 52, DType::f64, d));
  Tensor mask3 = key_mask_of({1, 0, 1, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0}, 3, 5, DType::u8);
  test::gradcheck([](const std::vector<Tensor>& in) {
    Generator g(8);
    return attention_softmax(in[0], in[1], 1.3, 0.5, true, g);
  }, {s3, mask3});
}

TEST_CASE("attention_softmax: awkward shapes") {
  Device d = test::test_device();
  Generator g(4);
  // Tk = 1: the one key gets probability 1 (exactly), or 0 when it is masked.
  Tensor s1 = test::randn({3, 2, 4, 1}, 61, DType::f32, d, 10.0);
  std::vector<float> p1 =
      attention_softmax(s1, key_mask_of({1, 0, 1}, 3, 1, DType::u8), 0.125, 0.0, false, g).to_vector<float>();
  for (size_t i = 0; i < p1.size(); ++i) CHECK(p1[i] == (i / 8 == 1 ? 0.0f : 1.0f));
  // Tk = 1029 (a block per row on the GPU), and rows = 600,000 (beyond one grid of warps on the GPU): the unfused ops
  // agree and rows sum to 1.
  for (Shape shape : {Shape{2, 2, 3, 1029}, Shape{1, 2, 300000, 2}}) {
    INFO("shape " << shape_str(shape));
    Tensor s = test::randn(shape, 62, DType::f32, d, 4.0);
    Tensor mask = key_mask_of(padding_pattern(shape[0], shape[3]), shape[0], shape[3], DType::i32);
    Generator g1(6), g2(6);
    Tensor out = attention_softmax(s, mask, 0.25, 0.1, true, g1);
    CHECK_ALLCLOSE(out, unfused(s, mask, 0.25, 0.1, true, g2), 1e-7, 1e-5);
    Generator g3(6);
    double worst = 0;
    for (double rs : row_sums(attention_softmax(s, mask, 0.25, 0.1, false, g3)))
      worst = std::max(worst, std::fabs(rs - 1.0));
    CHECK(worst < 1e-5);
  }
  // Empty: no batch, no keys, no queries. Shapes come back unchanged and backward runs.
  for (Shape shape : {Shape{0, 2, 3, 4}, Shape{2, 2, 3, 0}, Shape{2, 0, 3, 4}}) {
    INFO("shape " << shape_str(shape));
    Tensor s = test::leaf(zeros(shape, DType::f64, d));
    Tensor out = attention_softmax(s, zeros({shape[0], shape[3]}, DType::u8, d), 1.0, 0.2, true, g);
    CHECK(out.shape() == shape);
    out.backward(zeros(shape, DType::f64, d));
    CHECK(s.grad().shape() == shape);
  }
}

TEST_CASE("attention_softmax: errors") {
  Device d = test::test_device();
  Generator g(0);
  Tensor s = zeros({2, 3, 4, 5}, DType::f32, d);
  CHECK_THROWS_WITH_AS(attention_softmax(zeros({3, 4, 5}, DType::f32, d), Tensor(), 1, 0, false, g),
                       "[attention_softmax] scores must be 4-D [B, H, Tq, Tk], got [3,4,5]", ShapeError);
  CHECK_THROWS_WITH_AS(attention_softmax(s, zeros({2, 4}, DType::u8, d), 1, 0, false, g),
                       "[attention_softmax] key_mask must be [B, Tk] = [2,5] for scores [2,3,4,5], got [2,4]",
                       ShapeError);
  CHECK_THROWS_WITH_AS(attention_softmax(s, zeros({2, 1, 5}, DType::u8, d), 1, 0, false, g),
                       "[attention_softmax] key_mask must be [B, Tk] = [2,5] for scores [2,3,4,5], got [2,1,5]",
                       ShapeError);
  CHECK_THROWS_WITH_AS(attention_softmax(s, zeros({3, 5}, DType::u8, d), 1, 0, false, g),
                       "[attention_softmax] key_mask must be [B, Tk] = [2,5] for scores [2,3,4,5], got [3,5]",
                       ShapeError);
  CHECK_THROWS_WITH_AS(attention_softmax(s, zeros({2, 5}, DType::i16, d), 1, 0, false, g),
                       "[attention_softmax] key_mask must be u8, i32, i64, f32 or f64, got i16", DTypeError);
  CHECK_THROWS_WITH_AS(attention_softmax(zeros({2, 3, 4, 5}, DType::i64, d), Tensor(), 1, 0, false, g),
                       "[attention_softmax] expected an f32 or f64 tensor, got i64", DTypeError);
  CHECK_THROWS_WITH_AS(attention_softmax(s, Tensor(), 1, 1.0, true, g),
                       "[attention_softmax] dropout_p must be in [0, 1), got 1", ValueError);
  CHECK_THROWS_WITH_AS(attention_softmax(s, Tensor(), 1, -0.1, false, g),
                       "[attention_softmax] dropout_p must be in [0, 1), got -0.1", ValueError);
  CHECK_THROWS_AS(attention_softmax(s, Tensor(), 1, std::nan(""), true, g), ValueError);
  CHECK_THROWS_WITH_AS(attention_softmax(s, Tensor(), kInf, 0, false, g),
                       "[attention_softmax] scale must be finite, got inf", ValueError);
  CHECK(g.offset == 0);  // a rejected call draws nothing
  if (test::have_cuda() && d.is_cpu())
    CHECK_THROWS_AS(attention_softmax(s, zeros({2, 5}, DType::u8, Device::cuda()), 1, 0, false, g), DeviceError);
}

// ---- CPU vs CUDA ---------------------------------------------------------------------------------------------------
TEST_CASE("attention_softmax CPU-vs-CUDA parity, every row path and mask dtype") {
  auto fn = [](const std::vector<Tensor>& in) {
    Generator g(31337);
    g.offset = 12345;
    return attention_softmax(in[0], in[1], 0.125, 0.1, true, g);
  };
  auto no_drop = [](const std::vector<Tensor>& in) {
    Generator g(1);
    return attention_softmax(in[0], in[1], 0.3, 0.0, false, g);
  };
  // Tk: one value per lane, 4/8/16/32 registers per lane of a warp, block rows with 8/16/32 registers, block rows read
  // three times (> 8192), and a B*H*Tq beyond one grid of warps.
  for (Shape shape : {Shape{2, 2, 3, 1}, Shape{2, 3, 5, 7}, Shape{2, 2, 4, 100}, Shape{1, 2, 3, 250},
                      Shape{1, 2, 3, 500}, Shape{2, 1, 3, 1024}, Shape{2, 1, 3, 1029}, Shape{1, 1, 2, 3000},
                      Shape{1, 1, 2, 8192}, Shape{2, 1, 2, 9001}, Shape{1, 2, 300000, 3}, Shape{0, 2, 3, 4}}) {
    INFO("shape " << shape_str(shape));
    Tensor s = test::leaf(test::randn(shape, 71, DType::f32, Device::cpu(), 3.0));
    Tensor mask = from_vector(padding_pattern(shape[0], shape[3]), {shape[0], shape[3]}, DType::u8);
    test::check_parity(fn, {s, mask}, 2e-5, 2e-4);
    test::check_parity(no_drop, {s, Tensor()}, 2e-5, 2e-4);
  }
  Tensor s = test::leaf(test::randn({3, 2, 4, 33}, 72, DType::f32, Device::cpu()));
  std::vector<double> pattern = padding_pattern(3, 33);
  pattern[33 * 2 + 0] = 0;  // batch 2 keeps a hole at key 0 as well
  for (DType mdt : {DType::u8, DType::i32, DType::i64, DType::f32, DType::f64}) {
    INFO("mask dtype " << dtype_name(mdt));
    test::check_parity(fn, {s, from_vector(pattern, {3, 33}, mdt)}, 2e-5, 2e-4);
  }
  // A fully masked batch: zeros on both backends, not NaN.
  test::check_parity(fn, {s, zeros({3, 33}, DType::i64)}, 0, 0);
  // float64 runs on the GPU too.
  Tensor sd = test::leaf(test::randn({2, 2, 3, 40}, 73, DType::f64, Device::cpu()));
  test::check_parity(fn, {sd, from_vector(padding_pattern(2, 40), {2, 40}, DType::i32)}, 1e-12, 1e-10);
}

TEST_CASE("attention_softmax: CUDA drops the same elements as the CPU and as dropout() on the GPU") {
  if (!test::have_cuda()) return;
  const Shape shape{2, 4, 33, 130};
  Tensor s = test::randn(shape, 81, DType::f32);
  Tensor mask = from_vector(padding_pattern(2, 130), {2, 130}, DType::u8);
  Generator gc(42), gg(42), gu(42);
  gc.offset = gg.offset = gu.offset = (uint64_t(1) << 32) - 1000;
  std::vector<float> cpu = attention_softmax(s, mask, 0.2, 0.5, true, gc).to_vector<float>();
  Tensor sg = s.to(Device::cuda()), mg = mask.to(Device::cuda());
  std::vector<float> gpu = attention_softmax(sg, mg, 0.2, 0.5, true, gg).to_vector<float>();
  std::vector<float> ref = unfused(sg, mg, 0.2, 0.5, true, gu).to_vector<float>();
  REQUIRE(cpu.size() == gpu.size());
  int64_t differ_cpu = 0, differ_ref = 0;
  for (size_t i = 0; i < cpu.size(); ++i) {
    differ_cpu += (cpu[i] == 0) != (gpu[i] == 0);
    differ_ref += (ref[i] == 0) != (gpu[i] == 0);
  }
  CHECK(differ_cpu == 0);
  CHECK(differ_ref == 0);
  CHECK(gc.offset == gg.offset);
  CHECK(gg.offset == gu.offset);
}
