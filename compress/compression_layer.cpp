// compression_layer.cpp — the CompressionLayer autograd op: compress/decompress on the way forward and the gradient's
// compress/decompress on the way back. Not a gradient estimator: the backward is the compressed incoming gradient
// (straight-through), exactly what a receiver would get from the wire.
#include "compress/compression_layer.h"

#include "compress/methods.h"
#include "engine/op_registry.h"

namespace ep::compress {

EP_DIFFERENTIABLE_OPS("compression_layer");

CompressionLayer::CompressionLayer(std::shared_ptr<Compressor> forward, std::shared_ptr<Compressor> backward)
    : state_(std::make_shared<State>()) {
  EP_CHECK(forward != nullptr, ValueError, "[compression_layer] a forward compressor is required");
  state_->fwd = std::move(forward);
  state_->bwd = backward ? std::move(backward) : std::shared_ptr<Compressor>(state_->fwd->fresh());
  const auto* bwd_topk = dynamic_cast<const TopkCompressor*>(state_->bwd.get());
  state_->reuse_mask = bwd_topk && bwd_topk->options().reuse_mask &&
                       dynamic_cast<const TopkCompressor*>(state_->fwd.get()) != nullptr;
}

CompressionLayer::CompressionLayer(const std::string& forward_spec, const std::string& backward_spec)
    : CompressionLayer(
          std::shared_ptr<Compressor>(parse_compressor(forward_spec)),
          backward_spec.empty() ? nullptr : std::shared_ptr<Compressor>(parse_compressor(backward_spec))) {}

void CompressionLayer::set_stats_sink(StatsSink sink) { state_->sink = std::move(sink); }

namespace {

Tensor round_trip(const Tensor& x, const Payload& p, Direction dir, const StatsSink& sink) {
  Tensor y = decode_payload(p, x.device());
  if (sink) sink(dir, compute_stats_later(x, y, p.bytes()));
  return y;
}

}  // namespace

Tensor CompressionLayer::forward(const Tensor& x) {
  EP_CHECK(x.defined(), ValueError, "[compression_layer] undefined input");
  State& st = *state_;
  const Payload p = st.fwd->encode(x.detach());
  Tensor y = round_trip(x, p, Direction::forward, st.sink);
  // The forward's kept positions, for this call's backward only (micro-batches differ): left on the GPU when the
  // encode ran there (the backward's payload is gathered there too), else on the host.
  std::vector<uint32_t> mask;
  Tensor mask_on_device;
  if (st.reuse_mask && needs_record({&x})) {
    const auto& topk = static_cast<const TopkCompressor&>(*st.fwd);
    mask_on_device = topk.last_positions_on_device();
    if (!mask_on_device.defined()) mask = topk.last_indices();
  }
  record(y, "compression_layer", {x},
         [state = state_, mask = std::move(mask), mask_on_device](const Tensor& dy, const NeedsGrad&) {
           State& s = *state;
           const Payload gp = !s.reuse_mask             ? s.bwd->encode(dy)
                              : mask_on_device.defined() ? TopkCompressor::encode_at(dy, mask_on_device)
                                                         : TopkCompressor::encode_at(dy, mask);
           return std::vector<Tensor>{round_trip(dy, gp, Direction::backward, s.sink)};
         });
  return y;
}

}  // namespace ep::compress
