// test_compress_format.cpp — the compression wire format: bit packing against hand-made vectors and a naive bit
// writer, payload sizes against the formulas, serialization round trips, corrupt/truncated buffers, spec parsing.
// Not the methods' numerical laws (test_compress_methods.cpp) nor the autograd op (test_compress_layer.cpp).
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <random>

#include "compress/bitpack.h"
#include "compress/compress_kernels.h"
#include "compress/method_util.h"
#include "compress/methods.h"
#include "tests/test_util.h"

using namespace ep;
using namespace ep::compress;

namespace {

// An independent reference packer: one bit at a time, stream bit k -> byte k/8, bit k%8, low code bit first.
std::vector<uint8_t> naive_pack(const std::vector<uint32_t>& codes, int bits) {
  std::vector<uint8_t> out((codes.size() * size_t(bits) + 7) / 8, 0);
  size_t k = 0;
  for (uint32_t c : codes)
    for (int j = 0; j < bits; ++j, ++k)
      if ((uint64_t(c) >> j) & 1) out[k / 8] |= uint8_t(1u << (k % 8));
  return out;
}

std::vector<uint8_t> pack(const std::vector<uint32_t>& codes, int bits) {
  std::vector<uint8_t> out(size_t(packed_bytes(codes.size(), bits)), 0xAA);  // garbage: pack must overwrite it
  pack_codes(codes.data(), codes.size(), bits, out.data());
  return out;
}

Tensor sample_tensor(const Shape& s, uint64_t seed) { return test::randn(s, seed, DType::f32); }

// header: magic 4 + version/method/dtype/ndim 4 + 4 per dim + nparams 1 + 4 per param + table_len 4 + code_len 8
uint64_t header_formula(size_t ndim, size_t nparams) { return 4 + 4 + 4 * ndim + 1 + 4 * nparams + 4 + 8; }

template <class E>
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("compress bitpack: hand-made little-endian vectors for 1, 3, 12 and 16 bits") {
  // 3 bits, codes 1..7,0: byte0 = 1 | 2<<3 | (3&3)<<6 = 0xD1; byte1 = 3>>2 | 4<<1 | 5<<4 | (6&1)<<7 = 0x58;
  // byte2 = 6>>1 | 7<<2 | 0<<5 = 0x1F
  CHECK(pack({1, 2, 3, 4, 5, 6, 7, 0}, 3) == std::vector<uint8_t>{0xD1, 0x58, 0x1F});
  // 12 bits: 0xABC then 0x123 -> BC, (3<<4)|A, 12
  CHECK(pack({0xABC, 0x123}, 12) == std::vector<uint8_t>{0xBC, 0x3A, 0x12});
  // a 12-bit code alone costs 2 bytes, the last half-filled
  CHECK(pack({0xABC}, 12) == std::vector<uint8_t>{0xBC, 0x0A});
  // 1 bit: 1,0,1,1,0,0,0,1 | 1 -> 0b10001101 = 0x8D, 0x01
  CHECK(pack({1, 0, 1, 1, 0, 0, 0, 1, 1}, 1) == std::vector<uint8_t>{0x8D, 0x01});
  // 16 bits: plain little-endian u16
  CHECK(pack({0x1234, 0xBEEF}, 16) == std::vector<uint8_t>{0x34, 0x12, 0xEF, 0xBE});
  CHECK(unpack_code(pack({0xABC, 0x123}, 12).data(), 3, 1, 12) == 0x123u);
}

TEST_CASE("compress bitpack: every width 1..32 matches the naive packer and round-trips, sizes ceil(n*b/8)") {
  std::mt19937_64 rng(7);
  for (int bits = 1; bits <= 32; ++bits) {
    for (size_t n : {size_t(0), size_t(1), size_t(7), size_t(8), size_t(9), size_t(37)}) {
      std::vector<uint32_t> codes(n);
      const uint64_t mask = bits == 32 ? 0xffffffffull : ((uint64_t(1) << bits) - 1);
      for (auto& c : codes) c = uint32_t(rng() & mask);
      if (n > 0) codes[0] = uint32_t(mask);  // the all-ones code exercises every bit of the width
      INFO("bits " << bits << " n " << n);
      const auto packed = pack(codes, bits);
      CHECK(packed.size() == (n * size_t(bits) + 7) / 8);
      CHECK(packed == naive_pack(codes, bits));
      for (size_t i = 0; i < n; ++i) REQUIRE(unpack_code(packed.data(), packed.size(), i, bits) == codes[i]);
    }
  }
  CHECK(bits_for_count(1) == 1);
  CHECK(bits_for_count(2) == 1);
  CHECK(bits_for_count(3) == 2);
  CHECK(bits_for_count(1024) == 10);
  CHECK(bits_for_count(1025) == 11);
}

TEST_CASE("compress bitpack: the block packer and unpacker of the CPU codecs equal the naive packer for every width") {
  // pack_block has straight loops for 4, 8 and 16 bits and goes through pack_group otherwise; unpack_group is the
  // inverse the other widths use. Blocks of every length a codec hands them: whole groups, a ragged last block.
  std::mt19937_64 rng(11);
  for (int bits = 1; bits <= 32; ++bits) {
    for (int64_t m : {int64_t(1), int64_t(2), int64_t(3), int64_t(7), int64_t(8), int64_t(9), int64_t(17),
                      kCodeBlock - 1, kCodeBlock}) {
      std::vector<uint32_t> codes(static_cast<size_t>(m));
      const uint64_t mask = bits == 32 ? 0xffffffffull : ((uint64_t(1) << bits) - 1);
      for (auto& c : codes) c = uint32_t(rng() & mask);
      codes[0] = uint32_t(mask);
      INFO("bits " << bits << " m " << m);
      const std::vector<uint8_t> want = naive_pack(codes, bits);
      std::vector<uint8_t> got(want.size(), 0xAA);
      if (bits <= 16) {  // the codecs' widths (codes of at most 16 bits)
        pack_block(codes.data(), m, bits, got.data());
        REQUIRE(got == want);
      }
      std::vector<uint32_t> back(codes.size(), 0xDEADBEEFu);
      unpack_block(want.data(), m, bits, back.data());
      REQUIRE(back == codes);
      for (int64_t g = 0; g * 8 < m; ++g) {  // unpack_group reads exactly the group's bytes
        const int count = int(std::min<int64_t>(8, m - 8 * g));
        const auto first = want.begin() + g * bits;
        std::vector<uint8_t> group(first, first + int64_t(packed_bytes(uint64_t(count), bits)));
        uint32_t c[8];
        unpack_group(group.data(), count, bits, c);
        for (int j = 0; j < count; ++j) REQUIRE(c[j] == codes[size_t(8 * g + j)]);
      }
    }
  }
  // encode_blocks and decode_blocks over many blocks: the same stream as one naive pack, whatever the thread count.
  const int64_t n = 3 * kCodeBlock + 13;
  std::vector<uint32_t> codes(static_cast<size_t>(n));
  for (auto& c : codes) c = uint32_t(rng() & 0x7ff);
  std::vector<uint8_t> got(size_t(packed_bytes(uint64_t(n), 11)), 0xAA);
  encode_blocks(uint64_t(n), 11, got.data(), [&](int64_t i0, int64_t m, uint32_t* out) {
    std::copy(codes.begin() + i0, codes.begin() + i0 + m, out);
  });
  CHECK(got == naive_pack(codes, 11));
  std::vector<uint32_t> back(codes.size(), 0);
  decode_blocks(got.data(), uint64_t(n), 11, [&](int64_t i0, int64_t m, const uint32_t* c) {
    std::copy(c, c + m, back.begin() + i0);
  });
  CHECK(back == codes);
}

TEST_CASE("compress payload: bytes() equals the size formula for every method and bit width") {
  const Shape shape{3, 5, 7};  // n = 105
  const uint64_t n = 105;
  for (int b = 1; b <= 16; ++b) {
    INFO("bits " << b);
    Payload q = parse_compressor("quant:bits=" + std::to_string(b))->encode(sample_tensor(shape, 1));
    CHECK(q.bytes() == header_formula(3, 3) + 2 * 4 + (n * b + 7) / 8);
    CHECK(q.serialize().size() == q.bytes());
    Payload qc = parse_compressor("quant:per=channel,bits=" + std::to_string(b))->encode(sample_tensor(shape, 1));
    CHECK(qc.bytes() == header_formula(3, 3) + 2 * 5 * 4 + (n * b + 7) / 8);
    Payload km = parse_compressor("kmeans:iters=3,bits=" + std::to_string(b))->encode(sample_tensor(shape, 2));
    CHECK(km.bytes() == header_formula(3, 2) + (uint64_t(1) << b) * 4 + (n * b + 7) / 8);
    CHECK(km.serialize().size() == km.bytes());
    for (int s = 0; b + s <= 16; ++s) {
      Payload sq = parse_compressor("sortquant:bits=" + std::to_string(b) + ",split=" + std::to_string(s))
                       ->encode(sample_tensor(shape, 3));
      REQUIRE(sq.bytes() == header_formula(3, 2) + (uint64_t(2) << s) * 4 + (n * uint64_t(b + s) + 7) / 8);
    }
  }
  // The seeds' "Sort Quantization 8bits (6bits 4split)": 8-bit codes, 4 buckets.
  Payload seed8 = parse_compressor("sortquant:bits=6,split=2")->encode(sample_tensor(shape, 4));
  CHECK(seed8.codes.size() == n);
  CHECK(seed8.table.size() == 8);
  CHECK(parse_compressor("none")->encode(sample_tensor(shape, 5)).bytes() == header_formula(3, 0) + 4 * n);
  CHECK(parse_compressor("fp8")->encode(sample_tensor(shape, 5)).bytes() == header_formula(3, 1) + 4 + n);
  // lowrank: 3 matrices [5, 7], rank 2: 3 * (5 + 7) * 2 floats
  CHECK(parse_compressor("lowrank:rank=2")->encode(sample_tensor(shape, 6)).bytes() ==
        header_formula(3, 1) + 3 * 12 * 2 * 4);
  // topk, n = 105: indices take 7 bits. ratio 0.05 -> k = 6: 6 * 7 bits = 6 bytes < bitmap 14 bytes.
  Payload few = parse_compressor("topk:ratio=0.05")->encode(sample_tensor(shape, 7));
  CHECK(few.params == std::vector<uint32_t>{6, 0});
  CHECK(few.bytes() == header_formula(3, 2) + 6 * 4 + 6);
  // ratio 0.5 -> k = 53: 53 * 7 bits = 47 bytes > bitmap 14 bytes.
  Payload half = parse_compressor("topk:ratio=0.5")->encode(sample_tensor(shape, 7));
  CHECK(half.params == std::vector<uint32_t>{53, 1});
  CHECK(half.bytes() == header_formula(3, 2) + 53 * 4 + 14);
}

TEST_CASE("compress payload: serialization round-trips for every method, f32 and f64") {
  const char* specs[] = {"none", "quant:bits=5", "quant:bits=3,per=channel", "sortquant:bits=4,split=3",
                         "sortquant:bits=5,split=2,mode=sampled,sample=50", "topk:ratio=0.1", "topk:ratio=0.7",
                         "kmeans:bits=3", "lowrank:rank=3", "fp8:format=e5m2", "fp8:round=stochastic"};
  for (DType dt : {DType::f32, DType::f64})
    for (const char* spec : specs) {
      INFO(spec << " " << dtype_name(dt));
      auto c = parse_compressor(spec);
      Payload p = c->encode(test::randn({4, 6, 5}, 11, dt));
      const std::vector<uint8_t> wire = p.serialize();
      CHECK(wire.size() == p.bytes());
      Payload q = Payload::parse(wire);
      CHECK(q.method == p.method);
      CHECK(q.dtype == dt);
      CHECK(q.shape == p.shape);
      CHECK(q.params == p.params);
      CHECK(q.table == p.table);
      CHECK(q.codes == p.codes);
      CHECK(q.serialize() == wire);
      CHECK_ALLCLOSE(decode_payload(q), c->decode(p), 0.0, 0.0);
    }
}

TEST_CASE("compress payload: sections held as tensors give the same bytes, wire and values as host vectors") {
  // A GPU encoder leaves them on the GPU; CPU tensors exercise the same bookkeeping here.
  const char* specs[] = {"none", "quant:bits=5", "quant:bits=3,per=channel", "sortquant:bits=4,split=3",
                         "topk:ratio=0.1", "topk:ratio=0.7", "kmeans:bits=3", "lowrank:rank=2", "fp8"};
  for (const char* spec : specs) {
    INFO(spec);
    auto c = parse_compressor(spec);
    const Payload p = c->encode(test::randn({4, 6, 5}, 12, DType::f32));
    Payload held = p;
    held.table_tensor = from_data<float>(p.table, {int64_t(p.table.size())});
    held.codes_tensor = from_data<uint8_t>(p.codes, {int64_t(p.codes.size())});
    held.table.clear();
    held.codes.clear();
    CHECK(held.has_tensors());
    CHECK(held.table_len() == p.table.size());
    CHECK(held.code_bytes() == p.codes.size());
    CHECK_NOTHROW(held.check_consistent("test"));
    CHECK(held.bytes() == p.bytes());
    CHECK(held.serialize() == p.serialize());
    CHECK_ALLCLOSE(decode_payload(held), decode_payload(p), 0.0, 0.0);
    if (p.method == Method::topk) CHECK(TopkCompressor::positions(held) == TopkCompressor::positions(p));
    const Payload copy = held.host_copy();
    CHECK(held.has_tensors());  // a copy, the original untouched
    CHECK(!copy.has_tensors());
    CHECK(copy.table == p.table);
    CHECK(copy.codes == p.codes);
    held.to_host();
    CHECK(!held.has_tensors());
    CHECK(held.codes == p.codes);
  }
  // Malformed: a section both in a tensor and in its vector, a tensor of the wrong dtype, rank or length.
  const Payload p = parse_compressor("quant:bits=4")->encode(test::randn({10}, 13, DType::f32));
  Payload both = p;
  both.codes_tensor = from_data<uint8_t>(p.codes, {int64_t(p.codes.size())});
  CHECK_THROWS_WITH_AS(both.check_consistent("t"), doctest::Contains("code vector empty"), CompressError);
  Payload wrong_dtype = p;
  wrong_dtype.table.clear();
  wrong_dtype.table_tensor = from_vector({0, 1}, {2}, DType::f64);
  CHECK_THROWS_WITH_AS(wrong_dtype.check_consistent("t"), doctest::Contains("1-D f32"), CompressError);
  Payload short_codes = p;
  short_codes.codes.clear();
  short_codes.codes_tensor = zeros({int64_t(p.codes.size()) - 1}, DType::u8);
  CHECK_THROWS_WITH_AS(short_codes.check_consistent("t"), doctest::Contains("the format needs"), CompressError);
  Payload two_d = p;
  two_d.codes.clear();
  two_d.codes_tensor = zeros({1, int64_t(p.codes.size())}, DType::u8);
  CHECK_THROWS_AS(two_d.check_consistent("t"), CompressError);
  CHECK_THROWS_AS(decode_payload(two_d), CompressError);
}

TEST_CASE("compress payload: truncated and corrupt buffers raise CompressError with a one-line reason") {
  Payload p = parse_compressor("quant:bits=4")->encode(sample_tensor({2, 3}, 1));
  const std::vector<uint8_t> wire = p.serialize();
  for (size_t len = 0; len < wire.size(); ++len) {
    INFO("prefix of " << len << " bytes");
    CHECK_THROWS_AS(Payload::parse(wire.data(), len), CompressError);
  }
  auto corrupt = [&](size_t at, uint8_t value) {
    std::vector<uint8_t> w = wire;
    w[at] = value;
    return error_of<CompressError>([&] { Payload::parse(w); });
  };
  CHECK(corrupt(0, 'X').find("bad magic") != std::string::npos);
  CHECK(corrupt(4, 2).find("unsupported version 2") != std::string::npos);
  CHECK(corrupt(5, 42).find("unknown method id 42") != std::string::npos);
  CHECK(corrupt(6, 200).find("unknown dtype") != std::string::npos);
  CHECK(corrupt(6, uint8_t(DType::i32)).find("unsupported dtype i32") != std::string::npos);
  CHECK(corrupt(7, 9).find("rank 9") != std::string::npos);
  // byte 8..15: dims 2 and 3; byte 16: nparams 3; 17..20: bits
  CHECK(corrupt(17, 0).find("bits must be in 1..16, got 0") != std::string::npos);
  CHECK(corrupt(17, 17).find("bits must be in 1..16, got 17") != std::string::npos);
  CHECK(corrupt(16, 2).find("needs 3 parameters") != std::string::npos);
  CHECK(corrupt(8, 200).find("code bytes") != std::string::npos);  // shape [200,3] needs more code bytes
  CHECK(corrupt(29, 3).find("table entries") != std::string::npos);  // table_len 3 instead of 2
  std::vector<uint8_t> longer = wire;
  longer.push_back(0);
  CHECK(error_of<CompressError>([&] { Payload::parse(longer); }).find("size mismatch") != std::string::npos);
  // A NaN in the table (min at offset 41) would decode to NaN everywhere.
  std::vector<uint8_t> nan = wire;
  const uint32_t qnan = 0x7fc00000u;
  std::memcpy(&nan[41], &qnan, 4);
  CHECK(error_of<CompressError>([&] { Payload::parse(nan); }).find("not finite") != std::string::npos);
  // A header claiming a huge tensor fails before anything is allocated: above the receiver's limit, and above
  // 2^40 elements whatever the limit.
  std::vector<uint8_t> huge = wire;
  for (int i = 8; i < 16; ++i) huge[size_t(i)] = 0xff;
  CHECK(error_of<CompressError>([&] { Payload::parse(huge); }).find("receiver's limit") != std::string::npos);
  CHECK(error_of<CompressError>([&] { Payload::parse(huge, ~uint64_t(0)); }).find("exceeds 2^40") !=
        std::string::npos);
  // Found by libFuzzer (tests/fuzz/regressions/payload): an empty tensor whose other dimensions multiply past int64
  // (lowrank_geometry's rows x cols overflowed), and dimensions whose product wrapped uint64 to 0, read as empty.
  for (const Shape& s : {Shape{0, int64_t(1) << 40, int64_t(1) << 40}, Shape{int64_t(1) << 40, int64_t(1) << 24},
                         Shape{int64_t(1) << 32, int64_t(1) << 32, 0}}) {
    INFO(shape_str(s));
    CHECK(error_of<CompressError>([&] { payload_layout(Method::none, {}, DType::f32, s, "payload"); })
              .find("exceeds 2^40 elements") != std::string::npos);
  }
  CHECK(payload_layout(Method::none, {}, DType::f32, {0, int64_t(1) << 20, 3}, "payload").code_bytes == 0);
  // A decompression bomb: a top-k payload keeping 1 value of a [65536, 65535] tensor (16 GiB) is 55 bytes.
  Payload bomb;
  bomb.method = Method::topk;
  bomb.shape = {65536, 65535};
  bomb.params = {1, 0};
  bomb.table = {1.0f};
  bomb.codes.assign(4, 0);  // one 32-bit index
  const std::vector<uint8_t> bomb_wire = bomb.serialize();
  CHECK(bomb_wire.size() < 64);
  CHECK(error_of<CompressError>([&] { Payload::parse(bomb_wire); }).find("receiver's limit") != std::string::npos);
  CHECK(Payload::parse(bomb_wire, uint64_t(1) << 32).numel() == 65536LL * 65535);  // allowed when asked for
  // k = 0 of a non-empty tensor, rank 0 of a non-empty matrix: never produced by an encoder, so rejected
  Payload k0 = parse_compressor("topk:ratio=0.5")->encode(sample_tensor({8}, 1));
  k0.params[0] = 0;
  k0.table.clear();
  CHECK_THROWS_AS(k0.serialize(), CompressError);
  // Every message names the component first.
  CHECK(corrupt(5, 42).rfind("[payload]", 0) == 0);
}

TEST_CASE("compress payload: decode rejects what parse cannot see (bad top-k indices, fp8 NaN codes)") {
  Payload t = parse_compressor("topk:ratio=0.05")->encode(sample_tensor({100}, 3));  // k = 5, index mode
  REQUIRE(t.params[1] == 0);
  Payload swapped = t;  // indices must ascend: put 7-bit index 127 (>= n = 100) first
  swapped.codes[0] = 0x7f;
  CHECK_THROWS_AS(decode_payload(Payload::parse(swapped.serialize())), CompressError);
  Payload bm = parse_compressor("topk:ratio=0.5")->encode(sample_tensor({100}, 3));  // bitmap mode
  REQUIRE(bm.params[1] == 1);
  Payload extra = bm;
  for (auto& b : extra.codes) b = 0xff;  // marks 100 elements (and the padding) for 50 values
  CHECK_THROWS_AS(decode_payload(extra), CompressError);
  // The check the GPU decoder runs before scattering (popcount over 8-byte words, then the tail of 5 bytes) agrees.
  CHECK_NOTHROW(check_topk_positions(t));
  CHECK_NOTHROW(check_topk_positions(bm));
  CHECK_THROWS_AS(check_topk_positions(swapped), CompressError);
  CHECK(error_of<CompressError>([&] { check_topk_positions(extra); }).find("bits set past 100") != std::string::npos);
  for (size_t byte : {size_t(2), size_t(11)}) {  // one in the 8-byte word, one in the tail
    Payload one_less = bm, one_more = bm;
    const int bit = std::countr_zero(unsigned(bm.codes[byte]));   // a marked element in that byte
    const int clear = std::countr_one(unsigned(bm.codes[byte]));  // an unmarked one
    REQUIRE(bit < 8);
    REQUIRE(clear < 8);
    one_less.codes[byte] = uint8_t(one_less.codes[byte] & ~(1u << bit));
    one_more.codes[byte] = uint8_t(one_more.codes[byte] | (1u << clear));
    CHECK(error_of<CompressError>([&] { check_topk_positions(one_less); }).find("marks 49 elements") !=
          std::string::npos);
    CHECK(error_of<CompressError>([&] { check_topk_positions(one_more); }).find("marks 51 elements") !=
          std::string::npos);
    CHECK_THROWS_AS(decode_payload(one_less), CompressError);
  }
  Payload f = parse_compressor("fp8")->encode(sample_tensor({10}, 3));
  f.codes[3] = 0x7f;  // e4m3 NaN
  CHECK(error_of<CompressError>([&] { decode_payload(f); }).find("not a finite e4m3") != std::string::npos);
  Payload g = parse_compressor("fp8:format=e5m2")->encode(sample_tensor({10}, 3));
  g.codes[0] = 0x7c;  // e5m2 +inf
  CHECK_THROWS_AS(decode_payload(g), CompressError);
}

TEST_CASE("compress spec: canonical specs round-trip and bad specs fail with one line") {
  for (const char* s : {"none", "quant", "quant:bits=4,per=channel,axis=2,round=stochastic,seed=3", "sortquant",
                        "sortquant:bits=6,split=2,mode=sampled", "topk:ratio=0.25,mask=own", "kmeans:bits=2,iters=5",
                        "lowrank:rank=8,iters=3,warm=0", "fp8:format=e5m2,round=stochastic"}) {
    INFO(s);
    auto c = parse_compressor(s);
    CHECK(parse_compressor(c->spec())->spec() == c->spec());
  }
  CHECK(parse_compressor("quant")->spec() == "quant:bits=8,per=tensor,axis=1,round=nearest,seed=0,zero=free");
  CHECK(parse_compressor("quant:zero=exact")->spec().ends_with(",zero=exact"));
  CHECK(parse_compressor("topk:ratio=0.5")->spec() == "topk:ratio=0.5,mask=reuse");
  auto msg = [](const std::string& spec) { return error_of<CompressError>([&] { parse_compressor(spec); }); };
  CHECK(msg("zip").find("unknown method 'zip'") != std::string::npos);
  CHECK(msg("quant:bitz=4").find("unknown key 'bitz'") != std::string::npos);
  CHECK(msg("quant:bits=0").find("bits must be in 1..16, got 0") != std::string::npos);
  CHECK(msg("quant:bits=17").find("bits must be in 1..16, got 17") != std::string::npos);
  CHECK(msg("quant:bits=x").find("must be an integer") != std::string::npos);
  CHECK(msg("quant:bits").find("expected key=value") != std::string::npos);
  CHECK(msg("quant:").find("empty parameter list") != std::string::npos);
  CHECK(msg("quant:bits=4,bits=5").find("given twice") != std::string::npos);
  CHECK(msg("quant:per=row").find("per must be tensor|channel") != std::string::npos);
  CHECK(msg("quant:zero=yes").find("zero must be free|exact") != std::string::npos);
  CHECK(msg("topk:ratio=0").find("ratio must be in (0, 1]") != std::string::npos);
  CHECK(msg("topk:ratio=1.5").find("ratio must be in (0, 1]") != std::string::npos);
  CHECK(msg("topk:ratio=nan").find("finite number") != std::string::npos);
  CHECK(msg("sortquant:bits=12,split=5").find("bits + split must be <= 16") != std::string::npos);
  CHECK(msg("kmeans:bits=0").find("bits must be in 1..16") != std::string::npos);
  CHECK(msg("lowrank:rank=0").find("rank must be in") != std::string::npos);
  CHECK(msg("fp8:format=e3m4").find("format must be e4m3|e5m2") != std::string::npos);
  CHECK(msg("zip").rfind("[compress]", 0) == 0);
  CHECK(msg("zip").find('\n') == std::string::npos);
}

TEST_CASE("compress order keys: integer keys sort like the floats and map back exactly") {
  std::vector<float> v = {-INFINITY, -3e38f, -1.5f, -1e-40f, -0.0f, 0.0f, 1e-45f, 1e-40f, 2.0f, 3e38f, INFINITY};
  for (size_t i = 0; i + 1 < v.size(); ++i) {
    INFO(v[i] << " < " << v[i + 1]);
    CHECK(float_order_key(v[i]) < float_order_key(v[i + 1]));
  }
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> d(-1000.0f, 1000.0f);
  for (int k = 0; k < 2000; ++k) {
    const float a = d(rng), b = d(rng);
    CHECK((a < b) == (float_order_key(a) < float_order_key(b)));
    CHECK(float_from_order_key(float_order_key(a)) == a);
  }
  CHECK(std::signbit(float_from_order_key(float_order_key(-0.0f))));
}
