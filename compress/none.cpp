// none.cpp — the identity method: the payload carries the tensor's raw bytes in its own dtype (f32 or f64).
// Not a cast: an f64 tensor stays f64, so a CompressionLayer with `none` is exactly the identity (gradcheck).
#include <cstring>

#include "compress/methods.h"

namespace ep::compress {

std::unique_ptr<Compressor> make_none(SpecArgs&) { return std::make_unique<NoneCompressor>(); }

Payload NoneCompressor::encode(const Tensor& x, cudaStream_t) {
  Tensor h = host_input(x, "none");
  Payload p;
  p.method = Method::none;
  p.dtype = h.dtype();
  p.shape = h.shape();
  p.codes.resize(h.nbytes());
  if (!p.codes.empty()) std::memcpy(p.codes.data(), h.raw_data(), h.nbytes());
  p.check_consistent("none");
  return p;
}

void decode_none(const Payload& p, void* out) {
  if (!p.codes.empty()) std::memcpy(out, p.codes.data(), p.codes.size());
}

}  // namespace ep::compress
