// kernel_profile.cpp — the kernel profile's table, the same on every build. Not the recording (engine/cuda/
// kernel_profile.cpp reads CUPTI; runtime_stub.cpp refuses without CUDA).
#include "engine/kernel_profile.h"

#include <algorithm>
#include <cstdio>

namespace ep {

std::string format_kernel_profile(const std::vector<KernelTime>& rows, int top, int runs) {
  double total = 0;
  int64_t calls = 0;
  for (const KernelTime& r : rows) total += r.total_ms, calls += r.calls;
  const double per = runs > 0 ? 1.0 / runs : 1.0;
  std::string out;
  char line[256];
  top = std::max(top, 0);
  std::snprintf(line, sizeof line, "  %9s %6s %9s %9s  %s\n", "ms/run", "share", "calls/run", "us/call", "kernel");
  out += line;
  double shown = 0;
  int64_t shown_calls = 0;
  for (size_t i = 0; i < rows.size() && int(i) < top; ++i) {
    const KernelTime& r = rows[i];
    // Names are cut here, not where they are summed: a template's long signature would merge distinct kernels.
    const std::string name = r.name.size() > 120 ? r.name.substr(0, 117) + "..." : r.name;
    std::snprintf(line, sizeof line, "  %9.3f %5.1f%% %9.1f %9.2f  %s\n", r.total_ms * per,
                  total > 0 ? 100.0 * r.total_ms / total : 0.0, double(r.calls) * per,
                  r.calls ? 1000.0 * r.total_ms / double(r.calls) : 0.0, name.c_str());
    out += line;
    shown += r.total_ms, shown_calls += r.calls;
  }
  if (rows.size() > size_t(top)) {
    std::snprintf(line, sizeof line, "  %9.3f %5.1f%% %9.1f %9s  (%zu other names)\n", (total - shown) * per,
                  total > 0 ? 100.0 * (total - shown) / total : 0.0, double(calls - shown_calls) * per, "",
                  rows.size() - size_t(top));
    out += line;
  }
  std::snprintf(line, sizeof line, "  %9.3f %5.1f%% %9.1f %9s  total GPU time per run (kernels, copies, memsets)\n",
                total * per, 100.0, double(calls) * per, "");
  out += line;
  return out;
}

}  // namespace ep
