// random.h — Generator (seed + counter offset) and tensor fills from Philox streams, identical on CPU and CUDA.
// Not stateful per thread: callers pass a Generator; a draw of n elements advances its offset by n, so a mask is
// reproducible from the (seed, offset) it was drawn at.
#pragma once
#include <cstdint>

#include "engine/tensor.h"

namespace ep {

struct Generator {
  explicit Generator(uint64_t seed = 0) : seed(seed) {}
  uint64_t seed;
  uint64_t offset = 0;
  // Reserves n counters and returns the offset to draw them at.
  uint64_t advance(uint64_t n) { uint64_t o = offset; offset += n; return o; }
};

// The process-wide default generator (seeded 0 until manual_seed). Access is not synchronized: threads that draw
// concurrently pass their own Generator.
Generator& default_generator();
void manual_seed(uint64_t seed);

// In-place fills of f32/f64 tensors on any device; element i gets draw i of the stream (gen.seed, gen.advance(n)).
void uniform_(Tensor& t, double low, double high, Generator& gen);
void normal_(Tensor& t, double mean, double std, Generator& gen);
// u8 mask of `shape` on `device`: 1 with probability p_keep.
Tensor bernoulli_mask(const Shape& shape, double p_keep, uint64_t seed, uint64_t offset, Device device);

}  // namespace ep
