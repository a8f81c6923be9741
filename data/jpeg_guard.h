// jpeg_guard.h — a walk over a JPEG's marker segments, in the order stb_image reads them, that finds the Huffman and
// quantization tables stb_image 2.27 (Debian's) would misuse. Not a JPEG validator: the rest is left to stb's checks.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace ep::data {

// "" when the bytes are not a JPEG or hold no hazard; else what is wrong, e.g. "DHT table 2 declares 300 codes (at
// most 256)". Three hazards, all found by fuzzing under the sanitizers:
// - stb 2.27's DHT handler builds a table from the 16 code-length counts without checking that they sum to at most
//   256, and writes past its 257-byte size list and 256-byte value list (fixed upstream in 2.28);
// - a scan that uses a Huffman table no DHT defined makes stb decode with its uninitialized table memory: garbage
//   symbols, reads out of bounds, or its STBI_ASSERT aborting the process (libjpeg reports "Huffman table 0x10 was
//   not defined");
// - a frame component whose quantization table no DQT defined makes stb dequantize with uninitialized memory (UBSan
//   saw its garbage overflow an int; libjpeg reports "Quantization table 0x00 was not defined").
std::string jpeg_table_hazard(const uint8_t* data, size_t size);

}  // namespace ep::data
