// test_compress_layer.cpp — CompressionLayer: forward is decode(encode(x)), backward is decode(encode(g)) of the
// incoming gradient checked against explicit encode/decode of a known gradient, top-k mask reuse, the float64
// gradcheck with `none` (the identity), CPU-vs-CUDA parity (skipped without a GPU) and the statistics sink.
// GPU twins (quant per tensor, fp8) against the CPU codes. Not the methods' laws (test_compress_methods.cpp).
#include <doctest/doctest.h>

#include <cmath>

#include "compress/compression_layer.h"
#include "compress/methods.h"
#include "engine/device_check.h"
#include "tests/test_util.h"

using namespace ep;
using namespace ep::compress;

namespace {

// The gradient CompressionLayer gives x when the loss is sum(layer(x) * w): the compressed w.
Tensor layer_grad(CompressionLayer& layer, const Tensor& x_value, const Tensor& w) {
  Tensor x = test::leaf(x_value.detach().clone());
  Tensor y = layer(x);
  sum(y * w).backward();
  return x.grad();
}

Tensor explicit_round_trip(const std::string& spec, const Tensor& t) {
  auto c = parse_compressor(spec);
  return c->decode(c->encode(t), t.device());
}

std::vector<double> round_trip_values(const std::string& spec, const Tensor& t) {
  return explicit_round_trip(spec, t).to_double_vector();
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  const std::vector<double> u = a.to_double_vector(), v = b.to_double_vector();
  double m = 0;
  for (size_t i = 0; i < u.size(); ++i) m = std::max(m, std::fabs(u[i] - v[i]));
  return m;
}

}  // namespace

TEST_CASE("compress layer: forward and backward equal explicit encode/decode of x and of a known gradient") {
  const Device dev = test::test_device();
  Tensor x = test::randn({4, 3, 5}, 1, DType::f32, dev);
  Tensor w = test::randn({4, 3, 5}, 2, DType::f32, dev);
  const char* specs[] = {"quant:bits=4", "quant:bits=3,per=channel", "sortquant:bits=3,split=2",
                         "sortquant:bits=2,split=1,mode=sampled", "kmeans:bits=2", "fp8:format=e5m2",
                         "topk:ratio=0.3,mask=own", "lowrank:rank=2"};
  for (const char* spec : specs) {
    INFO(spec);
    CompressionLayer layer(spec);
    CHECK_FALSE(layer.reuses_forward_mask());
    Tensor xl = test::leaf(x.detach().clone());
    Tensor y = layer(xl);
    CHECK(y.device() == dev);
    CHECK_ALLCLOSE(y, explicit_round_trip(spec, x), 0.0, 0.0);
    sum(y * w).backward();
    CHECK_ALLCLOSE(xl.grad(), explicit_round_trip(spec, w), 0.0, 0.0);
    CHECK(max_abs_diff(xl.grad(), w) > 0);  // the gradient really went through the compressor
  }
}

TEST_CASE("compress layer: separate backward method, and top-k reusing the forward mask by default") {
  Tensor x = from_vector({1, -9, 3, 8, -2, 5, -7, 4, 6, 0.5}, {2, 5});
  Tensor w = from_vector({10, 20, 30, 40, 50, 60, 70, 80, 90, 100}, {2, 5});
  // forward quant, backward sortquant
  CompressionLayer mixed("quant:bits=8", "sortquant:bits=2,split=1");
  CHECK_ALLCLOSE(layer_grad(mixed, x, w), explicit_round_trip("sortquant:bits=2,split=1", w), 0.0, 0.0);
  // top-k 0.3 keeps |x| = 9, 8, 7 at positions 1, 3, 6; the gradient keeps exactly those positions (the seeds'
  // g * mask), although w's own largest entries are elsewhere.
  CompressionLayer reuse("topk:ratio=0.3");
  CHECK(reuse.reuses_forward_mask());
  CHECK(layer_grad(reuse, x, w).to_vector<float>() == std::vector<float>{0, 20, 0, 40, 0, 0, 70, 0, 0, 0});
  // The positions as a tensor (what a GPU encode leaves on its GPU; on the host they are copied and checked).
  const Payload by_vector = TopkCompressor::encode_at(w, {1, 3, 6});
  CHECK(TopkCompressor::encode_at(w, from_data<int32_t>({1, 3, 6}, {3})).serialize() == by_vector.serialize());
  CHECK_THROWS_AS(TopkCompressor::encode_at(w, from_data<int32_t>({3, 1}, {2})), ValueError);  // not ascending
  CHECK_THROWS_AS(TopkCompressor::encode_at(w, from_vector({1, 3}, {2})), ValueError);         // not i32
  // mask=own selects on the gradient: the three largest of w
  CompressionLayer own("topk:ratio=0.3", "topk:ratio=0.3,mask=own");
  CHECK(layer_grad(own, x, w).to_vector<float>() == std::vector<float>{0, 0, 0, 0, 0, 0, 0, 80, 90, 100});
  // a top-k backward after a non-top-k forward has no mask to reuse and selects on the gradient
  CompressionLayer after_quant("quant:bits=8", "topk:ratio=0.2");
  CHECK_FALSE(after_quant.reuses_forward_mask());
  CHECK(layer_grad(after_quant, x, w).to_vector<float>() == std::vector<float>{0, 0, 0, 0, 0, 0, 0, 0, 90, 100});
  // each call's backward uses that call's mask (two micro-batches through one layer, backward in reverse order)
  CompressionLayer two("topk:ratio=0.1");
  Tensor a = test::leaf(from_vector({5, 1, 1, 1}, {4})), b = test::leaf(from_vector({1, 1, 1, 5}, {4}));
  Tensor ya = two(a), yb = two(b);
  Tensor g = from_vector({1, 2, 3, 4}, {4});
  sum(yb * g).backward();
  sum(ya * g).backward();
  CHECK(a.grad().to_vector<float>() == std::vector<float>{1, 0, 0, 0});
  CHECK(b.grad().to_vector<float>() == std::vector<float>{0, 0, 0, 4});
}

TEST_CASE("compress layer: float64 gradcheck with none (the identity) and CPU-vs-CUDA parity") {
  const Device dev = test::test_device();
  CompressionLayer identity("none");
  test::gradcheck([&](const std::vector<Tensor>& in) { return identity(in[0]); },
                  {test::leaf(test::randn({3, 4}, 5, DType::f64, dev))});
  // Parity: both inputs go through the same deterministic codes, so CPU and GPU results agree exactly.
  CompressionLayer q("quant:bits=6");
  test::check_parity([&](const std::vector<Tensor>& in) { return q(in[0]); },
                     {test::leaf(test::randn({5, 7}, 6, DType::f32))}, 0.0, 0.0);
}

TEST_CASE("compress layer: the stats sink sees both directions with the payload's real size") {
  CompressionLayer layer("quant:bits=4");
  std::vector<std::pair<Direction, CompressionStats>> seen;
  layer.set_stats_sink([&](Direction d, const PendingStats& s) { seen.emplace_back(d, s.get()); });
  Tensor x = test::randn({6, 10}, 3, DType::f32);
  Tensor w = test::randn({6, 10}, 4, DType::f32);
  layer_grad(layer, x, w);
  REQUIRE(seen.size() == 2);
  CHECK(seen[0].first == Direction::forward);
  CHECK(seen[1].first == Direction::backward);
  // 60 elements at 4 bits = 30 bytes, table 2 floats, header 4 + 4 + 2*4 + 1 + 3*4 + 4 + 8 = 41
  CHECK(seen[0].second.payload_bytes == 41 + 8 + 30);
  CHECK(seen[0].second.ratio_fp32 == doctest::Approx(79.0 / 240));
  CHECK(seen[0].second.elements == 60);
  CHECK(seen[0].second.mse > 0);
  CHECK(seen[1].second.mse > 0);
  CompressionLayer exact("none");
  std::vector<CompressionStats> none_seen;
  exact.set_stats_sink([&](Direction, const PendingStats& s) { none_seen.push_back(s.get()); });
  exact(x);
  REQUIRE(none_seen.size() == 1);
  CHECK(none_seen[0].mse == 0);
  CHECK(std::isinf(none_seen[0].snr_db));
  CHECK(none_seen[0].cosine == doctest::Approx(1.0));
}

TEST_CASE("compress layer: bad construction and bad inputs fail with one line") {
  CHECK_THROWS_AS(CompressionLayer("nope"), CompressError);
  CHECK_THROWS_AS(CompressionLayer(std::shared_ptr<Compressor>()), ValueError);
  CompressionLayer layer("quant");
  CHECK_THROWS_AS(layer(from_vector({1, std::nan(""), 2}, {3})), ValueError);
}

TEST_CASE("compress cuda parity: quant, fp8 and sampled sortquant GPU codes equal the CPU's and decode identically") {
  if (!test::have_cuda()) return;
  const Device gpu = Device::cuda();
  Tensor x = test::randn({7, 33, 29}, 3, DType::f32);  // 6699 elements: a partial last group of 8 codes
  Tensor xd = x.to(gpu);
  for (const char* spec : {"quant:bits=1", "quant:bits=3", "quant:bits=8", "quant:bits=12", "quant:bits=16",
                           "quant:bits=5,round=stochastic,seed=4", "fp8", "fp8:format=e5m2", "fp8:round=stochastic",
                           "fp8:format=e5m2,round=stochastic,seed=7",
                           "sortquant:bits=6,split=2,mode=sampled,sample=1000",
                           "sortquant:bits=3,split=5,mode=sampled,sample=500,seed=3", "sortquant:bits=4,split=3"}) {
    INFO(spec);
    auto on_cpu = parse_compressor(spec), on_gpu = parse_compressor(spec);
    for (int call = 0; call < 2; ++call) {  // the second call checks that the generators advance alike
      const Payload pc = on_cpu->encode(x), on_device = on_gpu->encode(xd);
      CHECK(on_device.codes_tensor.defined());  // left on the GPU: the decode below reads it in place
      const Payload pg = on_device.host_copy();
      CHECK(pg.table == pc.table);
      CHECK(pg.codes == pc.codes);
      CHECK(on_device.bytes() == pc.bytes());
      CHECK(on_device.serialize() == pc.serialize());
      Tensor dc = decode_payload(pc), dg = decode_payload(pc, gpu), dg_in_place = decode_payload(on_device, gpu);
      REQUIRE(dg.is_cuda());
      REQUIRE(dg_in_place.is_cuda());
      CHECK_ALLCLOSE(dg.cpu(), dc, 0.0, 0.0);
      CHECK_ALLCLOSE(dg_in_place.cpu(), dc, 0.0, 0.0);
      CHECK_ALLCLOSE(decode_payload(on_device), dc, 0.0, 0.0);  // on the host: from a host copy
    }
  }
  Tensor constant = full({100}, 2.5, DType::f32, gpu);
  CHECK(round_trip_values("quant:bits=4", constant) == std::vector<double>(100, 2.5));
  CHECK(round_trip_values("fp8", constant) == std::vector<double>(100, 2.5));
  // exact sortquant (a GPU twin in sort_methods.cu) round-trips on the GPU exactly as on the CPU
  Tensor y = explicit_round_trip("sortquant:bits=3,split=2", xd);
  CHECK(y.is_cuda());
  CHECK_ALLCLOSE(y.cpu(), explicit_round_trip("sortquant:bits=3,split=2", x), 0.0, 0.0);
  Tensor bad = from_vector({1, 2, std::nan(""), 4}, {4}, DType::f32, gpu);
  std::string what;
  try {
    parse_compressor("quant")->encode(bad);  // nothing waits for the GPU here: the verdict comes at the next sync
    synchronize(gpu);
  } catch (const ValueError& e) {
    what = e.what();
  }
  CHECK(what.find("flat index 2") != std::string::npos);
  CHECK(pending_device_checks() == 0);
  CHECK_THROWS_AS(parse_compressor("fp8")->encode(bad), ValueError);
}
