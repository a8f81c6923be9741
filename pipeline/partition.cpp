// partition.cpp — parsing and checking of --stages/--devices and --split/--edge-device/--cloud-device.
// Not the model cutting: callers slice their units by Partition::units.
#include "pipeline/partition.h"

#include <cerrno>
#include <cstdlib>
#include <sstream>

#include "engine/check.h"

namespace ep::pipeline {

int64_t Partition::first_unit(int stage) const {
  EP_CHECK(stage >= 0 && stage < stages(), ValueError, "[partition] stage ", stage, " out of range (", stages(),
           " stages)");
  int64_t first = 0;
  for (int s = 0; s < stage; ++s) first += units[size_t(s)];
  return first;
}

int64_t Partition::total_units() const {
  int64_t n = 0;
  for (int64_t u : units) n += u;
  return n;
}

std::string Partition::describe(const std::vector<std::string>& names) const {
  std::ostringstream os;
  int64_t first = 0;
  const bool named = int64_t(names.size()) == total_units();
  for (int s = 0; s < stages(); ++s) {
    const int64_t last = first + units[size_t(s)];
    if (s) os << " | ";
    os << "stage" << s << " ";
    if (named)
      os << "[" << names[size_t(first)] << (last - first > 1 ? " .. " + names[size_t(last - 1)] : "") << "]";
    else
      os << "[" << first << ".." << last << ")";
    os << " " << devices[size_t(s)].str();
    first = last;
  }
  return os.str();
}

static std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t comma = s.find(',', start);
    parts.push_back(s.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) return parts;
    start = comma + 1;
  }
}

// A non-negative decimal integer without sign, spaces or trailing characters.
static int64_t parse_count(const std::string& flag, const std::string& value, const std::string& part) {
  const bool digits = !part.empty() && part.find_first_not_of("0123456789") == std::string::npos;
  errno = 0;
  const long long v = digits ? std::strtoll(part.c_str(), nullptr, 10) : -1;
  EP_CHECK(digits && errno == 0, ValueError, flag, " ", value, ": '", part, "' is not a non-negative integer");
  return int64_t(v);
}

static Device parse_device(const std::string& flag, const std::string& value, const std::string& part) {
  try {
    return Device::parse(part);
  } catch (const Error&) {
    EP_THROW(ValueError, flag, " ", value, ": '", part, "' is not a device (expected cpu, cuda or cuda:N)");
  }
}

Partition parse_stages(const std::string& stages, const std::string& devices, int64_t model_units) {
  Partition p;
  EP_CHECK(!stages.empty(), ValueError, "--stages: empty (expected units per stage, e.g. 4,10,5)");
  for (const std::string& part : split_commas(stages)) p.units.push_back(parse_count("--stages", stages, part));
  for (size_t s = 0; s < p.units.size(); ++s)
    EP_CHECK(p.units[s] >= 1, ValueError, "--stages ", stages, ": stage ", s, " has 0 units (each stage needs at least one)");
  EP_CHECK(p.total_units() == model_units, ValueError, "--stages ", stages, ": the stages hold ", p.total_units(),
           " units but the model has ", model_units);
  if (devices.empty()) {
    p.devices.assign(p.units.size(), Device::cpu());
    return p;
  }
  const auto parts = split_commas(devices);
  EP_CHECK(parts.size() == 1 || parts.size() == p.units.size(), ValueError, "--devices ", devices, ": ", parts.size(),
           " devices for ", p.units.size(), " stages (give one per stage, or one for all)");
  for (const std::string& part : parts) p.devices.push_back(parse_device("--devices", devices, part));
  if (p.devices.size() == 1) p.devices.assign(p.units.size(), p.devices[0]);
  return p;
}

Partition parse_split(const std::string& split, const std::string& edge_device, const std::string& cloud_device,
                      int64_t model_units) {
  const auto parts = split_commas(split);
  EP_CHECK(parts.size() == 2, ValueError, "--split ", split,
           ": expected K,M (units on the edge before and after the cloud)");
  const int64_t k = parse_count("--split", split, parts[0]), m = parse_count("--split", split, parts[1]);
  EP_CHECK(k >= 1, ValueError, "--split ", split, ": K must be at least 1 (the edge holds the first K units)");
  EP_CHECK(k + m < model_units, ValueError, "--split ", split, ": K + M = ", k + m,
           " leaves no unit for the cloud (the model has ", model_units, " units)");
  const Device edge = parse_device("--edge-device", edge_device, edge_device.empty() ? "cpu" : edge_device);
  const Device cloud = parse_device("--cloud-device", cloud_device, cloud_device.empty() ? "cpu" : cloud_device);
  Partition p;
  p.units = {k, model_units - k - m};
  p.devices = {edge, cloud};
  if (m > 0) {
    p.units.push_back(m);
    p.devices.push_back(edge);
  }
  return p;
}

void validate_devices(const Partition& p, const char* flag) {
  for (int s = 0; s < p.stages(); ++s) {
    const Device d = p.devices[size_t(s)];
    if (d.is_cpu()) continue;
    EP_CHECK(cuda_built(), DeviceError, flag, ": stage ", s, " is on ", d.str(), " but this build has no CUDA");
    EP_CHECK(d.index >= 0 && d.index < cuda_device_count(), DeviceError, flag, ": stage ", s, " is on ", d.str(),
             " but ", cuda_device_count(), " GPU(s) are present");
  }
}

}  // namespace ep::pipeline
