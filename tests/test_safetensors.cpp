// test_safetensors.cpp — the safetensors reader on the reference's own sample files and on one hand-made corrupt file
// per validation rule (checking the reference error name), the writer's exact bytes and order, and the atomic writer.
// Not a model-loading test: name matching and dtype conversion belong to the models' tests.
#include <doctest/doctest.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <fstream>
#include <random>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <stdlib.h>
#include <signal.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/crc32c.h"
#include "engine/safetensors.h"
#include "tests/test_util.h"

using namespace ep;
namespace fs = std::filesystem;

namespace {

const char* kSamples = "../shared/data/safetensors-samples";

// The names in a directory, sorted.
std::vector<std::string> entries_of(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// test::TempDir with the listing the atomic-write tests need.
struct TempDir : ep::test::TempDir {
  std::string file(const std::string& name) const { return (path / name).string(); }
  std::vector<std::string> entries() const { return entries_of(path); }
};

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[size_t(i)] = char((v >> (8 * i)) & 0xff);
  return s;
}

// <u64 LE header length><header><data>: the layout of formats.md A1, built by hand.
std::string st_bytes(const std::string& header, const std::string& data) { return le64(header.size()) + header + data; }

void put_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), std::streamsize(bytes.size()));
  REQUIRE(f.good());
}

std::string get_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The IOError message read_safetensors throws for these bytes, or "" when it loads.
std::string load_error(const TempDir& dir, const std::string& bytes) {
  const std::string path = dir.file("t.safetensors");
  put_file(path, bytes);
  try {
    read_safetensors(path);
  } catch (const IOError& e) {
    std::string msg = e.what();
    CHECK_MESSAGE(msg.rfind(path + ": ", 0) == 0, "message does not start with the path: " << msg);
    return msg;
  }
  return "";
}

#define CHECK_LOAD_ERROR(dir, bytes, name)                       \
  do {                                                           \
    std::string msg_ = load_error((dir), (bytes));               \
    INFO("message: " << msg_);                                   \
    CHECK(msg_.find(std::string(": ") + (name)) != std::string::npos); \
  } while (0)

bool have_samples() {
  if (fs::is_directory(kSamples)) return true;
  MESSAGE("safetensors samples absent (" << kSamples << "): sample-file checks skipped");
  return false;
}

const std::vector<double> kRange{-3, -2, -1, 0, 1, 2};  // generate.py: np.array(range(-3, 3)) in every file

}  // namespace

TEST_CASE("safetensors: the reference sample files load with their known values") {
  if (!have_samples()) return;
  struct Case {
    const char* file;
    DType dtype;
    std::vector<double> values;
  };
  // PROVENANCE.md: range(-3,3) cast per numpy dtype; U8 wraps to 253,254,255,0,1,2.
  const Case cases[] = {{"b", DType::i8, kRange},  {"B", DType::u8, {253, 254, 255, 0, 1, 2}},
                        {"h", DType::i16, kRange}, {"i", DType::i32, kRange},
                        {"e", DType::f16, kRange}, {"f", DType::f32, kRange},
                        {"d", DType::f64, kRange}};
  for (const Case& c : cases) {
    CAPTURE(c.file);
    SafetensorsFile st = read_safetensors(std::string(kSamples) + "/" + c.file + ".safetensors");
    REQUIRE(st.tensors.size() == 1);
    CHECK(st.tensors[0].first == c.file);
    const Tensor* t = st.find(c.file);
    REQUIRE(t != nullptr);
    CHECK(t->dtype() == c.dtype);
    CHECK(t->shape() == Shape{6});
    CHECK(t->device() == Device::cpu());
    CHECK(t->to_double_vector() == c.values);
    CHECK(st.metadata == std::map<std::string, std::string>{{"test", "a"}});
    CHECK(st.find("nope") == nullptr);
  }
  // F16 bit patterns by hand: -3 = 1 10000 1000000000 = 0xC200, -2 = 0xC000, -1 = 0xBC00, 1 = 0x3C00, 2 = 0x4000.
  SafetensorsFile e = read_safetensors(std::string(kSamples) + "/e.safetensors");
  const f16_t* bits = e.tensors[0].second.data<f16_t>();
  const uint16_t expect[] = {0xC200, 0xC000, 0xBC00, 0x0000, 0x3C00, 0x4000};
  for (int k = 0; k < 6; ++k) CHECK(bits[k].bits == expect[k]);
}

TEST_CASE("safetensors: the U16/U32 samples are valid files but an unsupported dtype, named with the tensor") {
  if (!have_samples()) return;
  for (auto [file, dtype] : {std::pair{"H", "U16"}, std::pair{"I", "U32"}, std::pair{"overall", "U16"}}) {
    CAPTURE(file);
    const std::string path = std::string(kSamples) + "/" + file + ".safetensors";
    std::string msg;
    try {
      read_safetensors(path);
    } catch (const IOError& e) {
      msg = e.what();
    }
    CHECK(msg.find("unsupported dtype " + std::string(dtype)) != std::string::npos);
    // overall.safetensors lists B first, then H: the first unsupported tensor in header order is 'H'.
    CHECK(msg.find(std::string("'") + (std::string(file) == "I" ? "I" : "H") + "'") != std::string::npos);
  }
}

TEST_CASE("safetensors: overall.safetensors, unaligned, loads every tensor once U16/U32 are relabelled I16/I32") {
  if (!have_samples()) return;
  // Same-length dtype names keep every offset, so the F64 tensor still sits at file byte 8+526+48 = 582 (unaligned).
  std::string bytes = get_file(std::string(kSamples) + "/overall.safetensors");
  REQUIRE(bytes.size() == 702);
  for (auto [from, to] : {std::pair{"\"U16\"", "\"I16\""}, std::pair{"\"U32\"", "\"I32\""}}) {
    size_t at = bytes.find(from);
    REQUIRE(at != std::string::npos);
    bytes.replace(at, 5, to);
  }
  TempDir dir;
  put_file(dir.file("overall.safetensors"), bytes);
  SafetensorsFile st = read_safetensors(dir.file("overall.safetensors"));
  const std::vector<std::string> names{"B", "H", "I", "b", "d", "e", "f", "h", "i"};  // header order
  REQUIRE(st.tensors.size() == names.size());
  for (size_t k = 0; k < names.size(); ++k) {
    CAPTURE(names[k]);
    CHECK(st.tensors[k].first == names[k]);
    CHECK(st.tensors[k].second.shape() == Shape{6});
    // U16 65533..2 read as I16 and U32 as I32 are -3..2 again (two's complement).
    CHECK(st.tensors[k].second.to_double_vector() ==
          (names[k] == "B" ? std::vector<double>{253, 254, 255, 0, 1, 2} : kRange));
  }
  CHECK(st.find("d")->dtype() == DType::f64);
  CHECK(st.find("H")->dtype() == DType::i16);
  CHECK(st.metadata.at("test") == "a");
}

TEST_CASE("safetensors: round trip of every supported dtype, scalars and empty tensors") {
  TempDir dir;
  std::vector<std::pair<std::string, Tensor>> in;
  const DType dtypes[] = {DType::f32, DType::f64, DType::f16, DType::bf16, DType::u8,
                          DType::i8,  DType::i16, DType::i32, DType::i64};
  for (DType dt : dtypes) {
    const std::string n = dtype_name(dt);
    in.emplace_back(n + ".mat", from_vector({1, 2, 3, 4, 5, 6}, {2, 3}, dt));
    in.emplace_back(n + ".scalar", scalar_tensor(7, dt));
    in.emplace_back(n + ".empty", empty({2, 0, 3}, dt));
  }
  in.emplace_back("negatives", from_vector({-1.5, -0.0, 1e30, -2.25}, {4}, DType::f32));
  in.emplace_back("big_i64", from_vector({-9e15, 9e15}, {2}, DType::i64));
  const std::map<std::string, std::string> meta{{"step", "12"}, {"format", "pt"}, {"unicode", "h\xC3\xA9"}};
  const std::string path = dir.file("rt.safetensors");
  write_safetensors(path, in, meta);
  SafetensorsFile out = read_safetensors(path);
  CHECK(out.metadata == meta);
  REQUIRE(out.tensors.size() == in.size());
  for (const auto& [name, t] : in) {
    CAPTURE(name);
    const Tensor* r = out.find(name);
    REQUIRE(r != nullptr);
    CHECK(r->dtype() == t.dtype());
    CHECK(r->shape() == t.shape());
    REQUIRE(r->nbytes() == t.nbytes());
    CHECK((t.nbytes() == 0 || std::memcmp(r->raw_data(), t.raw_data(), t.nbytes()) == 0));
  }
  CHECK(out.find("f32.scalar")->shape().empty());
  CHECK(out.find("f32.scalar")->item() == 7);
  CHECK(out.find("bf16.mat")->to_double_vector() == std::vector<double>{1, 2, 3, 4, 5, 6});
  CHECK(out.find("big_i64")->to_vector<int64_t>() == std::vector<int64_t>{-9000000000000000, 9000000000000000});
  CHECK(out.find("u8.empty")->numel() == 0);
  // No temp file is left next to the result.
  CHECK(dir.entries() == std::vector<std::string>{"rt.safetensors"});
}

TEST_CASE("safetensors: CUDA tensors are written from the host copy and read back on the CPU") {
  if (!test::have_cuda()) return;
  TempDir dir;
  const std::string path = dir.file("cuda.safetensors");
  write_safetensors(path, {{"g", from_vector({1.5, -2, 3}, {3}, DType::bf16, Device::cuda())}});
  SafetensorsFile st = read_safetensors(path);
  REQUIRE(st.find("g") != nullptr);
  CHECK(st.find("g")->device() == Device::cpu());
  CHECK(st.find("g")->dtype() == DType::bf16);
  CHECK(st.find("g")->to_double_vector() == std::vector<double>{1.5, -2, 3});
}

TEST_CASE("safetensors: writer bytes match the reference layout exactly, plus the checksum in __metadata__") {
  TempDir dir;
  const std::string path = dir.file("x.safetensors");
  // The expected file: the reference layout (header padded with spaces to a multiple of 8, data little-endian), whose
  // __metadata__ holds the CRC-32C of the file with the 8 digits read as '0' (crc32c is checked against RFC 3720).
  auto expected = [](std::string header, const std::string& data) {
    header.append((8 - header.size() % 8) % 8, ' ');
    std::string file = le64(header.size()) + header + data;
    const size_t at = file.find("00000000");
    char hex[9];
    std::snprintf(hex, sizeof hex, "%08x", crc32c(file.data(), file.size()));
    return file.replace(at, 8, hex);
  };
  write_safetensors(path, {{"x", from_vector({1, 2}, {2}, DType::f32)}});
  // 1.0f = 0x3F800000, 2.0f = 0x40000000, stored little-endian.
  CHECK(get_file(path) ==
        expected(R"({"__metadata__":{"edgepipe.crc32c":"00000000"},)"
                 R"("x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                 std::string("\x00\x00\x80\x3f\x00\x00\x00\x40", 8)));

  // Metadata comes first in the header, the checksum after the caller's keys; a tensor-free file is just the header.
  write_safetensors(path, {}, {{"k", "v"}});
  CHECK(get_file(path) == expected(R"({"__metadata__":{"k":"v","edgepipe.crc32c":"00000000"}})", ""));
  const SafetensorsFile back = read_safetensors(path);
  CHECK(back.checksum_verified);
  CHECK(back.metadata == std::map<std::string, std::string>{{"k", "v"}});  // the checksum is the reader's business
}

TEST_CASE("safetensors: writer orders by dtype alignment (reference enum, largest first), then name") {
  TempDir dir;
  const std::string path = dir.file("order.safetensors");
  auto one = [](DType dt) { return from_vector({1}, {1}, dt); };
  write_safetensors(path, {{"a", one(DType::f32)},
                           {"b", one(DType::i64)},
                           {"c", one(DType::f64)},
                           {"d", one(DType::u8)},
                           {"e", one(DType::bf16)},
                           {"f", one(DType::f16)},
                           {"g", one(DType::i32)},
                           {"h", one(DType::i16)},
                           {"i", one(DType::i8)},
                           {"Z", one(DType::f32)}});  // 'Z' (0x5A) sorts before 'a' (0x61)
  // Reference enum order ... U8 I8 ... I16 U16 F16 BF16 I32 U32 F32 C64 F64 I64 U64, reversed:
  const std::vector<std::string> expect{"b", "c", "Z", "a", "g", "e", "f", "h", "i", "d"};
  const std::string bytes = get_file(path);
  uint64_t n = 0;
  for (int k = 7; k >= 0; --k) n = (n << 8) | uint8_t(bytes[size_t(k)]);
  CHECK(n % 8 == 0);
  auto header = nlohmann::ordered_json::parse(bytes.substr(8, n));
  std::vector<std::string> names;
  for (auto it = header.begin(); it != header.end(); ++it)
    if (it.key() != "__metadata__") names.push_back(it.key());
  CHECK(names == expect);
  // One element each, of 8,8,4,4,4,2,2,2,1,1 bytes: every tensor starts at a multiple of its element size.
  const std::vector<uint64_t> begins{0, 8, 16, 20, 24, 28, 30, 32, 34, 35};
  for (size_t k = 0; k < expect.size(); ++k) CHECK(header[expect[k]]["data_offsets"][0].get<uint64_t>() == begins[k]);
  CHECK(read_safetensors(path).tensors.size() == 10);
}

TEST_CASE("safetensors: header whitespace before and after the object is accepted") {
  TempDir dir;
  // The reference tests test_whitespace_padded_header / test_whitespace_leading_padded_header.
  CHECK(load_error(dir, st_bytes("\x09\x0A{}\x0D\x20", "")) == "");
  const std::string t = "{\"w\":{\"dtype\":\"I8\",\"shape\":[2],\"data_offsets\":[0,2]}}";
  CHECK(load_error(dir, st_bytes("  \n" + t + "\t  ", "\x05\xfb")) == "");
  SafetensorsFile st = read_safetensors(dir.file("t.safetensors"));
  CHECK(st.find("w")->to_double_vector() == std::vector<double>{5, -5});
  // A null __metadata__ is serde's None: accepted as no metadata.
  CHECK(load_error(dir, st_bytes("{\"__metadata__\":null}", "")) == "");
}

TEST_CASE("safetensors: truncated files and bad header lengths") {
  TempDir dir;
  CHECK_LOAD_ERROR(dir, "", "HeaderTooSmall");
  CHECK_LOAD_ERROR(dir, std::string("\x02\x00\x00\x00\x00\x00\x00", 7), "HeaderTooSmall");
  CHECK_LOAD_ERROR(dir, le64(100'000'001) + "{}", "HeaderTooLarge");
  CHECK_LOAD_ERROR(dir, le64(~uint64_t(0)) + "{}", "HeaderTooLarge");  // 8 + N would overflow
  CHECK_LOAD_ERROR(dir, le64(100'000'000) + "{}", "InvalidHeaderLength");  // at the limit: not too large, too long
  CHECK_LOAD_ERROR(dir, le64(3) + "{}", "InvalidHeaderLength");
  // A valid header whose data were cut off.
  const std::string h = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
  CHECK_LOAD_ERROR(dir, st_bytes(h, std::string(5, '\0')), "MetadataIncompleteBuffer");
  CHECK(load_error(dir, st_bytes(h, std::string(8, '\0'))) == "");
}

TEST_CASE("safetensors: header not UTF-8 is InvalidHeader") {
  TempDir dir;
  for (std::string bad : {std::string("\xff"), std::string("\xc0\xaf"), std::string("\xed\xa0\x80"),
                          std::string("\xf4\x90\x80\x80"), std::string("\xe2\x82")}) {
    CAPTURE(bad.size());
    CHECK_LOAD_ERROR(dir, st_bytes("{\"__metadata__\":{\"k\":\"" + bad + "\"}}", ""), "InvalidHeader:");
  }
  // Valid multi-byte UTF-8 (é, €, 😀) passes.
  CHECK(load_error(dir, st_bytes("{\"__metadata__\":{\"k\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"}}", "")) == "");
}

TEST_CASE("safetensors: JSON of the wrong shape is InvalidHeaderDeserialization") {
  TempDir dir;
  auto tensor = [](const std::string& dtype, const std::string& shape, const std::string& offsets) {
    return "{\"w\":{\"dtype\":" + dtype + ",\"shape\":" + shape + ",\"data_offsets\":" + offsets + "}}";
  };
  const std::vector<std::string> bad{
      "",                                        // empty header
      "{\"w\":",                                 // truncated JSON
      "{} x",                                    // trailing non-whitespace
      "[]",                                      // not an object
      "{\"w\":[]}",                              // entry not an object
      tensor("\"F128\"", "[1]", "[0,16]"),      // unknown dtype
      tensor("\"f32\"", "[1]", "[0,4]"),        // names are case-sensitive
      tensor("32", "[1]", "[0,4]"),             // dtype not a string
      tensor("\"F32\"", "[-1]", "[0,4]"),       // negative dimension
      tensor("\"F32\"", "[1.5]", "[0,4]"),      // fractional dimension
      tensor("\"F32\"", "[1e0]", "[0,4]"),      // a float, even if integral
      tensor("\"F32\"", "[1]", "[0,4,8]"),      // three offsets
      tensor("\"F32\"", "[1]", "[-0,4]"),       // negative zero offset
      tensor("\"F32\"", "1", "[0,4]"),          // shape not an array
      tensor("\"F32\"", "[1]", "[0,18446744073709551616]"),  // above u64
      "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}",           // missing data_offsets
      "{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",  // repeated field
      "{\"__metadata__\":{\"k\":1}}",            // metadata value not a string
      "{\"__metadata__\":{\"k\":{\"nested\":\"x\"}}}",  // nested metadata
      "{\"__metadata__\":\"pt\"}",               // metadata not an object
      std::string(40, '[') + std::string(40, ']'),  // hostile nesting
  };
  for (const std::string& h : bad) {
    CAPTURE(h);
    CHECK_LOAD_ERROR(dir, st_bytes(h, ""), "InvalidHeaderDeserialization");
  }
}

TEST_CASE("safetensors: unknown fields in an entry are ignored, as the reference does, unless nested hostilely") {
  TempDir dir;
  auto with_extra = [](const std::string& extra) {
    return "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"extra\":" + extra + "}}";
  };
  CHECK(load_error(dir, st_bytes(with_extra("[1,{\"a\":null}]"), "x")) == "");
  // serde_json stops at 128 levels; we stop at 16, before any recursive copy or dump could see the value.
  std::string msg = load_error(dir, st_bytes(with_extra(std::string(200, '[') + std::string(200, ']')), "x"));
  CHECK(msg.find("InvalidHeaderDeserialization") != std::string::npos);
  CHECK(msg.find("nested deeper") != std::string::npos);
}

TEST_CASE("safetensors: offsets must tile the buffer (InvalidOffset)") {
  TempDir dir;
  auto two = [](const std::string& a, const std::string& b) {
    return "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":" + a +
           "},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":" + b + "}}";
  };
  CHECK_LOAD_ERROR(dir, st_bytes(two("[0,4]", "[2,6]"), std::string(6, '\0')), "InvalidOffset");   // overlap
  CHECK_LOAD_ERROR(dir, st_bytes(two("[0,4]", "[0,4]"), std::string(4, '\0')), "InvalidOffset");   // same bytes twice
  CHECK_LOAD_ERROR(dir, st_bytes(two("[0,4]", "[8,12]"), std::string(12, '\0')), "InvalidOffset");  // gap
  CHECK_LOAD_ERROR(dir, st_bytes(two("[4,8]", "[8,12]"), std::string(12, '\0')), "InvalidOffset");  // first not at 0
  CHECK_LOAD_ERROR(dir, st_bytes(two("[0,4]", "[8,4]"), std::string(8, '\0')), "InvalidOffset");   // end < begin
  // Out of header order is fine: the walk sorts by offset.
  CHECK(load_error(dir, st_bytes(two("[4,8]", "[0,4]"), std::string(8, '\0'))) == "");
  std::string msg = load_error(dir, st_bytes(two("[0,4]", "[8,12]"), std::string(12, '\0')));
  CHECK(msg.find("'b'") != std::string::npos);  // names the offending tensor
}

TEST_CASE("safetensors: size checks (ValidationOverflow, MisalignedSlice, TensorInvalidInfo)") {
  TempDir dir;
  auto one = [](const std::string& dtype, const std::string& shape, const std::string& offsets) {
    return "{\"w\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":" + offsets + "}}";
  };
  // 2^32 * 2^32 elements overflows u64; 2^61 elements * 32 bits overflows the bit count.
  CHECK_LOAD_ERROR(dir, st_bytes(one("F32", "[4294967296,4294967296]", "[0,0]"), ""), "ValidationOverflow");
  CHECK_LOAD_ERROR(dir, st_bytes(one("F32", "[2305843009213693952]", "[0,0]"), ""), "ValidationOverflow");
  // 3 x F4 = 12 bits is not whole bytes; 1 x F6 = 6 bits neither.
  CHECK_LOAD_ERROR(dir, st_bytes(one("F4", "[3]", "[0,1]"), std::string(1, '\0')), "MisalignedSlice");
  CHECK_LOAD_ERROR(dir, st_bytes(one("F6_E2M3", "[1]", "[0,1]"), std::string(1, '\0')), "MisalignedSlice");
  // Wrong size: F32 [2] needs 8 bytes.
  CHECK_LOAD_ERROR(dir, st_bytes(one("F32", "[2]", "[0,4]"), std::string(4, '\0')), "TensorInvalidInfo");
  CHECK_LOAD_ERROR(dir, st_bytes(one("F32", "[]", "[0,0]"), ""), "TensorInvalidInfo");  // a scalar has 1 element
  CHECK_LOAD_ERROR(dir, st_bytes(one("BF16", "[2,0]", "[0,2]"), std::string(2, '\0')), "TensorInvalidInfo");
  // Legal edge cases: an empty tensor with begin == end, and a scalar.
  CHECK(load_error(dir, st_bytes(one("BF16", "[2,0]", "[0,0]"), "")) == "");
  CHECK(load_error(dir, st_bytes(one("F64", "[]", "[0,8]"), std::string(8, '\0'))) == "");
}

TEST_CASE("safetensors: trailing bytes and missing data are MetadataIncompleteBuffer") {
  TempDir dir;
  const std::string h = "{\"w\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}";
  CHECK_LOAD_ERROR(dir, st_bytes(h, "abc"), "MetadataIncompleteBuffer");  // polyglot: one byte too many
  CHECK_LOAD_ERROR(dir, st_bytes(h, "a"), "MetadataIncompleteBuffer");
  CHECK_LOAD_ERROR(dir, st_bytes("{}", "x"), "MetadataIncompleteBuffer");
  CHECK(load_error(dir, st_bytes(h, "ab")) == "");
}

TEST_CASE("safetensors: duplicate tensor names are DuplicateName (stricter than the reference)") {
  TempDir dir;
  const std::string e = "{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}";
  CHECK_LOAD_ERROR(dir, st_bytes("{\"a\":" + e + ",\"a\":" + e + "}", "x"), "DuplicateName");
  CHECK_LOAD_ERROR(dir, st_bytes("{\"__metadata__\":{},\"__metadata__\":{}}", ""), "DuplicateName");
}

TEST_CASE("safetensors: valid files with dtypes the engine lacks fail after validation, naming the tensor") {
  TempDir dir;
  auto one = [](const std::string& dtype, const std::string& shape, const std::string& offsets) {
    return "{\"ok\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[0,1]},\"w\":{\"dtype\":\"" + dtype +
           "\",\"shape\":" + shape + ",\"data_offsets\":" + offsets + "}}";
  };
  for (auto [dtype, shape, offsets, data] :
       {std::tuple{"U16", "[1]", "[1,3]", 2}, std::tuple{"U32", "[1]", "[1,5]", 4},
        std::tuple{"U64", "[1]", "[1,9]", 8}, std::tuple{"C64", "[1]", "[1,9]", 8},
        std::tuple{"F8_E4M3", "[2]", "[1,3]", 2}, std::tuple{"F4", "[2]", "[1,2]", 1},
        std::tuple{"F6_E3M2", "[4]", "[1,4]", 3}}) {
    CAPTURE(dtype);
    std::string msg = load_error(dir, st_bytes(one(dtype, shape, offsets), std::string(size_t(1 + data), '\0')));
    CHECK(msg.find("unsupported dtype " + std::string(dtype)) != std::string::npos);
    CHECK(msg.find("'w'") != std::string::npos);
    // Validation comes first: the same file with a trailing byte is a format error, not an unsupported dtype.
    CHECK_LOAD_ERROR(dir, st_bytes(one(dtype, shape, offsets), std::string(size_t(2 + data), '\0')),
                     "MetadataIncompleteBuffer");
  }
  // BOOL is stored as u8.
  const std::string bool_header = "{\"m\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[0,2]}}";
  CHECK(load_error(dir, st_bytes(bool_header, std::string("\x01\x00", 2))) == "");
  SafetensorsFile bool_file = read_safetensors(dir.file("t.safetensors"));
  const Tensor* m = bool_file.find("m");
  REQUIRE(m != nullptr);
  CHECK(m->dtype() == DType::u8);
  CHECK(m->to_double_vector() == std::vector<double>{1, 0});
}

TEST_CASE("safetensors: errors are reported in the reference order") {
  TempDir dir;
  // Too large wins over everything after it; bad UTF-8 over bad JSON; bad JSON over bad offsets and trailing bytes.
  CHECK_LOAD_ERROR(dir, le64(200'000'000) + "\xff", "HeaderTooLarge");
  CHECK_LOAD_ERROR(dir, st_bytes("{\"\xff", "trailing"), "InvalidHeader:");
  CHECK_LOAD_ERROR(dir, st_bytes("{\"w\":{\"dtype\":\"X\",\"shape\":[1],\"data_offsets\":[5,9]}}", "junk"),
                   "InvalidHeaderDeserialization");
  // The walk goes in offset order: whichever problem sits at the lower offset is reported, before trailing bytes.
  const std::string ok = "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}";
  CHECK_LOAD_ERROR(dir,
                   st_bytes("{" + ok + ",\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[6,10]},"
                            "\"c\":{\"dtype\":\"F32\",\"shape\":[9],\"data_offsets\":[10,14]}}",
                            std::string(20, '\0')),
                   "InvalidOffset");
  CHECK_LOAD_ERROR(dir,
                   st_bytes("{\"a\":{\"dtype\":\"F32\",\"shape\":[9],\"data_offsets\":[0,4]},"
                            "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[6,10]}}",
                            std::string(20, '\0')),
                   "TensorInvalidInfo");
}

TEST_CASE("safetensors: missing paths and directories are IOErrors naming the path") {
  TempDir dir;
  const std::string missing = dir.file("missing.safetensors");
  CHECK_THROWS_WITH_AS(read_safetensors(missing), doctest::Contains((missing + ": cannot open").c_str()), IOError);
  CHECK_THROWS_WITH_AS(read_safetensors(dir.path.string()), doctest::Contains("not a regular file"), IOError);
}

TEST_CASE("safetensors: write_file_atomic replaces the destination and leaves no temp file") {
  TempDir dir;
  const std::string path = dir.file("out.bin");
  write_file_atomic(path, "first");
  CHECK(get_file(path) == "first");
  write_file_atomic(path, std::string("second\0x", 8));
  CHECK(get_file(path) == std::string("second\0x", 8));
  CHECK(dir.entries() == std::vector<std::string>{"out.bin"});
}

TEST_CASE("safetensors: a failing write leaves the existing destination intact and no temp file") {
  TempDir dir;
  const std::string path = dir.file("model.safetensors");
  write_safetensors(path, {{"w", from_vector({1, 2, 3}, {3}, DType::f32)}});
  const std::string before = get_file(path);

  // A producer that has written part of the file, then throws: the exception passes through unchanged.
  CHECK_THROWS_WITH_AS(write_file_atomic_stream(path,
                                                [](const ByteSink& sink) {
                                                  sink("partial", 7);
                                                  throw std::runtime_error("producer failed");
                                                }),
                       "producer failed", std::runtime_error);
  CHECK(get_file(path) == before);
  CHECK(dir.entries() == std::vector<std::string>{"model.safetensors"});

  // A tensor whose copy throws mid-file: its storage is smaller than its shape says (written after 'a', an f64).
  auto impl = std::make_shared<TensorImpl>();
  impl->shape = {1000};
  impl->dtype = DType::f32;
  impl->storage = std::make_shared<Storage>(4, Device::cpu());
  CHECK_THROWS_AS(write_safetensors(path, {{"a", from_vector({5}, {1}, DType::f64)}, {"broken", Tensor(impl)}}),
                  ValueError);
  CHECK(get_file(path) == before);
  CHECK(dir.entries() == std::vector<std::string>{"model.safetensors"});
  CHECK(read_safetensors(path).find("w")->to_double_vector() == std::vector<double>{1, 2, 3});

  // Names the format cannot hold are refused before any file is touched.
  CHECK_THROWS_AS(write_safetensors(path, {{"x", ones({1})}, {"x", ones({1})}}), ValueError);
  CHECK_THROWS_AS(write_safetensors(path, {{"__metadata__", ones({1})}}), ValueError);
  CHECK_THROWS_AS(write_safetensors(path, {{"edgepipe.crc32c", ones({1})}}), ValueError);
  CHECK_THROWS_AS(write_safetensors(path, {{"u", Tensor()}}), ValueError);
  CHECK(get_file(path) == before);
  CHECK(dir.entries() == std::vector<std::string>{"model.safetensors"});
}

TEST_CASE("safetensors: unwritable destinations are IOErrors and leave nothing behind") {
  TempDir dir;
  // A directory that does not exist: the temp file cannot be created.
  const std::string nowhere = dir.file("no/such/dir/x.safetensors");
  CHECK_THROWS_WITH_AS(write_safetensors(nowhere, {{"w", ones({2})}}), doctest::Contains(nowhere.c_str()), IOError);
  CHECK(dir.entries().empty());
  // The destination is a directory: everything is written, then rename fails; the temp file is removed.
  fs::create_directory(dir.path / "taken");
  CHECK_THROWS_AS(write_file_atomic(dir.file("taken"), "bytes"), IOError);
  CHECK(fs::is_directory(dir.path / "taken"));
  CHECK(dir.entries() == std::vector<std::string>{"taken"});
}

namespace ep {
uint32_t crc32c_portable(const void* data, size_t size, uint32_t crc);  // crc32c.cpp's table path
}

TEST_CASE("crc32c: RFC 3720 B.4 vectors and the check value; the SSE4.2 and table paths agree at every length") {
  CHECK(crc32c("123456789", 9) == 0xE3069283u);  // the CRC catalogue's check value for CRC-32/ISCSI
  std::string zeros(32, '\0'), ff(32, '\xff'), up(32, '\0'), down(32, '\0');
  for (int i = 0; i < 32; ++i) up[size_t(i)] = char(i), down[size_t(i)] = char(31 - i);
  CHECK(crc32c(zeros.data(), 32) == 0x8A9136AAu);
  CHECK(crc32c(ff.data(), 32) == 0x62A8AB43u);
  CHECK(crc32c(up.data(), 32) == 0x46DD794Eu);
  CHECK(crc32c(down.data(), 32) == 0x113FDB5Cu);
  CHECK(crc32c(nullptr, 0) == 0u);
  std::mt19937_64 rng(5);
  std::string r(300, '\0');
  for (char& c : r) c = char(rng());
  for (size_t off = 0; off < 8; ++off)
    for (size_t len = 0; off + len <= r.size(); len += 1 + len / 16) {
      const uint32_t whole = crc32c(r.data() + off, len);
      CHECK(whole == crc32c_portable(r.data() + off, len, 0));
      const size_t cut = len / 3;  // incremental: crc(b, crc(a)) == crc(a + b)
      CHECK(crc32c(r.data() + off + cut, len - cut, crc32c(r.data() + off, cut)) == whole);
    }
}

TEST_CASE("safetensors: the checksum catches a changed byte in header or data; a malformed one is rejected") {
  TempDir dir;
  const std::string path = dir.file("c.safetensors");
  write_safetensors(path, {{"w", from_vector({1, 2, 3}, {3}, DType::f32)}, {"b", from_vector({4}, {1}, DType::f64)}},
                    {{"step", "12"}});
  const std::string good = get_file(path);
  CHECK(read_safetensors(path).checksum_verified);
  auto with = [&](const std::string& bytes) { return load_error(dir, bytes); };  // written to t.safetensors
  // A metadata number (still valid JSON, still a valid file): only the checksum can tell.
  std::string m = good;
  m.replace(m.find("\"12\""), 4, "\"13\"");
  CHECK(test::contains(with(m), ": ChecksumMismatch: "));
  // Every single-bit flip in the data section.
  for (size_t at = good.size() - 16; at < good.size(); ++at) {
    std::string d = good;
    d[at] = char(d[at] ^ 0x10);
    const std::string msg = with(d);
    INFO("byte " << at << ": " << msg);
    CHECK(test::contains(msg, ": ChecksumMismatch: "));
  }
  // The value itself: not 8 lower-case hex digits.
  std::string bad = good;
  const size_t v = bad.find("\"edgepipe.crc32c\":\"") + 19;
  bad.replace(v, 8, "zzzzzzzz");
  CHECK(test::contains(with(bad), ": InvalidChecksum: "));
  std::string upper = good;
  upper.replace(v, 8, "ABCDEF12");
  CHECK(test::contains(with(upper), ": InvalidChecksum: "));
  // A file from another writer, without the key, loads unverified.
  const std::string other = st_bytes(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", std::string(4, '\0'));
  CHECK(with(other) == "");
  CHECK_FALSE(read_safetensors(dir.file("t.safetensors")).checksum_verified);
}

TEST_CASE("safetensors: killed at random points while rewriting a file, the file is always a whole old or new one") {
  // reliability.md goal 13: a child rewrites one path over and over (versions 1, 2, ...); the parent kills it with
  // SIGKILL at a random moment, then the file must load, checksum verified, as one complete version.
  TempDir dir;
  const std::string path = dir.file("ck.safetensors");
  // Two contents of 256 KiB (so a kill often lands mid-write), made before any fork: the child only writes. Version v
  // holds content v % 2.
  std::vector<std::vector<std::pair<std::string, Tensor>>> content(2);
  std::vector<std::vector<double>> values(2, std::vector<double>(65536));
  for (int c = 0; c < 2; ++c) {
    for (size_t i = 0; i < values[size_t(c)].size(); ++i) values[size_t(c)][i] = double(c * 7 + int(i % 1000));
    content[size_t(c)] = {{"w", from_vector(values[size_t(c)], {65536}, DType::f32)}};
  }
  auto version = [&](int v) -> const std::vector<std::pair<std::string, Tensor>>& { return content[size_t(v % 2)]; };
  write_safetensors(path, version(0), {{"version", "0"}});
  std::mt19937_64 rng(13);
  int trials = 0, mid_write = 0;
  for (; trials < 200; ++trials) {
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {  // only the writer runs here: no doctest, no threads of our own
      for (int v = 1;; ++v) write_safetensors(path, version(v), {{"version", std::to_string(v)}});
    }
    ::usleep(useconds_t(rng() % 20000));
    ::kill(child, SIGKILL);
    int status = 0;
    ::waitpid(child, &status, 0);
    REQUIRE(WIFSIGNALED(status));
    const SafetensorsFile f = read_safetensors(path);
    REQUIRE(f.checksum_verified);
    const int v = std::stoi(f.metadata.at("version"));
    REQUIRE(f.find("w")->to_double_vector() == values[size_t(v % 2)]);
    for (const auto& e : fs::directory_iterator(dir.path)) mid_write += e.path().filename() != "ck.safetensors";
  }
  MESSAGE(trials << " kills; " << mid_write << " left a temp file behind (killed mid-write)");
  CHECK(mid_write > 10);  // the kills did land inside writes
  // The next write removes the temps of the killed writers.
  write_safetensors(path, version(1), {{"version", "1"}});
  CHECK(dir.entries() == std::vector<std::string>{"ck.safetensors"});
}

namespace {

// Runs `body` in a forked child, so that what it changes (a file size limit, its user, a mount) stays there, and
// returns the text it returns. Made for writers: the tensors must exist before the fork, and the child runs no doctest.
std::string in_child(const std::function<std::string()>& body) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::close(fds[0]);
    std::string msg;
    try {
      msg = body();
    } catch (const std::exception& e) {
      msg = std::string("exception: ") + e.what();
    }
    (void)!::write(fds[1], msg.data(), msg.size());
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string msg;
  char buf[512];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) msg.append(buf, size_t(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(child, &status, 0);
  CHECK(WIFEXITED(status));
  return msg;
}

// The message of the IOError that writing `tensors` to `path` raises, or "no error".
std::string write_error(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors) {
  try {
    write_safetensors(path, tensors);
  } catch (const IOError& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST_CASE("safetensors: a write that fails (a file size limit for a full disk) reaches the caller, old file intact") {
  // EFBIG from RLIMIT_FSIZE: the same failing write(2) as a full disk, on any file system and without privileges.
  // SIGXFSZ is ignored so that write returns the error instead of killing the process.
  TempDir dir;
  const std::string path = dir.file("ck.safetensors");
  write_safetensors(path, {{"w", from_vector({1, 2}, {2}, DType::f32)}});
  const std::string before = get_file(path);
  const std::vector<std::pair<std::string, Tensor>> big{{"w", zeros({65536})}};  // made before the fork
  const std::string msg = in_child([&] {
    ::signal(SIGXFSZ, SIG_IGN);
    const rlimit lim{64 * 1024, 64 * 1024};
    ::setrlimit(RLIMIT_FSIZE, &lim);
    return write_error(path, big);  // 256 KiB
  });
  INFO(msg);
  CHECK(test::contains(msg, path + ": write failed: File too large"));
  CHECK(get_file(path) == before);
  CHECK(dir.entries() == std::vector<std::string>{"ck.safetensors"});
}

TEST_CASE("safetensors: a really full file system (ENOSPC) and a directory the writer may not write (EACCES)") {
  // reliability.md goal 13's injections. ENOSPC: a 128 KiB tmpfs, mounted in the child's own mount namespace (so
  // nothing outside sees it, and it goes with the child), holds the old file; the new one does not fit. It needs the
  // privilege to mount (root in a container that grants it); the case says so and skips that part otherwise.
  TempDir dir;
  const std::vector<std::pair<std::string, Tensor>> small{{"w", from_vector({1, 2}, {2}, DType::f32)}};
  const std::vector<std::pair<std::string, Tensor>> big{{"w", zeros({65536})}};  // 256 KiB
  const std::string mnt = dir.file("small_fs");
  fs::create_directory(mnt);
  const std::string full = in_child([&]() -> std::string {
    if (::unshare(CLONE_NEWNS) != 0 || ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        ::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=128k") != 0)
      return std::string("skip: ") + std::strerror(errno);
    const std::string path = mnt + "/ck.safetensors";
    write_safetensors(path, small);
    const std::string before = get_file(path);
    std::string report = write_error(path, big) + "\n";
    report += get_file(path) == before && read_safetensors(path).checksum_verified ? "intact" : "changed";
    for (const std::string& name : entries_of(mnt)) report += " " + name;
    return report;
  });
  if (full.rfind("skip: ", 0) == 0) {
    MESSAGE("ENOSPC part skipped: cannot mount a tmpfs here (" << full.substr(6) << ")");
  } else {
    INFO(full);
    CHECK(full == mnt + "/ck.safetensors: write failed: No space left on device\nintact ck.safetensors");
  }

  // EACCES: a directory without write permission for the writer. Root ignores permissions, so as root the child
  // first becomes the unprivileged user nobody (65534); the directory is then not writable by it either way.
  const std::string locked = dir.file("locked");
  fs::create_directory(locked);
  const std::string path = locked + "/ck.safetensors";
  write_safetensors(path, small);
  const std::string before = get_file(path);
  fs::permissions(dir.path, fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
  const fs::perms read_and_enter = fs::perms::owner_read | fs::perms::owner_exec | fs::perms::group_read |
                                   fs::perms::group_exec | fs::perms::others_read | fs::perms::others_exec;
  fs::permissions(locked, read_and_enter);
  const std::string denied = in_child([&]() -> std::string {
    if (::geteuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0))
      return std::string("skip: ") + std::strerror(errno);
    return write_error(path, big);
  });
  fs::permissions(locked, fs::perms::owner_all);
  INFO(denied);
  if (denied.rfind("skip: ", 0) == 0) {
    MESSAGE("EACCES part skipped: running as root, and cannot become the user nobody (" << denied.substr(6) << ")");
  } else {
    CHECK(test::contains(denied, path + ": cannot create temp file " + path + ".tmp."));
    CHECK(test::contains(denied, ": Permission denied"));
  }
  CHECK(get_file(path) == before);
  CHECK(read_safetensors(path).checksum_verified);
  CHECK(entries_of(locked) == std::vector<std::string>{"ck.safetensors"});
}
