// test_compress_cuda.cpp — the GPU twins of the compressors against the CPU encoders: identical tables and codes for
// the deterministic methods (topk, exact sortquant, per-channel quant), tolerances on the decoded tensor for kmeans and
// lowrank, awkward sizes, ties, signed zeros, empty and constant tensors; plus the host-checkable pieces (sort keys,
// bucket arithmetic, shortest spec numbers) and a quick run of `bench compress`. Not the CPU laws
// (test_compress_methods.cpp). The GPU cases skip with a notice when no GPU is present.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>

#include "apps/bench_compress.h"
#include "compress/bitpack.h"
#include "compress/methods.h"
#include "compress/quant_math.h"
#include "compress/sort_keys.h"
#include "compress/stats.h"
#include "tests/test_util.h"

using namespace ep;
using namespace ep::compress;

namespace {

template <class T> bool same_bits(T a, T b) { return std::memcmp(&a, &b, sizeof(T)) == 0; }

bool same_table_bits(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (!same_bits(a[i], b[i])) return false;
  return true;
}

// Tensors the deterministic twins must agree on: awkward sizes, ties, signed zeros, constants.
std::vector<Tensor> parity_inputs(DType dt) {
  std::vector<Tensor> xs;
  xs.push_back(test::randn({1}, 1, dt));                      // n = 1
  xs.push_back(test::randn({13}, 2, dt));                     // not a multiple of 8 codes
  xs.push_back(test::randn({3}, 3, dt));                      // fewer elements than most bucket counts
  xs.push_back(test::randn({7, 33, 29}, 4, dt));              // 6699: a partial last group
  xs.push_back(full({37}, -1.25, dt));                        // constant
  // ties of magnitude and of value, signed zeros: the index must break every tie as on the CPU
  xs.push_back(from_vector({0.5, -0.5, 0.0, -0.0, 0.5, 2.0, -2.0, -0.0, 0.0, 0.5, -0.5, 2.0, 0.0}, {13}, dt));
  Tensor grid = test::randint({40, 50}, 5, -3, 4, DType::i64).to(dt);  // few distinct values: many ties
  xs.push_back(grid);
  return xs;
}

void check_same_payload(const Payload& pc, const Payload& gpu_payload) {
  const Payload pg = gpu_payload.host_copy();  // a GPU encoder's sections may still be on the GPU
  CHECK(pg.method == pc.method);
  CHECK(pg.dtype == pc.dtype);
  CHECK(pg.shape == pc.shape);
  CHECK(pg.params == pc.params);
  CHECK(same_table_bits(pg.table, pc.table));
  CHECK(pg.codes == pc.codes);
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : t.to_double_vector()) m = std::max(m, std::fabs(v));
  return m;
}

}  // namespace

// ---- host-checkable pieces of the GPU paths --------------------------------------------------------------------------

TEST_CASE("compress cuda keys: value and magnitude keys order like the values, -0 keyed as +0, and map back") {
  const std::vector<double> v = {-INFINITY, -1e300, -3.5, -1e-310, -0.0, 1e-320, 1e-300, 2.0, 1e300, INFINITY};
  for (size_t i = 0; i + 1 < v.size(); ++i) {
    INFO(v[i] << " < " << v[i + 1]);
    CHECK(value_key(v[i]) < value_key(v[i + 1]));
    CHECK(value_key(float(v[i])) <= value_key(float(v[i + 1])));  // f32 rounding may merge neighbours
  }
  CHECK(value_key(-0.0) == value_key(0.0));
  CHECK(value_key(-0.0f) == value_key(0.0f));
  CHECK(magnitude_key(-0.0) == magnitude_key(0.0));
  CHECK(magnitude_key(-2.5f) == magnitude_key(2.5f));
  CHECK(!std::signbit(value_of_key(value_key(-0.0))));
  std::mt19937_64 rng(9);
  std::uniform_real_distribution<double> d(-1e6, 1e6);
  for (int k = 0; k < 3000; ++k) {
    const double a = d(rng), b = d(rng);
    const float fa = float(a), fb = float(b);
    CHECK((a < b) == (value_key(a) < value_key(b)));
    CHECK((fa < fb) == (value_key(fa) < value_key(fb)));
    CHECK((std::fabs(a) < std::fabs(b)) == (magnitude_key(a) < magnitude_key(b)));
    CHECK((std::fabs(fa) < std::fabs(fb)) == (magnitude_key(fa) < magnitude_key(fb)));
    CHECK(value_of_key(value_key(a)) == a);
    CHECK(value_of_key(value_key(fa)) == double(fa));
  }
}

TEST_CASE("compress cuda buckets: bucket_of_position inverts the equal-count bucket_start") {
  for (int64_t n : {1, 2, 3, 7, 8, 9, 31, 100, 1029}) {
    for (int64_t K : {1, 2, 3, 4, 8, 16, 32, 64, 2048}) {
      // by hand for one case: n = 7, K = 4 -> counts 2, 2, 2, 1
      for (int64_t b = 0; b < K; ++b)
        for (int64_t j = bucket_start(n, K, b); j < bucket_start(n, K, b + 1); ++j) {
          INFO("n " << n << " K " << K << " j " << j);
          CHECK(bucket_of_position(n, K, j) == b);
        }
      CHECK(bucket_start(n, K, K) == n);
    }
  }
  CHECK(bucket_start(7, 4, 1) == 2);
  CHECK(bucket_start(7, 4, 3) == 6);
  CHECK(bucket_of_position(7, 4, 6) == 3);
  CHECK(bucket_of_position(3, 8, 2) == 2);  // fewer elements than buckets: one each, the rest empty
}

TEST_CASE("compress spec: numbers print in their shortest round-trip form") {
  CHECK(parse_compressor("topk:ratio=0.1")->spec() == "topk:ratio=0.1,mask=reuse");
  CHECK(parse_compressor("topk:ratio=0.30000000000000004,mask=own")->spec() ==
        "topk:ratio=0.30000000000000004,mask=own");
  CHECK(shortest_double(0.5) == "0.5");
  CHECK(shortest_double(1.0) == "1");
  CHECK(shortest_double(1e-300) == "1e-300");
  const double third = 1.0 / 3.0;
  CHECK(std::strtod(shortest_double(third).c_str(), nullptr) == third);
  auto c = parse_compressor("topk:ratio=0.1");
  CHECK(parse_compressor(c->spec())->spec() == c->spec());
}

TEST_CASE("compress tables: a -0 extreme gives the same table bits as +0 (quant, sortquant, kmeans)") {
  // -0 and +0 compare equal, so which one a min/max keeps depends on the scan order; tables must not depend on it.
  for (const char* spec : {"quant:bits=4", "quant:bits=4,per=channel,axis=0", "sortquant:bits=3,split=1",
                           "kmeans:bits=1"}) {
    INFO(spec);
    const Payload neg = parse_compressor(spec)->encode(from_vector({-0.0, 0.0, 1.0, -0.0}, {4}));
    const Payload pos = parse_compressor(spec)->encode(from_vector({0.0, -0.0, 1.0, 0.0}, {4}));
    CHECK(same_table_bits(neg.table, pos.table));
    CHECK(neg.codes == pos.codes);
    for (float t : neg.table) CHECK(!std::signbit(t));
  }
}

TEST_CASE("compress bench: bench_compress runs on a tiny tensor") {
  CHECK_NOTHROW(bench_compress(Device::cpu(), /*quick=*/true));
  if (test::have_cuda()) CHECK_NOTHROW(bench_compress(Device::cuda(), /*quick=*/true));
}

// ---- GPU twins ---------------------------------------------------------------------------------------------------

TEST_CASE("compress cuda parity: every deterministic method's GPU codes equal the CPU's on awkward inputs, f32 and f64") {
  if (!test::have_cuda()) return;
  const Device gpu = Device::cuda();
  const std::vector<const char*> specs = {
      "topk:ratio=0.1", "topk:ratio=0.5", "topk:ratio=1", "topk:ratio=0.9", "topk:ratio=0.001",
      "sortquant:bits=6,split=2", "sortquant:bits=3,split=5", "sortquant:bits=1,split=0", "sortquant:bits=8,split=8",
      "sortquant:bits=1,split=15", "quant:bits=8,per=channel", "quant:bits=3,per=channel,axis=0",
      "quant:bits=5,per=channel,axis=2,round=stochastic,seed=6", "quant:bits=16,per=channel,axis=1",
      "quant:bits=6,per=channel,zero=exact", "quant:bits=4,zero=exact", "quant:bits=16,zero=exact",
      // the older twins (compress.cu) on the same awkward inputs
      "none", "quant:bits=4", "quant:bits=7,round=stochastic,seed=2", "fp8", "fp8:format=e5m2,round=stochastic,seed=3",
      "sortquant:bits=6,split=2,mode=sampled,sample=8", "sortquant:bits=2,split=3,mode=sampled,sample=100,seed=1"};
  for (DType dt : {DType::f32, DType::f64}) {
    for (const Tensor& x : parity_inputs(dt)) {
      for (const char* spec : specs) {
        INFO(spec << " on " << x.str());
        auto on_cpu = parse_compressor(spec), on_gpu = parse_compressor(spec);
        for (int call = 0; call < 2; ++call) {  // the second call: generators advance alike
          Payload pc, pg;
          try {
            pc = on_cpu->encode(x);
          } catch (const ShapeError&) {  // an axis the input does not have: the GPU must refuse it too
            CHECK_THROWS_AS(on_gpu->encode(x.to(gpu)), ShapeError);
            break;
          }
          pg = on_gpu->encode(x.to(gpu));
          check_same_payload(pc, pg);
          if (on_cpu->method() == Method::topk)
            CHECK(static_cast<TopkCompressor&>(*on_gpu).last_indices() ==
                  static_cast<TopkCompressor&>(*on_cpu).last_indices());
          Tensor dc = decode_payload(pc), dg = decode_payload(pg, gpu);
          REQUIRE(dg.is_cuda());
          CHECK_ALLCLOSE(dg.cpu(), dc, 0.0, 0.0);
        }
      }
    }
  }
  // the seeds' size (1029 x 917, ~0.94 M elements) once per method
  Tensor big = test::randn({1029, 917}, 11, DType::f32);
  for (const char* spec :
       {"topk:ratio=0.1", "topk:ratio=0.01", "sortquant:bits=6,split=2", "quant:bits=4,per=channel"}) {
    INFO(spec);
    check_same_payload(parse_compressor(spec)->encode(big), parse_compressor(spec)->encode(big.to(gpu)));
  }
  // top-k ties across the GPU selection's tiles (2,048 elements): 7 distinct values over 15,000 elements
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor ties = test::randint({3, 50, 100}, 12, -3, 4, DType::i64).to(dt);
    for (const char* spec : {"topk:ratio=0.1", "topk:ratio=0.37", "topk:ratio=0.9"}) {
      INFO(spec << " on " << ties.str());
      auto on_cpu = parse_compressor(spec), on_gpu = parse_compressor(spec);
      check_same_payload(on_cpu->encode(ties), on_gpu->encode(ties.to(gpu)));
      CHECK(static_cast<TopkCompressor&>(*on_gpu).last_indices() ==
            static_cast<TopkCompressor&>(*on_cpu).last_indices());
    }
  }
}

TEST_CASE("compress cuda kmeans: integer data gives the CPU's exact table; random data agrees to rounding") {
  if (!test::have_cuda()) return;
  const Device gpu = Device::cuda();
  // Small integers: every prefix sum and mean is exact in f64 on both devices, so the tables and codes must match.
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = test::randint({61, 17}, 7, -20, 21, DType::i64).to(dt);
    for (const char* spec : {"kmeans:bits=2", "kmeans:bits=4", "kmeans:bits=3,iters=0", "kmeans:bits=1,iters=50"}) {
      INFO(spec << " " << dtype_name(dt));
      check_same_payload(parse_compressor(spec)->encode(x), parse_compressor(spec)->encode(x.to(gpu)));
    }
  }
  for (const Tensor& x : parity_inputs(DType::f32)) {
    INFO(x.str());
    const Payload pc = parse_compressor("kmeans:bits=4")->encode(x);
    const Payload pg = parse_compressor("kmeans:bits=4")->encode(x.to(gpu));
    REQUIRE(pg.table.size() == pc.table.size());
    for (size_t j = 0; j < pc.table.size(); ++j)
      CHECK(std::fabs(pg.table[j] - pc.table[j]) <= 1e-5 * (1 + std::fabs(pc.table[j])));
    // the GPU codes are the nearest centroid of the GPU table (checked by brute force here)
    const std::vector<double> xv = x.to_double_vector();
    const std::vector<double> dg = decode_payload(pg, gpu).to_double_vector();
    for (size_t i = 0; i < xv.size(); ++i) {
      double best = INFINITY;
      for (float c : pg.table) best = std::min(best, std::fabs(xv[i] - c));
      CHECK(std::fabs(xv[i] - dg[i]) <= best + 1e-12);
    }
  }
  Tensor big = test::randn({1029, 917}, 12, DType::f32);
  const Payload pc = parse_compressor("kmeans:bits=4")->encode(big);
  const Payload pg = parse_compressor("kmeans:bits=4")->encode(big.to(gpu));
  const double mse_c = compute_stats(big, decode_payload(pc), 0).mse, mse_g = compute_stats(big, decode_payload(pg), 0).mse;
  CHECK(std::fabs(mse_g - mse_c) <= 1e-4 * mse_c);
}

TEST_CASE("compress cuda topk encode_at: a gradient's payload at the forward's positions equals the CPU's") {
  if (!test::have_cuda()) return;
  const Device gpu = Device::cuda();
  for (DType dt : {DType::f32, DType::f64}) {
    for (const Tensor& x : parity_inputs(dt)) {
      for (double ratio : {0.01, 0.1, 0.5, 1.0}) {  // index form and bitmap form
        INFO(x.str() << " ratio " << ratio);
        auto c = parse_compressor("topk:ratio=" + std::to_string(ratio));
        c->encode(x);
        const std::vector<uint32_t> kept = static_cast<TopkCompressor&>(*c).last_indices();
        Tensor g = test::randn(x.shape(), 41, dt);  // another tensor, as the backward's gradient is
        check_same_payload(TopkCompressor::encode_at(g, kept), TopkCompressor::encode_at(g.to(gpu), kept));
        // The positions a GPU encode left on the GPU (what a CompressionLayer's backward uses) give the same payload.
        auto on_gpu = parse_compressor("topk:ratio=" + std::to_string(ratio));
        on_gpu->encode(x.to(gpu));
        const Tensor& mask = static_cast<TopkCompressor&>(*on_gpu).last_positions_on_device();
        REQUIRE(mask.defined());
        CHECK(mask.is_cuda());
        check_same_payload(TopkCompressor::encode_at(g, kept), TopkCompressor::encode_at(g.to(gpu), mask));
        CHECK(static_cast<TopkCompressor&>(*on_gpu).last_indices() == kept);
      }
    }
  }
  Tensor x = test::randn({64}, 42, DType::f32);
  CHECK_THROWS_AS(TopkCompressor::encode_at(x.to(gpu), {3, 2}), ValueError);  // not ascending
  CHECK_THROWS_AS(TopkCompressor::encode_at(x.to(gpu), {64}), ValueError);    // out of range
}

TEST_CASE("compress cuda stats: the GPU's sums give the CPU's statistics, and a rerun the same bits") {
  if (!test::have_cuda()) return;
  const Device gpu = Device::cuda();
  // 600,003 elements: more than two grid strides (kReduceBlocks = 1024 blocks x 256 threads); zeros in x (left out
  // of rel_err).
  for (DType dt_x : {DType::f32, DType::f64}) {
    for (DType dt_y : {DType::f32, DType::f64}) {
      Tensor x = relu(test::randn({600003}, 31, dt_x)), y = test::randn({600003}, 32, dt_y, Device::cpu(), 0.1);
      y = add(y.to(dt_x), x).to(dt_y);
      INFO(dtype_name(dt_x) << " against " << dtype_name(dt_y));
      const CompressionStats c = compute_stats(x, y, 77), g = compute_stats(x.to(gpu), y.to(gpu), 77);
      CHECK(g.elements == c.elements);
      CHECK(g.rel_err_count == c.rel_err_count);
      CHECK(g.max_abs == c.max_abs);  // a max: exact in any order
      for (auto [gv, cv] : {std::pair{g.mse, c.mse}, {g.rel_l2, c.rel_l2}, {g.rel_err, c.rel_err},
                            {g.snr_db, c.snr_db}, {g.cosine, c.cosine}})
        CHECK(std::fabs(gv - cv) <= 1e-12 * std::fabs(cv));
      // A signed mean may cancel to near 0: compare it against the error's size, not its own.
      CHECK(std::fabs(g.mean_err - c.mean_err) <= 1e-12 * std::sqrt(c.mse));
      CHECK(std::fabs(g.bias - c.bias) <= 1e-12);
      const CompressionStats again = compute_stats(x.to(gpu), y.to(gpu), 77);
      CHECK(again.mse == g.mse);
      CHECK(again.rel_err == g.rel_err);
      CHECK(again.cosine == g.cosine);
      CHECK(again.bias == g.bias);
      // Deferred: queued on the GPU, finished by get() (from another stream too), the same bits.
      const PendingStats later = compute_stats_later(x.to(gpu), y.to(gpu), 77);
      CHECK(later.on_device());
      Stream other(gpu);
      StreamGuard guard(other);
      const CompressionStats done = later.get();
      CHECK(done.mse == g.mse);
      CHECK(done.rel_err == g.rel_err);
      CHECK(done.cosine == g.cosine);
      CHECK(done.max_abs == g.max_abs);
      CHECK(done.payload_bytes == 77);
      CHECK(std::fabs(g.sum_rel_err - c.sum_rel_err) <= 1e-10 * c.sum_rel_err);  // one channel: sum(e) / sum(x)
      CHECK(done.sum_rel_err == g.sum_rel_err);
    }
  }
  // The per-channel sums of an NCHW and a [B, T, H] tensor: the engine's f64 reductions on the GPU against the host's
  // serial sums, the same bits again on a rerun and when deferred.
  for (const Shape& shape : {Shape{3, 7, 97, 293}, Shape{5, 61, 768}}) {
    const int64_t n = shape_numel(shape);
    const Tensor x = reshape(relu(test::randn({n}, 33, DType::f32)), shape);
    const Tensor y = add(x, reshape(test::randn({n}, 34, DType::f32, Device::cpu(), 0.1), shape));
    INFO(shape_str(shape));
    const CompressionStats c = compute_stats(x, y, 5), g = compute_stats(x.to(gpu), y.to(gpu), 5);
    CHECK(c.sum_rel_err > 0);
    CHECK(std::fabs(g.sum_rel_err - c.sum_rel_err) <= 1e-10 * c.sum_rel_err);
    CHECK(compute_stats(x.to(gpu), y.to(gpu), 5).sum_rel_err == g.sum_rel_err);
    CHECK(compute_stats_later(x.to(gpu), y.to(gpu), 5).get().sum_rel_err == g.sum_rel_err);
  }
}

TEST_CASE("compress cuda lowrank: GPU factors reconstruct like the CPU's; rank-r input comes back exactly") {
  if (!test::have_cuda()) return;
  const Device gpu = Device::cuda();
  for (DType dt : {DType::f32, DType::f64}) {
    for (const Shape& s : std::vector<Shape>{{1}, {13}, {6, 9}, {3, 8, 5}, {4, 3, 7, 7}}) {
      Tensor x = test::randn(s, 21, dt);
      INFO(x.str());
      auto on_cpu = parse_compressor("lowrank:rank=2,iters=3"), on_gpu = parse_compressor("lowrank:rank=2,iters=3");
      for (int call = 0; call < 2; ++call) {  // the second call uses the warm start on both devices
        const Payload pc = on_cpu->encode(x), pg = on_gpu->encode(x.to(gpu));
        CHECK(pg.params == pc.params);
        CHECK_ALLCLOSE(decode_payload(pg), decode_payload(pc), 1e-4 * (1 + max_abs(x)), 1e-4);
        if (dt == DType::f32) {  // the GPU decoder (f64 GEMM of the f32 factors) against the CPU's f64 loops
          Tensor dg = decode_payload(pc, gpu);
          REQUIRE(dg.is_cuda());
          CHECK_ALLCLOSE(dg.cpu(), decode_payload(pc), 1e-6 * (1 + max_abs(x)), 1e-6);
        }
      }
    }
  }
  // [2, 20, 30] made of two rank-2 matrices: rank 2 reconstructs them up to the f32 rounding of the factors
  Tensor a = test::randn({2, 20, 2}, 31, DType::f64), b = test::randn({2, 2, 30}, 32, DType::f64);
  Tensor x = matmul(a, b);
  Tensor y = decode_payload(parse_compressor("lowrank:rank=2,iters=2")->encode(x.to(gpu)));
  CHECK_ALLCLOSE(y, x, 1e-5 * (1 + max_abs(x)), 1e-5);
  // and rank 1 cannot: the test above would notice a decoder that ignored the factors' second column
  Tensor y1 = decode_payload(parse_compressor("lowrank:rank=1,iters=2")->encode(x.to(gpu)));
  std::string why;
  CHECK(!test::allclose(y1, x, 1e-3, 1e-3, &why));
}

TEST_CASE("compress cuda: empty tensors, constants, NaN and streams on the new GPU paths") {
  if (!test::have_cuda()) return;
  const Device gpu = Device::cuda();
  // corrupt top-k positions are refused before any kernel sees them, in both position formats
  Payload idx = parse_compressor("topk:ratio=0.05")->encode(test::randn({100}, 3, DType::f32));
  REQUIRE(idx.params[1] == 0);
  idx.codes[0] = 0x7f;  // 7-bit index 127 >= n = 100
  CHECK_THROWS_AS(decode_payload(idx, gpu), CompressError);
  Payload bm = parse_compressor("topk:ratio=0.5")->encode(test::randn({100}, 3, DType::f32));
  REQUIRE(bm.params[1] == 1);
  for (auto& b : bm.codes) b = 0xff;
  CHECK_THROWS_AS(decode_payload(bm, gpu), CompressError);
  const std::vector<const char*> specs = {"topk:ratio=0.3", "sortquant:bits=4,split=2", "kmeans:bits=3",
                                          "lowrank:rank=2", "quant:bits=6,per=channel"};
  for (const char* spec : specs) {
    INFO(spec);
    Tensor empty_x = empty({0, 4}, DType::f32, gpu);
    CHECK(decode_payload(parse_compressor(spec)->encode(empty_x), gpu).numel() == 0);
    Tensor c = full({5, 6}, 0.75, DType::f32, gpu);
    const std::vector<double> back = decode_payload(parse_compressor(spec)->encode(c), gpu).to_double_vector();
    if (std::string(spec).rfind("topk", 0) != 0)  // topk zeroes what it drops
      for (double v : back) CHECK(v == doctest::Approx(0.75).epsilon(1e-5));
    for (DType dt : {DType::f32, DType::f64}) {
      Tensor bad = from_vector({1, 2, 3, std::nan(""), 5, 6}, {2, 3}, dt, gpu);
      std::string what;
      try {
        parse_compressor(spec)->encode(bad);
        synchronize(gpu);  // the non-finite verdict is judged here at the latest (engine/device_check.h)
      } catch (const ValueError& e) {
        what = e.what();
      }
      CHECK(what.find("flat index 3") != std::string::npos);
    }
    const Tensor xd = test::randn({9, 10}, 41, DType::f32).to(gpu);
    synchronize(gpu);  // the copy ran on the current stream; the encode below runs on another
    Stream s(gpu);
    Payload on_stream = parse_compressor(spec)->encode(xd, s.handle());
    s.synchronize();  // sections left on the GPU are ordered on `s`, like any tensor made there
    on_stream.to_host();
    const Payload plain = parse_compressor(spec)->encode(xd).host_copy();
    CHECK(on_stream.codes == plain.codes);
    CHECK(same_table_bits(on_stream.table, plain.table));
  }
  // top-k's mask asked for right after an encode on another stream, with nothing synchronized: last_indices() waits
  // for the encode's own stream, not only for the caller's (a big tensor, so the selection is still running)
  const Tensor big = test::randn({1 << 22}, 43, DType::f32).to(gpu);
  synchronize(gpu);
  TopkCompressor cpu_topk(TopkOptions{0.01}), gpu_topk(TopkOptions{0.01});
  cpu_topk.encode(big.to(Device::cpu()));
  Stream s(gpu);
  gpu_topk.encode(big, s.handle());
  CHECK(gpu_topk.last_indices() == cpu_topk.last_indices());
  s.synchronize();
}

// ---- the GPU algorithms emulated on the host ----------------------------------------------------------------------
// The kernels cannot run here without a GPU, but their algorithm can: top-k's radix selection through the same EP_HD
// steps (sort_keys.h), counted serially where the GPU counts per tile and scans; exact sortquant's stable sort over
// the same integer keys (std::stable_sort standing in for CUB's stable radix sort), the same bucket arithmetic and
// table rule. These cases pin down that the algorithms reproduce the CPU encoders' codes, ties and signed zeros
// included.

namespace {

template <class T> std::vector<uint32_t> emulated_topk(const std::vector<T>& x, uint64_t k) {
  using K = decltype(magnitude_key(T()));
  constexpr int passes = int(sizeof(K)) * 8 / kRadixBits;
  uint64_t prefix = 0, mask = 0, remaining = k;
  for (int p = 0; p < passes; ++p) {
    const int shift = (passes - 1 - p) * kRadixBits;
    uint32_t hist[kRadixBins] = {};
    for (T v : x)
      if ((magnitude_key(v) & K(mask)) == K(prefix)) ++hist[(magnitude_key(v) >> shift) & K(kRadixBins - 1)];
    const int digit = radix_pick_digit(hist, &remaining);
    prefix |= uint64_t(digit) << shift;
    mask |= uint64_t(kRadixBins - 1) << shift;
  }
  const K t = K(prefix);
  std::vector<uint32_t> kept(size_t(k), UINT32_MAX);
  uint64_t above = 0, equal = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const K key = magnitude_key(x[i]);
    if (key > t) kept.at(size_t(topk_slot(above++, equal, remaining))) = uint32_t(i);
    else if (key == t && equal < remaining) kept.at(size_t(topk_slot(above, equal++, remaining))) = uint32_t(i);
    else if (key == t) ++equal;
  }
  return kept;
}

template <class T> Payload emulated_exact_sortquant(const std::vector<T>& x, const Shape& shape, int bits, int split) {
  const int64_t n = int64_t(x.size()), K = int64_t(1) << split;
  std::vector<uint32_t> order(x.size());
  std::iota(order.begin(), order.end(), 0u);
  std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return value_key(x[a]) < value_key(x[b]); });
  std::vector<uint32_t> bucket(x.size());
  for (int64_t j = 0; j < n; ++j) bucket[order[size_t(j)]] = uint32_t(bucket_of_position(n, K, j));
  Payload p;
  p.method = Method::sortquant;
  p.dtype = dtype_of<T>::value;
  p.shape = shape;
  p.params = {uint32_t(bits), uint32_t(split)};
  p.table.assign(size_t(2 * K), 0.0f);
  const uint32_t levels = (1u << bits) - 1;
  for (int64_t b = 0; b < K; ++b) {
    const int64_t s = bucket_start(n, K, b), e = bucket_start(n, K, b + 1);
    const double lo = e > s ? value_of_key(value_key(x[order[size_t(s)]])) : 1.0;
    const double hi = e > s ? value_of_key(value_key(x[order[size_t(e - 1)]])) : 0.0;
    min_step_entry(lo, hi, levels, &p.table[size_t(2 * b)], &p.table[size_t(2 * b + 1)]);
  }
  std::vector<uint32_t> codes(x.size());
  for (size_t i = 0; i < x.size(); ++i)
    codes[i] = bucket[i] << bits | quant_level(double(x[i]), p.table[2 * bucket[i]], p.table[2 * bucket[i] + 1],
                                               levels, -1.0);
  p.codes.assign(size_t(packed_bytes(x.size(), bits + split)), 0);
  pack_codes(codes.data(), codes.size(), bits + split, p.codes.data());
  return p;
}

}  // namespace

TEST_CASE("compress cuda algorithm: radix selection gives the CPU's top-k set; stable key sorts its sortquant codes") {
  for (DType dt : {DType::f32, DType::f64}) {
    for (const Tensor& x : parity_inputs(dt)) {
      INFO(x.str());
      const int64_t n = x.numel();
      for (double ratio : {0.001, 0.1, 0.5, 0.9, 1.0}) {
        TopkCompressor c(TopkOptions{ratio, true});
        c.encode(x);
        const uint64_t k = c.last_indices().size();
        CHECK(k == uint64_t(std::ceil(ratio * double(n) - 1e-9)));
        if (dt == DType::f32) CHECK(emulated_topk(x.to_vector<float>(), k) == c.last_indices());
        else CHECK(emulated_topk(x.to_vector<double>(), k) == c.last_indices());
      }
      for (auto [bits, split] : {std::pair{6, 2}, {3, 5}, {1, 0}, {8, 8}, {2, 4}}) {
        INFO("bits " << bits << " split " << split);
        SortquantOptions o;
        o.bits = bits;
        o.split = split;
        const Payload pc = SortquantCompressor(o).encode(x);
        const Payload pe = dt == DType::f32 ? emulated_exact_sortquant(x.to_vector<float>(), x.shape(), bits, split)
                                            : emulated_exact_sortquant(x.to_vector<double>(), x.shape(), bits, split);
        check_same_payload(pc, pe);
      }
    }
  }
}
