// kernel_profile.h — GPU time per kernel name from CUPTI's activity records (kernels, copies, memsets on every GPU),
// for `bench ... --profile-kernels`: where a step's device time goes, to set against torch.profiler's table.
// Not a tracer or a timeline: totals per name only, nothing about the host, one profile at a time in a process.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ep {

struct KernelTime {
  std::string name;  // demangled kernel name (cut to 100 characters), or "[memcpy HtoD]", "[memset]", ...
  int64_t calls = 0;
  double total_ms = 0;
};

class KernelProfile {
 public:
  // Starts recording. Throws DeviceError naming the reason when CUPTI cannot be loaded (libcupti.so.13 is opened at
  // this point, so binaries do not link it) or a profile is already running; CUDA=0 builds always throw.
  KernelProfile();
  ~KernelProfile();  // stops without reporting, if stop() was not called
  KernelProfile(const KernelProfile&) = delete;
  KernelProfile& operator=(const KernelProfile&) = delete;
  // Drains every device, flushes CUPTI's buffers and stops; the rows sorted by total time, largest first.
  std::vector<KernelTime> stop();

 private:
  bool running_ = false;
};

// The rows as a table: the `top` largest, each with its share of the rows' total, calls and mean time per call, all
// divided by `runs` (the profiled repetitions), plus a last line with the rest and the total.
std::string format_kernel_profile(const std::vector<KernelTime>& rows, int top, int runs);

}  // namespace ep
