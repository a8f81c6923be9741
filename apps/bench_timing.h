// bench_timing.h — the benchmarks' clocks: the median of repeated runs, measured with CUDA events on the current
// stream (device time) or the host clock on the CPU, and a wall-clock variant for work spread over several threads
// and streams (the pipeline), each optionally followed by a per-kernel profile of more runs (--profile-kernels).
// Not a profiler itself: the medians time whole calls; engine/kernel_profile.h does the per-kernel part.
#pragma once
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <vector>

#include "engine/check.h"
#include "engine/device.h"
#include "engine/kernel_profile.h"

namespace ep::bench {

// `bench ... --profile-kernels N`: after each GPU measurement, N more runs under a KernelProfile, whose table (per
// run) is printed before the measurement's own line. 0: off. The medians themselves are never profiled.
inline int& profile_runs() {
  static int runs = 0;
  return runs;
}
// A profile that fails (CUPTI refusing mid-run) prints one line and turns profiling off: the figures go on.
inline void profile_kernels(Device d, const std::function<void()>& fn) {
  if (profile_runs() <= 0 || !d.is_cuda()) return;
  synchronize(d);
  try {
    KernelProfile profile;
    for (int i = 0; i < profile_runs(); ++i) fn();
    const std::vector<KernelTime> rows = profile.stop();
    std::printf("  -- GPU time by kernel of the next figure's call (%d profiled runs, per run):\n%s", profile_runs(),
                format_kernel_profile(rows, 25, profile_runs()).c_str());
  } catch (const DeviceError& e) {
    std::fprintf(stderr, "bench: --profile-kernels: %s (profiling off from here)\n", e.what());
    profile_runs() = 0;
  }
}

inline double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// Median milliseconds of fn over `reps` runs after `warmup` runs: device time between CUDA events on the current
// stream, host wall time on the CPU. `profiled`: false for helper timings (a busy GEMM) that are not figures.
inline double median_ms(Device d, const std::function<void()>& fn, int reps = 20, int warmup = 3,
                        bool profiled = true) {
  for (int i = 0; i < warmup; ++i) fn();
  synchronize(d);
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    if (d.is_cuda()) {
      Event a(d), b(d);
      a.record(current_stream(d));
      fn();
      b.record(current_stream(d));
      b.synchronize();
      t.push_back(a.elapsed_ms(b));
    } else {
      const auto s = std::chrono::steady_clock::now();
      fn();
      t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s).count());
    }
  }
  if (profiled) profile_kernels(d, fn);
  return median_of(t);
}

// Median host wall time with the device drained around each call: events on one stream would miss work that other
// threads queue on their own streams, as pipeline stages do.
inline double wall_median_ms(Device d, const std::function<void()>& fn, int reps, int warmup) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    synchronize(d);
    const auto s = std::chrono::steady_clock::now();
    fn();
    synchronize(d);
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s).count());
  }
  profile_kernels(d, fn);
  return median_of(t);
}

// Median host milliseconds to issue fn, each run queued behind `busy` (GPU work, e.g. a large matrix product): the
// launches return at once, so only host work is timed. fn must not synchronize, and must not outrun the device's
// launch queue; either would add the wait for `busy` (compare with busy's own time). On the CPU: plain wall time.
inline double host_issue_median_ms(Device d, const std::function<void()>& fn, const std::function<void()>& busy,
                                   int reps = 7) {
  std::vector<double> t;
  for (int rep = 0; rep < reps; ++rep) {
    if (d.is_cuda()) busy();
    const auto s = std::chrono::steady_clock::now();
    fn();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s).count());
    synchronize(d);
  }
  return median_of(t);
}

}  // namespace ep::bench
