// compress_hook.h — a pipeline boundary that compresses: the sender encodes with a compress::Compressor (forward
// activations with one, backward gradients with another) and hands over the Payload; the receiver decodes it onto its
// device. The bytes counted are the payload's real serialized size.
// Not the statistics (MSE, SNR, ... need x and x̂ in one place: the trainers' CompressionLog does that) and not a link
// emulator; the payload is host memory, so no device copy happens between encode and decode.
#pragma once
#include <memory>

#include "compress/compressor.h"
#include "pipeline/pipeline.h"

namespace ep::pipeline {

class CompressorHook : public BoundaryHook {
 public:
  // Either may be null: that direction then passes the tensor itself (bytes = its size), as `none` would without the
  // payload header.
  CompressorHook(std::unique_ptr<compress::Compressor> forward, std::unique_ptr<compress::Compressor> backward);
  // Forward encodes run on the sending stage's thread, backward encodes on the receiving stage's: each compressor is
  // used by one thread only, so its state (stochastic-rounding generator, low-rank warm start) needs no lock.
  Message encode(const Tensor& x, Pass direction, int micro) override;
  Tensor decode(Message msg, Pass direction, Device device, int micro) override;

 private:
  std::unique_ptr<compress::Compressor> compressor_[2];  // indexed by Pass
};

}  // namespace ep::pipeline
