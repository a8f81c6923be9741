// random.cpp — the default Generator and the tensor fills of engine/random.h, dispatched to engine/cpu/random.cpp or
// engine/cuda/random.cu. Not recorded by autograd: fills are initializers and masks, never differentiable.
#include "engine/random.h"

#include <cmath>

#include "engine/ops/random_kernels.h"

namespace ep {

Generator& default_generator() {
  static Generator g(0);
  return g;
}

void manual_seed(uint64_t seed) {
  Generator& g = default_generator();
  g.seed = seed;
  g.offset = 0;  // as torch.manual_seed: the same seed always replays the same stream
}

void uniform_(Tensor& t, double low, double high, Generator& gen) {
  EP_CHECK(t.dtype() == DType::f32 || t.dtype() == DType::f64, DTypeError, "[uniform_] unsupported dtype ",
           dtype_name(t.dtype()), " (expected f32 or f64)");
  EP_CHECK(std::isfinite(low) && std::isfinite(high) && low <= high, ValueError,
           "[uniform_] expected finite low <= high, got low ", low, ", high ", high);
  int64_t n = t.numel();
  uint64_t offset = gen.advance(uint64_t(n));
  if (t.is_cuda())
    uniform_cuda(t.dtype(), t.raw_data(), n, low, high, gen.seed, offset, current_stream(t.device()));
  else
    uniform_cpu(t.dtype(), t.raw_data(), n, low, high, gen.seed, offset);
}

void normal_(Tensor& t, double mean, double std, Generator& gen) {
  EP_CHECK(t.dtype() == DType::f32 || t.dtype() == DType::f64, DTypeError, "[normal_] unsupported dtype ",
           dtype_name(t.dtype()), " (expected f32 or f64)");
  EP_CHECK(std::isfinite(mean) && std::isfinite(std) && std >= 0, ValueError,
           "[normal_] expected finite mean and std >= 0, got mean ", mean, ", std ", std);
  int64_t n = t.numel();
  uint64_t offset = gen.advance(uint64_t(n));
  if (t.is_cuda())
    normal_cuda(t.dtype(), t.raw_data(), n, mean, std, gen.seed, offset, current_stream(t.device()));
  else
    normal_cpu(t.dtype(), t.raw_data(), n, mean, std, gen.seed, offset);
}

Tensor bernoulli_mask(const Shape& shape, double p_keep, uint64_t seed, uint64_t offset, Device device) {
  EP_CHECK(p_keep >= 0 && p_keep <= 1, ValueError, "[bernoulli_mask] p_keep must be in [0,1], got ", p_keep);
  Tensor m = empty(shape, DType::u8, device);
  if (device.is_cuda())
    bernoulli_cuda(m.data<uint8_t>(), m.numel(), p_keep, seed, offset, current_stream(device));
  else
    bernoulli_cpu(m.data<uint8_t>(), m.numel(), p_keep, seed, offset);
  return m;
}

}  // namespace ep
