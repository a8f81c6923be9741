// compressor.cpp — spec parsing, the payload-only decoder dispatch, and the input checks every encoder shares.
// Not a method: the encoders and decoders live in compress/<method>.cpp.
#include "compress/compressor.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "compress/compress_kernels.h"
#include "compress/methods.h"
#include "compress/bitpack.h"
#include "engine/autograd.h"
#include "engine/device_check.h"
#include "engine/dispatch.h"
#include "engine/ops.h"

namespace ep::compress {

// ---- spec arguments --------------------------------------------------------------------------------------------

const std::string* SpecArgs::take(const std::string& key) {
  known_.push_back(key);
  auto it = kv_.find(key);
  return it == kv_.end() ? nullptr : &it->second;
}

int64_t SpecArgs::get_int(const std::string& key, int64_t def, int64_t lo, int64_t hi) {
  const std::string* v = take(key);
  if (!v) return def;
  int64_t out = 0;
  auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), out);
  EP_CHECK(ec == std::errc() && end == v->data() + v->size(), CompressError, "[compress] ", method_, ": ", key,
           " must be an integer, got '", *v, "'");
  EP_CHECK(out >= lo && out <= hi, CompressError, "[compress] ", method_, ": ", key, " must be in ", lo, "..", hi,
           ", got ", out);
  return out;
}

double SpecArgs::get_double(const std::string& key, double def) {
  const std::string* v = take(key);
  if (!v) return def;
  char* end = nullptr;
  const double out = std::strtod(v->c_str(), &end);
  EP_CHECK(!v->empty() && end == v->c_str() + v->size() && std::isfinite(out), CompressError, "[compress] ",
           method_, ": ", key, " must be a finite number, got '", *v, "'");
  return out;
}

std::string SpecArgs::get_choice(const std::string& key, const std::string& def,
                                 const std::vector<std::string>& choices) {
  const std::string* v = take(key);
  if (!v) return def;
  for (const auto& c : choices)
    if (*v == c) return c;
  std::string list;
  for (const auto& c : choices) list += (list.empty() ? "" : "|") + c;
  EP_THROW(CompressError, "[compress] ", method_, ": ", key, " must be ", list, ", got '", *v, "'");
}

void SpecArgs::finish() {
  for (const auto& [k, v] : kv_) {
    bool used = false;
    for (const auto& n : known_) used = used || n == k;
    if (used) continue;
    std::string list;
    for (const auto& n : known_) list += (list.empty() ? "" : ", ") + n;
    EP_THROW(CompressError, "[compress] ", method_, ": unknown key '", k, "' (known: ",
             list.empty() ? "none" : list, ")");
  }
}

std::string shortest_double(double v) {
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);  // no precision: the shortest round-trip form
  return ec == std::errc() ? std::string(buf, end) : std::to_string(v);
}

std::unique_ptr<Compressor> parse_compressor(const std::string& spec) {
  const size_t colon = spec.find(':');
  const std::string name = spec.substr(0, colon);
  std::map<std::string, std::string> kv;
  if (colon != std::string::npos) {
    const std::string rest = spec.substr(colon + 1);
    EP_CHECK(!rest.empty(), CompressError, "[compress] '", spec, "': empty parameter list after ':'");
    size_t start = 0;
    while (start <= rest.size()) {
      size_t comma = rest.find(',', start);
      if (comma == std::string::npos) comma = rest.size();
      const std::string item = rest.substr(start, comma - start);
      const size_t eq = item.find('=');
      EP_CHECK(eq != std::string::npos && eq > 0 && eq + 1 < item.size(), CompressError, "[compress] '", spec,
               "': expected key=value, got '", item, "'");
      const std::string key = item.substr(0, eq);
      EP_CHECK(kv.emplace(key, item.substr(eq + 1)).second, CompressError, "[compress] '", spec, "': key '", key,
               "' given twice");
      start = comma + 1;
    }
  }
  SpecArgs args(name, std::move(kv));
  std::unique_ptr<Compressor> c;
  if (name == "none") c = make_none(args);
  else if (name == "quant") c = make_quant(args);
  else if (name == "sortquant") c = make_sortquant(args);
  else if (name == "topk") c = make_topk(args);
  else if (name == "kmeans") c = make_kmeans(args);
  else if (name == "lowrank") c = make_lowrank(args);
  else if (name == "fp8") c = make_fp8(args);
  else
    EP_THROW(CompressError, "[compress] unknown method '", name,
             "' (known: none, quant, sortquant, topk, kmeans, lowrank, fp8)");
  args.finish();
  return c;
}

// ---- shared input checks and decoding --------------------------------------------------------------------------

namespace {

// Whether p[0..m) holds an infinity or a NaN: an all-ones exponent, tested on the bits and OR-ed without a branch,
// which GCC vectorizes (a std::isfinite loop with an early exit or an index reduction it leaves scalar).
template <class T>
bool has_nonfinite(const T* p, int64_t m) {
  using Bits = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  constexpr Bits exponent = sizeof(T) == 4 ? Bits(0x7f800000u) : Bits(0x7ff0000000000000ull);
  Bits bad = 0;
  for (int64_t i = 0; i < m; ++i) {
    Bits b;
    std::memcpy(&b, p + i, sizeof b);
    bad |= Bits((b & exponent) == exponent);
  }
  return bad != 0;
}

}  // namespace

Tensor host_input(const Tensor& x, const char* method) {
  EP_CHECK(x.defined(), ValueError, "[", method, "] undefined input tensor");
  EP_CHECK(x.dtype() == DType::f32 || x.dtype() == DType::f64, DTypeError, "[", method, "] input is ",
           dtype_name(x.dtype()), ", expected f32 or f64");
  Tensor h = x.is_cuda() ? x.detach().cpu() : x.detach();
  dispatch_float(h.dtype(), method, [&](auto tag) {
    using T = EP_TYPE(tag);
    const T* p = h.data<T>();
    const int64_t n = h.numel();
    constexpr int64_t kChunk = int64_t(1) << 16;
    int64_t bad_chunk = INT64_MAX;  // the first chunk with a non-finite value: the parallel part finds which
#pragma omp parallel for reduction(min : bad_chunk) if (n > kChunk)
    for (int64_t c = 0; c < (n + kChunk - 1) / kChunk; ++c)
      if (has_nonfinite(p + c * kChunk, std::min(kChunk, n - c * kChunk))) bad_chunk = std::min(bad_chunk, c);
    if (bad_chunk != INT64_MAX) {
      int64_t bad = bad_chunk * kChunk;
      while (std::isfinite(p[bad])) ++bad;  // the chunk holds one, so this stops inside it
      EP_THROW(ValueError, "[", method, "] input ", shape_str(h.shape()), " has a non-finite value (", double(p[bad]),
               ") at flat index ", bad);
    }
  });
  return h;
}

Tensor range_partials_on_device(const Tensor& x, const char* method) {
  const Device dev = x.device();
  Tensor partial = empty({3 * kReduceBlocks}, DType::f32, dev);
  Tensor nonfinite = zeros({1}, DType::i64, dev);  // the kernel sets its low int: 1 on little-endian hosts
  minmax_partial_cuda(x.data<float>(), x.numel(), partial.data<float>(), static_cast<int*>(nonfinite.raw_data()),
                      current_stream(dev));
  check_finite_later(nonfinite, x, method);
  return partial;
}

bool gpu_path(const Tensor& x, bool allow_f64) {
  return x.defined() && x.is_cuda() && (x.dtype() == DType::f32 || (allow_f64 && x.dtype() == DType::f64)) &&
         x.numel() > 0 && x.numel() < (int64_t(1) << 31);
}

void check_finite_later(const Tensor& flag, const Tensor& x, const char* method) {
  check_on_device(flag, [x, method](const int64_t* set) {
    if (set[0] == 0) return;
    host_input(x, method);  // throws, naming the first bad element (the error path reads x back)
    EP_THROW(ValueError, "[", method, "] the input held a NaN or infinity when encoded (since overwritten in place)");
  });
}

void check_finite_on_device(const Tensor& x, const char* method) {
  if (x.dtype() == DType::f32) {
    (void)range_partials_on_device(x, method);
    return;
  }
  Tensor flag = zeros({1}, DType::i64, x.device());  // the kernel sets its low int: 1 on little-endian hosts
  nonfinite_f64_cuda(x.data<double>(), x.numel(), static_cast<int*>(flag.raw_data()), current_stream(x.device()));
  check_finite_later(flag, x, method);
}

Tensor device_scratch(size_t bytes, Device device) {
  return empty({int64_t(std::max<size_t>(bytes, 1))}, DType::u8, device);
}

namespace {

// A payload section on `device`: the encoder's own tensor, read in place, or a copy of the host bytes.
Tensor codes_on(const Payload& p, Device device) {
  return p.codes_tensor.defined() ? p.codes_tensor : from_data<uint8_t>(p.codes, {int64_t(p.codes.size())}, device);
}
Tensor table_on(const Payload& p, Device device) {
  return p.table_tensor.defined() ? p.table_tensor : from_data<float>(p.table, {int64_t(p.table.size())}, device);
}

// The GPU decoders (quant, fp8, sortquant, kmeans; f32): codes go to the device once (unless they are there already)
// and are expanded there.
bool decode_on_device(const Payload& p, Device device, Tensor& out) {
  if (!device.is_cuda() || p.dtype != DType::f32 || p.numel() == 0) return false;
  const bool quant = p.method == Method::quant && p.params[1] == 0;
  const bool quant_channel = p.method == Method::quant && p.params[1] != 0;
  if (!quant && !quant_channel && p.method != Method::fp8 && p.method != Method::sortquant &&
      p.method != Method::kmeans)
    return false;
  if (p.method == Method::fp8 && !p.codes_tensor.defined()) check_fp8_codes(p);  // an encoder's own codes are valid
  Tensor codes = codes_on(p, device);
  const uint64_t nbytes = p.code_bytes();
  out = empty(p.shape, DType::f32, device);
  if (quant_channel || p.method == Method::kmeans) {
    Tensor table = table_on(p, device);
    if (p.method == Method::kmeans) {
      kmeans_decode_cuda(codes.data<uint8_t>(), nbytes, p.numel(), int(p.params[0]), table.data<float>(),
                         out.data<float>(), current_stream(device));
    } else {
      int64_t inner = 1;  // channel of element i: (i / inner) % channels, as quant.cpp's channel_view
      for (size_t d = size_t(p.params[2]) + 1; d < p.shape.size(); ++d) inner *= p.shape[d];
      quant_channel_decode_cuda(codes.data<uint8_t>(), nbytes, p.numel(), int64_t(p.params[1]), inner,
                                table.data<float>(), int(p.params[0]), out.data<float>(), current_stream(device));
    }
  } else if (p.method == Method::sortquant) {
    Tensor table = table_on(p, device);
    sortquant_decode_cuda(codes.data<uint8_t>(), nbytes, p.numel(), int(p.params[0]), int(p.params[1]),
                          table.data<float>(), out.data<float>(), current_stream(device));
  } else if (quant)
    quant_decode_cuda(codes.data<uint8_t>(), nbytes, p.numel(), int(p.params[0]), table_on(p, device).data<float>(),
                      out.data<float>(), current_stream(device));
  else
    fp8_decode_cuda(codes.data<uint8_t>(), p.numel(), p.params[0] == 1, table_on(p, device).data<float>(),
                    out.data<float>(), current_stream(device));
  return true;
}

// Top-k and lowrank on the GPU (f32): positions are validated on the host first, so no bad index reaches a kernel;
// lowrank multiplies its factors in f64 (the CPU decoder's precision) through the engine's matmul.
bool decode_sparse_lowrank_on_device(const Payload& p, Device device, Tensor& out) {
  if (!device.is_cuda() || p.dtype != DType::f32 || p.numel() == 0 || p.numel() >= (int64_t(1) << 31)) return false;
  const cudaStream_t st = current_stream(device);
  if (p.method == Method::topk) {
    if (!p.codes_tensor.defined()) check_topk_positions(p);  // an encoder's own positions are valid
    const int64_t n = p.numel(), k = p.params[0];
    out = zeros(p.shape, DType::f32, device);
    if (k == 0) return true;
    Tensor codes = codes_on(p, device);
    Tensor values = table_on(p, device);
    if (p.params[1] == 0) {
      topk_scatter_indices_cuda(codes.data<uint8_t>(), p.code_bytes(), k, bits_for_count(uint64_t(n)),
                                values.data<float>(), out.data<float>(), st);
    } else {
      const int64_t nbytes = int64_t(p.code_bytes());
      Tensor counts = empty({nbytes}, DType::i32, device), offsets = empty({nbytes}, DType::i32, device);
      size_t temp_bytes = 0;
      topk_scatter_bitmap_cuda(nullptr, &temp_bytes, codes.data<uint8_t>(), nbytes, values.data<float>(),
                               counts.data<int32_t>(), offsets.data<int32_t>(), out.data<float>(), st);
      Tensor temp = device_scratch(temp_bytes, device);
      topk_scatter_bitmap_cuda(temp.raw_data(), &temp_bytes, codes.data<uint8_t>(), nbytes, values.data<float>(),
                               counts.data<int32_t>(), offsets.data<int32_t>(), out.data<float>(), st);
    }
    return true;
  }
  if (p.method == Method::lowrank) {
    const LowrankGeometry g = lowrank_geometry(p.shape);
    const int64_t r = p.params[0], B = g.matrices, m = g.rows, c = g.cols;
    if (r == 0) {
      out = zeros(p.shape, DType::f32, device);
      return true;
    }
    std::vector<double> q(size_t(B * m * r)), f(size_t(B * c * r));  // the table interleaves Q_b, P_b per matrix
    for (int64_t b = 0; b < B; ++b) {
      const float* src = p.table.data() + b * (m + c) * r;
      std::copy(src, src + m * r, q.begin() + b * m * r);
      std::copy(src + m * r, src + (m + c) * r, f.begin() + b * c * r);
    }
    NoGradGuard no_grad;
    const Tensor Q = from_data<double>(q, {B, m, r}, device), P = from_data<double>(f, {B, c, r}, device);
    out = reshape(matmul(Q, P, false, /*trans_b=*/true).to(DType::f32), p.shape);
    return true;
  }
  return false;
}

}  // namespace

namespace {

// Whether a payload's tensor-held sections can be decoded where they are: all on `device`, and read there by the
// method's GPU decoder (lowrank's factors are read on the host).
bool decodable_in_place(const Payload& p, Device device) {
  for (const Tensor* t : {&p.table_tensor, &p.codes_tensor})
    if (t->defined() && t->device() != device) return false;
  if (!device.is_cuda()) return false;
  if (p.method == Method::none) return true;  // a device-to-device copy of the raw bytes, any dtype
  if (p.dtype != DType::f32 || p.numel() == 0 || p.numel() >= (int64_t(1) << 31)) return false;
  return p.method != Method::lowrank;
}

}  // namespace

Tensor decode_payload(const Payload& p, Device device) {
  p.check_consistent("decode");
  // Sections held on a device are decoded there in place; anywhere else (the host, another GPU) from a host copy.
  if (p.has_tensors() && !decodable_in_place(p, device)) return decode_payload(p.host_copy(), device);
  if (Tensor on_device; decode_on_device(p, device, on_device)) return on_device;
  if (Tensor on_device; decode_sparse_lowrank_on_device(p, device, on_device)) return on_device;
  if (p.method == Method::none && device.is_cuda()) {  // the raw bytes straight to the device, no host tensor
    Tensor out = empty(p.shape, p.dtype, device);
    if (p.codes_tensor.defined())
      copy_bytes(out.raw_data(), device, p.codes_tensor.raw_data(), device, p.code_bytes());
    else if (!p.codes.empty())
      copy_bytes(out.raw_data(), device, p.codes.data(), Device::cpu(), p.codes.size());
    return out;
  }
  if (p.has_tensors()) return decode_payload(p.host_copy(), device);  // no decoder here reads them in place
  Tensor out = empty(p.shape, p.dtype, Device::cpu());
  if (p.method == Method::none) {
    decode_none(p, out.raw_data());
  } else {
    dispatch_float(p.dtype, "decode", [&](auto tag) {
      using T = EP_TYPE(tag);
      T* o = out.data<T>();
      switch (p.method) {
        case Method::quant: decode_quant<T>(p, o); break;
        case Method::sortquant: decode_sortquant<T>(p, o); break;
        case Method::topk: decode_topk<T>(p, o); break;
        case Method::kmeans: decode_kmeans<T>(p, o); break;
        case Method::lowrank: decode_lowrank<T>(p, o); break;
        case Method::fp8: decode_fp8<T>(p, o); break;
        case Method::none: break;
      }
    });
  }
  return device.is_cpu() ? out : out.to(device);
}

Tensor Compressor::decode(const Payload& p, Device device, cudaStream_t stream) const {
  if (stream != nullptr && device.is_cuda()) {  // allocations, copies and kernels then all order on `stream`
    StreamGuard guard(device, stream);
    return decode_payload(p, device);
  }
  return decode_payload(p, device);
}

}  // namespace ep::compress
