// payload.h — the bytes a compressor puts on the wire: a small self-describing header, an f32 table and a packed code
// stream; serialize() / Payload::parse() with every size checked against the method's formula before allocating.
// Not an encoder: compress/<method>.cpp fill payloads; this file only owns the format and its validation.
//
// Wire format (all integers little-endian), version 1:
//   magic "EPCZ" | u8 version | u8 method | u8 dtype | u8 ndim | ndim x u32 dims | u8 nparams | nparams x u32 params
//   | u32 table_len | u64 code_bytes | table_len x f32 table | code_bytes bytes of codes
// What each method keeps in params / table / codes (n = number of elements, b = bits):
//   none      params []                      table 0                         codes n * sizeof(dtype) raw bytes
//   quant     params [b, channels, axis]     table 2*max(channels,1): (min, step) per channel, channels 0 = tensor
//                                            codes ceil(n*b/8)
//   sortquant params [b, s]                  table 2*2^s: (min, step) per bucket    codes ceil(n*(b+s)/8),
//                                            code = bucket * 2^b + level
//   topk      params [k, bitmap]             table k values (ascending index order)
//                                            codes bitmap ? ceil(n/8) : ceil(k * bits_for_count(n) / 8) (indices)
//   kmeans    params [b, iterations]         table 2^b centroids                    codes ceil(n*b/8)
//   lowrank   params [r]                     table matrices * (rows + cols) * r: per matrix Q [rows, r] then
//                                            P [cols, r] (x̂ = Q Pᵀ); codes 0. See lowrank_geometry() for rows/cols.
//   fp8       params [format]                table 1 (scale)                        codes n (one fp8 byte each)
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/check.h"
#include "engine/tensor.h"

namespace ep::compress {

// Malformed payloads and bad compressor specs. An ep::Error, so apps catch it with every other engine error.
struct CompressError : Error { using Error::Error; };

enum class Method : uint8_t { none = 0, quant = 1, sortquant = 2, topk = 3, kmeans = 4, lowrank = 5, fp8 = 6 };
const char* method_name(Method m);
constexpr int kMethodCount = 7;

constexpr uint8_t kPayloadVersion = 1;
constexpr int kMaxPayloadDims = 8;
constexpr uint64_t kDefaultMaxElements = uint64_t(1) << 31;  // 8 GiB of f32: above any split-point tensor here

// Rows and columns of the matrices lowrank factors: a tensor [N, d1, ..., dk] with k >= 2 is N matrices
// [d1, d2*...*dk] (the seeds' per-sample "3D" view: [B,C,HW], [B,S,F]); [A, B] is one matrix; 0-D/1-D one row.
struct LowrankGeometry { int64_t matrices = 0, rows = 0, cols = 0; };
LowrankGeometry lowrank_geometry(const Shape& shape);

struct PayloadLayout {
  uint64_t table_len = 0;   // f32 entries
  uint64_t code_bytes = 0;  // bytes of the code stream
};
// The table and code sizes the format prescribes for (method, params, dtype, shape); throws CompressError when the
// params are invalid for the method (wrong count, bits outside 1..16, k > n, ...). `what` names the caller.
PayloadLayout payload_layout(Method method, const std::vector<uint32_t>& params, DType dtype, const Shape& shape,
                             const char* what);

struct Payload {
  Method method = Method::none;
  DType dtype = DType::f32;      // the dtype decode() returns (the input's)
  Shape shape;                   // the input's shape
  std::vector<uint32_t> params;  // method parameters needed to decode (see the table above)
  std::vector<float> table;      // f32 side information
  std::vector<uint8_t> codes;    // packed codes (or raw bytes for `none`)
  // The same sections held as tensors on the encoder's device instead: a GPU encoder leaves its table (f32,
  // table_len elements) and/or its code stream (u8, code_bytes elements) where its kernels wrote them, so a decode on
  // that device reads them in place and nothing crosses to the host unless a wire needs the bytes. When one is
  // defined, the matching vector above is empty. Only encoders make them, so decoders trust them (parse() never
  // does: a parsed payload is host memory). The bytes, the format and serialize()'s output are the same either way.
  Tensor table_tensor, codes_tensor;

  int64_t numel() const { return shape_numel(shape); }
  bool has_tensors() const { return table_tensor.defined() || codes_tensor.defined(); }
  uint64_t table_len() const { return table_tensor.defined() ? uint64_t(table_tensor.numel()) : table.size(); }
  uint64_t code_bytes() const { return codes_tensor.defined() ? uint64_t(codes_tensor.numel()) : codes.size(); }
  // Moves the tensor-held sections into `table` / `codes` (copies to the host, waiting for the device).
  void to_host();
  // A copy whose sections are all host vectors (this payload itself when it has none on a device).
  Payload host_copy() const;
  // Exactly what serialize() returns and a wire carries: header + table + codes.
  uint64_t bytes() const;
  uint64_t header_bytes() const;
  std::vector<uint8_t> serialize() const;
  // Validates magic, version, method, dtype, rank, dims, params and both section sizes against payload_layout()
  // and the buffer length before allocating anything; throws CompressError naming the first problem.
  // max_elements bounds the tensor a payload may declare: top-k and low-rank payloads are legitimately far smaller
  // than their tensors, so without a bound a few bytes could demand a huge allocation at decode. A receiver that
  // knows the expected shape should also compare it.
  static Payload parse(const uint8_t* data, size_t size, uint64_t max_elements = kDefaultMaxElements);
  static Payload parse(const std::vector<uint8_t>& buf, uint64_t max_elements = kDefaultMaxElements) {
    return parse(buf.data(), buf.size(), max_elements);
  }
  // Throws CompressError when table/codes disagree with payload_layout() (encoders call it on what they made), or a
  // section held as a tensor has the wrong dtype or is set beside its non-empty vector.
  void check_consistent(const char* what) const;
};

}  // namespace ep::compress
