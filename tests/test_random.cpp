// test_random.cpp — Philox4x32-10 known answers, Generator offsets, uniform_/normal_/bernoulli_mask statistics and
// reproducibility, and bit-exact CPU-vs-CUDA streams. Not the dropout op (tests/test_embedding.cpp).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>

#include "engine/philox.h"
#include "engine/random.h"
#include "tests/test_util.h"

using namespace ep;

TEST_CASE("philox4x32_10 matches the Random123 known-answer vectors") {
  // The three "philox4x32 10" lines of Random123's tests/kat_vectors (github.com/DEShawResearch/random123; found
  // reproduced verbatim in several public Philox ports). Columns: CTR (4 words), KEY (2 words), EXPECTED (4 words).
  //   philox4x32 10 00000000 00000000 00000000 00000000 00000000 00000000   6627e8d5 e169c58d bc57ac4c 9b00dbd8
  //   philox4x32 10 ffffffff ffffffff ffffffff ffffffff ffffffff ffffffff   408f276d 41c83b0e a20bc7c6 6d5451fd
  //   philox4x32 10 243f6a88 85a308d3 13198a2e 03707344 a4093822 299f31d0   d16cfe09 94fdcceb 5001e420 24126ea1
  struct Kat { uint32_t ctr[4], key[2], out[4]; };
  const Kat kats[] = {
      {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
      {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu},
       {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
      {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u},
       {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
  };
  for (const Kat& k : kats) {
    Philox4 r = philox4x32_10(Philox4{{k.ctr[0], k.ctr[1], k.ctr[2], k.ctr[3]}}, k.key[0], k.key[1]);
    for (int j = 0; j < 4; ++j) CHECK(r.v[j] == k.out[j]);
  }
  // philox_block(seed, offset, i) is the counter (offset + i) in words 0-1 with the seed as key: with seed 0 and
  // counter 0 it is the all-zero vector above.
  Philox4 z = philox_block(0, 0, 0);
  CHECK(z.v[0] == 0x6627e8d5u);
  CHECK(z.v[3] == 0x9b00dbd8u);
  // 0x6627e8d5 >> 8 = 0x6627e8 = 6694888 -> 6694888 / 2^24
  CHECK(philox_uniform(0, 0, 0) == float(6694888.0 / 16777216.0));
}

TEST_CASE("generator offsets: draws advance by numel and (seed, offset) replays a stream") {
  Generator g(7);
  Tensor a = empty({10, 3}, DType::f32);
  uniform_(a, 0, 1, g);
  CHECK(g.offset == 30);
  Tensor b = empty({5}, DType::f32);
  uniform_(b, 0, 1, g);
  CHECK(g.offset == 35);
  // A generator at offset 30 replays b; drawing 35 at once gives a then b.
  Generator h(7);
  h.offset = 30;
  Tensor b2 = empty({5}, DType::f32);
  uniform_(b2, 0, 1, h);
  CHECK(b2.to_vector<float>() == b.to_vector<float>());
  Generator k(7);
  Tensor ab = empty({35}, DType::f32);
  uniform_(ab, 0, 1, k);
  std::vector<float> v = ab.to_vector<float>(), va = a.to_vector<float>(), vb = b.to_vector<float>();
  CHECK(std::vector<float>(v.begin(), v.begin() + 30) == va);
  CHECK(std::vector<float>(v.begin() + 30, v.end()) == vb);
  // Another seed gives another stream.
  Generator other(8);
  Tensor c = empty({10, 3}, DType::f32);
  uniform_(c, 0, 1, other);
  CHECK(c.to_vector<float>() != va);
  // Empty tensors draw nothing.
  Tensor e = empty({0, 4}, DType::f32);
  uniform_(e, 0, 1, g);
  CHECK(g.offset == 35);
}

TEST_CASE("manual_seed resets the default generator") {
  Generator saved = default_generator();
  manual_seed(123);
  Tensor a = empty({16}, DType::f64);
  normal_(a, 0, 1, default_generator());
  CHECK(default_generator().seed == 123);
  CHECK(default_generator().offset == 16);
  manual_seed(123);
  Tensor b = empty({16}, DType::f64);
  normal_(b, 0, 1, default_generator());
  CHECK(a.to_vector<double>() == b.to_vector<double>());
  default_generator() = saved;
}

static void moments(const std::vector<double>& v, double& mean, double& var) {
  mean = 0;
  for (double x : v) mean += x;
  mean /= double(v.size());
  var = 0;
  for (double x : v) var += (x - mean) * (x - mean);
  var /= double(v.size() - 1);
}

TEST_CASE("uniform_ and normal_: range, mean and variance over 100k draws") {
  const int64_t n = 100000;
  Device dev = test::test_device();
  for (DType dt : {DType::f32, DType::f64}) {
    INFO("dtype " << dtype_name(dt));
    Generator g(2024);
    Tensor u = empty({n}, dt, dev);
    uniform_(u, -2, 3, g);
    std::vector<double> uv = u.to_double_vector();
    double lo = 1e9, hi = -1e9;
    for (double x : uv) { lo = std::min(lo, x); hi = std::max(hi, x); }
    CHECK(lo >= -2);
    CHECK(hi < 3);
    double m, var;
    moments(uv, m, var);
    // U(-2,3): mean 0.5, variance 25/12. The standard error of the mean is sqrt(25/12/1e5) ~ 0.0046.
    CHECK(std::fabs(m - 0.5) < 0.025);
    CHECK(std::fabs(var - 25.0 / 12.0) < 0.03);

    Tensor z = empty({n}, dt, dev);
    normal_(z, 1.5, 2.0, g);
    std::vector<double> zv = z.to_double_vector();
    moments(zv, m, var);
    // N(1.5, 4): standard error of the mean 2/sqrt(1e5) ~ 0.0063, of the variance ~ 4*sqrt(2/1e5) ~ 0.018.
    CHECK(std::fabs(m - 1.5) < 0.035);
    CHECK(std::fabs(var - 4.0) < 0.1);
    // About 68.27% within one standard deviation.
    int64_t inside = 0;
    for (double x : zv) inside += std::fabs(x - 1.5) < 2.0;
    CHECK(std::fabs(double(inside) / double(n) - 0.6827) < 0.01);
  }
}

TEST_CASE("bernoulli_mask keep-rate, edge probabilities and reproducibility") {
  Device dev = test::test_device();
  const int64_t n = 100000;
  for (double p : {0.1, 0.5, 0.9}) {
    Tensor m = bernoulli_mask({n}, p, 99, 0, dev);
    CHECK(m.dtype() == DType::u8);
    std::vector<uint8_t> v = m.to_vector<uint8_t>();
    int64_t kept = 0, bad = 0;
    for (uint8_t x : v) {
      bad += x > 1;
      kept += x;
    }
    CHECK(bad == 0);
    // binomial standard deviation sqrt(p(1-p)/n) <= 0.0016
    CHECK(std::fabs(double(kept) / double(n) - p) < 0.008);
  }
  std::vector<uint8_t> all = bernoulli_mask({1000}, 1.0, 5, 0, dev).to_vector<uint8_t>();
  std::vector<uint8_t> none = bernoulli_mask({1000}, 0.0, 5, 0, dev).to_vector<uint8_t>();
  CHECK(all == std::vector<uint8_t>(1000, 1));
  CHECK(none == std::vector<uint8_t>(1000, 0));
  // Same (seed, offset) -> same mask; element i of a mask at offset o equals element o + i of one at offset 0.
  std::vector<uint8_t> a = bernoulli_mask({3, 7}, 0.5, 11, 40, dev).to_vector<uint8_t>();
  std::vector<uint8_t> b = bernoulli_mask({21}, 0.5, 11, 40, dev).to_vector<uint8_t>();
  std::vector<uint8_t> c = bernoulli_mask({61}, 0.5, 11, 0, dev).to_vector<uint8_t>();
  CHECK(a == b);
  CHECK(a == std::vector<uint8_t>(c.begin() + 40, c.end()));
  CHECK(bernoulli_mask({0}, 0.5, 1, 0, dev).numel() == 0);
}

TEST_CASE("random fills reject bad arguments with typed errors") {
  Generator g(1);
  Tensor i = empty({4}, DType::i32);
  CHECK_THROWS_WITH_AS(uniform_(i, 0, 1, g), "[uniform_] unsupported dtype i32 (expected f32 or f64)", DTypeError);
  CHECK_THROWS_WITH_AS(normal_(i, 0, 1, g), "[normal_] unsupported dtype i32 (expected f32 or f64)", DTypeError);
  Tensor f = empty({4}, DType::f32);
  CHECK_THROWS_WITH_AS(uniform_(f, 2, 1, g), "[uniform_] expected finite low <= high, got low 2, high 1", ValueError);
  CHECK_THROWS_WITH_AS(normal_(f, 0, -1, g), "[normal_] expected finite mean and std >= 0, got mean 0, std -1",
                       ValueError);
  CHECK_THROWS_WITH_AS(bernoulli_mask({4}, 1.5, 0, 0, Device::cpu()),
                       "[bernoulli_mask] p_keep must be in [0,1], got 1.5", ValueError);
  CHECK(g.offset == 0);  // failed calls reserve nothing
}

template <class T> static bool bit_equal(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

TEST_CASE("CPU and CUDA draw bit-identical streams") {
  if (!test::have_cuda()) return;
  const Shape shape{1029, 917};  // odd size: not a multiple of any block size
  for (uint64_t offset : {uint64_t(0), uint64_t(123456789), (uint64_t(1) << 32) - 5}) {
    INFO("offset " << offset);
    Generator gc(0x1234567887654321ull), gg(0x1234567887654321ull);
    gc.offset = gg.offset = offset;
    Tensor uc = empty(shape, DType::f32), ug = empty(shape, DType::f32, Device::cuda());
    uniform_(uc, -0.5, 0.25, gc);
    uniform_(ug, -0.5, 0.25, gg);
    CHECK(bit_equal(uc.to_vector<float>(), ug.to_vector<float>()));
    Tensor dc = empty(shape, DType::f64), dg = empty(shape, DType::f64, Device::cuda());
    uniform_(dc, -3, 7, gc);
    uniform_(dg, -3, 7, gg);
    CHECK(bit_equal(dc.to_vector<double>(), dg.to_vector<double>()));
    CHECK(bit_equal(bernoulli_mask(shape, 0.3, gc.seed, offset, Device::cpu()).to_vector<uint8_t>(),
                    bernoulli_mask(shape, 0.3, gg.seed, offset, Device::cuda()).to_vector<uint8_t>()));
    // Normals go through log/cos, which libm and CUDA round independently (both within 1-2 ulp in double). Rounded
    // to f32 that error almost never shows (it must straddle an f32 rounding boundary, ~1e-8 per element), so f32
    // streams must agree to one ulp and exactly in all but a handful of elements; f64 to a few ulp.
    Tensor nc = empty(shape, DType::f32), ng = empty(shape, DType::f32, Device::cuda());
    normal_(nc, 0.5, 2, gc);
    normal_(ng, 0.5, 2, gg);
    std::vector<float> a = nc.to_vector<float>(), b = ng.to_vector<float>();
    int64_t differ = 0;
    for (size_t i = 0; i < a.size(); ++i) differ += a[i] != b[i];
    CHECK_ALLCLOSE(ng, nc, 1e-6, 2.5e-7);
    CHECK(differ <= 3);
    Tensor mc = empty(shape, DType::f64), mg = empty(shape, DType::f64, Device::cuda());
    normal_(mc, 0.5, 2, gc);
    normal_(mg, 0.5, 2, gg);
    CHECK_ALLCLOSE(mg, mc, 1e-14, 1e-14);
    CHECK(gc.offset == gg.offset);
  }
}
