// none.cpp — the identity method: the payload carries the tensor's raw bytes in its own dtype (f32 or f64).
// Not a cast: an f64 tensor stays f64, so a CompressionLayer with `none` is exactly the identity (gradcheck).
#include <cstring>
#include <optional>

#include "compress/methods.h"
#include "engine/storage.h"

namespace ep::compress {

std::unique_ptr<Compressor> make_none(SpecArgs&) { return std::make_unique<NoneCompressor>(); }

Payload NoneCompressor::encode(const Tensor& x, cudaStream_t stream) {
  if (gpu_path(x, true)) {
    // The non-finite check on the GPU, then one device copy that the payload keeps there (payload.h): a decode on
    // this GPU copies it once more, and only a wire brings the bytes to the host. Through host_input the bytes went
    // to a host tensor, were scanned there and copied again: 5x PyTorch's .cpu() on the H200 at 12.6 MB.
    std::optional<StreamGuard> guard;
    if (stream) guard.emplace(x.device(), stream);
    const Tensor xd = x.detach();
    check_finite_on_device(xd, "none");
    Payload p;
    p.method = Method::none;
    p.dtype = xd.dtype();
    p.shape = xd.shape();
    p.codes_tensor = empty({int64_t(xd.nbytes())}, DType::u8, xd.device());
    copy_bytes(p.codes_tensor.raw_data(), xd.device(), xd.raw_data(), xd.device(), xd.nbytes());
    p.check_consistent("none");
    return p;
  }
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
