// transport.cpp — what every Transport offers on top of its point-to-point messages: an element-wise sum over the
// processes for the few numbers a step must agree on. Not a collective library: size() messages per process, no tree.
#include "pipeline/transport.h"

#include <bit>

#include "pipeline/wire.h"

namespace ep::pipeline {

std::vector<double> sum_over_processes(Transport& transport, const std::vector<double>& values) {
  const int me = transport.rank(), n = transport.size();
  std::vector<uint8_t> mine;
  put_u64(mine, values.size());
  for (double v : values) put_u64(mine, std::bit_cast<uint64_t>(v));
  for (int peer = 0; peer < n; ++peer)
    if (peer != me) transport.send(peer, MessageKind::reduce, mine);
  std::vector<double> total(values.size(), 0.0);
  for (int peer = 0; peer < n; ++peer) {  // rank order in every process: the same additions, the same bits
    if (peer == me) {
      for (size_t i = 0; i < values.size(); ++i) total[i] += values[i];
      continue;
    }
    const std::vector<uint8_t> theirs = transport.receive(peer, MessageKind::reduce);
    size_t offset = 0;
    const uint64_t count = get_u64(theirs.data(), theirs.size(), offset, "reduce message");
    EP_CHECK(count == values.size() && theirs.size() == 8 * (count + 1), Error, "[pipeline] rank ", me, ": rank ", peer,
             " sent ", count, " values to sum, this rank has ", values.size());
    for (size_t i = 0; i < values.size(); ++i)
      total[i] += std::bit_cast<double>(get_u64(theirs.data(), theirs.size(), offset, "reduce message"));
  }
  transport.flush();
  return total;
}

}  // namespace ep::pipeline
