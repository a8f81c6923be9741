// schedule.cpp — GPipe fill-drain and 1F1B task orders, and the clock-cycle view by unit-time list scheduling.
// Not an executor (pipeline/pipeline.cpp); the orders here are the only thing the workers follow.
#include "pipeline/schedule.h"

#include <algorithm>

#include "engine/check.h"

namespace ep::pipeline {

std::string to_string(const Task& t) {
  // Built by appending: GCC 12 warns falsely (-Wrestrict, its bug 105651) on `"literal" + std::string` at -O3.
  std::string s = t.pass == Pass::forward ? "F" : "B";
  return s.append(std::to_string(t.micro)).append("@").append(std::to_string(t.stage));
}

std::string schedule_name(ScheduleKind k) { return k == ScheduleKind::gpipe ? "gpipe" : "1f1b"; }

ScheduleKind parse_schedule(const std::string& s) {
  if (s == "gpipe") return ScheduleKind::gpipe;
  if (s == "1f1b") return ScheduleKind::one_f_one_b;
  EP_THROW(ValueError, "--schedule ", s, ": expected gpipe or 1f1b");
}

static void check_sizes(const char* what, int stages, int chunks) {
  EP_CHECK(stages >= 1, ValueError, "[", what, "] need at least one stage, got ", stages);
  EP_CHECK(chunks >= 1, ValueError, "[", what, "] need at least one micro-batch, got ", chunks);
}

std::vector<std::vector<Task>> stage_orders(ScheduleKind kind, int stages, int chunks) {
  check_sizes("schedule", stages, chunks);
  std::vector<std::vector<Task>> orders(static_cast<size_t>(stages));
  for (int j = 0; j < stages; ++j) {
    auto& o = orders[size_t(j)];
    auto fwd = [&](int i) { o.push_back({i, j, Pass::forward}); };
    auto bwd = [&](int i) { o.push_back({i, j, Pass::backward}); };
    if (kind == ScheduleKind::gpipe) {
      // Fill, then drain in reverse: the last micro-batch's gradient is the first one the last stage can produce.
      for (int i = 0; i < chunks; ++i) fwd(i);
      for (int i = chunks - 1; i >= 0; --i) bwd(i);
    } else {
      // Warm-up forwards fill the pipe below stage j; after that each forward is paired with the oldest backward.
      const int warmup = std::min(stages - 1 - j, chunks);
      for (int i = 0; i < warmup; ++i) fwd(i);
      for (int r = 0; r < chunks - warmup; ++r) {
        fwd(warmup + r);
        bwd(r);
      }
      for (int i = chunks - warmup; i < chunks; ++i) bwd(i);
    }
  }
  return orders;
}

std::vector<std::vector<Task>> clock_cycles(ScheduleKind kind, int stages, int chunks) {
  const auto orders = stage_orders(kind, stages, chunks);
  // done[pass][stage][micro]: the tick at whose end the task finished (-1: not yet run).
  const size_t S = size_t(stages), C = size_t(chunks);
  std::vector<std::vector<int>> fwd_end(S, std::vector<int>(C, -1)), bwd_end(S, std::vector<int>(C, -1));
  std::vector<size_t> next(S, 0);
  std::vector<std::vector<Task>> ticks;
  size_t remaining = S * 2 * C;
  for (int tick = 0; remaining > 0; ++tick) {
    std::vector<Task> now;
    for (size_t j = 0; j < S; ++j) {
      if (next[j] == orders[j].size()) continue;
      const Task& t = orders[j][next[j]];
      const size_t i = size_t(t.micro);
      // Ready when its input finished in an earlier tick.
      int input_end;
      if (t.pass == Pass::forward)
        input_end = j == 0 ? -2 : fwd_end[j - 1][i];
      else
        input_end = j + 1 == S ? fwd_end[j][i] : bwd_end[j + 1][i];
      if (input_end < 0 && input_end != -2) continue;
      if (input_end >= tick) continue;
      now.push_back(t);
    }
    // Every order comes from a valid schedule, so some task is always ready; guard against a bug looping forever.
    EP_CHECK(!now.empty(), Error, "[schedule] ", schedule_name(kind), " with ", stages, " stages and ", chunks,
             " micro-batches stalls at tick ", tick);
    for (const Task& t : now) {
      (t.pass == Pass::forward ? fwd_end : bwd_end)[size_t(t.stage)][size_t(t.micro)] = tick;
      ++next[size_t(t.stage)];
      --remaining;
    }
    ticks.push_back(std::move(now));
  }
  return ticks;
}

}  // namespace ep::pipeline
