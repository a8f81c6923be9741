// png_guard.cpp — the chunk walk of png_guard.h: the 8-byte signature, then [length, big-endian u32][type][data]
// [CRC] up to IEND, as stb_image reads them. Not a decoder.
#include "data/png_guard.h"

namespace ep::data {

std::string png_chunk_hazard(const uint8_t* data, size_t size) {
  static const uint8_t kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  if (size < 8) return "";
  for (int i = 0; i < 8; ++i)
    if (data[i] != kSignature[i]) return "";  // not a PNG: stb decides
  size_t pos = 8;
  while (size - pos >= 8) {  // a whole chunk header; a shorter tail is stb's to reject
    const uint64_t length = (uint64_t(data[pos]) << 24) | (uint64_t(data[pos + 1]) << 16) |
                            (uint64_t(data[pos + 2]) << 8) | uint64_t(data[pos + 3]);
    const std::string type(reinterpret_cast<const char*>(data + pos + 4), 4);
    const uint64_t remain = size - pos - 8;  // data and CRC of this chunk, and what follows
    if (length > remain)
      return "chunk " + type + " declares " + std::to_string(length) + " bytes, " + std::to_string(remain) + " remain";
    if (type == "IEND") return "";
    pos += 8 + size_t(length) + 4;
    if (pos > size) return "";
  }
  return "";
}

}  // namespace ep::data
