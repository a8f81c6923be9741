// compressor.h — the Compressor interface (encode a tensor to a Payload, decode a Payload back), the decoder that needs
// only the payload (receivers hold no compressor state), and parse_compressor("METHOD[:key=value,...]").
// Not the methods themselves: compress/methods.h declares them, compress/<method>.cpp implements each.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "compress/payload.h"
#include "engine/device.h"
#include "engine/tensor.h"

namespace ep::compress {

class Compressor {
 public:
  virtual ~Compressor() = default;
  virtual Method method() const = 0;
  // The canonical spec with every parameter spelled out; parse_compressor(spec()) builds an equal compressor.
  virtual std::string spec() const = 0;
  // x: f32 or f64, any shape (empty included), any device (a CUDA tensor is encoded by GPU kernels where the method
  // has them, see compress/compress_kernels.h, else staged through the host). Non-finite values raise ValueError.
  // Not const: stochastic rounding advances the compressor's generator and lowrank keeps its warm start across calls.
  // `stream`: the stream to order the work on (nullptr: the current stream of x's device). A GPU encoder may leave the
  // payload's table and codes on the GPU (Payload's table_tensor / codes_tensor): like any tensor made there, they are
  // ordered on that stream, so a decode, to_host() or serialize() on another stream waits for it first (a Stream's
  // synchronize(), or an event). With an explicit `stream`, the caller keeps x alive until that stream's work is
  // done: x's memory returns to the pool in the order of the stream that allocated it, which does not see `stream`'s
  // kernels still reading it.
  virtual Payload encode(const Tensor& x, cudaStream_t stream = nullptr) = 0;
  // decode_payload(p) placed on `device`. Every method's decode needs only the payload.
  Tensor decode(const Payload& p, Device device = Device::cpu(), cudaStream_t stream = nullptr) const;
  // A compressor with the same settings and fresh state (the backward direction's own warm start and generator).
  virtual std::unique_ptr<Compressor> fresh() const = 0;
};

// Decodes any valid payload to a tensor of p.dtype and p.shape on `device`. Validates what parse() cannot (top-k
// indices in range and increasing, no fp8 NaN codes) and throws CompressError on a malformed payload.
Tensor decode_payload(const Payload& p, Device device = Device::cpu());

// Parses "METHOD[:key=value,...]" (e.g. "quant:bits=4,per=channel", "sortquant:bits=6,split=2,mode=sampled").
// Throws CompressError with one line for an unknown method or key, a malformed value, bits 0 or > 16, a ratio
// outside (0, 1], ... Every method's keys and defaults are listed in compress/methods.h.
std::unique_ptr<Compressor> parse_compressor(const std::string& spec);

// The shortest decimal that reads back as exactly v (0.1 prints as "0.1", not 0.10000000000000001): spec() values.
std::string shortest_double(double v);

// ---- helpers shared by the method files ------------------------------------------------------------------------

// The key=value arguments of one spec; each getter marks its key used, finish() rejects the keys nobody asked for.
class SpecArgs {
 public:
  SpecArgs(std::string method, std::map<std::string, std::string> kv)
      : method_(std::move(method)), kv_(std::move(kv)) {}
  int64_t get_int(const std::string& key, int64_t def, int64_t lo, int64_t hi);
  double get_double(const std::string& key, double def);
  std::string get_choice(const std::string& key, const std::string& def, const std::vector<std::string>& choices);
  void finish();  // unknown keys -> CompressError naming the key and the method's known keys
  const std::string& method() const { return method_; }

 private:
  const std::string* take(const std::string& key);
  std::string method_;
  std::map<std::string, std::string> kv_;
  std::vector<std::string> known_;
};

// The per-block min, max and max |x| of an f32 CUDA tensor (non-empty), queued on the current stream:
// minmax_partial_cuda's 3 * kReduceBlocks floats, which quant's table and fp8's scale kernels finish on the GPU. A
// non-finite element raises host_input's ValueError at the next synchronization point (check_finite_later).
Tensor range_partials_on_device(const Tensor& x, const char* method);
// The GPU encoders' entry test: a defined CUDA tensor of f32 (or f64 when allow_f64) with 1 .. 2^31-1 elements (CUB's
// item count); anything else takes the host path.
bool gpu_path(const Tensor& x, bool allow_f64);
// host_input's ValueError when a CUDA tensor (f32 or f64) holds a NaN or infinity: the scan runs on the GPU and is
// judged at the next synchronization point (engine/device_check.h), so the encoder does not wait for it. The GPU
// encoders stay in bounds on such input; their payload is garbage that the error then discards.
void check_finite_on_device(const Tensor& x, const char* method);
// The same verdict for a flag (i64 [1] on x's device, non-zero: a non-finite element) a kernel has already set.
void check_finite_later(const Tensor& flag, const Tensor& x, const char* method);
// An uninitialized byte buffer on `device` (at least one byte): CUB's temporary storage and similar scratch.
Tensor device_scratch(size_t bytes, Device device);
// The stream a CUDA-path encode/decode runs on: `stream` when given, else the current stream of `device`.
inline cudaStream_t stream_or_current(cudaStream_t stream, Device device) {
  return stream != nullptr ? stream : current_stream(device);
}

// The host copy of an encoder's input: f32/f64 only, every value finite (ValueError naming the method and the first
// bad element otherwise). Shares storage when x already is on the CPU.
Tensor host_input(const Tensor& x, const char* method);

}  // namespace ep::compress
