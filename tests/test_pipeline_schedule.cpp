// test_pipeline_schedule.cpp — the pure parts of the pipeline: GPipe and 1F1B task orders and clock cycles against
// tables written out by hand from the papers' diagrams, --stages/--devices/--split parsing, micro-batch sizes.
// Not the workers (test_pipeline_workers.cpp). Expected values never come from the code under test.
#include <doctest/doctest.h>

#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "engine/check.h"
#include "engine/ops.h"
#include "pipeline/microbatch.h"
#include "pipeline/partition.h"
#include "pipeline/schedule.h"
#include "tests/test_util.h"

using namespace ep;
using namespace ep::pipeline;

namespace {

// "F0 F1 B1 B0" for stage s -> tasks. Written independently of to_string() so a bug there cannot hide one here.
std::vector<Task> tasks_of(const std::string& row, int stage) {
  std::vector<Task> out;
  std::istringstream in(row);
  std::string tok;
  while (in >> tok) out.push_back({std::stoi(tok.substr(1)), stage, tok[0] == 'F' ? Pass::forward : Pass::backward});
  return out;
}

void check_orders(ScheduleKind kind, const std::vector<std::string>& rows) {
  const int stages = int(rows.size());
  const int chunks = int(tasks_of(rows[0], 0).size()) / 2;
  const auto got = stage_orders(kind, stages, chunks);
  REQUIRE(got.size() == rows.size());
  for (int s = 0; s < stages; ++s) {
    INFO(schedule_name(kind), " S=", stages, " C=", chunks, " stage ", s);
    CHECK(got[size_t(s)] == tasks_of(rows[size_t(s)], s));
  }
}

// Rows of a timeline, one token per tick ("--" idle), turned into the per-tick task lists (sorted by stage).
void check_clock(ScheduleKind kind, const std::vector<std::string>& rows) {
  std::vector<std::vector<std::string>> cells;
  for (const auto& r : rows) {
    std::istringstream in(r);
    std::vector<std::string> toks;
    std::string t;
    while (in >> t) toks.push_back(t);
    cells.push_back(toks);
  }
  const size_t ticks = cells[0].size();
  std::vector<std::vector<Task>> expected(ticks);
  int tasks = 0;
  for (size_t k = 0; k < ticks; ++k)
    for (size_t s = 0; s < cells.size(); ++s) {
      REQUIRE(cells[s].size() == ticks);
      const std::string& c = cells[s][k];
      if (c == "--") continue;
      expected[k].push_back({std::stoi(c.substr(1)), int(s), c[0] == 'F' ? Pass::forward : Pass::backward});
      ++tasks;
    }
  const int stages = int(rows.size()), chunks = tasks / (2 * stages);
  const auto got = clock_cycles(kind, stages, chunks);
  INFO(schedule_name(kind), " S=", stages, " C=", chunks);
  REQUIRE(got.size() == expected.size());
  for (size_t k = 0; k < ticks; ++k) {
    INFO("tick ", k);
    CHECK(got[k] == expected[k]);
  }
}

}  // namespace

TEST_CASE("pipeline schedule: gpipe fill-drain orders (Huang et al. fig. 2c)") {
  // Forward in order, backward in reverse, on every stage.
  check_orders(ScheduleKind::gpipe, {"F0 F1 F2 F3 B3 B2 B1 B0", "F0 F1 F2 F3 B3 B2 B1 B0", "F0 F1 F2 F3 B3 B2 B1 B0"});
  // chunks < stages
  check_orders(ScheduleKind::gpipe, {"F0 F1 B1 B0", "F0 F1 B1 B0", "F0 F1 B1 B0", "F0 F1 B1 B0"});
  // chunks = 1, one stage, and one stage with several chunks
  check_orders(ScheduleKind::gpipe, {"F0 B0", "F0 B0", "F0 B0"});
  check_orders(ScheduleKind::gpipe, {"F0 B0"});
  check_orders(ScheduleKind::gpipe, {"F0 F1 F2 B2 B1 B0"});
}

TEST_CASE("pipeline schedule: gpipe clock cycles") {
  // S = 3, C = 4: the diagonal fill, then the reverse diagonal drain; 2 * (C + S - 1) = 12 ticks.
  check_clock(ScheduleKind::gpipe, {
      "F0 F1 F2 F3 -- -- -- -- B3 B2 B1 B0",
      "-- F0 F1 F2 F3 -- -- B3 B2 B1 B0 --",
      "-- -- F0 F1 F2 F3 B3 B2 B1 B0 -- --",
  });
  // S = 4, C = 2 (chunks < stages): 10 ticks.
  check_clock(ScheduleKind::gpipe, {
      "F0 F1 -- -- -- -- -- -- B1 B0",
      "-- F0 F1 -- -- -- -- B1 B0 --",
      "-- -- F0 F1 -- -- B1 B0 -- --",
      "-- -- -- F0 F1 B1 B0 -- -- --",
  });
  // S = 3, C = 1: down and back up.
  check_clock(ScheduleKind::gpipe, {
      "F0 -- -- -- -- B0",
      "-- F0 -- -- B0 --",
      "-- -- F0 B0 -- --",
  });
  check_clock(ScheduleKind::gpipe, {"F0 B0"});
}

TEST_CASE("pipeline schedule: 1f1b orders (Narayanan et al. 2021 fig. 4, 4 devices, 8 micro-batches)") {
  // The paper numbers micro-batches from 1; these are its rows shifted to 0-based.
  check_orders(ScheduleKind::one_f_one_b, {
      "F0 F1 F2 F3 B0 F4 B1 F5 B2 F6 B3 F7 B4 B5 B6 B7",
      "F0 F1 F2 B0 F3 B1 F4 B2 F5 B3 F6 B4 F7 B5 B6 B7",
      "F0 F1 B0 F2 B1 F3 B2 F4 B3 F5 B4 F6 B5 F7 B6 B7",
      "F0 B0 F1 B1 F2 B2 F3 B3 F4 B4 F5 B5 F6 B6 F7 B7",
  });
  // chunks < stages: the warm-up is capped by the number of micro-batches.
  check_orders(ScheduleKind::one_f_one_b, {"F0 F1 B0 B1", "F0 F1 B0 B1", "F0 F1 B0 B1", "F0 B0 F1 B1"});
  check_orders(ScheduleKind::one_f_one_b, {"F0 B0", "F0 B0"});
  check_orders(ScheduleKind::one_f_one_b, {"F0 B0 F1 B1 F2 B2"});
}

TEST_CASE("pipeline schedule: 1f1b clock cycles") {
  // S = 3, C = 4, derived by hand tick by tick (a task starts when its stage is free and its input exists).
  check_clock(ScheduleKind::one_f_one_b, {
      "F0 F1 F2 -- -- B0 F3 B1 -- B2 -- B3",
      "-- F0 F1 -- B0 F2 B1 F3 B2 -- B3 --",
      "-- -- F0 B0 F1 B1 F2 B2 F3 B3 -- --",
  });
  // S = 4, C = 2.
  check_clock(ScheduleKind::one_f_one_b, {
      "F0 F1 -- -- -- -- -- B0 -- B1",
      "-- F0 F1 -- -- -- B0 -- B1 --",
      "-- -- F0 F1 -- B0 -- B1 -- --",
      "-- -- -- F0 B0 F1 B1 -- -- --",
  });
  check_clock(ScheduleKind::one_f_one_b, {"F0 -- -- B0", "-- F0 B0 --"});
}

TEST_CASE("pipeline schedule: every task once, 2(C+S-1) ticks, bad sizes rejected") {
  for (auto kind : {ScheduleKind::gpipe, ScheduleKind::one_f_one_b})
    for (int S = 1; S <= 8; ++S)
      for (int C : {1, 2, 3, 5, 8, 16}) {
        INFO(schedule_name(kind), " S=", S, " C=", C);
        const auto ticks = clock_cycles(kind, S, C);
        CHECK(int(ticks.size()) == 2 * (C + S - 1));
        std::set<std::tuple<int, int, int>> seen;
        for (const auto& t : ticks)
          for (const Task& x : t) seen.insert({x.micro, x.stage, int(x.pass)});
        CHECK(int(seen.size()) == 2 * S * C);
      }
  CHECK_THROWS_AS(stage_orders(ScheduleKind::gpipe, 0, 4), ValueError);
  CHECK_THROWS_AS(stage_orders(ScheduleKind::one_f_one_b, 2, 0), ValueError);
  CHECK(parse_schedule("1f1b") == ScheduleKind::one_f_one_b);
  CHECK(parse_schedule("gpipe") == ScheduleKind::gpipe);
  CHECK_THROWS_WITH_AS(parse_schedule("pipedream"), "--schedule pipedream: expected gpipe or 1f1b", ValueError);
  CHECK(to_string(Task{2, 1, Pass::forward}) == "F2@1");
  CHECK(to_string(Task{0, 3, Pass::backward}) == "B0@3");
}

TEST_CASE("pipeline partition: --stages and --devices") {
  Partition p = parse_stages("4,10,5", "cpu,cuda:0,cuda:1", 19);
  CHECK(p.units == std::vector<int64_t>{4, 10, 5});
  REQUIRE(p.devices.size() == 3);
  CHECK(p.devices[0] == Device::cpu());
  CHECK(p.devices[1] == Device::cuda(0));
  CHECK(p.devices[2] == Device::cuda(1));
  CHECK(p.first_unit(0) == 0);
  CHECK(p.first_unit(1) == 4);
  CHECK(p.first_unit(2) == 14);
  CHECK(p.describe() == "stage0 [0..4) cpu | stage1 [4..14) cuda:0 | stage2 [14..19) cuda:1");
  // One device for all stages; stages sharing a device; no devices = cpu.
  p = parse_stages("1,1,1,1", "cuda:0", 4);
  CHECK(p.devices == std::vector<Device>(4, Device::cuda(0)));
  p = parse_stages("2,1", "", 3);
  CHECK(p.devices == std::vector<Device>(2, Device::cpu()));
  p = parse_stages("1,2", "cuda:1,cuda:1", 3);
  CHECK(p.describe({"a", "b", "c"}) == "stage0 [a] cuda:1 | stage1 [b .. c] cuda:1");
  p = parse_stages("7", "cpu", 7);
  CHECK(p.stages() == 1);

  CHECK_THROWS_WITH_AS(parse_stages("2,0,3", "", 5),
                       "--stages 2,0,3: stage 1 has 0 units (each stage needs at least one)", ValueError);
  CHECK_THROWS_WITH_AS(parse_stages("2,3", "", 6), "--stages 2,3: the stages hold 5 units but the model has 6",
                       ValueError);
  CHECK_THROWS_WITH_AS(parse_stages("2,x", "", 6), "--stages 2,x: 'x' is not a non-negative integer", ValueError);
  CHECK_THROWS_WITH_AS(parse_stages("2,-1", "", 1), "--stages 2,-1: '-1' is not a non-negative integer", ValueError);
  CHECK_THROWS_WITH_AS(parse_stages("2,,1", "", 3), "--stages 2,,1: '' is not a non-negative integer", ValueError);
  CHECK_THROWS_WITH_AS(parse_stages("", "", 3), "--stages: empty (expected units per stage, e.g. 4,10,5)", ValueError);
  CHECK_THROWS_WITH_AS(parse_stages("1,2", "cpu,cpu,cpu", 3),
                       "--devices cpu,cpu,cpu: 3 devices for 2 stages (give one per stage, or one for all)",
                       ValueError);
  CHECK_THROWS_WITH_AS(parse_stages("1,2", "cpu,gpu", 3),
                       "--devices cpu,gpu: 'gpu' is not a device (expected cpu, cuda or cuda:N)", ValueError);
}

TEST_CASE("pipeline partition: --split K,M edge/cloud/edge and device validation") {
  Partition p = parse_split("1,1", "cpu", "cuda:0", 20);
  CHECK(p.units == std::vector<int64_t>{1, 18, 1});
  CHECK(p.devices == std::vector<Device>{Device::cpu(), Device::cuda(0), Device::cpu()});
  p = parse_split("3,0", "", "", 10);  // no back part: the cloud ends with the loss
  CHECK(p.units == std::vector<int64_t>{3, 7});
  CHECK(p.devices == std::vector<Device>{Device::cpu(), Device::cpu()});
  CHECK_THROWS_WITH_AS(parse_split("0,1", "cpu", "cpu", 5),
                       "--split 0,1: K must be at least 1 (the edge holds the first K units)", ValueError);
  CHECK_THROWS_WITH_AS(parse_split("3,2", "cpu", "cpu", 5),
                       "--split 3,2: K + M = 5 leaves no unit for the cloud (the model has 5 units)", ValueError);
  CHECK_THROWS_WITH_AS(parse_split("3", "cpu", "cpu", 5),
                       "--split 3: expected K,M (units on the edge before and after the cloud)", ValueError);
  CHECK_THROWS_WITH_AS(parse_split("1,1", "cpu", "tpu", 5),
                       "--cloud-device tpu: 'tpu' is not a device (expected cpu, cuda or cuda:N)", ValueError);
  validate_devices(parse_stages("1,1", "cpu", 2));
  if (cuda_device_count() < 8)
    CHECK_THROWS_AS(validate_devices(parse_stages("1,1", "cpu,cuda:7", 2)), DeviceError);
}

TEST_CASE("pipeline microbatch: chunk sizes, scatter and gather, loss share") {
  CHECK(chunk_sizes(10, 4) == std::vector<int64_t>{3, 3, 2, 2});
  CHECK(chunk_sizes(5, 4) == std::vector<int64_t>{2, 1, 1, 1});
  CHECK(chunk_sizes(8, 8) == std::vector<int64_t>(8, 1));
  CHECK(chunk_sizes(7, 1) == std::vector<int64_t>{7});
  CHECK_THROWS_WITH_AS(chunk_sizes(3, 4), "--chunks 4: more micro-batches than the 3 rows of the mini-batch",
                       ValueError);
  CHECK_THROWS_AS(chunk_sizes(3, 0), ValueError);

  const Tensor x = from_vector({0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, {5, 2});
  const auto parts = scatter(x, 3);  // rows 2, 2, 1
  REQUIRE(parts.size() == 3);
  CHECK(parts[0].to_double_vector() == std::vector<double>{0, 1, 2, 3});
  CHECK(parts[1].to_double_vector() == std::vector<double>{4, 5, 6, 7});
  CHECK(parts[2].to_double_vector() == std::vector<double>{8, 9});
  const Tensor back = gather(parts);
  CHECK(back.shape() == Shape{5, 2});
  CHECK(back.to_double_vector() == x.to_double_vector());

  const auto mbs = micro_batches(10, 4);
  REQUIRE(mbs.size() == 4);
  CHECK(mbs[2].index == 2);
  CHECK(mbs[2].offset == 6);
  CHECK(mbs[2].rows == 2);
  CHECK(mbs[2].batch_rows == 10);
  // A micro-batch mean of 0.5 over 2 of 10 rows contributes 0.5 * 2 / 10 = 0.1.
  CHECK(mean_loss_share(scalar_tensor(0.5, DType::f64), mbs[2]).item() == doctest::Approx(0.1).epsilon(1e-15));
}
