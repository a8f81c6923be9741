// link.h — network emulation on a pipeline boundary (`--link 100Mbit,20ms`): each message's real bytes occupy a
// serial link of the given bandwidth, one per direction, and arrive `latency` after their last byte left; the
// receiver cannot decode before then. Transfers overlap with compute, as on a real network, so a step's time shows
// what compression buys on an edge-cloud link. Not a network: in one process the bytes never leave it; between
// processes on one machine (--distributed) they cross the transport, and the receiver still waits for the emulated
// arrival.
#pragma once
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "pipeline/pipeline.h"

namespace ep::pipeline {

struct LinkSpec {
  double bits_per_second = 0;  // > 0
  double latency_s = 0;        // >= 0
  // Seconds from the first byte leaving to the message being usable at the receiver, on an idle link.
  double transfer_seconds(uint64_t bytes) const { return double(bytes) * 8.0 / bits_per_second + latency_s; }
};

// "BANDWIDTH,LATENCY": bandwidth as a number with bit/s units (bit, kbit, Mbit, Gbit; 'bps' forms too) or bytes/s
// (B, kB, MB, GB; decimal prefixes); latency with s, ms or us ("0" alone is allowed). ValueError naming --link.
LinkSpec parse_link(const std::string& spec);

// Wraps another hook: encode as it does, then queue the message on the direction's link; decode waits until the
// message has arrived, then decodes with the inner hook.
class LinkHook : public BoundaryHook {
 public:
  LinkHook(std::shared_ptr<BoundaryHook> inner, LinkSpec link);
  void connect(Device before, Device after, bool same_process) override {
    inner_->connect(before, after, same_process);
  }
  Message encode(const Tensor& x, Pass direction, int micro) override;
  Tensor decode(Message msg, Pass direction, Device device, int micro) override;
  // Between processes on one machine: the arrival time travels after the inner hook's bytes (steady_clock is
  // the machine's monotonic clock, the same in every process), and the receiver's decode waits for it as in one
  // process. Across machines the clocks differ and the network is real: do not emulate one there.
  std::vector<uint8_t> to_wire(const Message& msg, Pass direction, int micro) override;
  Message from_wire(const uint8_t* data, size_t size, Pass direction, int micro) override;
  double busy_seconds(Pass direction) const;  // total time the link carried bytes in that direction

 private:
  using Clock = std::chrono::steady_clock;
  std::shared_ptr<BoundaryHook> inner_;
  LinkSpec link_;
  mutable std::mutex mu_;
  Clock::time_point free_at_[2];                        // when each direction's link finishes its queued bytes
  std::map<std::pair<int, int>, Clock::time_point> arrival_;  // (direction, micro) -> when the receiver may decode
  double busy_s_[2] = {0, 0};
};

}  // namespace ep::pipeline
