// payload.cpp — the payload wire format: size formulas per method, serialization and strict parsing.
// Not an encoder or decoder of values (compress/<method>.cpp); every check here runs before any allocation.
#include "compress/payload.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "compress/bitpack.h"

namespace ep::compress {

namespace {

constexpr char kMagic[4] = {'E', 'P', 'C', 'Z'};
// A cap on the element count a header may declare (2^40, 4 TiB of f32): keeps every size product far from
// overflowing u64 and rejects absurd headers before anything is allocated.
constexpr uint64_t kMaxElements = uint64_t(1) << 40;

bool dtype_supported(DType d) { return d == DType::f32 || d == DType::f64; }

void need_params(const char* what, Method m, const std::vector<uint32_t>& p, size_t count) {
  EP_CHECK(p.size() == count, CompressError, "[", what, "] ", method_name(m), " payload needs ", count,
           " parameters, got ", p.size());
}
void check_bits(const char* what, Method m, uint32_t bits, uint32_t hi = 16) {
  EP_CHECK(bits >= 1 && bits <= hi, CompressError, "[", what, "] ", method_name(m), " bits must be in 1..", hi,
           ", got ", bits);
}

}  // namespace

const char* method_name(Method m) {
  switch (m) {
    case Method::none: return "none";
    case Method::quant: return "quant";
    case Method::sortquant: return "sortquant";
    case Method::topk: return "topk";
    case Method::kmeans: return "kmeans";
    case Method::lowrank: return "lowrank";
    case Method::fp8: return "fp8";
  }
  return "?";
}

LowrankGeometry lowrank_geometry(const Shape& shape) {
  LowrankGeometry g;
  if (shape.size() >= 3) {
    g.matrices = shape[0];
    g.rows = shape[1];
    g.cols = 1;
    for (size_t i = 2; i < shape.size(); ++i) g.cols *= shape[i];
  } else if (shape.size() == 2) {
    g = {1, shape[0], shape[1]};
  } else {
    g = {1, 1, shape_numel(shape)};
  }
  return g;
}

PayloadLayout payload_layout(Method m, const std::vector<uint32_t>& p, DType dtype, const Shape& shape,
                             const char* what) {
  EP_CHECK(dtype_supported(dtype), CompressError, "[", what, "] unsupported dtype ", dtype_name(dtype),
           " (expected f32 or f64)");
  // The product of the non-zero dimensions is bounded too: an empty tensor of shape [0, 2^40, 2^40] has no elements,
  // but products of its other dimensions (lowrank_geometry's rows x cols) would overflow int64. Found by libFuzzer.
  uint64_t n = 1, nonzero = 1;
  for (int64_t d : shape) {
    EP_CHECK(d >= 0, CompressError, "[", what, "] negative dimension in shape ", shape_str(shape));
    if (d == 0) {
      n = 0;
      continue;
    }
    // Checked before multiplying: nonzero <= 2^40 and d <= 2^40 / nonzero, so no product wraps.
    EP_CHECK(uint64_t(d) <= kMaxElements / nonzero, CompressError, "[", what, "] shape ", shape_str(shape),
             " exceeds 2^40 elements (zero dimensions aside)");
    nonzero *= uint64_t(d);
    n *= uint64_t(d);
  }
  PayloadLayout L;
  switch (m) {
    case Method::none:
      need_params(what, m, p, 0);
      L.code_bytes = n * dtype_size(dtype);
      break;
    case Method::quant: {
      need_params(what, m, p, 3);
      check_bits(what, m, p[0]);
      const uint32_t channels = p[1], axis = p[2];
      if (channels > 0) {
        EP_CHECK(axis < shape.size(), CompressError, "[", what, "] quant channel axis ", axis, " out of range for ",
                 shape_str(shape));
        EP_CHECK(uint64_t(shape[axis]) == channels, CompressError, "[", what, "] quant declares ", channels,
                 " channels but dim ", axis, " of ", shape_str(shape), " is ", shape[axis]);
      }
      L.table_len = 2 * uint64_t(channels > 0 ? channels : 1);
      L.code_bytes = packed_bytes(n, int(p[0]));
      break;
    }
    case Method::sortquant:
      need_params(what, m, p, 2);
      check_bits(what, m, p[0]);
      EP_CHECK(p[1] <= 15 && p[0] + p[1] <= 16, CompressError, "[", what,
               "] sortquant bits + split must be <= 16, got ", p[0], " + ", p[1]);
      L.table_len = 2 * (uint64_t(1) << p[1]);
      L.code_bytes = packed_bytes(n, int(p[0] + p[1]));
      break;
    case Method::topk:
      need_params(what, m, p, 2);
      EP_CHECK(p[0] <= n && (p[0] >= 1 || n == 0), CompressError, "[", what, "] topk keeps ", p[0], " of ", n,
               " elements (expected 1..n)");
      EP_CHECK(p[1] <= 1, CompressError, "[", what, "] topk index mode must be 0 or 1, got ", p[1]);
      EP_CHECK(n <= 0xffffffffull, CompressError, "[", what, "] topk supports at most 2^32 elements");
      L.table_len = p[0];
      L.code_bytes = p[1] ? (n + 7) / 8 : packed_bytes(p[0], bits_for_count(n));
      break;
    case Method::kmeans:
      need_params(what, m, p, 2);
      check_bits(what, m, p[0]);
      L.table_len = uint64_t(1) << p[0];
      L.code_bytes = packed_bytes(n, int(p[0]));
      break;
    case Method::lowrank: {
      need_params(what, m, p, 1);
      const LowrankGeometry g = lowrank_geometry(shape);
      const uint64_t cap = uint64_t(std::min(g.rows, g.cols));
      EP_CHECK(p[0] <= cap && (p[0] >= 1 || cap == 0), CompressError, "[", what, "] lowrank rank ", p[0],
               " outside 1..min(rows, cols) = ", cap, " for shape ", shape_str(shape));
      L.table_len = uint64_t(g.matrices) * uint64_t(g.rows + g.cols) * p[0];
      break;
    }
    case Method::fp8:
      need_params(what, m, p, 1);
      EP_CHECK(p[0] <= 1, CompressError, "[", what, "] fp8 format must be 0 (e4m3) or 1 (e5m2), got ", p[0]);
      L.table_len = 1;
      L.code_bytes = n;
      break;
    default:
      EP_THROW(CompressError, "[", what, "] unknown method id ", int(m));
  }
  return L;
}

uint64_t Payload::header_bytes() const {
  return 4 + 4 + 4 * uint64_t(shape.size()) + 1 + 4 * uint64_t(params.size()) + 4 + 8;
}
uint64_t Payload::bytes() const { return header_bytes() + 4 * table_len() + code_bytes(); }

void Payload::to_host() {
  if (table_tensor.defined()) {
    table = table_tensor.to_vector<float>();
    table_tensor = Tensor();
  }
  if (codes_tensor.defined()) {
    codes = codes_tensor.to_vector<uint8_t>();
    codes_tensor = Tensor();
  }
}

Payload Payload::host_copy() const {
  Payload h = *this;  // tensors are shared, not copied
  h.to_host();
  return h;
}

void Payload::check_consistent(const char* what) const {
  EP_CHECK(!table_tensor.defined() || (table_tensor.dtype() == DType::f32 && table_tensor.dim() == 1 && table.empty()),
           CompressError, "[", what, "] a payload's table tensor must be 1-D f32 and its table vector empty, got ",
           table_tensor.str(), " and ", table.size(), " entries");
  EP_CHECK(!codes_tensor.defined() || (codes_tensor.dtype() == DType::u8 && codes_tensor.dim() == 1 && codes.empty()),
           CompressError, "[", what, "] a payload's code tensor must be 1-D u8 and its code vector empty, got ",
           codes_tensor.str(), " and ", codes.size(), " bytes");
  EP_CHECK(shape.size() <= size_t(kMaxPayloadDims), CompressError, "[", what, "] payload rank ", shape.size(),
           " exceeds ", kMaxPayloadDims);
  for (int64_t d : shape)
    EP_CHECK(d >= 0 && uint64_t(d) <= 0xffffffffull, CompressError, "[", what, "] dimension ", d,
             " does not fit the u32 header field");
  EP_CHECK(params.size() <= 255, CompressError, "[", what, "] too many parameters");
  const PayloadLayout L = payload_layout(method, params, dtype, shape, what);
  EP_CHECK(table_len() == L.table_len, CompressError, "[", what, "] ", method_name(method), " table has ",
           table_len(), " entries, the format needs ", L.table_len);
  EP_CHECK(code_bytes() == L.code_bytes, CompressError, "[", what, "] ", method_name(method), " code stream has ",
           code_bytes(), " bytes, the format needs ", L.code_bytes);
}

namespace {

void put_u8(std::vector<uint8_t>& b, uint8_t v) { b.push_back(v); }
void put_u32(std::vector<uint8_t>& b, uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(uint8_t(v >> (8 * i)));
}
void put_u64(std::vector<uint8_t>& b, uint64_t v) {
  for (int i = 0; i < 8; ++i) b.push_back(uint8_t(v >> (8 * i)));
}

// Bounds-checked little-endian reads; every read names what was being read when the buffer ends.
struct Reader {
  const uint8_t* p;
  size_t size;
  size_t pos = 0;
  void need(size_t k, const char* field) const {
    EP_CHECK(k <= size - pos, CompressError, "[payload] truncated: ", field, " needs ", k, " bytes at offset ", pos,
             ", buffer has ", size);
  }
  uint8_t u8(const char* field) { need(1, field); return p[pos++]; }
  uint32_t u32(const char* field) {
    need(4, field);
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= uint32_t(p[pos + i]) << (8 * i);
    pos += 4;
    return v;
  }
  uint64_t u64(const char* field) {
    need(8, field);
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t(p[pos + i]) << (8 * i);
    pos += 8;
    return v;
  }
};

}  // namespace

std::vector<uint8_t> Payload::serialize() const {
  if (has_tensors()) return host_copy().serialize();
  check_consistent("payload");
  std::vector<uint8_t> b;
  b.reserve(size_t(bytes()));
  for (char c : kMagic) b.push_back(uint8_t(c));
  put_u8(b, kPayloadVersion);
  put_u8(b, uint8_t(method));
  put_u8(b, uint8_t(dtype));
  put_u8(b, uint8_t(shape.size()));
  for (int64_t d : shape) put_u32(b, uint32_t(d));
  put_u8(b, uint8_t(params.size()));
  for (uint32_t v : params) put_u32(b, v);
  put_u32(b, uint32_t(table.size()));
  put_u64(b, uint64_t(codes.size()));
  for (float f : table) put_u32(b, float_bits(f));
  b.insert(b.end(), codes.begin(), codes.end());
  return b;
}

Payload Payload::parse(const uint8_t* data, size_t size, uint64_t max_elements) {
  EP_CHECK(data != nullptr || size == 0, CompressError, "[payload] null buffer");
  Reader r{data, size};
  r.need(4, "magic");
  EP_CHECK(std::memcmp(data, kMagic, 4) == 0, CompressError, "[payload] bad magic (not an edgepipe payload)");
  r.pos = 4;
  const uint8_t version = r.u8("version");
  EP_CHECK(version == kPayloadVersion, CompressError, "[payload] unsupported version ", int(version), " (expected ",
           int(kPayloadVersion), ")");
  const uint8_t method = r.u8("method");
  EP_CHECK(method < kMethodCount, CompressError, "[payload] unknown method id ", int(method));
  const uint8_t dtype = r.u8("dtype");
  EP_CHECK(dtype <= uint8_t(DType::i64), CompressError, "[payload] unknown dtype id ", int(dtype));
  const uint8_t ndim = r.u8("rank");
  EP_CHECK(ndim <= kMaxPayloadDims, CompressError, "[payload] rank ", int(ndim), " exceeds ", kMaxPayloadDims);
  Payload out;  // small fixed-size fields only until the sizes are validated
  out.method = Method(method);
  out.dtype = DType(dtype);
  out.shape.resize(ndim);
  for (int i = 0; i < ndim; ++i) out.shape[size_t(i)] = int64_t(r.u32("dims"));
  uint64_t n = 1;
  for (int64_t d : out.shape) n = std::min<uint64_t>(n * uint64_t(d), uint64_t(1) << 62);  // dims < 2^32: no wrap
  EP_CHECK(n <= max_elements, CompressError, "[payload] shape ", shape_str(out.shape), " has ", n,
           " elements, more than the receiver's limit of ", max_elements);
  const uint8_t nparams = r.u8("parameter count");
  out.params.resize(nparams);  // at most 255 entries
  for (int i = 0; i < nparams; ++i) out.params[size_t(i)] = r.u32("parameters");
  const uint64_t table_len = r.u32("table length");
  const uint64_t code_bytes = r.u64("code length");
  const PayloadLayout L = payload_layout(out.method, out.params, out.dtype, out.shape, "payload");
  EP_CHECK(table_len == L.table_len, CompressError, "[payload] ", method_name(out.method), " header declares ",
           table_len, " table entries, the format needs ", L.table_len);
  EP_CHECK(code_bytes == L.code_bytes, CompressError, "[payload] ", method_name(out.method), " header declares ",
           code_bytes, " code bytes, the format needs ", L.code_bytes);
  const size_t body = size - r.pos;
  EP_CHECK(table_len <= body / 4 && code_bytes == body - table_len * 4, CompressError,
           "[payload] size mismatch: header promises ", table_len * 4 + code_bytes, " bytes of table and codes, ",
           body, " follow");
  out.table.resize(size_t(table_len));
  for (size_t i = 0; i < out.table.size(); ++i) {
    out.table[i] = bits_float(r.u32("table"));
    EP_CHECK(std::isfinite(out.table[i]), CompressError, "[payload] table entry ", i, " is not finite");
  }
  out.codes.assign(data + r.pos, data + r.pos + code_bytes);
  return out;
}

}  // namespace ep::compress
