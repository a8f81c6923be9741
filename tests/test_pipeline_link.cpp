// test_pipeline_link.cpp — --link parsing and the link-emulating boundary: bytes occupy a serial link per direction
// (the busy time is exactly bytes*8/bandwidth), the receiver waits for arrival, and a smaller payload makes the step
// faster. Not the executor (test_pipeline_workers.cpp).
#include <doctest/doctest.h>

#include "compress/compressor.h"
#include "pipeline/compress_hook.h"
#include "pipeline/link.h"
#include "pipeline/pipeline.h"
#include "tests/test_util.h"

using namespace ep;
using namespace ep::pipeline;

TEST_CASE("pipeline link: --link parses bandwidth and latency units; bad specs name --link") {
  LinkSpec l = parse_link("100Mbit,20ms");
  CHECK(l.bits_per_second == 1e8);
  CHECK(l.latency_s == doctest::Approx(0.02));
  CHECK(parse_link("1Gbps,500us").bits_per_second == 1e9);
  CHECK(parse_link("1Gbps,500us").latency_s == doctest::Approx(5e-4));
  CHECK(parse_link("12.5MB,0").bits_per_second == 1e8);  // bytes per second
  CHECK(parse_link("8kbit,1s").transfer_seconds(1000) == doctest::Approx(2.0));  // 8000 bits at 8 kbit/s, +1 s
  for (const char* bad : {"100Mbit", "fast,20ms", "100Mbit,20", "100Mbit,20min", "0Mbit,1ms", "100furlongs,1ms",
                          "100Mbit,-1ms"}) {
    INFO(std::string(bad));
    CHECK_THROWS_WITH_AS(parse_link(bad), doctest::Contains("--link"), ValueError);
  }
}

TEST_CASE("pipeline link: a link's busy time is bytes*8/bandwidth; compression shortens the step") {
  // Two stages of x -> x W (W [250, 250]); 8 rows in 4 micro-batches: 2 x 250 f32 = 2000 bytes per message.
  auto make = [](std::shared_ptr<BoundaryHook> inner, const std::string& link, std::shared_ptr<LinkHook>* out) {
    std::vector<Stage> stages(2);
    for (int s = 0; s < 2; ++s) {
      Tensor w = mul(test::randn({250, 250}, 50 + s, DType::f32), 0.05).requires_grad_();
      stages[size_t(s)].units.emplace_back(std::string("w").append(std::to_string(s)),
                                           [w](const Tensor& x) { return matmul(x, w); });
    }
    *out = std::make_shared<LinkHook>(inner, parse_link(link));
    return std::make_unique<Pipeline>(std::move(stages), PipelineOptions{4, ScheduleKind::gpipe},
                                      std::vector<std::shared_ptr<BoundaryHook>>{*out});
  };
  const Tensor x = test::randn({8, 250}, 49, DType::f32);
  const LossFn loss = [](const Tensor& out, const MicroBatch& mb) { return mean_loss_share(mean(mul(out, out)), mb); };

  std::shared_ptr<LinkHook> slow, fast;
  auto p_slow = make(std::make_shared<IdentityHook>(), "1Mbit,5ms", &slow);
  StepResult r_slow = p_slow->train_step(x, loss);
  // 4 messages each way of 2000 bytes = 16 ms each at 1 Mbit/s: the link is busy exactly 64 ms per direction, and
  // the step cannot beat the forward link plus one latency plus the backward link plus one latency.
  CHECK(slow->busy_seconds(Pass::forward) == doctest::Approx(0.064));
  CHECK(slow->busy_seconds(Pass::backward) == doctest::Approx(0.064));
  CHECK(r_slow.stats.step_ms >= 64 + 5 + 64 + 5 - 1);

  // The same with 4-bit quantization on the wire: 1/8 of the bytes (plus a small header), a much shorter step.
  auto q4 = std::make_shared<CompressorHook>(compress::parse_compressor("quant:bits=4"),
                                             compress::parse_compressor("quant:bits=4"));
  auto p_fast = make(q4, "1Mbit,5ms", &fast);
  StepResult r_fast = p_fast->train_step(x, loss);
  CHECK(fast->busy_seconds(Pass::forward) < 0.064 / 6);
  CHECK(r_fast.stats.step_ms < r_slow.stats.step_ms / 2);
  CHECK(r_fast.stats.boundaries.at(0).forward_bytes < 2000 * 4 / 6);
}
