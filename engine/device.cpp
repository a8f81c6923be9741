// device.cpp — parsing device strings and the host's peak memory. Not the CUDA runtime (engine/cuda/runtime.cpp).
#include "engine/device.h"

#include <sys/resource.h>

#include <cstdlib>

#include "engine/check.h"

namespace ep {

Device Device::parse(const std::string& s) {
  if (s == "cpu") return Device::cpu();
  if (s == "cuda") return Device::cuda(0);
  if (s.rfind("cuda:", 0) == 0 && s.size() > 5) {
    char* end = nullptr;
    long i = std::strtol(s.c_str() + 5, &end, 10);
    if (*end == '\0' && i >= 0 && i < 1024) return Device::cuda(int(i));
  }
  EP_THROW(ValueError, "[device] cannot parse '", s, "': expected cpu, cuda or cuda:N");
}

uint64_t peak_host_memory_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return uint64_t(u.ru_maxrss) * 1024;  // Linux reports kilobytes
}

}  // namespace ep
