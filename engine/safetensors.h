// safetensors.h — the safetensors format (formats.md A1): a strict reader that enforces every validation rule of the
// reference implementation (and rejects duplicate names), and an atomic writer (temp file, fsync, rename).
// Not a model loader: name matching, missing/unexpected keys and dtype conversion to the model live with the models.
#pragma once
#include <cstddef>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace ep {

// Every file write_safetensors writes carries __metadata__["edgepipe.crc32c"]: the CRC-32C (8 lower-case hex digits)
// of the whole file with those 8 digits read as '0'. read_safetensors verifies it when present (IOError
// "ChecksumMismatch") and leaves it out of `metadata`; files of other writers have none and load as before.
inline constexpr const char* kChecksumKey = "edgepipe.crc32c";

struct SafetensorsFile {
  std::vector<std::pair<std::string, Tensor>> tensors;  // CPU tensors in the file's dtype, in header order
  std::map<std::string, std::string> metadata;           // "__metadata__" without the checksum, possibly empty
  bool checksum_verified = false;                        // the file had the checksum, and it matched
  const Tensor* find(const std::string& name) const;     // nullptr when absent
};

// Throws IOError "<path>: <ReferenceErrorName>: <detail>", e.g. "w.safetensors: InvalidOffset: tensor 'b' ...".
SafetensorsFile read_safetensors(const std::string& path);

// Writes CPU or CUDA tensors (copied to the host) atomically, the file appears complete or not at all, and with the
// checksum above.
void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// Writes `bytes` to `path` atomically (same-directory temp file, fsync, rename, directory fsync). Throws IOError.
void write_file_atomic(const std::string& path, const std::string& bytes);

// The streaming form: `produce` appends bytes through the sink it is given (so a large checkpoint needs no second
// in-memory copy). If `produce` or any write throws, the temp file is removed, `path` is untouched and the exception
// propagates unchanged.
// `finish`, when given, runs after `produce` and before the sync: it may overwrite bytes already written (a checksum
// in a header), through the patch function it is given.
using ByteSink = std::function<void(const void* data, size_t nbytes)>;
using BytePatch = std::function<void(uint64_t offset, const std::string& bytes)>;
void write_file_atomic_stream(const std::string& path, const std::function<void(const ByteSink&)>& produce,
                              const std::function<void(const BytePatch&)>& finish = {});

}  // namespace ep
