// partition.h — how a model's units are cut into pipeline stages and where each stage runs: `--stages a,b,c` with
// `--devices cpu,cuda:0,...`, and `--split K,M` as the seeds' edge/cloud/edge shortcut with --edge-device and
// --cloud-device. Not the cutting itself (the trainers hand each stage its units) and no device probing at parse time:
// validate_devices() checks the devices against this machine separately, so specs parse the same everywhere.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/device.h"

namespace ep::pipeline {

struct Partition {
  std::vector<int64_t> units;    // units per stage, each >= 1, in model order
  std::vector<Device> devices;   // one per stage (several stages may share a device)

  int stages() const { return int(units.size()); }
  int64_t first_unit(int stage) const;  // index of the stage's first unit in the model's list
  int64_t total_units() const;
  // "stage0 [0..4) cpu | stage1 [4..19) cuda:0 | ..." or, given the unit names, "[stem .. block3]".
  std::string describe(const std::vector<std::string>& unit_names = {}) const;
};

// --stages "a,b,c" against a model of `model_units` units, with --devices "d" (one for all stages) or "d0,d1,..."
// (one per stage; "" means cpu for all). Each count is a positive integer, the counts sum to model_units.
// ValueError naming the flag: "--stages 2,0,3: stage 1 has 0 units (each stage needs at least one)".
Partition parse_stages(const std::string& stages, const std::string& devices, int64_t model_units);

// --split "K,M": stages (K, model_units-K-M, M) on (edge, cloud, edge); M = 0 gives two stages (edge, cloud) where
// the cloud ends with the loss. K >= 1 and the cloud keeps at least one unit.
Partition parse_split(const std::string& split, const std::string& edge_device, const std::string& cloud_device,
                      int64_t model_units);

// Throws DeviceError naming the flag when a stage's device is not usable here (a CUDA device without a CUDA build,
// or an index beyond the GPUs present).
void validate_devices(const Partition& p, const char* flag = "--devices");

}  // namespace ep::pipeline
