// bench_pipeline.h — `bench pipeline` part (1): the scheduler alone. Stages of synthetic fixed work (forward t,
// backward t) run through the real Pipeline for S in {2,4,8} and M in {1,4,16,32}; the measured step time is compared
// with the ideal fill-drain bound (M+S-1)*2t, so the efficiency shows what threads, queues and autograd cost.
// Not a model benchmark (that is part 2, with MobileNetV2/RoBERTa) and not a test: it prints figures only.
#pragma once
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "pipeline/pipeline.h"

namespace ep::bench_pipeline_detail {

using Clock = std::chrono::steady_clock;

// Fixed CPU work: a dependent chain of floating-point operations the compiler cannot drop.
inline double spin(int64_t iterations) {
  double a = 1.0;
  for (int64_t i = 0; i < iterations; ++i) a = a * 1.0000001 + 1e-9;
  // A volatile store the optimizer must keep, so the loop's result is observable.
  *static_cast<volatile double*>(&a) = a;
  return a;
}

// Iterations of spin() that take `ms` on one otherwise idle core (median of a few trials).
inline int64_t calibrate_spin(double ms) {
  const int64_t probe = 2'000'000;
  std::vector<double> per_iter;
  for (int k = 0; k < 5; ++k) {
    const auto t0 = Clock::now();
    spin(probe);
    per_iter.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count() / double(probe));
  }
  std::sort(per_iter.begin(), per_iter.end());
  return std::max<int64_t>(1, int64_t(ms / per_iter[per_iter.size() / 2]));
}

// Waits `ms` without using a core: a sleep until shortly before the deadline (a plain sleep overshoots by tens of
// microseconds, which would be charged to the scheduler), then yields until the deadline.
inline void wait_for_ms(double ms) {
  const auto end = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double, std::milli>(ms));
  std::this_thread::sleep_until(end - std::chrono::microseconds(150));
  while (Clock::now() < end) std::this_thread::yield();
}

// One unit doing `work` in forward and again in its backward. A one-element parameter gives every stage a backward
// pass (the pipeline's input never requires grad).
inline nn::Unit work_unit(std::function<void()> work, Tensor weight) {
  return nn::Unit("work", [work, weight](const Tensor& x) {
    work();
    Tensor h = mul(x, weight);
    Tensor out = h.detach().clone();
    record(out, "work", {h}, [work](const Tensor& d, const NeedsGrad&) {
      work();
      return std::vector<Tensor>{d};
    });
    return out;
  });
}

}  // namespace ep::bench_pipeline_detail

inline void bench_pipeline_scheduler() {
  using namespace ep;
  using namespace ep::pipeline;
  using namespace ep::bench_pipeline_detail;
  const double t_ms = 2.0;  // work per task
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  const int64_t spin_iters = calibrate_spin(t_ms);
  std::printf("\n[pipeline scheduler] synthetic stages, %.1f ms forward + %.1f ms backward per task; ideal step = "
              "(M+S-1) * %.1f ms; median of 5 steps after 1 warm-up\n", t_ms, t_ms, 2 * t_ms);
  std::printf("  'sleep' stages wait without a core, so every S measures the scheduler itself (threads, queues, "
              "autograd); 'busy' stages run a CPU loop calibrated to %.1f ms on an idle core and are shown only for "
              "S <= %u cores: more busy stages than cores measure oversubscription, and other load on the machine "
              "slows them too ('vs work' divides by the work as measured during the step instead)\n", t_ms, cores);
  std::printf("  %-6s %-5s %3s %3s %10s %11s %10s %9s %8s %12s\n", "sched", "work", "S", "M", "ideal ms",
              "measured ms", "efficiency", "vs work", "bubble", "ideal bubble");
  double worst = 1.0;
  for (bool busy : {false, true})
    for (ScheduleKind kind : {ScheduleKind::gpipe, ScheduleKind::one_f_one_b})
      for (int S : {2, 4, 8})
        for (int M : {1, 4, 16, 32}) {
          if (busy && unsigned(S) > cores) continue;
          std::function<void()> work;
          if (busy)
            work = [spin_iters] { spin(spin_iters); };
          else
            work = [t_ms] { wait_for_ms(t_ms); };
          std::vector<Stage> stages(static_cast<size_t>(S));
          for (auto& st : stages) {
            Tensor w = ones({1});
            w.requires_grad_();
            st.units.push_back(work_unit(work, w));
          }
          Pipeline pipe(std::move(stages), {M, kind});
          const Tensor input = ones({M, 1});
          const LossFn loss = [](const Tensor& y, const MicroBatch& mb) {
            return mul(sum(y), 1.0 / double(mb.batch_rows));
          };
          pipe.train_step(input, loss);  // warm-up: first-touch allocations, thread wake-up
          std::vector<StepResult> runs;
          for (int rep = 0; rep < 5; ++rep) runs.push_back(pipe.train_step(input, loss));
          std::sort(runs.begin(), runs.end(),
                    [](const StepResult& a, const StepResult& b) { return a.stats.step_ms < b.stats.step_ms; });
          const PipelineStats& st = runs[2].stats;
          const double ideal = double(M + S - 1) * 2 * t_ms;
          double busy_sum = 0;
          for (const auto& s : st.stages) busy_sum += s.busy_ms;
          const double task_ms = busy_sum / double(2 * S * M);  // the work as it ran, overhead included
          const double eff = ideal / st.step_ms, eff_work = double(M + S - 1) * 2 * task_ms / st.step_ms;
          if (!busy) worst = std::min(worst, eff);
          std::printf("  %-6s %-5s %3d %3d %10.1f %11.1f %9.1f%% %8.1f%% %7.1f%% %11.1f%%\n",
                      schedule_name(kind).c_str(), busy ? "busy" : "sleep", S, M, ideal, st.step_ms, 100 * eff,
                      100 * eff_work, 100 * st.bubble_fraction, 100.0 * (S - 1) / double(M + S - 1));
        }
  std::printf("  lowest efficiency of the sleep rows (the scheduler): %.1f%% (target >= 90%%)\n", 100 * worst);
}
