// wire.h — tensors as bytes for boundaries between processes: a small header (magic, dtype, rank, dims) and the
// elements, read back with every size checked before anything is allocated. Not a file format (safetensors is) and
// not the compressed payloads (compress/payload.h has their own wire format).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine/tensor.h"

namespace ep::pipeline {

// "EPT1", dtype (u8), rank (u8), two zero bytes, rank x int64 dims (little-endian), then the elements. A CUDA tensor
// is copied to the host first.
std::vector<uint8_t> tensor_to_wire(const Tensor& t);
// The tensor on the host. Error naming `what` when the header is malformed or the sizes disagree.
Tensor tensor_from_wire(const uint8_t* data, size_t size, const char* what);

// Little-endian fixed-width fields for the small headers the pipeline puts in front of a message.
void put_u64(std::vector<uint8_t>& out, uint64_t v);
uint64_t get_u64(const uint8_t* data, size_t size, size_t& offset, const char* what);

}  // namespace ep::pipeline
