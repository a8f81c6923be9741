// dropout.cpp — inverted dropout: out = x * mask / (1 - p), mask = bernoulli_mask(shape, 1 - p, gen.seed,
// gen.advance(numel)); the backward recomputes the same mask from (seed, offset) instead of storing it.
// Not a layer: the training flag and Generator are the caller's (identity when !training or p == 0).
#include "engine/ops.h"
#include "engine/op_registry.h"
#include "engine/ops/dropout_kernels.h"
#include "engine/random.h"

namespace ep {

EP_DIFFERENTIABLE_OPS("dropout");

static void dropout_apply(const Tensor& x, Tensor& out, double p_keep, double scale, uint64_t seed, uint64_t offset) {
  if (x.is_cuda())
    dropout_cuda(x.dtype(), x.raw_data(), out.raw_data(), x.numel(), p_keep, scale, seed, offset,
                 current_stream(x.device()));
  else
    dropout_cpu(x.dtype(), x.raw_data(), out.raw_data(), x.numel(), p_keep, scale, seed, offset);
}

Tensor dropout(const Tensor& x, double p, bool training, Generator& gen) {
  EP_CHECK(p >= 0 && p <= 1, ValueError, "[dropout] p must be in [0,1], got ", p);
  check_floating("dropout", x);
  if (!training || p == 0) return x;
  // Every training call with p > 0 reserves numel counters, p == 1 included, so later draws do not shift with p.
  const uint64_t seed = gen.seed, offset = gen.advance(uint64_t(x.numel()));
  const double p_keep = 1.0 - p;
  const double scale = p == 1 ? 0.0 : 1.0 / p_keep;  // p == 1: the mask keeps nothing, the output is zeros
  Tensor out = empty_like(x);
  dropout_apply(x, out, p_keep, scale, seed, offset);
  record(out, "dropout", {x}, [p_keep, scale, seed, offset](const Tensor& dout, const NeedsGrad&) {
    Tensor dx = empty_like(dout);
    dropout_apply(dout, dx, p_keep, scale, seed, offset);
    return std::vector<Tensor>{dx};
  });
  return out;
}

}  // namespace ep
