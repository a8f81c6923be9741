// compress_hook.cpp — encode to a compress::Payload on the sender, decode it on the receiver.
// Not the compressors (compress/) nor their statistics.
#include "pipeline/compress_hook.h"

namespace ep::pipeline {

CompressorHook::CompressorHook(std::unique_ptr<compress::Compressor> forward,
                               std::unique_ptr<compress::Compressor> backward) {
  compressor_[int(Pass::forward)] = std::move(forward);
  compressor_[int(Pass::backward)] = std::move(backward);
}

Message CompressorHook::encode(const Tensor& x, Pass direction, int micro) {
  compress::Compressor* c = compressor_[int(direction)].get();
  if (!c) return IdentityHook().encode(x, direction, micro);
  auto payload = std::make_shared<compress::Payload>(c->encode(x.detach()));
  const uint64_t bytes = payload->bytes();
  return {Tensor(), std::move(payload), bytes};
}

Tensor CompressorHook::decode(Message msg, Pass direction, Device device, int micro) {
  const compress::Compressor* c = compressor_[int(direction)].get();
  if (!c) return msg.tensor;
  EP_CHECK(msg.payload != nullptr, Error, "[pipeline] compressed boundary received no payload for micro-batch ", micro);
  return c->decode(*std::static_pointer_cast<const compress::Payload>(msg.payload), device);
}

}  // namespace ep::pipeline
