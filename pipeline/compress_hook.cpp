// compress_hook.cpp — encode to a compress::Payload on the sender, decode it on the receiver.
// Not the compressors (compress/) nor their statistics.
#include "pipeline/compress_hook.h"

namespace ep::pipeline {

CompressorHook::CompressorHook(std::unique_ptr<compress::Compressor> forward,
                               std::unique_ptr<compress::Compressor> backward) {
  compressor_[int(Pass::forward)] = std::move(forward);
  compressor_[int(Pass::backward)] = std::move(backward);
  const auto* bwd = dynamic_cast<const compress::TopkCompressor*>(compressor_[int(Pass::backward)].get());
  reuse_mask_ = bwd && bwd->options().reuse_mask &&
                dynamic_cast<const compress::TopkCompressor*>(compressor_[int(Pass::forward)].get()) != nullptr;
}

Message CompressorHook::encode(const Tensor& x, Pass direction, int micro) {
  compress::Compressor* c = compressor_[int(direction)].get();
  if (!c) return IdentityHook().encode(x, direction, micro);
  std::shared_ptr<compress::Payload> payload;
  if (reuse_mask_ && direction == Pass::backward) {
    std::vector<uint32_t> mask;
    {
      std::lock_guard<std::mutex> g(mu_);
      auto it = masks_.find(micro);
      EP_CHECK(it != masks_.end(), Error, "[pipeline] top-k gradient of micro-batch ", micro, " before its forward");
      mask = std::move(it->second);
      masks_.erase(it);
    }
    payload = std::make_shared<compress::Payload>(compress::TopkCompressor::encode_at(x.detach(), mask));
  } else {
    payload = std::make_shared<compress::Payload>(c->encode(x.detach()));
    if (reuse_mask_) {
      std::lock_guard<std::mutex> g(mu_);
      masks_[micro] = static_cast<const compress::TopkCompressor&>(*c).last_indices();
    }
  }
  const uint64_t bytes = payload->bytes();
  if (sink_) {
    NoGradGuard ng;
    const Tensor x_hat = compress::decode_payload(*payload, x.device());
    sink_(direction == Pass::forward ? compress::Direction::forward : compress::Direction::backward,
          compress::compute_stats_later(x.detach(), x_hat, bytes));
  }
  // A GPU encoder leaves its sections on the GPU (compress/payload.h), ordered on this stage's stream. The pipeline
  // orders only Message::tensor between the sender's and the receiver's streams, so the payload crosses as host bytes,
  // as a wire would carry them.
  payload->to_host();
  return {Tensor(), std::move(payload), bytes};
}

Tensor CompressorHook::decode(Message msg, Pass direction, Device device, int micro) {
  const compress::Compressor* c = compressor_[int(direction)].get();
  if (!c) return msg.tensor;
  EP_CHECK(msg.payload != nullptr, Error, "[pipeline] compressed boundary received no payload for micro-batch ", micro);
  const auto& payload = *std::static_pointer_cast<const compress::Payload>(msg.payload);
  if (reuse_mask_ && direction == Pass::forward) {
    // In another process than the forward's encoder, this is where the gradient's mask comes from: the positions the
    // payload carries. In the same process the encoder has stored the same positions already.
    std::lock_guard<std::mutex> g(mu_);
    if (!masks_.count(micro)) masks_[micro] = compress::TopkCompressor::positions(payload);
  }
  return c->decode(payload, device);
}

std::vector<uint8_t> CompressorHook::to_wire(const Message& msg, Pass direction, int micro) {
  if (!compressor_[int(direction)]) return BoundaryHook::to_wire(msg, direction, micro);
  EP_CHECK(msg.payload != nullptr, Error, "[pipeline] compressed boundary has no payload to send");
  return std::static_pointer_cast<const compress::Payload>(msg.payload)->serialize();
}

Message CompressorHook::from_wire(const uint8_t* data, size_t size, Pass direction, int micro) {
  if (!compressor_[int(direction)]) return BoundaryHook::from_wire(data, size, direction, micro);
  auto payload = std::make_shared<compress::Payload>(compress::Payload::parse(data, size));
  return {Tensor(), std::move(payload), uint64_t(size)};
}

}  // namespace ep::pipeline
