// crc32c.h — CRC-32C (Castagnoli, the iSCSI/ext4 checksum), incremental, with the SSE4.2 instruction when the CPU has
// it and an 8-slice table otherwise (the same values). For the checksum every safetensors file we write carries.
// Not a cryptographic hash: it detects torn and corrupted files, not tampering.
#pragma once
#include <cstddef>
#include <cstdint>

namespace ep {

// Continues a checksum: crc32c(b, crc32c(a)) == crc32c(a + b). Start from 0. crc32c("123456789") == 0xE3069283.
uint32_t crc32c(const void* data, size_t size, uint32_t crc = 0);

}  // namespace ep
