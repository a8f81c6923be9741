// compress_hook.h — a pipeline boundary that compresses: the sender encodes with a compress::Compressor (forward
// activations with one, backward gradients with another) and hands over the Payload; the receiver decodes it onto its
// device. The bytes counted are the payload's real serialized size.
// With a statistics sink, the sender also decodes its own payload to measure the error (x and x̂ in one place), as
// CompressionLayer does in one process. Top-k gradients reuse the forward's positions of the same micro-batch, as
// CompressionLayer does. A GPU encoder's payload stays on its GPU when the receiver is on the same GPU in this
// process (the pipeline orders it between the two streams), else it crosses as host memory. Not a link emulator
// (link.h).
#pragma once
#include <memory>

#include <map>
#include <mutex>
#include <vector>

#include "compress/compression_layer.h"
#include "compress/compressor.h"
#include "compress/methods.h"
#include "pipeline/pipeline.h"

namespace ep::pipeline {

class CompressorHook : public BoundaryHook {
 public:
  // Either may be null: that direction then passes the tensor itself (bytes = its size), as `none` would without the
  // payload header.
  CompressorHook(std::unique_ptr<compress::Compressor> forward, std::unique_ptr<compress::Compressor> backward);
  void connect(Device before, Device after, bool same_process) override;
  // Forward encodes run on the sending stage's thread, backward encodes on the receiving stage's: each compressor is
  // used by one thread only, so its state (stochastic-rounding generator, low-rank warm start) needs no lock.
  Message encode(const Tensor& x, Pass direction, int micro) override;
  Tensor decode(Message msg, Pass direction, Device device, int micro) override;
  // The payload's own wire format (compress/payload.h), parsed with its checks on the receiver.
  std::vector<uint8_t> to_wire(const Message& msg, Pass direction, int micro) override;
  Message from_wire(const uint8_t* data, size_t size, Pass direction, int micro) override;
  // Called from the encoding stage's thread with each message's statistics (the sink must be thread-safe).
  void set_stats_sink(compress::StatsSink sink) { sink_ = std::move(sink); }

 private:
  std::unique_ptr<compress::Compressor> compressor_[2];  // indexed by Pass
  // The forward's kept positions of one micro-batch: on the GPU (a GPU encode whose receiver shares its GPU) or on
  // the host.
  struct Mask {
    Tensor on_device;
    std::vector<uint32_t> on_host;
  };
  Device receiver_[2] = {Device::cpu(), Device::cpu()};  // indexed by Pass
  bool same_process_ = false;
  bool reuse_mask_ = false;  // top-k both ways with mask=reuse: gradients at the forward's positions
  std::mutex mu_;            // the forward (sender) and backward (receiver) threads share the masks
  std::map<int, Mask> masks_;  // micro-batch -> the forward's kept positions
  compress::StatsSink sink_;
};

}  // namespace ep::pipeline
