// png_guard.h — a walk over a PNG's chunks that finds the lengths stb_image 2.27 (Debian's) would allocate for before
// reading. Not a PNG validator: CRCs, chunk order and the zlib stream are left to stb's checks.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace ep::data {

// "" when the bytes are not a PNG or hold no hazard; else what is wrong, e.g. "chunk IDAT declares 2147483000 bytes,
// 290 remain". The hazard: stb grows its IDAT buffer to a chunk's declared length before reading the chunk, so a
// 300-byte file made it allocate 2 GiB (found by libFuzzer). A chunk that runs past the end of the file is corrupt
// anyway; this refuses it before stb allocates.
std::string png_chunk_hazard(const uint8_t* data, size_t size);

}  // namespace ep::data
