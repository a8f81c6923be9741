// compression_layer.h — CompressionLayer: the autograd op at a split point. Forward returns decode(encode(x)) with the
// forward compressor; backward returns decode(encode(g)) of the incoming gradient with the backward compressor.
// Not a transport: in a pipeline the encode runs on the sender and the decode on the receiver (pipeline/); here both
// halves run in place (the seeds' "simulation" mode), and the payload's real size is what the statistics count.
#pragma once
#include <functional>
#include <memory>

#include "compress/compressor.h"
#include "compress/stats.h"
#include "engine/autograd.h"

namespace ep::compress {

enum class Direction { forward, backward };
inline const char* direction_name(Direction d) { return d == Direction::forward ? "forward" : "backward"; }

// Called after every compression with that call's statistics (computed only while a sink is set). On a GPU their sums
// are still being computed: PendingStats::get() waits for them, so a sink that only stores them (CompressionLog until
// the step ends) lets the compression run without waiting for the device.
using StatsSink = std::function<void(Direction, const PendingStats&)>;

class CompressionLayer {
 public:
  // backward == nullptr: forward->fresh(), the same method with its own state, as the seeds. When both are topk
  // and the backward one has mask=reuse (the default), the gradient keeps exactly the forward's positions (the seeds'
  // g * mask); otherwise the backward compressor works on the gradient alone.
  explicit CompressionLayer(std::shared_ptr<Compressor> forward, std::shared_ptr<Compressor> backward = nullptr);
  CompressionLayer(const std::string& forward_spec, const std::string& backward_spec = "");

  // x: f32 or f64 on any device; the result has x's shape, dtype and device. Recorded as "compression_layer".
  Tensor forward(const Tensor& x);
  Tensor operator()(const Tensor& x) { return forward(x); }

  void set_stats_sink(StatsSink sink);
  const Compressor& forward_compressor() const { return *state_->fwd; }
  const Compressor& backward_compressor() const { return *state_->bwd; }
  bool reuses_forward_mask() const { return state_->reuse_mask; }

 private:
  struct State {
    std::shared_ptr<Compressor> fwd, bwd;
    bool reuse_mask = false;
    StatsSink sink;
  };
  std::shared_ptr<State> state_;  // shared with recorded backward closures, which may outlive this object
};

}  // namespace ep::compress
