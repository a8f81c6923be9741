// test_compress_methods.cpp — the round-trip laws of every compression method (issue 5 "Tests"): error bounds from
// steps the test computes itself, exact grid points, equal-count buckets, exact top-k, monotone k-means, exact
// low rank, the OCP FP8 grids checked by hand, unbiased stochastic rounding; edge cases and the error statistics.
// Not the wire format (test_compress_format.cpp) nor the autograd op (test_compress_layer.cpp).
#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

#include "compress/bitpack.h"
#include "compress/fp8.h"
#include "compress/quant_math.h"
#include "compress/method_util.h"
#include "compress/methods.h"
#include "compress/stats.h"
#include "tests/test_util.h"

using namespace ep;
using namespace ep::compress;

namespace {

std::vector<double> values(const Tensor& t) { return t.to_double_vector(); }

Tensor round_trip(const std::string& spec, const Tensor& x) {
  auto c = parse_compressor(spec);
  return c->decode(c->encode(x));
}

std::vector<uint32_t> codes_of(const Payload& p, int bits) {
  std::vector<uint32_t> c(size_t(p.numel()));
  for (size_t i = 0; i < c.size(); ++i) c[i] = unpack_code(p.codes.data(), p.codes.size(), i, bits);
  return c;
}

double sse(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += (a[i] - b[i]) * (a[i] - b[i]);
  return s;
}

}  // namespace

// ---- quant ----------------------------------------------------------------------------------------------------------

TEST_CASE("compress quant: error <= step/2 for every width, grid points and constants come back exactly") {
  Tensor x = test::randn({8, 3, 11}, 1, DType::f32, Device::cpu(), 3.0);
  const std::vector<double> xv = values(x);
  const double lo = *std::min_element(xv.begin(), xv.end()), hi = *std::max_element(xv.begin(), xv.end());
  for (int b = 1; b <= 16; ++b) {
    INFO("bits " << b);
    const double step = (hi - lo) / double((1 << b) - 1);
    const std::vector<double> y = values(round_trip("quant:bits=" + std::to_string(b), x));
    double worst = 0;
    for (size_t i = 0; i < xv.size(); ++i) worst = std::max(worst, std::fabs(xv[i] - y[i]));
    CHECK(worst <= step / 2 * (1 + 1e-5) + 1e-6);
  }
  for (int b : {1, 2, 5, 8, 12, 16}) {  // integers 0..2^b-1 are the grid itself (min 0, step 1)
    INFO("grid bits " << b);
    const int64_t n = std::min<int64_t>(int64_t(1) << b, 5000);
    std::vector<double> g(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) g[size_t(i)] = double((i * 7919) % n);
    g[0] = 0;
    g[1 % size_t(n)] = double((int64_t(1) << b) - 1);
    Tensor t = from_vector(g, {n});
    CHECK(values(round_trip("quant:bits=" + std::to_string(b), t)) == values(t));
  }
  Tensor constant = full({4, 5}, -2.75);
  CHECK(values(round_trip("quant:bits=3", constant)) == values(constant));
  CHECK(values(round_trip("quant:bits=3,per=channel", constant)) == values(constant));
}

TEST_CASE("compress quant: per-channel steps follow each channel's own range") {
  // x [2, 2, 2] with channels on dim 1: channel 0 = {0, 1, 4, 5} + offsets, channel 1 spans 1000x more.
  Tensor x = from_vector({0.0, 0.3, 10, 700, 1.0, 0.9, -200, 1000}, {2, 2, 2});
  const std::vector<double> xv = values(x);
  const std::vector<double> y = values(round_trip("quant:bits=4,per=channel", x));
  // channel 0: elements 0,1,4,5 range [0, 1] -> step 1/15; channel 1: elements 2,3,6,7 range [-200, 1000] -> 80
  for (size_t i : {0, 1, 4, 5}) CHECK(std::fabs(xv[i] - y[i]) <= 0.5 / 15 + 1e-6);
  for (size_t i : {2, 3, 6, 7}) CHECK(std::fabs(xv[i] - y[i]) <= 40 * (1 + 1e-6));
  // per tensor the small channel collapses to one level: 0.3 and 0.9 both decode to the same value
  const std::vector<double> t = values(round_trip("quant:bits=4", x));
  CHECK(t[1] == t[5]);
  // axis=2 picks the last dim; a 1-D tensor uses its only dim
  CHECK(parse_compressor("quant:per=channel,axis=2")->encode(x).table.size() == 4);
  CHECK(parse_compressor("quant:per=channel")->encode(from_vector({1, 2, 3}, {3})).table.size() == 6);
  CHECK_THROWS_AS(parse_compressor("quant:per=channel,axis=5")->encode(x), ShapeError);
}

TEST_CASE("compress quant: stochastic rounding is unbiased and nearest rounding is not") {
  // bits 2 on [0, 3]: step 1; 0.3 -> nearest 0 always, stochastic 1 with probability 0.3.
  Tensor x = from_vector({0, 3, 0.3, 1.7, 2.5, 0.05, 2.95, 1.5}, {8});
  const std::vector<double> xv = values(x);
  auto c = parse_compressor("quant:bits=2,round=stochastic,seed=9");
  const int draws = 4000;
  std::vector<double> mean(xv.size(), 0.0);
  for (int d = 0; d < draws; ++d) {
    const std::vector<double> y = values(c->decode(c->encode(x)));
    for (size_t i = 0; i < y.size(); ++i) {
      CHECK_MESSAGE((y[i] == std::floor(xv[i]) || y[i] == std::ceil(xv[i])), "not a neighbouring grid point");
      mean[i] += y[i] / draws;
    }
  }
  // The mean of Bernoulli draws: standard deviation <= 0.5 / sqrt(draws) = 0.0079; allow 5 of them.
  for (size_t i = 0; i < xv.size(); ++i) CHECK(std::fabs(mean[i] - xv[i]) < 0.04);
  CHECK(values(round_trip("quant:bits=2", x))[2] == 0.0);
}

TEST_CASE("compress quant: the CPU encoder's codes and decoded values are the scalar rules', element by element") {
  // The CPU encoder computes levels as vector selects (compress/quant.cpp) and the decoder through blocks; the
  // scalar rules both must equal are quant_level and min_step_entry (compress/quant_math.h), which the CUDA kernels
  // share. Each case holds exact ties (k + 1/2 steps), their neighbours one ulp away, -0 and ragged lengths.
  std::mt19937_64 rng(5);
  auto check = [&](const Tensor& x, const std::string& spec, int64_t channels, int64_t inner) {
    INFO(spec << " on " << shape_str(x.shape()) << " " << std::string(dtype_name(x.dtype())));
    auto c = parse_compressor(spec);
    const Payload p = c->encode(x);
    const int bits = int(p.params[0]);
    const uint32_t levels = (1u << bits) - 1;
    const bool zero_exact = spec.find("zero=exact") != std::string::npos;
    const std::vector<double> xv = values(x);
    const int64_t C = std::max<int64_t>(channels, 1);
    std::vector<double> lo(size_t(C), INFINITY), hi(size_t(C), -INFINITY);  // the extremes by a plain loop
    for (size_t i = 0; i < xv.size(); ++i) {
      const size_t ch = size_t((int64_t(i) / inner) % C);
      lo[ch] = std::min(lo[ch], xv[i]);
      hi[ch] = std::max(hi[ch], xv[i]);
    }
    for (int64_t ch = 0; ch < C; ++ch) {
      float mn, st;
      quant_entry(lo[size_t(ch)], hi[size_t(ch)], levels, zero_exact, &mn, &st);
      REQUIRE(std::bit_cast<uint32_t>(p.table[size_t(2 * ch)]) == std::bit_cast<uint32_t>(mn));
      REQUIRE(std::bit_cast<uint32_t>(p.table[size_t(2 * ch + 1)]) == std::bit_cast<uint32_t>(st));
    }
    const std::vector<uint32_t> codes = codes_of(p, bits);
    const std::vector<double> y = values(c->decode(p));
    for (size_t i = 0; i < xv.size(); ++i) {
      const size_t ch = size_t((int64_t(i) / inner) % C);
      const double mn = p.table[2 * ch], st = p.table[2 * ch + 1];
      REQUIRE(codes[i] == quant_level(xv[i], mn, st, levels, -1.0));
      const double want = mn + double(codes[i]) * st;
      REQUIRE(y[i] == (x.dtype() == DType::f32 ? double(float(want)) : want));
    }
  };
  auto with_ties = [&](int64_t n, int bits, DType dt) {  // on [0, 2^b - 1] the step is 1: k + 0.5 are exact ties
    const double top = double((int64_t(1) << bits) - 1);
    std::vector<double> v(static_cast<size_t>(n));
    std::uniform_real_distribution<double> u(0.0, top);
    auto ulp_away = [&](double t, double toward) {  // the neighbour of t in the tensor's own type
      return dt == DType::f32 ? double(std::nextafter(float(t), float(toward))) : std::nextafter(t, toward);
    };
    for (auto& e : v) {
      const double k = std::floor(u(rng));
      switch (rng() % 5) {
        case 0: e = k + 0.5; break;
        case 1: e = ulp_away(k + 0.5, -1.0); break;
        case 2: e = ulp_away(k + 0.5, top + 1); break;
        case 3: e = -0.0; break;
        default: e = dt == DType::f32 ? double(float(u(rng))) : u(rng);
      }
    }
    v[0] = 0.0;
    v[size_t(n - 1)] = top;
    return from_vector(v, {n}, dt);
  };
  for (DType dt : {DType::f32, DType::f64}) {
    for (int bits : {1, 2, 3, 4, 5, 8, 11, 16}) {
      for (int64_t n : {int64_t(1), int64_t(2), int64_t(9), int64_t(2048), int64_t(3 * 2048 + 13), int64_t(70001)})
        check(with_ties(n, bits, dt), "quant:bits=" + std::to_string(bits), 1, 1);
      const std::string b = std::to_string(bits);
      check(test::randn({3, 5, 37}, uint64_t(bits), dt, Device::cpu(), 4.0), "quant:bits=" + b, 1, 1);
      check(test::randn({6, 5, 37, 11}, uint64_t(bits), dt), "quant:per=channel,bits=" + b, 5, 37 * 11);
      check(test::randn({7, 9}, uint64_t(bits), dt), "quant:per=channel,axis=1,bits=" + b, 9, 1);
      check(test::randn({13, 300}, uint64_t(bits), dt), "quant:per=channel,axis=0,bits=" + b, 13, 300);
      check(test::randn({3, 5, 37}, uint64_t(bits), dt), "quant:zero=exact,bits=" + b, 1, 1);
      check(test::randn({6, 5, 37, 11}, uint64_t(bits), dt), "quant:zero=exact,per=channel,bits=" + b, 5, 37 * 11);
    }
  }
  // f64 whose minimum is not an f32: the table's min is the rounded one, so some t are a little negative.
  check(from_vector({1 + 1e-9, 1 + 1.05e-9, 1 + 1.1e-9, 1 + 1.02e-9}, {4}), "quant:bits=8", 1, 1);
  check(full({4099}, -0.0), "quant:bits=4", 1, 1);  // a constant: step 0, every code 0
}

TEST_CASE("compress quant zero=exact: a hand-computed grid, exact zeros decode to 0, every element within step/2") {
  // By hand: x = {-1, 0, 1.5} at 2 bits, step 2.5 / 3 = 5/6. The seeds' grid (zero=free) is -1 + k * 5/6, whose
  // nearest level to 0 is -1/6. zero=exact rounds 5/6 up to 22 significant bits and puts level rint(1 / (5/6)) = 1 on
  // 0: the grid {-5/6, 0, 5/6, 5/3}, so -1 -> -5/6 and 1.5 -> 5/3, each 1/6 away, within half a step.
  const Tensor hand = from_vector({-1.0, 0.0, 1.5}, {3}, DType::f64);
  CHECK(values(round_trip("quant:bits=2", hand))[1] == doctest::Approx(-1.0 / 6).epsilon(1e-6));
  const std::vector<double> yh = values(round_trip("quant:bits=2,zero=exact", hand));
  CHECK(yh[0] == doctest::Approx(-5.0 / 6).epsilon(1e-6));
  CHECK(yh[1] == 0.0);
  CHECK(yh[2] == doctest::Approx(5.0 / 3).epsilon(1e-6));

  // A ReLU's gradient: half exact zeros (of both signs), the rest normal. Every zero decodes to 0, at any width, in
  // f32 and f64, per tensor and per channel, nearest and stochastic; every element stays within step/2 (nearest) or
  // one step (stochastic) of itself, and the step is min-max's (hi - lo) / levels rounded up by less than 2^(b - 23).
  std::mt19937_64 rng(11);
  for (DType dt : {DType::f32, DType::f64}) {
    for (int bits = 1; bits <= 16; ++bits) {
      for (const std::string mode : {"", ",per=channel", ",round=stochastic,seed=4"}) {
        const std::string spec = "quant:zero=exact,bits=" + std::to_string(bits) + mode;
        INFO(spec << " " << std::string(dtype_name(dt)));
        std::vector<double> v = values(test::randn({4, 3, 50}, uint64_t(bits), DType::f64, Device::cpu(), 3.0));
        for (size_t i = 0; i < v.size(); ++i)
          if (rng() % 2) v[i] = rng() % 2 ? 0.0 : -0.0;
        const Tensor x = from_vector(v, {4, 3, 50}, dt);
        const std::vector<double> xv = values(x);
        auto c = parse_compressor(spec);
        const Payload p = c->encode(x);
        const std::vector<double> y = values(c->decode(p));
        const bool per_channel = p.params[1] != 0;
        const double levels = double((1u << bits) - 1);
        for (int64_t ch = 0; ch < (per_channel ? 3 : 1); ++ch) {
          double lo = INFINITY, hi = -INFINITY;
          for (size_t i = 0; i < xv.size(); ++i)
            if (!per_channel || int64_t(i / 50 % 3) == ch) lo = std::min(lo, xv[i]), hi = std::max(hi, xv[i]);
          REQUIRE(lo < 0);
          REQUIRE(hi > 0);
          const double st = p.table[size_t(2 * ch + 1)], delta = (hi - lo) / levels;
          CHECK(st >= delta);
          CHECK(st < delta * (1 + std::ldexp(1.0, bits - 23)));
          const double bound = (mode.find("stochastic") != std::string::npos ? st : st / 2) * (1 + 1e-12) +
                               (dt == DType::f32 ? std::ldexp(std::fabs(hi) + std::fabs(lo), -23) : 0.0);
          for (size_t i = 0; i < xv.size(); ++i) {
            if (per_channel && int64_t(i / 50 % 3) != ch) continue;
            if (xv[i] == 0) REQUIRE(y[i] == 0.0);
            REQUIRE(std::fabs(y[i] - xv[i]) <= bound);
          }
        }
      }
    }
  }
  // A range that does not straddle 0 takes min-max's entry: a ReLU's output (its zeros are the minimum) or all < 0.
  for (const Tensor& x : {from_vector({0.0, 0.5, 3.0, 0.0}, {4}), from_vector({-4.0, -0.25, -1.0}, {3})}) {
    const Payload a = parse_compressor("quant:bits=4")->encode(x);
    const Payload b = parse_compressor("quant:bits=4,zero=exact")->encode(x);
    CHECK(a.table == b.table);
    CHECK(a.codes == b.codes);
  }
}

TEST_CASE("compress stats: bias shows min-max's shared offset on a ReLU's gradient, and zero=exact removes it") {
  // By hand: 4 bits on [-1, 2.2] give step 3.2 / 15 = 0.21333..., and 0 sits at 4.6875 steps, so the seeds' grid moves
  // every zero to level 5, 0.0667 = 0.3125 steps up. Half the elements are zeros; the rest spread over the range, each
  // off by up to half a step either way (rms step / sqrt(12)). bias = mean / rms of the error is then about
  // (0.0667 / 2) / sqrt(0.0667^2 / 2 + 0.2133^2 / 24) = 0.52. zero=exact's grid (level 5 on 0) leaves the zeros
  // exact and the rest unbiased: the error's power halves, 3.4 dB of SNR, which alone would not say why.
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<double> u(-1.0, 2.2);
  std::vector<double> v(20000);
  for (size_t i = 0; i < v.size(); ++i) v[i] = i % 2 ? u(rng) : 0.0;
  v[1] = -1.0;
  v[3] = 2.2;
  const Tensor x = from_vector(v, {int64_t(v.size())}, DType::f64);
  auto stats_of = [&](const std::string& spec) {
    auto c = parse_compressor(spec);
    const Payload p = c->encode(x);
    return compute_stats(x, c->decode(p), p.bytes());
  };
  const CompressionStats free = stats_of("quant:bits=4"), exact = stats_of("quant:bits=4,zero=exact");
  CHECK(free.mean_err == doctest::Approx(0.0667 / 2).epsilon(0.05));
  CHECK(free.bias == doctest::Approx(0.52).epsilon(0.05));
  CHECK(std::fabs(exact.bias) < 0.03);  // about 1/sqrt(10,000) for the unbiased rest
  CHECK(exact.snr_db - free.snr_db == doctest::Approx(3.37).epsilon(0.05));  // 10 log10(0.00412 / 0.00190)
}

// ---- sortquant ----------------------------------------------------------------------------------------------------

TEST_CASE("compress sortquant exact: equal-count ordered buckets and every element within its bucket's step/2") {
  for (int64_t n : {1000, 1003, 64, 10007}) {
    const int b = 3, s = 2, K = 4;
    Tensor x = test::randn({n}, uint64_t(n), DType::f32, Device::cpu(), 2.0);
    const std::vector<double> xv = values(x);
    auto c = parse_compressor("sortquant:bits=3,split=2");
    const Payload p = c->encode(x);
    const std::vector<uint32_t> codes = codes_of(p, b + s);
    std::vector<int64_t> count(K, 0);
    std::vector<double> lo(K, 1e300), hi(K, -1e300);
    for (size_t i = 0; i < codes.size(); ++i) {
      const uint32_t k = codes[i] >> b;
      ++count[k];
      lo[k] = std::min(lo[k], xv[i]);
      hi[k] = std::max(hi[k], xv[i]);
    }
    INFO("n " << n);
    for (int k = 0; k < K; ++k) CHECK(count[size_t(k)] == n / K + (k < n % K ? 1 : 0));  // torch.tensor_split
    for (int k = 0; k + 1 < K; ++k) CHECK(hi[size_t(k)] <= lo[size_t(k + 1)]);
    const std::vector<double> y = values(c->decode(p));
    for (size_t i = 0; i < xv.size(); ++i) {
      const uint32_t k = codes[i] >> b;
      const double step = (hi[k] - lo[k]) / double((1 << b) - 1);
      REQUIRE(std::fabs(xv[i] - y[i]) <= step / 2 * (1 + 1e-5) + 1e-7);
    }
  }
}

TEST_CASE("compress sortquant exact: ties are cut by index, as a stable sort orders them (-0 equal to +0)") {
  // Values with many ties (one decimal), and signed zeros; the reference is a stable sort by value written here:
  // rank r goes to bucket k when r falls in torch.tensor_split's k-th range (sizes n/K, the first n%K one larger).
  // The encoder finds the cut keys by a histogram and a selection in the cut's bin, then counts each element's cuts:
  // one chunk and several (over 65,536 elements, in parallel), a cut in a bin of one repeated key (the zeros), keys
  // found once, three times or thousands of times, more buckets than elements, 2^11 buckets, f32 and f64 keys.
  for (DType dt : {DType::f32, DType::f64}) {
    for (int64_t n : {1003, 40, 5, 20011, 70001}) {
      for (int split : {1, 2, 3, 6, 11}) {
        const int64_t K = int64_t(1) << split;
        std::vector<double> xv = values(test::randn({n}, uint64_t(7 * n + split), DType::f64, Device::cpu(), 1.5));
        for (size_t i = 0; i < xv.size(); ++i) xv[i] = i % 7 == 0 ? (i % 2 ? -0.0 : 0.0) : std::round(xv[i] * 10) / 10;
        if (n == 70001)  // a second kind: few ties, values spread over many binades and both signs
          for (size_t i = 1; i < xv.size(); i += 2) xv[i] = std::ldexp(xv[i] + 0.01 * double(i % 97), int(i % 41) - 20);
        if (n == 20011)  // a third: every value three times, as a pooling's gradient repeats its input's
          for (size_t i = 0; i < xv.size(); ++i) xv[i] = 1e-3 * double((i / 3 * 7919) % 6007) - 3.0;
        if (dt == DType::f32)
          for (double& v : xv) v = double(float(v));
        const Tensor x = from_vector(xv, {n}, dt);
        std::vector<int64_t> order(static_cast<size_t>(n));
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return xv[a] < xv[b]; });
        std::vector<uint32_t> expect(static_cast<size_t>(n));
        int64_t r = 0;
        for (int64_t k = 0; k < K; ++k)
          for (int64_t c = 0; c < n / K + (k < n % K ? 1 : 0); ++c) expect[size_t(order[size_t(r++)])] = uint32_t(k);
        const int bits = 2;
        const Payload p = parse_compressor("sortquant:bits=2,split=" + std::to_string(split))->encode(x);
        const std::vector<uint32_t> codes = codes_of(p, bits + split);
        std::vector<uint32_t> got;
        for (uint32_t c : codes) got.push_back(c >> bits);
        INFO(std::string(dtype_name(dt)) << " n " << n << " split " << split);
        CHECK(got == expect);
      }
    }
  }
}

TEST_CASE("compress sortquant sampled: thresholds from a sample give ordered, nearly equal buckets within step/2") {
  const int64_t n = 200000;
  Tensor x = test::randn({n}, 5, DType::f32);
  const std::vector<double> xv = values(x);
  auto c = parse_compressor("sortquant:bits=6,split=2,mode=sampled,sample=20000");
  const Payload p = c->encode(x);
  const std::vector<uint32_t> codes = codes_of(p, 8);
  std::vector<int64_t> count(4, 0);
  std::vector<double> lo(4, 1e300), hi(4, -1e300);
  for (size_t i = 0; i < codes.size(); ++i) {
    const uint32_t k = codes[i] >> 6;
    ++count[k];
    lo[k] = std::min(lo[k], xv[i]);
    hi[k] = std::max(hi[k], xv[i]);
  }
  // A 20000-element sample puts each quartile within ~1% of n/4 (binomial spread); allow 5%.
  for (int k = 0; k < 4; ++k) CHECK(std::fabs(double(count[size_t(k)]) - n / 4.0) < 0.05 * n / 4.0);
  for (int k = 0; k < 3; ++k) CHECK(hi[size_t(k)] <= lo[size_t(k + 1)]);
  const std::vector<double> y = values(c->decode(p));
  for (size_t i = 0; i < xv.size(); ++i) {
    const uint32_t k = codes[i] >> 6;
    REQUIRE(std::fabs(xv[i] - y[i]) <= (hi[k] - lo[k]) / 63.0 / 2 * (1 + 1e-5) + 1e-7);
  }
}

TEST_CASE("compress sortquant sampled: the thresholds are the sorted sample's values at ceil((i+1) m / K) - 1") {
  std::mt19937_64 rng(11);
  for (int64_t m : {0, 1, 2, 3, 7, 100, 1000, 65536}) {
    for (int64_t K : {1, 2, 4, 16, 256, 1024}) {
      for (bool ties : {false, true}) {
        std::vector<double> s(static_cast<size_t>(m));
        std::normal_distribution<double> normal;
        for (double& v : s) v = ties ? double(rng() % 5) : normal(rng);
        std::vector<double> sorted = s;
        std::sort(sorted.begin(), sorted.end());
        std::vector<double> expect(size_t(K - 1), 0.0);
        for (int64_t i = 0; i + 1 < K && m > 0; ++i) {
          const int64_t q = ((i + 1) * m + K - 1) / K;  // ceil, computed apart from the library's formula
          expect[size_t(i)] = sorted[size_t(std::max<int64_t>(q, 1) - 1)];
        }
        INFO("m " << m << " K " << K << " ties " << ties);
        CHECK(sample_thresholds(s, K) == expect);
      }
    }
  }
}

TEST_CASE("compress sortquant: fewer elements than buckets, constants and ties decode exactly") {
  Tensor tiny = from_vector({3.5, -1.25, 7}, {3});  // 8 buckets, 3 elements: one element per bucket, step 0
  CHECK(values(round_trip("sortquant:bits=2,split=3", tiny)) == values(tiny));
  CHECK(values(round_trip("sortquant:bits=2,split=3,mode=sampled", tiny)) == values(tiny));
  Tensor constant = full({7, 3}, 0.625);
  CHECK(values(round_trip("sortquant:bits=4,split=2", constant)) == values(constant));
  CHECK(values(round_trip("sortquant:bits=4,split=2,mode=sampled", constant)) == values(constant));
  // Two distinct values, many ties across bucket cuts: every bucket is constant, so decoding is exact.
  Tensor ties = from_vector({1, 1, 1, 2, 2, 1, 2, 2, 1, 1}, {10});
  CHECK(values(round_trip("sortquant:bits=1,split=2", ties)) == values(ties));
}

// ---- topk ----------------------------------------------------------------------------------------------------------

TEST_CASE("compress topk: exactly ceil(r*n) elements survive and they are the largest magnitudes") {
  // |x| ranks: 9 (-9), 8, 7 (-7), 6, ...
  Tensor x = from_vector({1, -9, 3, 8, -2, 5, -7, 4, 6, 0.5}, {2, 5});
  CHECK(values(round_trip("topk:ratio=0.3", x)) == std::vector<double>{0, -9, 0, 8, 0, 0, -7, 0, 0, 0});
  // ceil(0.25 * 10) = 3 as well; ceil(0.31 * 10) = 4 adds 6
  CHECK(values(round_trip("topk:ratio=0.25", x)) == std::vector<double>{0, -9, 0, 8, 0, 0, -7, 0, 0, 0});
  CHECK(values(round_trip("topk:ratio=0.31", x)) == std::vector<double>{0, -9, 0, 8, 0, 0, -7, 0, 6, 0});
  CHECK(values(round_trip("topk:ratio=1", x)) == values(x));
  CHECK(values(round_trip("topk:ratio=0.01", x)) == std::vector<double>{0, -9, 0, 0, 0, 0, 0, 0, 0, 0});
  // Larger random case, both index modes: count and the smallest kept >= the largest dropped.
  for (double r : {0.02, 0.5}) {
    Tensor big = test::randn({3000}, 21, DType::f32);
    auto c = parse_compressor("topk:ratio=" + std::to_string(r));
    const Payload p = c->encode(big);
    const std::vector<double> xv = values(big), y = values(c->decode(p));
    const size_t k = size_t(std::ceil(r * 3000 - 1e-9));
    double kept_min = 1e300, dropped_max = 0;
    size_t kept = 0;
    for (size_t i = 0; i < xv.size(); ++i) {
      if (y[i] != 0) {
        ++kept;
        CHECK(y[i] == xv[i]);
        kept_min = std::min(kept_min, std::fabs(xv[i]));
      } else {
        dropped_max = std::max(dropped_max, std::fabs(xv[i]));
      }
    }
    INFO("ratio " << r << " index mode " << p.params[1]);
    CHECK(kept == k);
    CHECK(kept_min >= dropped_max);
    const auto& idx = static_cast<TopkCompressor&>(*c).last_indices();
    CHECK(idx.size() == k);
    CHECK(std::is_sorted(idx.begin(), idx.end()));
  }
  // Ties are kept by lower index: three equal magnitudes, keep 2.
  CHECK(values(round_trip("topk:ratio=0.5", from_vector({2, -2, 1, 2}, {4}))) == std::vector<double>{2, -2, 0, 0});
}

TEST_CASE("compress topk: the kept positions are a full sort's first k, larger magnitude then lower index first") {
  // The encoder selects by a histogram of magnitude keys and one pass in index order (several chunks of 2^16 above
  // 65,536 elements); the reference sorts every index by (|x| descending, index ascending). Data with no ties, with
  // few distinct magnitudes (a tie at the threshold, split by index across chunks), and half zeros of both signs.
  std::mt19937 rng(17);
  for (int64_t n : {1, 2, 5, 100, 4097, 65536, 65537, 200003}) {
    for (int kind = 0; kind < 3; ++kind) {
      for (bool wide : {false, true}) {
        std::vector<double> xv(static_cast<size_t>(n));
        std::normal_distribution<double> normal;
        std::uniform_int_distribution<int> small(-3, 3);
        for (size_t i = 0; i < xv.size(); ++i) {
          if (kind == 0) xv[i] = normal(rng);
          else if (kind == 1) xv[i] = 0.25 * small(rng);  // seven values, magnitudes 0, 0.25, 0.5, 0.75
          else xv[i] = i % 2 ? (i % 4 == 1 ? -0.0 : 0.0) : normal(rng);
        }
        const Tensor x = from_vector(xv, {n}, wide ? DType::f64 : DType::f32);
        const std::vector<double> xs = values(x);  // as stored (f32-rounded)
        std::vector<uint32_t> order(static_cast<size_t>(n));
        std::iota(order.begin(), order.end(), 0u);
        std::stable_sort(order.begin(), order.end(),
                         [&](uint32_t a, uint32_t b) { return std::fabs(xs[a]) > std::fabs(xs[b]); });
        for (double ratio : {0.001, 0.1, 0.5, 0.97}) {
          auto c = parse_compressor("topk:ratio=" + std::to_string(ratio));
          const Payload p = c->encode(x);
          const size_t k = p.params[0];
          std::vector<uint32_t> want(order.begin(), order.begin() + int64_t(k));
          std::sort(want.begin(), want.end());
          INFO("n " << n << " kind " << kind << " f64 " << wide << " ratio " << ratio);
          REQUIRE(static_cast<TopkCompressor&>(*c).last_indices() == want);
          REQUIRE(TopkCompressor::positions(p) == want);
        }
      }
    }
  }
}

// ---- kmeans --------------------------------------------------------------------------------------------------------

TEST_CASE("compress topk: a bitmap's positions, read a word at a time, are its set bits, the last word ragged") {
  // The decoder reads the bitmap 8 bytes at a time; the reference walks it bit by bit. Sizes around the word and
  // byte boundaries, ratios that keep most or all elements (a bitmap is then smaller than the indices).
  for (int64_t n : {1, 7, 8, 9, 63, 64, 65, 127, 130, 1000, 4099}) {
    for (double ratio : {0.5, 0.9, 1.0}) {
      INFO("n " << n << " ratio " << ratio);
      const Tensor x = test::randn({n}, uint64_t(n), DType::f32);
      auto c = parse_compressor("topk:ratio=" + std::to_string(ratio));
      const Payload p = c->encode(x);
      if (p.params[1] == 0) continue;  // indices were smaller here
      std::vector<uint32_t> want;
      for (int64_t i = 0; i < n; ++i)
        if ((p.codes[size_t(i / 8)] >> (i % 8)) & 1) want.push_back(uint32_t(i));
      CHECK(TopkCompressor::positions(p) == want);
      const std::vector<double> xv = values(x), y = values(c->decode(p));
      size_t next = 0;
      for (int64_t i = 0; i < n; ++i) {
        const bool kept = next < want.size() && want[next] == uint32_t(i);
        REQUIRE(y[size_t(i)] == (kept ? xv[size_t(i)] : 0.0));
        next += kept;
      }
    }
  }
}

TEST_CASE("compress kmeans: the squared error never increases across iterations and few values are exact") {
  Tensor x = test::randn({4000}, 3, DType::f32);
  // a skewed mixture so the quantile init is not already optimal
  std::vector<double> xv = values(x);
  for (size_t i = 0; i < xv.size(); i += 3) xv[i] = 5 + 0.1 * xv[i];
  x = from_vector(xv, {4000});
  xv = values(x);
  for (int bits : {1, 2, 3}) {
    double previous = std::numeric_limits<double>::infinity();
    double first = 0, last = 0;
    for (int it = 0; it <= 12; ++it) {
      const double e = sse(xv, values(round_trip("kmeans:bits=" + std::to_string(bits) + ",iters=" +
                                                 std::to_string(it), x)));
      INFO("bits " << bits << " iteration " << it);
      CHECK(e <= previous * (1 + 1e-12));
      if (it == 0) first = e;
      last = e;
      previous = e;
    }
    CHECK(last < first);  // Lloyd did something
  }
  // At most 2^b distinct values, equally frequent: the quantile init already hits them all.
  Tensor few = from_vector({-1, 0, 2, 5, 5, 2, 0, -1, 2, -1, 5, 0}, {3, 4});
  CHECK(values(round_trip("kmeans:bits=2,iters=0", few)) == values(few));
  CHECK(values(round_trip("kmeans:bits=2", few)) == values(few));
  Tensor constant = full({9}, 1.5);
  CHECK(values(round_trip("kmeans:bits=3", constant)) == values(constant));
}

TEST_CASE("compress kmeans: the radix sort equals std::sort and the branch-free cut search equals lower_bound") {
  std::mt19937 rng(5);
  for (int64_t n : {0, 1, 3, 255, 256, 65536, 65537, 140000}) {
    for (int kind = 0; kind < 3; ++kind) {
      std::vector<double> xv(static_cast<size_t>(n));
      std::normal_distribution<double> normal;
      std::uniform_int_distribution<int> small(-2, 2);
      for (size_t i = 0; i < xv.size(); ++i) {
        if (kind == 0) xv[i] = normal(rng) * std::ldexp(1.0, int(i % 40) - 20);  // many binades, both signs
        else if (kind == 1) xv[i] = small(rng) == 0 ? (i % 2 ? -0.0 : 0.0) : 0.5 * small(rng);  // repeats, -0 and +0
        else xv[i] = 3.0 + 1e-3 * double(i % 7);  // every key shares its top digits: those passes are skipped
      }
      std::vector<float> xf(xv.begin(), xv.end());
      std::vector<double> want_f(xf.begin(), xf.end()), want_d = xv;
      std::sort(want_f.begin(), want_f.end());
      std::sort(want_d.begin(), want_d.end());
      const std::vector<double> got_f = sorted_values(xf.data(), n), got_d = sorted_values(xv.data(), n);
      INFO("n " << n << " kind " << kind);
      REQUIRE(got_f == want_f);  // == holds -0 equal to +0, as the encoder's sums do
      REQUIRE(got_d == want_d);
      for (double v : got_d) REQUIRE((v != 0 || !std::signbit(v)));  // zeros come back as +0
    }
  }
  for (int bits = 1; bits <= 16; ++bits) {
    const size_t cuts = (size_t(1) << bits) - 1;
    std::vector<double> cut(cuts);
    std::uniform_int_distribution<int> step(0, 2);  // repeated cuts too (a 0 step), as equal centroids give
    double at = -double(cuts) / 2;
    for (double& c : cut) c = at += step(rng);
    std::uniform_real_distribution<double> anywhere(cut.front() - 2, cut.back() + 2);
    int mismatches = 0;
    for (int t = 0; t < 4000; ++t) {
      const double v = t % 2 ? anywhere(rng) : cut[size_t(t) % cuts];  // on a cut: it belongs below it
      mismatches += nearest_centroid(cut.data(), bits, v) != uint32_t(std::lower_bound(cut.begin(), cut.end(), v) -
                                                                     cut.begin());
    }
    INFO("bits " << bits);
    CHECK(mismatches == 0);
  }
}

// ---- lowrank -------------------------------------------------------------------------------------------------------

TEST_CASE("compress lowrank: exact for matrices of rank <= r, per sample; warm start improves over calls") {
  // x [3, 6, 8]: sample b = sum_k u_bk v_bkᵀ with rank_b = b + 1 (1, 2, 3)
  const int64_t B = 3, m = 6, c = 8;
  Tensor u = test::randn({B, 3, m}, 1, DType::f64), v = test::randn({B, 3, c}, 2, DType::f64);
  const std::vector<double> uv = values(u), vv = values(v);
  std::vector<double> xv(size_t(B * m * c), 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t k = 0; k <= b; ++k)
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < c; ++j)
          xv[size_t((b * m + i) * c + j)] += uv[size_t((b * 3 + k) * m + i)] * vv[size_t((b * 3 + k) * c + j)];
  Tensor x = from_vector(xv, {B, m, c});
  for (const char* spec : {"lowrank:rank=3,iters=1", "lowrank:rank=3,iters=2", "lowrank:rank=5,iters=3"}) {
    INFO(spec);
    CHECK_ALLCLOSE(round_trip(spec, x), from_vector(xv, {B, m, c}), 1e-5, 1e-5);
  }
  // rank 1 keeps sample 0 exact but not sample 2
  const std::vector<double> y = values(round_trip("lowrank:rank=1,iters=4", x));
  double e0 = 0, e2 = 0;
  for (int64_t i = 0; i < m * c; ++i) {
    e0 = std::max(e0, std::fabs(y[size_t(i)] - xv[size_t(i)]));
    e2 = std::max(e2, std::fabs(y[size_t(2 * m * c + i)] - xv[size_t(2 * m * c + i)]));
  }
  CHECK(e0 < 1e-5);
  CHECK(e2 > 1e-3);
  // Warm start: one iteration per call keeps refining the same subspace.
  Tensor r = test::randn({1, 20, 30}, 8, DType::f64);
  auto warm = parse_compressor("lowrank:rank=2,iters=1");
  const std::vector<double> rv = values(r);
  const double e_first = sse(rv, values(warm->decode(warm->encode(r))));
  double e_later = 0;
  for (int k = 0; k < 6; ++k) e_later = sse(rv, values(warm->decode(warm->encode(r))));
  CHECK(e_later <= e_first * (1 + 1e-9));
  auto cold = parse_compressor("lowrank:rank=2,iters=1,warm=0");
  const double e_cold1 = sse(rv, values(cold->decode(cold->encode(r))));
  CHECK(e_cold1 == doctest::Approx(e_first).epsilon(1e-6));  // both start from the same seed
  // zero matrices stay exact and do not poison the warm start
  Tensor z = zeros({2, 4, 5}, DType::f32);
  CHECK(values(warm->decode(warm->encode(z))) == values(z));
  CHECK(values(warm->decode(warm->encode(z))) == values(z));
}

TEST_CASE("compress lowrank: the decoder's column blocks give each element its dot product of Q's row and P's row") {
  // The decoder transposes P and accumulates 256 columns at a time; the reference is the plain dot product over the
  // payload's own factors. Widths around the block (255, 256, 257, 600) and ranks 1..5; a tight tolerance, not bit
  // equality, so that a build whose compiler fuses multiply-adds (-march=native) is held to the same test.
  for (int64_t cols : {1, 255, 256, 257, 600}) {
    for (int rank : {1, 3, 5}) {
      const Tensor x = test::randn({2, 7, cols}, uint64_t(cols * 10 + rank), DType::f32);
      auto c = parse_compressor("lowrank:rank=" + std::to_string(rank));
      const Payload p = c->encode(x);
      const int64_t r = p.params[0], m = 7;
      const std::vector<double> y = values(c->decode(p));
      INFO("cols " << cols << " rank " << rank << " (kept " << r << ")");
      double worst = 0;
      for (int64_t b = 0; b < 2; ++b)
        for (int64_t i = 0; i < m; ++i)
          for (int64_t k = 0; k < cols; ++k) {
            const float* Q = p.table.data() + b * (m + cols) * r;
            const float* P = Q + m * r;
            double s = 0, size = 0;  // the sum, and the sum of its terms' magnitudes (its rounding scale)
            for (int64_t j = 0; j < r; ++j) {
              s += double(Q[i * r + j]) * double(P[k * r + j]);
              size += std::fabs(double(Q[i * r + j]) * double(P[k * r + j]));
            }
            worst = std::max(worst, std::fabs(y[size_t((b * m + i) * cols + k)] - double(float(s))) /
                                        std::max(1e-30, size));
          }
      CHECK(worst <= 1e-6);  // one f32 rounding of the same sum (an f32 ulp is 6e-8 of it)
    }
  }
}

// ---- fp8 -----------------------------------------------------------------------------------------------------------

TEST_CASE("compress fp8: OCP e4m3 and e5m2 grids by hand") {
  // e4m3: S.EEEE.MMM, bias 7
  CHECK(fp8_decode(0x7E, false) == 448.0);         // 0.1111.110 = 2^8 * 1.75, the max
  CHECK(fp8_decode(0x38, false) == 1.0);           // 0.0111.000
  CHECK(fp8_decode(0x3C, false) == 1.5);           // 0.0111.100
  CHECK(fp8_decode(0x08, false) == 0.015625);      // 0.0001.000 = 2^-6, smallest normal
  CHECK(fp8_decode(0x01, false) == 0.001953125);   // 0.0000.001 = 2^-9, smallest subnormal
  CHECK(fp8_decode(0x07, false) == 0.013671875);   // 0.0000.111 = 7 * 2^-9, largest subnormal
  CHECK(fp8_decode(0xC0, false) == -2.0);          // 1.1000.000
  CHECK(fp8_is_special(0x7F, false));
  CHECK(fp8_is_special(0xFF, false));
  CHECK_FALSE(fp8_is_special(0x78, false));        // 0.1111.000 = 256 is a number in e4m3
  CHECK(fp8_decode(0x78, false) == 256.0);
  // e5m2: S.EEEEE.MM, bias 15
  CHECK(fp8_decode(0x7B, true) == 57344.0);        // 0.11110.11 = 2^15 * 1.75
  CHECK(fp8_decode(0x3C, true) == 1.0);            // 0.01111.00
  CHECK(fp8_decode(0x04, true) == 6.103515625e-05);  // 2^-14, smallest normal
  CHECK(fp8_decode(0x01, true) == 1.52587890625e-05);  // 2^-16, smallest subnormal
  CHECK(fp8_is_special(0x7C, true));               // +inf
  CHECK(fp8_is_special(0xFE, true));               // NaN
  // encode: nearest-even, saturation, subnormal ties
  CHECK(fp8_encode(1.0, false, -1) == 0x38);
  CHECK(fp8_encode(1.0625, false, -1) == 0x38);    // halfway 1 and 1.125 -> even mantissa 000
  CHECK(fp8_encode(1.1875, false, -1) == 0x3A);    // halfway 1.125 and 1.25 -> even mantissa 010
  CHECK(fp8_encode(1000.0, false, -1) == 0x7E);    // saturates at 448
  CHECK(fp8_encode(-1e9, true, -1) == 0xFB);       // saturates at -57344
  CHECK(fp8_encode(0.0009765625, false, -1) == 0x00);  // 2^-10: half the smallest subnormal, ties to 0
  CHECK(fp8_encode(0.0029296875, false, -1) == 0x02);  // 1.5 * 2^-9 -> 2 * 2^-9 (even)
  CHECK(fp8_encode(15.5, false, -1) == 0x58);      // between 15 and 16 (quantum 1): tie -> 16 = 0.1011.000
  // every finite code survives decode -> encode
  for (int e5 = 0; e5 < 2; ++e5)
    for (int code = 0; code < 256; ++code) {
      if (fp8_is_special(uint8_t(code), e5 == 1)) continue;
      INFO("code " << code << " e5m2 " << e5);
      CHECK(fp8_encode(fp8_decode(uint8_t(code), e5 == 1), e5 == 1, -1) == code);
    }
}

TEST_CASE("compress fp8: the f32 bit-arithmetic encoder equals the reference on every binade, ties included") {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> mant(1.0f, 2.0f);
  for (int e5 = 0; e5 < 2; ++e5) {
    const bool e5m2 = e5 == 1;
    int mismatches = 0;
    for (int e = -30; e <= 17; ++e)
      for (int k = 0; k < 400; ++k) {
        const float y = std::ldexp(mant(rng), e) * (k % 2 ? -1.0f : 1.0f);
        mismatches += fp8_encode_f32(y, e5m2, false, 0) != fp8_encode(double(y), e5m2, -1);
      }
    // every midpoint between neighbouring grid values (ties to even) and every grid value itself
    for (int c = 0; c < 127; ++c) {
      if (fp8_is_special(uint8_t(c + 1), e5m2)) break;
      const double lo = fp8_decode(uint8_t(c), e5m2), hi = fp8_decode(uint8_t(c + 1), e5m2);
      for (double y : {lo, 0.5 * (lo + hi), -0.5 * (lo + hi)})
        mismatches += fp8_encode_f32(float(y), e5m2, false, 0) != fp8_encode(y, e5m2, -1);
    }
    CHECK(fp8_encode_f32(0.0f, e5m2, false, 0) == 0);
    CHECK(fp8_encode_f32(1e30f, e5m2, false, 0) == (e5m2 ? 0x7B : 0x7E));
    CHECK(mismatches == 0);
  }
}

TEST_CASE("compress fp8: the CPU encoder's vector code gives the scalar rule's codes, f32 patterns across the range") {
  // encode_fp8_nearest computes the rule's three cases (saturate, subnormal, normal) as selects; the reference is
  // fp8_encode_f32 of x / scale. Inputs: every 1021st positive f32 bit pattern below infinity, both signs, plus each
  // grid midpoint (a tie) and its neighbours one ulp away, at scales that make the same x normal, subnormal or beyond
  // the maximum.
  for (int e5 = 0; e5 < 2; ++e5) {
    const bool e5m2 = e5 == 1;
    std::vector<float> x;
    for (uint32_t u = 0; u < 0x7f800000u; u += 1021) x.push_back(bits_float(u) * (x.size() % 2 ? -1.0f : 1.0f));
    for (int c = 0; c < 126; ++c) {
      if (fp8_is_special(uint8_t(c + 1), e5m2)) break;
      const float mid = float(0.5 * (fp8_decode(uint8_t(c), e5m2) + fp8_decode(uint8_t(c + 1), e5m2)));
      for (float y : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e9f)}) {
        x.push_back(y);
        x.push_back(-y);
      }
    }
    for (float scale : {1.0f, 0x1p-9f, 0x1p20f, 0x1p-126f, 0x1p127f}) {
      std::vector<uint8_t> got(x.size());
      encode_fp8_nearest(x.data(), int64_t(x.size()), scale, e5m2, got.data());
      int mismatches = 0;
      for (size_t i = 0; i < x.size(); ++i) mismatches += got[i] != fp8_encode_f32(x[i] / scale, e5m2, false, 0);
      INFO("e5m2 " << e5m2 << " scale " << scale << " of " << x.size());
      CHECK(mismatches == 0);
    }
  }
}

TEST_CASE("compress fp8: tensor scaling keeps grid values exact; stochastic rounding is unbiased") {
  // amax 448 -> scale 1 (a power of two), so e4m3 grid values come back exactly, others to the nearest grid value
  Tensor x = from_vector({448, -1.5, 0.015625, 0.001953125, 0, 17, 1.03}, {7});
  CHECK(values(round_trip("fp8", x)) == std::vector<double>{448, -1.5, 0.015625, 0.001953125, 0, 16, 1.0});
  Tensor y = from_vector({57344, -3, 1.52587890625e-05, 100}, {4});
  CHECK(values(round_trip("fp8:format=e5m2", y)) == std::vector<double>{57344, -3, 1.52587890625e-05, 96});
  // relative error of a scaled tensor stays within half a quantum of 3 mantissa bits (2^-4)
  Tensor r = test::randn({500}, 4, DType::f32, Device::cpu(), 1e-3);
  const std::vector<double> rv = values(r), ry = values(round_trip("fp8", r));
  for (size_t i = 0; i < rv.size(); ++i)
    if (std::fabs(rv[i]) > 1e-5) CHECK(std::fabs(ry[i] - rv[i]) <= std::fabs(rv[i]) * 0.0625 + 1e-9);
  // stochastic: 1.1 lies between 1.0 and 1.125 (e4m3, scale 1 thanks to the 448)
  Tensor s = from_vector({448, 1.1, -3.3, 0.01}, {4});
  auto c = parse_compressor("fp8:round=stochastic,seed=5");
  std::vector<double> mean(4, 0.0);
  const int draws = 4000;
  for (int d = 0; d < draws; ++d) {
    const std::vector<double> v = values(c->decode(c->encode(s)));
    for (size_t i = 0; i < 4; ++i) mean[i] += v[i] / draws;
  }
  CHECK(mean[0] == doctest::Approx(448.0));
  CHECK(std::fabs(mean[1] - 1.1) < 0.125 * 0.04);  // std of the mean <= 0.0625 / sqrt(4000) = 0.001
  CHECK(std::fabs(mean[2] - -3.3) < 0.25 * 0.04);
  CHECK(std::fabs(mean[3] - 0.01) < 0.001953125 * 0.04);
  CHECK(values(round_trip("fp8", s))[1] == 1.125);  // nearest: 1.1 is closer to 1.125
}

// ---- every method: edge cases ---------------------------------------------------------------------------------------

TEST_CASE("compress methods: empty tensors, 0-D tensors, f64 inputs, and NaN/Inf rejected with a clear error") {
  const char* specs[] = {"none", "quant", "quant:per=channel", "sortquant", "sortquant:mode=sampled", "topk",
                         "kmeans", "lowrank", "fp8"};
  for (const char* spec : specs) {
    INFO(spec);
    Tensor e = empty({0, 4});
    Tensor d = round_trip(spec, e);
    CHECK(d.shape() == Shape{0, 4});
    CHECK(d.dtype() == DType::f32);
    Tensor x64 = test::randn({2, 3, 4}, 3, DType::f64);
    Tensor y64 = round_trip(spec, x64);
    CHECK(y64.dtype() == DType::f64);
    CHECK(y64.shape() == x64.shape());
    if (std::string(spec) != "quant:per=channel") {
      Tensor s = scalar_tensor(2.5);
      CHECK(values(round_trip(spec, s)) == std::vector<double>{2.5});  // one value: exact for every method
    }
    for (double bad : {std::nan(""), std::numeric_limits<double>::infinity()}) {
      Tensor b = from_vector({1, bad, 3}, {3});
      std::string what;
      try {
        parse_compressor(spec)->encode(b);
      } catch (const ValueError& err) {
        what = err.what();
      }
      CHECK(what.find("non-finite value") != std::string::npos);
      CHECK(what.find("flat index 1") != std::string::npos);
    }
    CHECK_THROWS_AS(parse_compressor(spec)->encode(zeros({3}, DType::i32)), DTypeError);
  }
}

// ---- statistics ----------------------------------------------------------------------------------------------------

TEST_CASE("compress stats: hand-computed values and the zero cases") {
  Tensor x = from_vector({1, -2, 0, 4}, {4}), y = from_vector({1, -1, 0.5, 3}, {4});
  const CompressionStats s = compute_stats(x, y, 10);
  // diff = (0, -1, -0.5, 1): sum sq 2.25; sum x^2 = 21; sum y^2 = 11.25; <x,y> = 1 + 2 + 0 + 12 = 15
  CHECK(s.elements == 4);
  CHECK(s.mse == doctest::Approx(2.25 / 4));
  CHECK(s.rel_l2 == doctest::Approx(std::sqrt(2.25 / 21)));
  CHECK(s.rel_err == doctest::Approx((0 + 0.5 + 0.25) / 3));  // x = 0 is left out
  CHECK(s.rel_err_count == 3);
  CHECK(s.max_abs == 1.0);
  CHECK(s.snr_db == doctest::Approx(10 * std::log10(21 / 2.25)));
  CHECK(s.cosine == doctest::Approx(15 / std::sqrt(21 * 11.25)));
  CHECK(s.payload_bytes == 10);
  CHECK(s.ratio_fp32 == doctest::Approx(10.0 / 16));
  // x̂ - x = (0, 1, 0.5, -1): mean 0.125, and bias = mean / rms = 0.125 / sqrt(2.25 / 4) = 1/6.
  CHECK(s.mean_err == doctest::Approx(0.125));
  CHECK(s.bias == doctest::Approx(1.0 / 6));
  CHECK(to_json(s)["bias"].get<double>() == doctest::Approx(1.0 / 6));
  // One offset on every element is all bias; its sign is the offset's.
  CHECK(compute_stats(x, from_vector({0.75, -2.25, -0.25, 3.75}, {4}), 1).bias == doctest::Approx(-1.0));
  CHECK(compute_stats(x, from_vector({0.75, -2.25, -0.25, 3.75}, {4}), 1).mean_err == -0.25);
  // Errors that cancel have none: (1, -1, 1, -1).
  CHECK(compute_stats(x, from_vector({2, -3, 1, 3}, {4}), 1).bias == 0.0);
  const CompressionStats exact = compute_stats(x, x, 5);
  CHECK(std::isinf(exact.snr_db));
  CHECK(exact.rel_l2 == 0);
  CHECK(exact.bias == 0);
  CHECK(exact.mean_err == 0);
  CHECK(to_json(exact)["snr_db"].is_null());
  CHECK(to_json(s)["mse"].get<double>() == doctest::Approx(0.5625));
  Tensor z = zeros({3});
  const CompressionStats zz = compute_stats(z, z, 1);
  CHECK(zz.rel_err == 0);
  CHECK(zz.rel_err_count == 0);
  CHECK(zz.cosine == 1);
  CHECK(compute_stats(z, from_vector({0, 1, 0}, {3}), 1).cosine == 0);
  CHECK(std::isinf(compute_stats(z, from_vector({0, 1, 0}, {3}), 1).rel_l2));
  CHECK_THROWS_AS(compute_stats(x, z, 1), ShapeError);
  // Mixed widths: an f64 input against an f32 reconstruction (a CompressionLayer's x and a decoded payload may differ).
  const CompressionStats m = compute_stats(x, from_vector({1, -1.5, 0.5, 4}, {4}, DType::f32), 8);
  CHECK(m.mse == 0.5 / 4);  // diff = (0, -0.5, -0.5, 0), all exact in binary
  CHECK(m.max_abs == 0.5);
  CHECK(m.rel_err == doctest::Approx(0.25 / 3));
  CHECK(m.mean_err == 0.25);
  CHECK(m.bias == doctest::Approx(1 / std::sqrt(2.0)));  // 1 / sqrt(0.5 * 4)
  // Deferred statistics: on the CPU they are done at once, with the same numbers.
  const PendingStats later = compute_stats_later(x, y, 10);
  CHECK(!later.on_device());
  CHECK(later.get().mse == s.mse);
  CHECK(later.get().cosine == s.cosine);
  CHECK(later.get().payload_bytes == 10);
  CHECK_THROWS_AS(compute_stats_later(x, z, 1), ShapeError);
}

TEST_CASE("compress stats: the error of the per-channel sums, by hand") {
  CHECK(stats_channel_axis({}) == -1);
  CHECK(stats_channel_axis({5}) == -1);
  CHECK(stats_channel_axis({2, 3}) == 1);
  CHECK(stats_channel_axis({2, 3, 4}) == 2);
  CHECK(stats_channel_axis({2, 3, 4, 5}) == 1);
  CHECK(stats_channel_axis({1, 2, 3, 4, 5}) == 1);
  // 1-D: one channel. S(x) = 3; the errors (0, 1, 0.5, -1) sum to 0.5.
  Tensor x = from_vector({1, -2, 0, 4}, {4});
  CHECK(compute_stats(x, from_vector({1, -1, 0.5, 3}, {4}), 1).sum_rel_err == doctest::Approx(0.5 / 3));
  // NCHW [2, 2, 1, 2], channel axis 1. Channel 0 holds (1, 2 | 0, 1): S = 4, errors (0.5, 0.5 | 0.5, -0.5) sum to 1;
  // channel 1 holds (3, -1 | 2, 2): S = 6, errors (1, -1 | 0.25, -0.25) sum to 0. So 1 / sqrt(4^2 + 6^2). Summing
  // over W instead would give sqrt(2.25^2 + 1.25^2) / sqrt(52), and one sum of everything 1 / 10.
  Tensor img = from_vector({1, 2, 3, -1, 0, 1, 2, 2}, {2, 2, 1, 2});
  Tensor err = from_vector({0.5, 0.5, 1, -1, 0.5, -0.5, 0.25, -0.25}, {2, 2, 1, 2});
  const CompressionStats s4 = compute_stats(img, add(img, err), 1);
  CHECK(s4.sum_rel_err == doctest::Approx(1 / std::sqrt(52.0)));
  CHECK(to_json(s4)["sum_rel_err"].get<double>() == doctest::Approx(1 / std::sqrt(52.0)));
  // [B, T, H] = [1, 2, 2]: the features (last axis) are the channels. S = (4, 6); the errors give (0, 1).
  Tensor seq = from_vector({1, 2, 3, 4}, {1, 2, 2});
  CHECK(compute_stats(seq, add(seq, from_vector({1, 0, -1, 1}, {1, 2, 2})), 1).sum_rel_err ==
        doctest::Approx(1 / std::sqrt(52.0)));
  // A shared offset c over n elements of C channels moves each sum by c n / C, however small the error looks.
  Tensor grad = from_vector({1, -1, 2, -2, 0.5, -0.5, 3, -2}, {1, 2, 2, 2});  // S = (0, 1)
  const CompressionStats offset = compute_stats(grad, add(grad, full({1, 2, 2, 2}, 0.01)), 1);
  CHECK(offset.sum_rel_err == doctest::Approx(std::sqrt(2 * 0.04 * 0.04) / 1.0));
  CHECK(offset.bias == doctest::Approx(1.0));
  // Exact: 0; all zeros both: 0; an error on an all-zero sum: +inf, null in JSON.
  CHECK(compute_stats(img, img, 1).sum_rel_err == 0);
  CHECK(compute_stats(zeros({2, 3}), zeros({2, 3}), 1).sum_rel_err == 0);
  const CompressionStats dead = compute_stats(zeros({2, 3}), from_vector({0, 0, 1, 0, 0, 0}, {2, 3}), 1);
  CHECK(std::isinf(dead.sum_rel_err));
  CHECK(to_json(dead)["sum_rel_err"].is_null());
  // Nonzero elements whose sums cancel (S(x) = 0) are no different: any error of the sums is infinitely relative.
  CHECK(std::isinf(compute_stats(from_vector({1, -1}, {2}), from_vector({1, -0.5}, {2}), 1).sum_rel_err));
}

TEST_CASE("compress stats: the run summary averages calls and totals the bytes") {
  StatsSummary sum;
  CHECK(sum.to_json()["calls"] == 0);
  Tensor x = from_vector({1, -2, 0, 4}, {4});
  sum.add(compute_stats(x, from_vector({1, -1, 0.5, 3}, {4}), 10));  // mse 0.5625, max_abs 1
  sum.add(compute_stats(x, from_vector({1, -2, 0, 2}, {4}), 6));     // mse 1, max_abs 2
  const nlohmann::json j = sum.to_json();
  CHECK(j["calls"] == 2);
  CHECK(j["mean_mse"].get<double>() == doctest::Approx((0.5625 + 1.0) / 2));
  CHECK(j["max_abs"].get<double>() == 2.0);
  CHECK(j["payload_bytes"] == 16);
  CHECK(j["fp32_bytes"] == 32);
  CHECK(j["ratio_fp32"].get<double>() == 0.5);
  CHECK(j["min_snr_db"].get<double>() == doctest::Approx(10 * std::log10(21.0 / 4)));
  // |bias| per call: 1/6 (above), then (0, 0, 0, -2) gives -2/4 / sqrt(4/4) = -1/2.
  CHECK(j["mean_abs_bias"].get<double>() == doctest::Approx((1.0 / 6 + 0.5) / 2));
  CHECK(j["max_abs_bias"].get<double>() == doctest::Approx(0.5));
  // One channel: sum errors 0.5 and -2 against S(x) = 3; the lower median of two is the smaller.
  CHECK(j["median_sum_rel_err"].get<double>() == doctest::Approx(0.5 / 3));
  CHECK(j["max_sum_rel_err"].get<double>() == doctest::Approx(2.0 / 3));
  const double mean_snr = (10 * std::log10(21 / 2.25) + 10 * std::log10(21.0 / 4)) / 2;
  CHECK(j["mean_snr_db"].get<double>() == doctest::Approx(mean_snr));
  CHECK(j["exact_calls"] == 0);
  sum.add(compute_stats(x, x, 4));  // an exact call (SNR +inf) is counted, and left out of the mean SNR
  CHECK(sum.to_json()["mean_snr_db"].get<double>() == doctest::Approx(mean_snr));
  CHECK(sum.to_json()["exact_calls"] == 1);
  CHECK(sum.to_json()["calls"] == 3);
  CHECK(sum.to_json()["min_snr_db"].get<double>() == doctest::Approx(10 * std::log10(21.0 / 4)));
  CHECK(sum.to_json()["mean_mse"].get<double>() == doctest::Approx((0.5625 + 1.0) / 3));
  CHECK(sum.to_json()["median_sum_rel_err"].get<double>() == doctest::Approx(0.5 / 3));  // the exact call is out
  sum.add(compute_stats(zeros({4}), from_vector({0, 0, 0, 1}, {4}), 4));  // +inf
  sum.add(compute_stats(x, from_vector({1, -2, 0, 5}, {4}), 4));          // 1/3
  CHECK(sum.to_json()["median_sum_rel_err"].get<double>() == doctest::Approx(1.0 / 3));  // (1/6, 1/3, 2/3, inf)
  CHECK(sum.to_json()["max_sum_rel_err"].is_null());
  StatsSummary all_exact;
  all_exact.add(compute_stats(x, x, 4));
  CHECK(all_exact.to_json()["mean_snr_db"].is_null());  // +inf: no call had an error
  CHECK(all_exact.to_json()["exact_calls"] == 1);
}
