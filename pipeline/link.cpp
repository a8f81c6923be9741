// link.cpp — parsing --link and the link-emulating boundary hook.
// Not a traffic shaper for real sockets: arrival times are computed, and the receiving stage sleeps until them.
#include "pipeline/link.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <cstdlib>
#include <thread>

#include "engine/check.h"
#include "pipeline/wire.h"

namespace ep::pipeline {

namespace {

// "100Mbit" -> (100, "Mbit"); ValueError when there is no number.
std::pair<double, std::string> number_and_unit(const std::string& s, const std::string& whole) {
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  EP_CHECK(end != s.c_str(), ValueError, "--link ", whole, ": '", s, "' does not start with a number");
  std::string unit(end);
  while (!unit.empty() && std::isspace(static_cast<unsigned char>(unit.front()))) unit.erase(unit.begin());
  return {v, unit};
}

}  // namespace

LinkSpec parse_link(const std::string& spec) {
  const size_t comma = spec.find(',');
  EP_CHECK(comma != std::string::npos, ValueError, "--link ", spec, ": expected BANDWIDTH,LATENCY (e.g. 100Mbit,20ms)");
  auto [bw, bw_unit] = number_and_unit(spec.substr(0, comma), spec);
  auto [lat, lat_unit] = number_and_unit(spec.substr(comma + 1), spec);
  static const std::map<std::string, double> bit_units = {
      {"bit", 1},    {"bps", 1},    {"kbit", 1e3}, {"kbps", 1e3}, {"Mbit", 1e6}, {"Mbps", 1e6},
      {"Gbit", 1e9}, {"Gbps", 1e9}, {"B", 8},      {"kB", 8e3},   {"MB", 8e6},   {"GB", 8e9}};
  auto b = bit_units.find(bw_unit);
  EP_CHECK(b != bit_units.end(), ValueError, "--link ", spec, ": unknown bandwidth unit '", bw_unit,
           "' (bit, kbit, Mbit, Gbit, or B, kB, MB, GB per second)");
  static const std::map<std::string, double> time_units = {{"s", 1}, {"ms", 1e-3}, {"us", 1e-6}};
  double lat_scale = 0;
  if (lat_unit.empty()) {
    EP_CHECK(lat == 0, ValueError, "--link ", spec, ": a latency needs a unit (s, ms, us)");
  } else {
    auto t = time_units.find(lat_unit);
    EP_CHECK(t != time_units.end(), ValueError, "--link ", spec, ": unknown latency unit '", lat_unit, "' (s, ms, us)");
    lat_scale = t->second;
  }
  LinkSpec l{bw * b->second, lat * lat_scale};
  EP_CHECK(l.bits_per_second > 0 && std::isfinite(l.bits_per_second), ValueError, "--link ", spec,
           ": bandwidth must be positive");
  EP_CHECK(l.latency_s >= 0 && l.latency_s < 3600, ValueError, "--link ", spec, ": latency must be in [0, 1h)");
  return l;
}

LinkHook::LinkHook(std::shared_ptr<BoundaryHook> inner, LinkSpec link) : inner_(std::move(inner)), link_(link) {
  EP_CHECK(inner_ != nullptr, ValueError, "[link] no inner hook");
}

Message LinkHook::encode(const Tensor& x, Pass direction, int micro) {
  Message msg = inner_->encode(x, direction, micro);
  const int d = int(direction);
  const auto now = Clock::now();
  const auto on_wire = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(double(msg.bytes) * 8.0 / link_.bits_per_second));
  const auto latency =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(link_.latency_s));
  std::lock_guard<std::mutex> g(mu_);
  // A serial link per direction: this message's bytes start when the link is free and take bytes/bandwidth.
  const auto start = std::max(now, free_at_[d]);
  free_at_[d] = start + on_wire;
  busy_s_[d] += std::chrono::duration<double>(on_wire).count();
  arrival_[{d, micro}] = free_at_[d] + latency;
  return msg;
}

Tensor LinkHook::decode(Message msg, Pass direction, Device device, int micro) {
  Clock::time_point arrival;
  {
    std::lock_guard<std::mutex> g(mu_);
    auto it = arrival_.find({int(direction), micro});
    EP_CHECK(it != arrival_.end(), Error, "[link] decode of micro-batch ", micro, " before its encode");
    arrival = it->second;
    arrival_.erase(it);
  }
  std::this_thread::sleep_until(arrival);
  return inner_->decode(std::move(msg), direction, device, micro);
}

std::vector<uint8_t> LinkHook::to_wire(const Message& msg, Pass direction, int micro) {
  Clock::time_point arrival;
  {
    std::lock_guard<std::mutex> g(mu_);
    auto it = arrival_.find({int(direction), micro});
    EP_CHECK(it != arrival_.end(), Error, "[link] sending micro-batch ", micro, " before its encode");
    arrival = it->second;
    arrival_.erase(it);  // the receiver, in another process, is the one who waits for it
  }
  std::vector<uint8_t> bytes = inner_->to_wire(msg, direction, micro);  // then the arrival time as a trailer
  put_u64(bytes, uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(arrival.time_since_epoch()).count()));
  return bytes;
}

Message LinkHook::from_wire(const uint8_t* data, size_t size, Pass direction, int micro) {
  EP_CHECK(size >= 8, Error, "[link] message of ", size, " bytes has no arrival time");
  size_t trailer = size - 8;
  const uint64_t ns = get_u64(data, size, trailer, "link message");
  Message msg = inner_->from_wire(data, size - 8, direction, micro);
  std::lock_guard<std::mutex> g(mu_);
  arrival_[{int(direction), micro}] = Clock::time_point(std::chrono::duration_cast<Clock::duration>(
      std::chrono::nanoseconds(int64_t(ns))));
  return msg;
}

double LinkHook::busy_seconds(Pass direction) const {
  std::lock_guard<std::mutex> g(mu_);
  return busy_s_[int(direction)];
}

}  // namespace ep::pipeline
