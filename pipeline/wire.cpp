// wire.cpp — tensor_to_wire / tensor_from_wire and the u64 header fields.
// Not a general serializer: contiguous tensors of the engine's dtypes only.
#include "pipeline/wire.h"

#include <cstring>

#include "engine/check.h"

namespace ep::pipeline {

namespace {
constexpr char kMagic[4] = {'E', 'P', 'T', '1'};
constexpr size_t kMaxRank = 8;
}  // namespace

void put_u64(std::vector<uint8_t>& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(uint8_t(v >> (8 * i)));
}

uint64_t get_u64(const uint8_t* data, size_t size, size_t& offset, const char* what) {
  EP_CHECK(offset <= size && size - offset >= 8, Error, "[pipeline] ", what, ": message truncated at byte ", offset,
           " of ", size);
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t(data[offset + size_t(i)]) << (8 * i);
  offset += 8;
  return v;
}

std::vector<uint8_t> tensor_to_wire(const Tensor& t) {
  EP_CHECK(t.defined(), ValueError, "[pipeline] cannot send an undefined tensor");
  EP_CHECK(size_t(t.dim()) <= kMaxRank, ValueError, "[pipeline] cannot send a tensor of rank ", t.dim());
  const Tensor h = t.detach().cpu();
  std::vector<uint8_t> out(kMagic, kMagic + 4);
  out.push_back(uint8_t(h.dtype()));
  out.push_back(uint8_t(h.dim()));
  out.push_back(0);
  out.push_back(0);
  for (int64_t d : h.shape()) put_u64(out, uint64_t(d));
  const size_t header = out.size();
  out.resize(header + h.nbytes());
  if (h.nbytes()) std::memcpy(out.data() + header, h.raw_data(), h.nbytes());
  return out;
}

Tensor tensor_from_wire(const uint8_t* data, size_t size, const char* what) {
  EP_CHECK(size >= 8 && std::memcmp(data, kMagic, 4) == 0, Error, "[pipeline] ", what,
           ": not a tensor message (bad magic or ", size, " bytes)");
  const unsigned dt = data[4], rank = data[5];
  EP_CHECK(dt <= unsigned(DType::i64), Error, "[pipeline] ", what, ": unknown dtype code ", dt);
  EP_CHECK(rank <= kMaxRank && data[6] == 0 && data[7] == 0, Error, "[pipeline] ", what, ": bad header (rank ", rank,
           ")");
  size_t offset = 8;
  Shape shape;
  uint64_t numel = 1;
  const DType dtype = DType(dt);
  for (unsigned i = 0; i < rank; ++i) {
    const uint64_t d = get_u64(data, size, offset, what);
    EP_CHECK(d <= uint64_t(INT64_MAX) && (d == 0 || numel <= UINT64_MAX / d), Error, "[pipeline] ", what,
             ": dimension ", i, " (", d, ") overflows");
    numel *= d;
    shape.push_back(int64_t(d));
  }
  EP_CHECK(numel <= (UINT64_MAX / dtype_size(dtype)) && size - offset == numel * dtype_size(dtype), Error,
           "[pipeline] ", what, ": ", shape_str(shape), " ", dtype_name(dtype), " needs ",
           numel * dtype_size(dtype), " bytes of elements, the message has ", size - offset);
  Tensor t = empty(shape, dtype);
  if (t.nbytes()) std::memcpy(t.raw_data(), data + offset, t.nbytes());
  return t;
}

}  // namespace ep::pipeline
