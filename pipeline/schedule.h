// schedule.h — the pipeline schedules as pure functions: per stage, the exact ordered list of (micro-batch, stage,
// forward|backward) tasks for GPipe fill-drain and for 1F1B, and the global clock-cycle view derived from it.
// Not an executor: pipeline/pipeline.cpp runs these lists on threads; nothing here touches tensors, time or threads.
//
// GPipe fill-drain (Huang et al. 2019, fig. 2c), S = 3 stages, C = 4 micro-batches, one tick per task:
//
//   tick    0    1    2    3    4    5    6    7    8    9   10   11
//   stage0  F0   F1   F2   F3                       B3   B2   B1   B0       forward 0..C-1, then backward C-1..0
//   stage1       F0   F1   F2   F3             B3   B2   B1   B0
//   stage2            F0   F1   F2   F3   B3   B2   B1   B0
//
// 1F1B (PipeDream-Flush; Narayanan et al. 2021, fig. 4 top): stage j runs min(S-1-j, C) warm-up forwards, then
// alternates one forward and one backward, then drains the remaining backwards; backwards run in ascending order, and
// at most S-j activations are alive on stage j instead of C.
//
//   tick    0    1    2    3    4    5    6    7    8    9   10   11
//   stage0  F0   F1   F2             B0   F3   B1        B2        B3
//   stage1       F0   F1        B0   F2   B1   F3   B2        B3
//   stage2            F0   B0   F1   B1   F2   B2   F3   B3
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ep::pipeline {

enum class Pass : uint8_t { forward, backward };
enum class ScheduleKind : uint8_t { gpipe, one_f_one_b };

struct Task {
  int micro = 0;  // micro-batch index, 0-based
  int stage = 0;  // stage index, 0-based
  Pass pass = Pass::forward;
  bool operator==(const Task&) const = default;
};

std::string to_string(const Task& t);       // "F2@1" (forward of micro-batch 2 on stage 1), "B0@3"
std::string schedule_name(ScheduleKind k);  // "gpipe", "1f1b"
ScheduleKind parse_schedule(const std::string& s);  // "gpipe" | "1f1b"; ValueError naming --schedule otherwise

// Per stage, the order in which that stage runs its 2*chunks tasks. stages >= 1 and chunks >= 1 (ValueError).
std::vector<std::vector<Task>> stage_orders(ScheduleKind kind, int stages, int chunks);

// The global view: tick k holds the tasks that run during tick k when every task takes one tick and a task starts as
// soon as its stage is free and its input exists (the forward of the previous stage, or the backward of the next
// stage; the last stage's backward needs its own forward). Tasks in a tick are sorted by stage. Derived from
// stage_orders(), so its length (2*(chunks+stages-1) for both schedules) is the ideal step time in tasks.
std::vector<std::vector<Task>> clock_cycles(ScheduleKind kind, int stages, int chunks);

}  // namespace ep::pipeline
