// kernel_profile.cpp (CUDA) — KernelProfile on CUPTI's activity API: concurrent-kernel, memcpy and memset records
// are summed per name as CUPTI hands its buffers back. libcupti is opened with dlopen when a profile starts, so no
// binary links it and a machine without it only loses this option. Not the table (engine/kernel_profile.cpp).
#include <cupti.h>
#include <cxxabi.h>
#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>

#include "engine/check.h"
#include "engine/cuda/context.h"
#include "engine/device.h"
#include "engine/kernel_profile.h"

namespace ep {

namespace {

struct Cupti {
  decltype(&cuptiActivityRegisterCallbacks) register_callbacks = nullptr;
  decltype(&cuptiActivityEnable) enable = nullptr;
  decltype(&cuptiActivityDisable) disable = nullptr;
  decltype(&cuptiActivityFlushAll) flush_all = nullptr;
  decltype(&cuptiActivityGetNextRecord) next_record = nullptr;
  decltype(&cuptiGetResultString) result_string = nullptr;
};

// Opened once per process and kept (CUPTI cannot be unloaded while its callbacks are registered).
const Cupti& cupti() {
  static const Cupti api = [] {
    Cupti c;
    // CUDA 13's CUPTI only: the record layouts read below are that version's (an unversioned libcupti.so could be
    // another major version's, with other layouts).
    void* lib = dlopen("libcupti.so.13", RTLD_NOW | RTLD_GLOBAL);
    EP_CHECK(lib != nullptr, DeviceError, "[kernel profile] cannot load libcupti.so.13 (CUDA's CUPTI): ", dlerror());
    auto sym = [lib](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib, name));
      EP_CHECK(fn != nullptr, DeviceError, "[kernel profile] libcupti has no ", name);
    };
    sym(c.register_callbacks, "cuptiActivityRegisterCallbacks");
    sym(c.enable, "cuptiActivityEnable");
    sym(c.disable, "cuptiActivityDisable");
    sym(c.flush_all, "cuptiActivityFlushAll");
    sym(c.next_record, "cuptiActivityGetNextRecord");
    sym(c.result_string, "cuptiGetResultString");
    return c;
  }();
  return api;
}

void check(CUptiResult r, const char* what) {
  if (r == CUPTI_SUCCESS) return;
  const char* text = "unknown error";
  cupti().result_string(r, &text);
  EP_THROW(DeviceError, "[kernel profile] ", what, ": ", text);
}

constexpr CUpti_ActivityKind kKinds[] = {CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL, CUPTI_ACTIVITY_KIND_MEMCPY,
                                         CUPTI_ACTIVITY_KIND_MEMSET};
constexpr size_t kBufferBytes = 8 << 20;

std::mutex g_mu;  // CUPTI returns buffers on its own thread
std::map<std::string, KernelTime>* g_rows = nullptr;  // non-null while a profile runs
std::map<std::string, std::string> g_names;           // mangled -> demangled (keyed by text: a module's name
                                                      // pointers may be reused after it unloads)

std::string readable(const char* mangled) {
  if (mangled == nullptr) return "[unnamed kernel]";
  auto it = g_names.find(mangled);
  if (it != g_names.end()) return it->second;
  int status = 0;
  char* d = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
  std::string name = status == 0 && d ? d : mangled;
  std::free(d);
  return g_names[mangled] = name;  // whole: two kernels alike in their first characters stay two rows
}

const char* copy_name(uint8_t kind) {
  switch (kind) {
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOD: return "[memcpy HtoD]";
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOH: return "[memcpy DtoH]";
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOD: return "[memcpy DtoD]";
    case CUPTI_ACTIVITY_MEMCPY_KIND_PTOP: return "[memcpy PtoP]";
    default: return "[memcpy other]";
  }
}

void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
  *buffer = static_cast<uint8_t*>(std::aligned_alloc(8, kBufferBytes));
  *size = *buffer ? kBufferBytes : 0;
  *max_records = 0;
}

void CUPTIAPI buffer_completed(CUcontext, uint32_t, uint8_t* buffer, size_t, size_t valid) {
  std::lock_guard<std::mutex> lock(g_mu);
  CUpti_Activity* record = nullptr;
  while (g_rows && cupti().next_record(buffer, valid, &record) == CUPTI_SUCCESS) {
    std::string name;
    uint64_t start = 0, end = 0;
    // The fields read here sit where every record version of the kind has them.
    if (record->kind == CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL || record->kind == CUPTI_ACTIVITY_KIND_KERNEL) {
      const auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(record);
      name = readable(k->name), start = k->start, end = k->end;
    } else if (record->kind == CUPTI_ACTIVITY_KIND_MEMCPY) {
      const auto* m = reinterpret_cast<const CUpti_ActivityMemcpy6*>(record);
      name = copy_name(m->copyKind), start = m->start, end = m->end;
    } else if (record->kind == CUPTI_ACTIVITY_KIND_MEMSET) {
      const auto* m = reinterpret_cast<const CUpti_ActivityMemset4*>(record);
      name = "[memset]", start = m->start, end = m->end;
    } else {
      continue;
    }
    KernelTime& row = (*g_rows)[name];
    row.name = name;
    row.calls += 1;
    row.total_ms += end > start ? double(end - start) * 1e-6 : 0.0;
  }
  std::free(buffer);
}

}  // namespace

KernelProfile::KernelProfile() {
  const Cupti& c = cupti();
  {
    std::lock_guard<std::mutex> lock(g_mu);
    EP_CHECK(g_rows == nullptr, DeviceError, "[kernel profile] one profile at a time");
    g_rows = new std::map<std::string, KernelTime>();
  }
  try {
    static bool registered = false;  // once per process: the callbacks drop records while no profile runs
    if (!registered) check(c.register_callbacks(buffer_requested, buffer_completed), "cuptiActivityRegisterCallbacks");
    registered = true;
    for (CUpti_ActivityKind kind : kKinds) check(c.enable(kind), "cuptiActivityEnable");
  } catch (...) {
    std::lock_guard<std::mutex> lock(g_mu);
    delete g_rows;
    g_rows = nullptr;
    throw;
  }
  running_ = true;
}

std::vector<KernelTime> KernelProfile::stop() {
  EP_CHECK(running_, DeviceError, "[kernel profile] stop() of a profile that is not running");
  for (int d = 0; d < cuda_device_count(); ++d) {  // every stream: pipeline stages queue on their own
    cuda::set_device(d);
    CUDA_CHECK(cudaDeviceSynchronize());
  }
  const Cupti& c = cupti();
  check(c.flush_all(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED), "cuptiActivityFlushAll");
  for (CUpti_ActivityKind kind : kKinds) c.disable(kind);
  running_ = false;
  std::vector<KernelTime> rows;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    for (auto& [name, row] : *g_rows) rows.push_back(row);
    delete g_rows;
    g_rows = nullptr;
  }
  std::sort(rows.begin(), rows.end(), [](const KernelTime& a, const KernelTime& b) { return a.total_ms > b.total_ms; });
  return rows;
}

KernelProfile::~KernelProfile() {
  if (!running_) return;
  try {
    (void)stop();
  } catch (...) {  // a destructor reports nothing; stop() is where errors surface
  }
}

}  // namespace ep
