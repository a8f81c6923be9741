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

void CompressorHook::connect(Device before, Device after, bool same_process) {
  receiver_[int(Pass::forward)] = after;
  receiver_[int(Pass::backward)] = before;
  same_process_ = same_process;
}

Message CompressorHook::encode(const Tensor& x, Pass direction, int micro) {
  compress::Compressor* c = compressor_[int(direction)].get();
  if (!c) return IdentityHook().encode(x, direction, micro);
  // Sections a GPU encoder leaves on x's GPU may stay there when the receiver computes on that GPU in this process.
  const bool stay = same_process_ && x.is_cuda() && receiver_[int(direction)] == x.device();
  std::vector<Tensor> sections;
  std::shared_ptr<compress::Payload> payload;
  if (reuse_mask_ && direction == Pass::backward) {
    Mask mask;
    {
      std::lock_guard<std::mutex> g(mu_);
      auto it = masks_.find(micro);
      EP_CHECK(it != masks_.end(), Error, "[pipeline] top-k gradient of micro-batch ", micro, " before its forward");
      mask = std::move(it->second);
      masks_.erase(it);
    }
    if (mask.on_device.defined()) {
      // Left on this GPU by the forward's encoder on another stream: this stream has waited for that one (the
      // forward's message), and the message keeps the positions alive until both stages' step ends.
      EP_CHECK(mask.on_device.device() == x.device(), DeviceError, "[pipeline] top-k mask of micro-batch ", micro,
               " is on ", mask.on_device.device().str(), ", its gradient on ", x.device().str());
      payload = std::make_shared<compress::Payload>(compress::TopkCompressor::encode_at(x.detach(), mask.on_device));
      sections.push_back(mask.on_device);
    } else {
      payload = std::make_shared<compress::Payload>(compress::TopkCompressor::encode_at(x.detach(), mask.on_host));
    }
  } else {
    payload = std::make_shared<compress::Payload>(c->encode(x.detach()));
    if (reuse_mask_) {
      const auto& topk = static_cast<const compress::TopkCompressor&>(*c);
      Mask mask;
      // The gradient's encoder is this message's receiver: on the same GPU it reads the positions where they are;
      // anywhere else they go to the host here (a wait for this stream).
      if (stay && topk.last_positions_on_device().defined()) mask.on_device = topk.last_positions_on_device();
      else mask.on_host = topk.last_indices();
      std::lock_guard<std::mutex> g(mu_);
      masks_[micro] = std::move(mask);
    }
  }
  const uint64_t bytes = payload->bytes();
  if (sink_) {
    NoGradGuard ng;
    const Tensor x_hat = compress::decode_payload(*payload, x.device());
    sink_(direction == Pass::forward ? compress::Direction::forward : compress::Direction::backward,
          compress::compute_stats_later(x.detach(), x_hat, bytes));
  }
  if (stay) {
    for (const Tensor* t : {&payload->table_tensor, &payload->codes_tensor})
      if (t->defined()) sections.push_back(*t);
  } else {
    payload->to_host();  // for another device or process: the bytes a wire would carry (waits for this stream)
    sections.clear();
  }
  Message msg{Tensor(), std::move(payload), bytes};
  msg.device_sections = std::move(sections);
  return msg;
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
    if (!masks_.count(micro)) masks_[micro].on_host = compress::TopkCompressor::positions(payload);
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
