// safetensors.cpp — the strict safetensors reader (every check of formats.md A1, in the reference order, with the
// reference error names) and the atomic writer (reference header order and 8-byte padding; temp file, fsync, rename).
// Not a model loader and not an mmap reader: data are copied out with pread, so unaligned pre-0.3 files load fine.
#include "engine/safetensors.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <charconv>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>

#include "engine/crc32c.h"
#include "engine/json.h"  // kMaxJsonDepth: a valid header nests 3 deep
#include <optional>
#include <set>
#include <vector>

namespace ep {

// The format is little-endian and we copy bytes straight into tensors; a big-endian host would need byte swaps.
static_assert(std::endian::native == std::endian::little, "safetensors.cpp assumes a little-endian host");

namespace {

using ojson = nlohmann::ordered_json;  // ordered: tensors come back in header order

constexpr uint64_t kMaxHeaderSize = 100'000'000;  // the reference MAX_HEADER_SIZE

// Every dtype name the reference knows, in its enum order ("increasing alignment"), which the writer sorts by.
struct DTypeInfo {
  const char* name;
  uint64_t bits;
  std::optional<DType> engine;  // empty: a valid name the engine does not load
};
const DTypeInfo kDTypes[] = {
    {"BOOL", 8, DType::u8},   {"F4", 4, std::nullopt},       {"F6_E2M3", 6, std::nullopt},
    {"F6_E3M2", 6, std::nullopt}, {"U8", 8, DType::u8},      {"I8", 8, DType::i8},
    {"F8_E5M2", 8, std::nullopt}, {"F8_E4M3", 8, std::nullopt}, {"F8_E8M0", 8, std::nullopt},
    {"F8_E4M3FNUZ", 8, std::nullopt}, {"F8_E5M2FNUZ", 8, std::nullopt}, {"I16", 16, DType::i16},
    {"U16", 16, std::nullopt}, {"F16", 16, DType::f16},      {"BF16", 16, DType::bf16},
    {"I32", 32, DType::i32},  {"U32", 32, std::nullopt},     {"F32", 32, DType::f32},
    {"C64", 64, std::nullopt}, {"F64", 64, DType::f64},      {"I64", 64, DType::i64},
    {"U64", 64, std::nullopt},
};
constexpr int kNumDTypes = int(sizeof(kDTypes) / sizeof(kDTypes[0]));

int dtype_index(const std::string& name) {
  for (int i = 0; i < kNumDTypes; ++i)
    if (name == kDTypes[i].name) return i;
  return -1;
}

// The name the writer uses for an engine dtype (u8 is written as U8: the engine has no bool).
int writer_dtype_index(DType t) {
  switch (t) {
    case DType::f32: return dtype_index("F32");
    case DType::f64: return dtype_index("F64");
    case DType::f16: return dtype_index("F16");
    case DType::bf16: return dtype_index("BF16");
    case DType::u8: return dtype_index("U8");
    case DType::i8: return dtype_index("I8");
    case DType::i16: return dtype_index("I16");
    case DType::i32: return dtype_index("I32");
    case DType::i64: return dtype_index("I64");
  }
  return -1;
}

[[noreturn]] void fail(const std::string& path, const char* kind, const std::string& detail) {
  EP_THROW(IOError, path, ": ", kind, ": ", detail);
}

std::string sys_error() { return std::strerror(errno); }

// A writer killed mid-write (kill -9, power loss) leaves its temp file behind; the next write of the same path removes
// the temps of writers that no longer run. Only processes of this machine are seen: two machines writing one path on
// a shared file system would clash over the file itself anyway.
void remove_stale_temps(const std::string& dir, const std::string& name) {
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator(dir, ec); !ec && it != std::filesystem::directory_iterator();
       it.increment(ec)) {
    const std::string f = it->path().filename().string();
    const std::string prefix = name + ".tmp.";
    if (f.rfind(prefix, 0) != 0) continue;
    const size_t dot = f.find('.', prefix.size());
    if (dot == std::string::npos) continue;
    pid_t pid = 0;
    const auto [end, err] = std::from_chars(f.data() + prefix.size(), f.data() + dot, pid);
    if (err != std::errc() || end != f.data() + dot || pid <= 0) continue;
    if (::kill(pid, 0) != 0 && errno == ESRCH) ::unlink(it->path().c_str());
  }
}

constexpr const char* kChecksumPlaceholder = "00000000";

std::string hex8(uint32_t v) {
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", v);
  return buf;
}

// Where the 8 hex digits of the checksum's value start in a header's text, or npos when the key is not there exactly
// once as `"edgepipe.crc32c"` followed by `:` and a string of 8 hex digits (JSON whitespace allowed around the colon).
size_t checksum_value_at(const std::string& header) {
  const std::string key = std::string("\"") + kChecksumKey + "\"";
  const size_t pos = header.find(key);
  if (pos == std::string::npos || header.find(key, pos + 1) != std::string::npos) return std::string::npos;
  auto skip_space = [&](size_t i) {
    while (i < header.size() && (header[i] == ' ' || header[i] == '\t' || header[i] == '\n' || header[i] == '\r')) ++i;
    return i;
  };
  size_t i = skip_space(pos + key.size());
  if (i >= header.size() || header[i] != ':') return std::string::npos;
  i = skip_space(i + 1);
  if (i + 10 > header.size() || header[i] != '"' || header[i + 9] != '"') return std::string::npos;
  for (size_t k = i + 1; k < i + 9; ++k)
    if (!((header[k] >= '0' && header[k] <= '9') || (header[k] >= 'a' && header[k] <= 'f'))) return std::string::npos;
  return i + 1;
}

// Strict UTF-8 as Rust's str::from_utf8 accepts it: no overlong forms, no surrogates, nothing above U+10FFFF.
// Returns the offset of the first bad byte, or npos when the whole buffer is valid.
size_t first_invalid_utf8(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size(), i = 0;
  while (i < n) {
    unsigned c = p[i];
    if (c < 0x80) { ++i; continue; }
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c == 0xE0) { len = 3; lo = 0xA0; }
    else if (c == 0xED) { len = 3; hi = 0x9F; }  // excludes surrogates U+D800..DFFF
    else if (c >= 0xE1 && c <= 0xEF) len = 3;
    else if (c == 0xF0) { len = 4; lo = 0x90; }
    else if (c >= 0xF1 && c <= 0xF3) len = 4;
    else if (c == 0xF4) { len = 4; hi = 0x8F; }  // nothing above U+10FFFF
    else return i;
    if (i + len > n) return i;
    if (p[i + 1] < lo || p[i + 1] > hi) return i;
    for (size_t k = 2; k < len; ++k)
      if (p[i + k] < 0x80 || p[i + k] > 0xBF) return i;
    i += len;
  }
  return std::string::npos;
}

// One tensor as declared in the header, before any data is read.
struct Entry {
  std::string name;
  int dtype = -1;  // index into kDTypes
  std::vector<uint64_t> shape;
  uint64_t begin = 0, end = 0;
};

uint64_t as_uint(const std::string& path, const ojson& v, const std::string& what) {
  if (!v.is_number_unsigned())
    fail(path, "InvalidHeaderDeserialization",
         what + " must be a non-negative integer, got " + (v.is_number() ? v.dump() : std::string(v.type_name())));
  return v.get<uint64_t>();
}

// Step 5: the JSON must parse into {optional "__metadata__": map<string,string>, name: {dtype, shape, data_offsets}}.
// Fields the reference ignores (unknown keys inside a tensor entry) are ignored here too.
void parse_header(const std::string& path, const std::string& header, std::vector<Entry>& entries,
                  std::map<std::string, std::string>& metadata) {
  // Duplicate keys: nlohmann keeps the last one silently, so the callback sees every key first. A repeated tensor
  // name is DuplicateName (stricter than the reference); a repeated field inside an entry is a shape error, as serde's
  // derived struct reports it.
  std::vector<std::set<std::string>> open_keys;
  auto callback = [&](int depth, ojson::parse_event_t ev, ojson& parsed) -> bool {
    switch (ev) {
      case ojson::parse_event_t::object_start:
      case ojson::parse_event_t::array_start:
        if (depth >= kMaxJsonDepth)
          fail(path, "InvalidHeaderDeserialization", "JSON nested deeper than " + std::to_string(kMaxJsonDepth));
        if (ev == ojson::parse_event_t::object_start) open_keys.emplace_back();
        break;
      case ojson::parse_event_t::object_end:
        if (!open_keys.empty()) open_keys.pop_back();
        break;
      case ojson::parse_event_t::key: {
        const std::string& key = parsed.get_ref<const std::string&>();
        if (!open_keys.empty() && !open_keys.back().insert(key).second) {
          if (depth == 1) fail(path, "DuplicateName", "tensor '" + key + "' appears more than once");
          fail(path, "InvalidHeaderDeserialization", "duplicate key '" + key + "'");
        }
        break;
      }
      default:
        break;
    }
    return true;
  };
  ojson root;
  try {
    root = ojson::parse(header, callback, /*allow_exceptions=*/true, /*ignore_comments=*/false);
  } catch (const ojson::exception& e) {
    fail(path, "InvalidHeaderDeserialization", e.what());
  }
  if (!root.is_object())
    fail(path, "InvalidHeaderDeserialization", std::string("header must be a JSON object, got ") + root.type_name());

  for (auto it = root.begin(); it != root.end(); ++it) {
    const std::string& name = it.key();
    const ojson& v = it.value();
    if (name == "__metadata__") {
      if (v.is_null()) continue;  // serde's Option<HashMap> accepts null as "no metadata"
      if (!v.is_object())
        fail(path, "InvalidHeaderDeserialization", std::string("__metadata__ must be an object, got ") + v.type_name());
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          fail(path, "InvalidHeaderDeserialization",
               "__metadata__ value '" + m.key() + "' must be a string, got " + m.value().type_name());
        metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "'";
    if (!v.is_object())
      fail(path, "InvalidHeaderDeserialization", where + " must be an object, got " + v.type_name());
    for (const char* field : {"dtype", "shape", "data_offsets"})
      if (!v.contains(field)) fail(path, "InvalidHeaderDeserialization", where + " lacks \"" + field + "\"");
    Entry e;
    e.name = name;
    const ojson& dt = v["dtype"];
    if (!dt.is_string())
      fail(path, "InvalidHeaderDeserialization", where + ": dtype must be a string, got " + dt.type_name());
    e.dtype = dtype_index(dt.get<std::string>());
    if (e.dtype < 0)
      fail(path, "InvalidHeaderDeserialization", where + ": unknown dtype \"" + dt.get<std::string>() + "\"");
    const ojson& sh = v["shape"];
    if (!sh.is_array())
      fail(path, "InvalidHeaderDeserialization", where + ": shape must be an array, got " + sh.type_name());
    for (const ojson& d : sh) e.shape.push_back(as_uint(path, d, where + ": shape entry"));
    const ojson& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2)
      fail(path, "InvalidHeaderDeserialization", where + ": data_offsets must be an array of two integers");
    e.begin = as_uint(path, off[0], where + ": data_offsets[0]");
    e.end = as_uint(path, off[1], where + ": data_offsets[1]");
    entries.push_back(std::move(e));
  }
}

// Step 6: walk the entries sorted by (begin, end); buffers must tile [0, buffer_end) exactly. Returns buffer_end.
uint64_t validate_offsets(const std::string& path, const std::vector<Entry>& entries) {
  std::vector<const Entry*> sorted;
  for (const Entry& e : entries) sorted.push_back(&e);
  std::stable_sort(sorted.begin(), sorted.end(), [](const Entry* a, const Entry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t start = 0;
  for (const Entry* e : sorted) {
    const std::string where = "tensor '" + e->name + "'";
    if (e->begin != start || e->end < e->begin)
      fail(path, "InvalidOffset",
           where + ": data_offsets [" + std::to_string(e->begin) + "," + std::to_string(e->end) +
               "] but the previous tensor ends at " + std::to_string(start) + " (buffers must be contiguous)");
    uint64_t nelem = 1;
    for (uint64_t d : e->shape) {
      // The engine's Shape is int64, so a dimension above INT64_MAX is an overflow here even when another is 0.
      if (d > uint64_t(std::numeric_limits<int64_t>::max()) ||
          (d != 0 && nelem > std::numeric_limits<uint64_t>::max() / d))
        fail(path, "ValidationOverflow", where + ": element count overflows");
      nelem *= d;
    }
    const uint64_t bits = kDTypes[e->dtype].bits;
    if (nelem > std::numeric_limits<uint64_t>::max() / bits || nelem > uint64_t(std::numeric_limits<int64_t>::max()))
      fail(path, "ValidationOverflow", where + ": size in bits overflows");
    const uint64_t nbits = nelem * bits;
    if (nbits % 8 != 0)
      fail(path, "MisalignedSlice",
           where + ": " + std::to_string(nelem) + " x " + kDTypes[e->dtype].name + " is not a whole number of bytes");
    if (e->end - e->begin != nbits / 8)
      fail(path, "TensorInvalidInfo",
           where + ": data_offsets span " + std::to_string(e->end - e->begin) + " bytes, but " +
               kDTypes[e->dtype].name + " of " + std::to_string(nelem) + " elements needs " +
               std::to_string(nbits / 8));
    start = e->end;
  }
  return start;
}

// Reads exactly n bytes at `offset`; a short read means the file changed under us.
void pread_all(const std::string& path, int fd, void* dst, uint64_t n, uint64_t offset) {
  auto* p = static_cast<char*>(dst);
  while (n > 0) {
    size_t chunk = size_t(std::min<uint64_t>(n, uint64_t(1) << 30));
    ssize_t got = ::pread(fd, p, chunk, off_t(offset));
    if (got < 0) {
      if (errno == EINTR) continue;
      EP_THROW(IOError, path, ": read failed: ", sys_error());
    }
    if (got == 0) EP_THROW(IOError, path, ": file shrank while it was being read");
    p += got;
    n -= uint64_t(got);
    offset += uint64_t(got);
  }
}

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

const Tensor* SafetensorsFile::find(const std::string& name) const {
  for (const auto& [n, t] : tensors)
    if (n == name) return &t;
  return nullptr;
}

SafetensorsFile read_safetensors(const std::string& path) {
  Fd f;
  f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f.fd < 0) EP_THROW(IOError, path, ": cannot open: ", sys_error());
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) EP_THROW(IOError, path, ": cannot stat: ", sys_error());
  if (!S_ISREG(st.st_mode)) EP_THROW(IOError, path, ": not a regular file");
  const uint64_t file_len = uint64_t(st.st_size);

  // Steps 1-3: every limit is checked against the file length before anything is allocated.
  if (file_len < 8) fail(path, "HeaderTooSmall", "file is " + std::to_string(file_len) + " bytes, fewer than 8");
  unsigned char len_bytes[8];
  pread_all(path, f.fd, len_bytes, 8, 0);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len_bytes[i];
  if (n > kMaxHeaderSize)
    fail(path, "HeaderTooLarge",
         "header length " + std::to_string(n) + " exceeds the limit of " + std::to_string(kMaxHeaderSize));
  if (n > file_len - 8)  // 8 + n cannot overflow here: n <= 1e8
    fail(path, "InvalidHeaderLength",
         "header length " + std::to_string(n) + " runs past the end of the " + std::to_string(file_len) + "-byte file");

  std::string header(size_t(n), '\0');
  pread_all(path, f.fd, header.data(), n, 8);
  if (size_t bad = first_invalid_utf8(header); bad != std::string::npos)
    fail(path, "InvalidHeader", "header is not valid UTF-8 (byte " + std::to_string(bad) + " of the header)");

  SafetensorsFile out;
  std::vector<Entry> entries;
  parse_header(path, header, entries, out.metadata);
  const uint64_t buffer_end = validate_offsets(path, entries);
  if (buffer_end != file_len - 8 - n)
    fail(path, "MetadataIncompleteBuffer",
         "tensors cover " + std::to_string(buffer_end) + " bytes, but the file holds " +
             std::to_string(file_len - 8 - n) + " bytes after the header (" +
             (buffer_end < file_len - 8 - n ? "trailing bytes" : "data missing") + ")");

  // The file is valid safetensors; now the engine's own restriction.
  for (const Entry& e : entries)
    if (!kDTypes[e.dtype].engine)
      EP_THROW(IOError, path, ": unsupported dtype ", kDTypes[e.dtype].name, " for tensor '", e.name,
               "' (edgepipe loads F32, F64, F16, BF16, I64, I32, I16, I8, U8, BOOL)");

  const uint64_t data_start = 8 + n;
  for (const Entry& e : entries) {
    Shape shape(e.shape.begin(), e.shape.end());
    Tensor t = empty(shape, *kDTypes[e.dtype].engine, Device::cpu());
    pread_all(path, f.fd, t.raw_data(), e.end - e.begin, data_start + e.begin);
    out.tensors.emplace_back(e.name, std::move(t));
  }
  if (auto it = out.metadata.find(kChecksumKey); it != out.metadata.end()) {
    const size_t at = checksum_value_at(header);
    if (at == std::string::npos || header.compare(at, 8, it->second) != 0)
      fail(path, "InvalidChecksum", std::string("__metadata__ '") + kChecksumKey +
                                        "' must appear once, as 8 lower-case hex digits");
    header.replace(at, 8, kChecksumPlaceholder);  // the writer summed the placeholder
    uint32_t crc = crc32c(len_bytes, 8);
    crc = crc32c(header.data(), header.size(), crc);
    // The data section in file order (contiguous, as validated above).
    std::vector<size_t> order(out.tensors.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return entries[a].begin < entries[b].begin; });
    for (size_t i : order) {
      const Tensor& t = out.tensors[i].second;
      if (t.nbytes()) crc = crc32c(t.raw_data(), t.nbytes(), crc);
    }
    if (hex8(crc) != it->second)
      fail(path, "ChecksumMismatch", "the file's CRC-32C is " + hex8(crc) + ", its header records " + it->second +
                                         " (the file was corrupted or modified after it was written)");
    out.metadata.erase(it);
    out.checksum_verified = true;
  }
  return out;
}

void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::set<std::string> seen;
  for (const auto& [name, t] : tensors) {
    EP_CHECK(name != "__metadata__" && name != kChecksumKey, ValueError, path, ": the tensor name \"", name,
             "\" is reserved");
    EP_CHECK(seen.insert(name).second, ValueError, path, ": tensor '", name, "' given twice");
    EP_CHECK(t.defined(), ValueError, path, ": tensor '", name, "' is undefined");
  }
  // The reference writer's order: dtype enum rank descending (largest alignment first), then name bytewise, so every
  // tensor starts at a multiple of its element size.
  std::vector<size_t> order(tensors.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    int ra = writer_dtype_index(tensors[a].second.dtype()), rb = writer_dtype_index(tensors[b].second.dtype());
    return ra != rb ? ra > rb : tensors[a].first < tensors[b].first;
  });

  ojson header = ojson::object();
  {
    ojson m = ojson::object();
    for (const auto& [k, v] : metadata)
      if (k != kChecksumKey) m[k] = v;  // the writer's own key: a caller's copy (e.g. re-saved metadata) is replaced
    m[kChecksumKey] = kChecksumPlaceholder;
    header["__metadata__"] = std::move(m);
  }
  uint64_t offset = 0;
  for (size_t i : order) {
    const Tensor& t = tensors[i].second;
    ojson shape = ojson::array();
    for (int64_t d : t.shape()) shape.push_back(uint64_t(d));
    const uint64_t nbytes = uint64_t(t.nbytes());
    ojson entry = ojson::object();
    entry["dtype"] = kDTypes[writer_dtype_index(t.dtype())].name;
    entry["shape"] = std::move(shape);
    entry["data_offsets"] = ojson::array({offset, offset + nbytes});
    header[tensors[i].first] = std::move(entry);
    offset += nbytes;
  }
  std::string text;
  try {
    text = header.dump();  // compact, like serde_json::to_string
  } catch (const ojson::exception& e) {  // a name or metadata string that is not valid UTF-8
    EP_THROW(ValueError, path, ": cannot encode the header: ", e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');  // the reference pads with spaces so the data start 8-aligned
  const size_t checksum_at = checksum_value_at(text);
  // Names and keys that could repeat the placeholder's text are refused above, so this would be a bug here.
  EP_CHECK(checksum_at != std::string::npos, Error, path, ": [write_safetensors] checksum placeholder not found");

  // The checksum covers the whole file with its own 8 digits read as '0's: the sum is taken as the bytes stream out,
  // then the digits are written over the placeholder before the file is synced and renamed into place.
  uint32_t crc = 0;
  write_file_atomic_stream(path, [&](const ByteSink& file) {
    const ByteSink sink = [&](const void* data, size_t nbytes) {
      if (nbytes) crc = crc32c(data, nbytes, crc);
      file(data, nbytes);
    };
    unsigned char len_bytes[8];
    for (int i = 0; i < 8; ++i) len_bytes[i] = (uint64_t(text.size()) >> (8 * i)) & 0xff;
    sink(len_bytes, 8);
    sink(text.data(), text.size());
    for (size_t i : order) {
      const auto& [name, t] = tensors[i];
      Tensor host = t.cpu();  // waits for the device
      const auto& storage = host.impl().storage;
      EP_CHECK(host.nbytes() == 0 || (storage && storage->nbytes() >= host.nbytes()), ValueError, path,
               ": tensor '", name, "' has storage smaller than its shape ", shape_str(host.shape()));
      sink(host.nbytes() ? host.raw_data() : nullptr, host.nbytes());
    }
  }, [&](const BytePatch& patch) { patch(8 + checksum_at, hex8(crc)); });
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  write_file_atomic_stream(path, [&](const ByteSink& sink) { sink(bytes.data(), bytes.size()); });
}

void write_file_atomic_stream(const std::string& path, const std::function<void(const ByteSink&)>& produce,
                              const std::function<void(const BytePatch&)>& finish) {
  EP_CHECK(!path.empty(), IOError, "[write_file_atomic] empty path");
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  // Same directory, so rename() is atomic; pid + counter keeps concurrent writers (threads or processes) apart.
  static std::atomic<uint64_t> counter{0};
  const std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
  remove_stale_temps(dir, path.substr(slash == std::string::npos ? 0 : slash + 1));

  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0) EP_THROW(IOError, path, ": cannot create temp file ", tmp, ": ", sys_error());
  try {
    ByteSink sink = [&](const void* data, size_t nbytes) {
      const char* p = static_cast<const char*>(data);
      while (nbytes > 0) {
        ssize_t put = ::write(fd, p, std::min<size_t>(nbytes, size_t(1) << 30));
        if (put < 0) {
          if (errno == EINTR) continue;
          EP_THROW(IOError, path, ": write failed: ", sys_error());
        }
        p += put;
        nbytes -= size_t(put);
      }
    };
    produce(sink);
    if (finish) {
      finish([&](uint64_t offset, const std::string& bytes) {
        size_t done = 0;
        while (done < bytes.size()) {
          const ssize_t put = ::pwrite(fd, bytes.data() + done, bytes.size() - done, off_t(offset + done));
          if (put < 0 && errno == EINTR) continue;
          if (put < 0) EP_THROW(IOError, path, ": write failed: ", sys_error());
          done += size_t(put);
        }
      });
    }
    if (::fsync(fd) != 0) EP_THROW(IOError, path, ": fsync failed: ", sys_error());
    const int closing = fd;
    fd = -1;  // close() releases the descriptor even when it reports an error
    if (::close(closing) != 0) EP_THROW(IOError, path, ": close failed: ", sys_error());
    if (::rename(tmp.c_str(), path.c_str()) != 0)
      EP_THROW(IOError, path, ": rename from ", tmp, " failed: ", sys_error());
  } catch (...) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  // The rename is durable only once the directory entry is on disk.
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) EP_THROW(IOError, path, ": written, but cannot open directory ", dir, " to fsync it: ", sys_error());
  const int rc = ::fsync(dfd);
  const std::string err = rc != 0 ? sys_error() : std::string();
  ::close(dfd);
  if (rc != 0) EP_THROW(IOError, path, ": written, but fsync of directory ", dir, " failed: ", err);
}

}  // namespace ep
