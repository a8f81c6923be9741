// test_memory_limit.cpp — set_tensor_memory_limit: an allocation past the cap throws OutOfMemoryError before any
// memory is taken, the cap counts live tensors only, and 0 lifts it. Pipeline::reschedule and the compression log's
// discarded steps, which the trainers' out-of-memory retry rests on, are tested here too.
#include <doctest/doctest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "compress/split.h"
#include "engine/device.h"
#include "pipeline/pipeline.h"
#include "pipeline/schedule.h"
#include "tests/test_util.h"

using namespace ep;
using test::contains;

namespace {
// The cap is process-wide: set for one test case, lifted after it.
struct MemoryLimit {
  explicit MemoryLimit(uint64_t bytes) { set_tensor_memory_limit(bytes); }
  ~MemoryLimit() { set_tensor_memory_limit(0); }
};
}  // namespace

TEST_CASE("memory limit: an allocation past it is a typed error; freed tensors make room again; 0 lifts it") {
  CHECK(tensor_memory_limit() == 0);
  const uint64_t live = live_host_tensor_bytes();
  MemoryLimit cap(live + (4 << 20));
  Tensor a = empty({512, 1024}, DType::f32);  // 2 MiB: fits
  std::string e = test::error_of<OutOfMemoryError>([] { empty({768, 1024}, DType::f32); });  // 3 MiB more: does not
  CHECK_MESSAGE(contains(e, "[storage] out of memory on cpu: 3145728 bytes requested with "), e);
  CHECK_MESSAGE(contains(e, ", over the limit of " + std::to_string(live + (4 << 20)) + " bytes of tensors"), e);
  CHECK(live_host_tensor_bytes() >= live + (2 << 20));  // the failed request took nothing
  CHECK(live_host_tensor_bytes() < live + (3 << 20));
  a = Tensor();
  Tensor b = empty({768, 1024}, DType::f32);  // with the first freed, it fits
  CHECK(b.numel() == 768 * 1024);
  set_tensor_memory_limit(0);
  Tensor big = empty({4096, 1024}, DType::f32);  // 16 MiB: no limit
  CHECK(big.numel() == 4096 * 1024);
}

TEST_CASE("pipeline: reschedule changes the micro-batches and schedule from the next step, as a pipeline built so") {
  using namespace ep::pipeline;
  // Each stage scales by its own weight: one tensor in two stages would take gradients from two threads at once
  // (a race, and an order of additions that varies from run to run).
  auto make = [](int chunks, ScheduleKind kind, std::vector<Tensor>& w) {
    std::vector<Stage> stages(2);
    for (size_t s = 0; s < stages.size(); ++s) {
      stages[s].device = Device::cpu();
      stages[s].units.push_back(nn::Unit("scale", [&w, s](const Tensor& x) { return mul(x, w[s]); }));
    }
    PipelineOptions po;
    po.chunks = chunks;
    po.schedule = kind;
    return std::make_unique<Pipeline>(std::move(stages), po);
  };
  auto weights = [] {
    return std::vector<Tensor>{test::leaf(from_vector({2.0}, {1}, DType::f64)),
                               test::leaf(from_vector({-1.5}, {1}, DType::f64))};
  };
  std::vector<Tensor> w1 = weights(), w2 = weights();
  auto changed = make(1, ScheduleKind::gpipe, w1);
  auto built = make(3, ScheduleKind::one_f_one_b, w2);
  changed->reschedule(3, ScheduleKind::one_f_one_b);
  CHECK(changed->options().chunks == 3);
  CHECK(changed->options().schedule == ScheduleKind::one_f_one_b);
  CHECK(changed->orders() == stage_orders(ScheduleKind::one_f_one_b, 2, 3));
  const Tensor x = test::randn({7, 1}, 5, DType::f64);
  auto loss = [](const Tensor& out, const MicroBatch& mb) { return mean_loss_share(mean(mul(out, out)), mb); };
  StepResult a = changed->train_step(x, loss), b = built->train_step(x, loss);
  CHECK(a.micro_losses.size() == 3);
  CHECK(a.micro_losses == b.micro_losses);
  for (size_t s = 0; s < w1.size(); ++s) CHECK(w1[s].grad().to_double_vector() == w2[s].grad().to_double_vector());
  CHECK_THROWS_AS(changed->reschedule(0, ScheduleKind::gpipe), ValueError);
}

TEST_CASE("compression log: a discarded step's statistics are neither summarized nor written") {
  test::TempDir dir;
  compress::CompressionLog log(dir.path.string());
  log.start(-1);
  compress::CompressionStats st;
  st.mse = 1.0;
  log.set_step(1);
  log.record(0, compress::Direction::forward, st);
  log.discard_step();  // the attempt that ran out of memory
  st.mse = 0.5;
  log.record(0, compress::Direction::forward, st);
  log.commit_step();
  log.set_recording(false);
  const nlohmann::json s = log.summary();
  CHECK(s["boundary1"]["forward"]["calls"] == 1);
  CHECK(s["boundary1"]["forward"]["mean_mse"] == 0.5);
  std::ifstream in(dir.path / "compression.jsonl");
  std::vector<nlohmann::json> rows;
  for (std::string line; std::getline(in, line);) rows.push_back(nlohmann::json::parse(line));
  REQUIRE(rows.size() == 1);
  CHECK(rows[0]["mse"] == 0.5);
  CHECK(rows[0]["step"] == 1);
}
