// test_bpe.cpp — the byte-level BPE tokenizer (data/bpe.h): formats.md C vectors, parity on every RTE dev pair and
// CoLA dev sentence against tests/golden/make_bpe_reference.py (an independent Python BPE), hand-derived
// pre-tokenization splits, truncation, padding, invalid UTF-8 (Python's replacement rule), thread safety and bad
// vocab/merges files. Cases needing ../shared/data print a notice and return when it is absent.
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <unistd.h>
#include <sys/wait.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "data/bpe.h"
#include "tests/fuzz_targets.h"
#include "tests/test_util.h"
#include "data/unicode_classes.h"
#include "engine/check.h"

using namespace ep;
using namespace ep::data;
using ep::fuzz::utf8;
namespace fs = std::filesystem;

namespace {

using ep::test::TempDir;

const std::string kRoberta = "../shared/data/roberta-base";
const std::string kGlue = "../shared/data/glue";

bool have(const std::string& p) {
  if (fs::exists(p)) return true;
  MESSAGE("skipped: " << p << " not found (run from the repo root with ../shared/data present)");
  return false;
}

// The real roberta-base tokenizer, loaded once for the whole file (loading takes a few hundred ms); null when absent.
const BpeTokenizer* roberta() {
  static const std::unique_ptr<BpeTokenizer> tok = []() -> std::unique_ptr<BpeTokenizer> {
    if (!fs::exists(kRoberta + "/vocab.json") || !fs::exists(kRoberta + "/merges.txt")) return nullptr;
    return std::make_unique<BpeTokenizer>(BpeTokenizer::load(kRoberta + "/vocab.json", kRoberta + "/merges.txt"));
  }();
  if (!tok) MESSAGE("skipped: " << kRoberta << "/{vocab.json,merges.txt} not found");
  return tok.get();
}

using Ids = std::vector<int32_t>;

std::string read_text(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// GLUE TSV as the reference script reads it: "\n" rows, "\t" fields, no quoting, last newline optional.
std::vector<std::vector<std::string>> read_tsv(const std::string& p) {
  std::vector<std::vector<std::string>> rows;
  std::istringstream in(read_text(p));
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> fields;
    size_t start = 0;
    for (size_t i = 0; i <= line.size(); ++i)
      if (i == line.size() || line[i] == '\t') fields.push_back(line.substr(start, i - start)), start = i + 1;
    rows.push_back(fields);
  }
  return rows;
}

std::vector<Ids> read_id_lines(const std::string& p) {
  std::vector<Ids> out;
  std::istringstream in(read_text(p));
  for (std::string line; std::getline(in, line);) {
    Ids ids;
    std::istringstream ls(line);
    for (int32_t v; ls >> v;) ids.push_back(v);
    out.push_back(ids);
  }
  return out;
}

std::vector<std::string> pieces(std::string_view s) {
  std::vector<std::string> out;
  for (auto [b, e] : BpeTokenizer::pre_tokenize(s)) out.emplace_back(s.substr(b, e - b));
  return out;
}

BpeTokenizer tiny(const TempDir& d, const std::vector<std::string>& extra, const std::string& merges) {
  return BpeTokenizer::load(d.write("vocab.json", fuzz::tiny_bpe_vocab(extra).dump()), d.write("merges.txt", merges));
}

// The exception's message, or "" when none was thrown.
template <class E, class F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("bpe: formats.md C vectors and the special tokens of roberta-base") {
  const BpeTokenizer* t = roberta();
  if (!t) return;
  CHECK(t->encode("Hello world!") == Ids{0, 31414, 232, 328, 2});
  CHECK(t->encode("Hello world") == Ids{0, 31414, 232, 2});
  CHECK(t->encode(" Hello world") == Ids{0, 20920, 232, 2});
  CHECK(t->encode("Hello world! cécé herlolip 418") ==
        Ids{0, 31414, 232, 328, 740, 1140, 12695, 69, 46078, 1588, 42928, 2});
  // The tokens named in formats.md C: Hello · Ġworld · ! · Ġc · Ã© · cÃ© · Ġher · lol · ip · Ġ418.
  const std::vector<std::string> names = {"Hello", "Ġworld", "!", "Ġc", "Ã©", "cÃ©", "Ġher", "lol", "ip", "Ġ418"};
  const Ids ids = t->encode_text("Hello world! cécé herlolip 418");
  REQUIRE(ids.size() == names.size());
  for (size_t i = 0; i < ids.size(); ++i) CHECK(t->id_to_token(ids[i]) == names[i]);
  CHECK(t->bos_id() == 0);
  CHECK(t->pad_id() == 1);
  CHECK(t->eos_id() == 2);
  CHECK(t->unk_id() == 3);
  CHECK(t->mask_id() == 50264);
  CHECK(t->vocab_size() == 50265);
  CHECK(t->merge_count() == 50000);
  CHECK(t->token_to_id(".") == 4);
  CHECK(t->token_to_id("Ġthe") == 5);
  CHECK(t->token_to_id("<|endoftext|>") == 50260);
  CHECK(t->token_to_id("no such token") == -1);
  // bytes_to_unicode spot checks (formats.md A3): 0x20 -> Ġ, 0x0A -> Ċ, 0x09 -> ĉ, 0x7F -> U+0121; the soft hyphen
  // U+00AD is bytes C2 AD, and 0xAD -> U+0143, 0xC2 -> itself.
  CHECK(t->encode_text("\n") == Ids{t->token_to_id("Ċ")});
  CHECK(t->encode_text("\t") == Ids{t->token_to_id("ĉ")});
  CHECK(t->encode_text("\x7f") == Ids{t->token_to_id(utf8(0x121))});
  std::string soft;
  for (int32_t id : t->encode_text("\u00ad")) soft += t->id_to_token(id);
  CHECK(soft == "Â" + utf8(0x143));
}

TEST_CASE("bpe: GPT-2 pre-tokenization, splits derived by hand from the pattern") {
  using V = std::vector<std::string>;
  CHECK(pieces("") == V{});
  CHECK(pieces("Hello world!") == V{"Hello", " world", "!"});
  CHECK(pieces("a   b") == V{"a", "  ", " b"});             // \s+(?!\S) leaves one space for " b"
  CHECK(pieces("a\t\tb") == V{"a", "\t", "\t", "b"});        // a tab is not the optional space: it stands alone
  CHECK(pieces("  hello  ") == V{" ", " hello", "  "});      // the trailing run reaches the end: kept whole
  CHECK(pieces("x \n\ny") == V{"x", " \n", "\n", "y"});
  CHECK(pieces("I'm don't we'll they've you're he'd") ==
        V{"I", "'m", " don", "'t", " we", "'ll", " they", "'ve", " you", "'re", " he", "'d"});
  CHECK(pieces("DON'T 'S ''s") == V{"DON", "'", "T", " '", "S", " ''", "s"});  // case-sensitive contractions
  CHECK(pieces("3.14 1,000 x2") == V{"3", ".", "14", " 1", ",", "000", " x", "2"});
  CHECK(pieces("$100.00!!!") == V{"$", "100", ".", "00", "!!!"});
  CHECK(pieces("日本語。中文") == V{"日本語", "。", "中文"});   // Lo letters, Po punctuation
  CHECK(pieces("café naïve") == V{"café", " naïve"});
  CHECK(pieces("e\u0301") == V{"e", "\u0301"});               // a combining mark (Mn) is neither L nor N
  CHECK(pieces("hi 😀👍 ok") == V{"hi", " 😀👍", " ok"});       // emoji (So) form one "other" run
  CHECK(pieces("٣٤٥ Ⅻ½") == V{"٣٤٥", " Ⅻ½"});                // Nd, then Nl + No: all \p{N}
  CHECK(pieces("a\u3000b") == V{"a", "\u3000", "b"});         // U+3000 is \s but not the optional U+0020
  CHECK(pieces("a\u00a0 b") == V{"a", "\u00a0", " b"});
  CHECK(pieces("x\x1cy") == V{"x", "\x1c", "y"});             // U+001C: str.isspace() but not regex \s
  CHECK(pieces("end ") == V{"end", " "});
  CHECK(pieces(" ") == V{" "});
}

TEST_CASE("bpe: unicode classes (generated tables)") {
  using namespace ep::data::unicode;
  CHECK(std::string(unicode_version()) == "14.0.0");
  CHECK(is_letter(U'a'));
  CHECK(is_letter(U'Z'));
  CHECK(is_letter(0x00E9));   // é
  CHECK(is_letter(0x65E5));   // 日
  CHECK(is_letter(0x02B0));   // ʰ, Lm
  CHECK_FALSE(is_letter(0x0301));  // combining acute, Mn
  CHECK(is_number(U'7'));
  CHECK(is_number(0x0663));   // Arabic-Indic three, Nd
  CHECK(is_number(0x216B));   // Ⅻ, Nl
  CHECK(is_number(0x00BD));   // ½, No
  CHECK_FALSE(is_number(U'x'));
  for (char32_t c : {0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2000, 0x200A, 0x2028, 0x2029, 0x202F,
                     0x205F, 0x3000})
    CHECK(is_space(c));
  for (char32_t c : {0x1C, 0x1F, 0x200B, 0xFEFF, 0x08}) CHECK_FALSE(is_space(c));  // ZWSP and BOM are Cf
  CHECK(classify(0x1F600) == CharClass::other);      // 😀 So
  CHECK(classify(0xD800) == CharClass::other);       // a surrogate
  CHECK(classify(0x110000) == CharClass::other);     // past Unicode
  CHECK(classify(0x10FFFF) == CharClass::other);     // a noncharacter
  CHECK(classify(0x20000) == CharClass::letter);     // CJK Extension B
}

TEST_CASE("bpe: parity with the independent reference on every RTE dev pair and CoLA dev sentence") {
  const BpeTokenizer* t = roberta();
  if (!t || !have(kGlue + "/RTE/dev.tsv") || !have(kGlue + "/CoLA/dev.tsv")) return;
  auto rte = read_tsv(kGlue + "/RTE/dev.tsv");
  REQUIRE(rte.size() == 278);
  rte.erase(rte.begin());  // header
  const auto rte_gold = read_id_lines("tests/golden/bpe_rte_dev.txt");
  REQUIRE(rte_gold.size() == rte.size());
  int rte_bad = 0;
  for (size_t i = 0; i < rte.size(); ++i) {
    REQUIRE(rte[i].size() == 4);
    if (t->encode_pair(rte[i][1], rte[i][2]) != rte_gold[i]) {
      if (++rte_bad <= 3) MESSAGE("RTE dev row " << i << " differs: " << rte[i][1] << " | " << rte[i][2]);
    }
  }
  CHECK(rte_bad == 0);

  const auto cola = read_tsv(kGlue + "/CoLA/dev.tsv");
  const auto cola_gold = read_id_lines("tests/golden/bpe_cola_dev.txt");
  REQUIRE(cola.size() == 1043);
  REQUIRE(cola_gold.size() == cola.size());
  int cola_bad = 0;
  for (size_t i = 0; i < cola.size(); ++i) {
    REQUIRE(cola[i].size() == 4);
    const Ids ids = t->encode(cola[i][3]);
    if (ids != cola_gold[i] && ++cola_bad <= 3) MESSAGE("CoLA dev row " << i << " differs: " << cola[i][3]);
    // The inverse: without the special tokens, decode gives the sentence back byte for byte.
    if (t->decode(ids, /*skip_special=*/true) != cola[i][3]) ++cola_bad;
  }
  CHECK(cola_bad == 0);

  // Longest-first truncation at 17, 32 and 64 of the first 100 pairs ("max_len<TAB>row<TAB>ids"). Only an odd budget
  // (17 - 4 = 13) with both sides over half of it shows which side a tie cuts (the second): even budgets end equal.
  std::istringstream in(read_text("tests/golden/bpe_rte_dev_truncated.txt"));
  int lines = 0, trunc_bad = 0;
  for (std::string line; std::getline(in, line); ++lines) {
    std::istringstream ls(line);
    int64_t max_len = 0;
    size_t row = 0;
    ls >> max_len >> row;
    Ids want;
    for (int32_t v; ls >> v;) want.push_back(v);
    REQUIRE(row < rte.size());
    const Ids got = t->encode_pair(rte[row][1], rte[row][2], max_len);
    CHECK(int64_t(got.size()) <= max_len);
    if (got != want) ++trunc_bad;
  }
  CHECK(lines == 300);
  CHECK(trunc_bad == 0);
}

TEST_CASE("bpe: edge cases against the independent reference, and decode(encode(s)) == s") {
  const BpeTokenizer* t = roberta();
  if (!t) return;
  std::istringstream in(read_text("tests/golden/bpe_edge_cases.jsonl"));
  int n = 0;
  for (std::string line; std::getline(in, line); ++n) {
    const auto j = nlohmann::json::parse(line);
    const std::string text = j.at("text").get<std::string>();
    const Ids want = j.at("ids").get<Ids>();
    const Ids got = t->encode_text(text);
    INFO("edge case " << n << ": " << text.substr(0, 60));
    CHECK(got == want);
    CHECK(t->decode(got) == text);
  }
  CHECK(n >= 30);
  // Special-token strings are plain text (our documented choice): "<s>" is '<' 's' '>', never id 0.
  const Ids s = t->encode_text("<s>");
  CHECK(s.size() > 1);
  CHECK(std::find(s.begin(), s.end(), t->bos_id()) == s.end());
  CHECK(t->decode({0, 31414, 2}) == "<s>Hello</s>");
  CHECK(t->decode({0, 31414, 2, 1}, /*skip_special=*/true) == "Hello");
  CHECK_THROWS_AS(t->decode({50265}), ValueError);
  CHECK_THROWS_AS(t->decode({-1}), ValueError);
}

TEST_CASE("bpe: invalid UTF-8 is replaced as Python's errors='replace' does, and never crashes") {
  const std::string fffd = "\xEF\xBF\xBD";
  // Expected values printed by CPython 3.11: bytes.decode("utf-8", errors="replace").
  CHECK(BpeTokenizer::repair_utf8("\xE2\x82") == fffd);                      // truncated 3-byte sequence
  CHECK(BpeTokenizer::repair_utf8("\xED\xA0\x80") == fffd + fffd + fffd);    // a surrogate
  CHECK(BpeTokenizer::repair_utf8(std::string("\xC0\x80", 2)) == fffd + fffd);  // overlong NUL
  CHECK(BpeTokenizer::repair_utf8("\xF4\x90\x80\x80") == fffd + fffd + fffd + fffd);  // past U+10FFFF
  CHECK(BpeTokenizer::repair_utf8("a\xFF" "b") == "a" + fffd + "b");
  CHECK(BpeTokenizer::repair_utf8("\xE2\x82" "a") == fffd + "a");
  CHECK(BpeTokenizer::repair_utf8("\xF0\x9F\x98") == fffd);
  CHECK(BpeTokenizer::repair_utf8("\xF0\x9F\x98\x80") == "\xF0\x9F\x98\x80");
  CHECK(BpeTokenizer::repair_utf8("\xE0\x80\xAF") == fffd + fffd + fffd);
  CHECK(BpeTokenizer::repair_utf8("\xF8\x88\x80\x80\x80") == fffd + fffd + fffd + fffd + fffd);
  CHECK(BpeTokenizer::repair_utf8(std::string("a\0b", 3)) == std::string("a\0b", 3));

  const BpeTokenizer* t = roberta();
  if (!t) return;
  CHECK(t->encode_text("a\xFF" "b") == t->encode_text("a\uFFFD" "b"));
  // A token holding half of a character decodes to U+FFFD: "é" is C3 A9, and "Ã" is the token of byte C3 alone.
  CHECK(t->decode({t->token_to_id("Ã")}) == fffd);
  // Random bytes: no exception, and the round trip gives the repaired text.
  std::mt19937 rng(1234);
  for (int trial = 0; trial < 500; ++trial) {
    std::string s(rng() % 40, '\0');
    for (char& c : s) c = char(trial % 2 ? rng() % 256 : 0x80 + rng() % 128);
    const Ids ids = t->encode_text(s);
    CHECK(t->decode(ids) == BpeTokenizer::repair_utf8(s));
  }
}

TEST_CASE("bpe: truncation longest-first (ties cut the second sequence) and single-sentence truncation") {
  const BpeTokenizer* t = roberta();
  if (!t) return;
  // "a a a ..." is one token per word ("a", then "Ġa"), likewise for b: lengths are known by construction.
  auto words = [](const char* w, int n) {
    std::string s = w;
    for (int i = 1; i < n; ++i) s += std::string(" ") + w;
    return s;
  };
  const std::string a10 = words("a", 10), b10 = words("b", 10), b3 = words("b", 3), a5 = words("a", 5),
                    b6 = words("b", 6);
  const Ids ta = t->encode_text(a10), tb = t->encode_text(b10);
  REQUIRE(ta.size() == 10);
  REQUIRE(tb.size() == 10);
  REQUIRE(t->encode_text(b3).size() == 3);
  auto shape = [&](const Ids& ids) {  // (len A, len B) of <s> A </s></s> B </s>
    size_t first_eos = size_t(std::find(ids.begin(), ids.end(), 2) - ids.begin());
    return std::pair<size_t, size_t>{first_eos - 1, ids.size() - first_eos - 3};
  };
  // 10 + 10 into a budget of 15 (19 - 4): remove 5: B (tie), A, B (tie), A, B -> 8 and 7.
  Ids p = t->encode_pair(a10, b10, 19);
  CHECK(p.size() == 19);
  CHECK(shape(p) == std::pair<size_t, size_t>{8, 7});
  CHECK(Ids(p.begin() + 1, p.begin() + 9) == Ids(ta.begin(), ta.begin() + 8));     // prefixes are kept
  CHECK(Ids(p.begin() + 11, p.begin() + 18) == Ids(tb.begin(), tb.begin() + 7));
  CHECK(p[0] == 0);
  CHECK(p[9] == 2);
  CHECK(p[10] == 2);
  CHECK(p.back() == 2);
  // 10 + 3 into 8: all five from the longer first sequence.
  CHECK(shape(t->encode_pair(a10, b3, 12)) == std::pair<size_t, size_t>{5, 3});
  // 5 + 6 into 10: one from the longer second.
  CHECK(shape(t->encode_pair(a5, b6, 14)) == std::pair<size_t, size_t>{5, 5});
  // Exactly fitting or a larger limit: untouched. 0: no limit.
  CHECK(shape(t->encode_pair(a10, b10, 24)) == std::pair<size_t, size_t>{10, 10});
  CHECK(shape(t->encode_pair(a10, b10, 512)) == std::pair<size_t, size_t>{10, 10});
  CHECK(shape(t->encode_pair(a10, b10, 0)) == std::pair<size_t, size_t>{10, 10});
  // The minimum: both sides empty.
  CHECK(t->encode_pair(a10, b10, 4) == Ids{0, 2, 2, 2});
  CHECK_THROWS_AS(t->encode_pair(a10, b10, 3), ValueError);
  CHECK_THROWS_AS(t->encode_pair(a10, b10, -1), ValueError);
  // Single sentences: cut from the end.
  Ids s = t->encode(a10, 5);
  CHECK(s == Ids{0, ta[0], ta[1], ta[2], 2});
  CHECK(t->encode(a10, 2) == Ids{0, 2});
  CHECK(t->encode(a10, 12).size() == 12);
  CHECK(t->encode("", 0) == Ids{0, 2});
  CHECK_THROWS_AS(t->encode(a10, 1), ValueError);
}

TEST_CASE("bpe: pad_batch pads on the right with pad_id and a 1/0 attention mask") {
  const std::vector<Ids> seqs = {{0, 5, 2}, {0, 2}, {0, 7, 8, 9, 2}};
  TokenBatch b = pad_batch(seqs, 1);
  CHECK(b.batch == 3);
  CHECK(b.seq_len == 5);
  CHECK(b.ids == std::vector<int64_t>{0, 5, 2, 1, 1, 0, 2, 1, 1, 1, 0, 7, 8, 9, 2});
  CHECK(b.mask == std::vector<uint8_t>{1, 1, 1, 0, 0, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1});
  TokenBatch f = pad_batch({{0, 2}}, 1, 4);
  CHECK(f.seq_len == 4);
  CHECK(f.ids == std::vector<int64_t>{0, 2, 1, 1});
  CHECK(f.mask == std::vector<uint8_t>{1, 1, 0, 0});
  TokenBatch e = pad_batch({}, 1);
  CHECK(e.batch == 0);
  CHECK(e.seq_len == 0);
  CHECK(e.ids.empty());
  const std::string msg = message_of<ValueError>([&] { pad_batch(seqs, 1, 4); });
  CHECK(msg.find("row 2") != std::string::npos);
  CHECK_THROWS_AS(pad_batch(seqs, 1, -1), ValueError);
}

TEST_CASE("bpe: merge order on a tiny hand-made vocabulary") {
  TempDir d;
  // rank 0 "b c" beats rank 1 "a b": "abc" -> a + bc, and (a, bc) is no merge.
  {
    BpeTokenizer t = tiny(d, {"bc", "ab", "abc"}, "#version: 0.2\nb c\na b\n");
    CHECK(t.encode_text("abc") == Ids{t.token_to_id("a"), t.token_to_id("bc")});
    CHECK(t.encode_text("abab") == Ids{t.token_to_id("ab"), t.token_to_id("ab")});
    CHECK(t.merge_count() == 2);
  }
  // Occurrences merge left to right without overlap: "aaa" -> aa + a with only "a a".
  {
    BpeTokenizer t = tiny(d, {"aa"}, "#version: 0.2\na a\n");
    CHECK(t.encode_text("aaa") == Ids{t.token_to_id("aa"), t.token_to_id("a")});
  }
  // GPT-2's rounds: every "a a" merges before any pair that round created, even one of lower rank, so "aaaa" ->
  // aa + aa, not aaa + a (this merges file lists "aa a" first, which a trained file never does). The next round
  // then merges the pairs it can: "aaa" -> aa + a -> aaa; "aaaaa" -> aa + aa + a -> aa + aaa.
  {
    BpeTokenizer t = tiny(d, {"aa", "aaa"}, "#version: 0.2\naa a\na a\n");
    CHECK(t.encode_text("aaa") == Ids{t.token_to_id("aaa")});
    CHECK(t.encode_text("aaaa") == Ids{t.token_to_id("aa"), t.token_to_id("aa")});
    CHECK(t.encode_text("aaaaa") == Ids{t.token_to_id("aa"), t.token_to_id("aaa")});
  }
  // No "#version" line: the first line is a merge (as HF tokenizers reads it); no final newline is fine; CRLF too.
  {
    BpeTokenizer t = tiny(d, {"ab", "bc"}, "a b\r\nb c");
    CHECK(t.merge_count() == 2);
    CHECK(t.encode_text("abc") == Ids{t.token_to_id("ab"), t.token_to_id("c")});
  }
  // A long word: the heap-based merge loop stays fast (a quadratic loop would take seconds at this size).
  {
    BpeTokenizer t = tiny(d, {"aa", "aaaa"}, "a a\naa aa\n");
    const Ids ids = t.encode_text(std::string(200001, 'a'));
    CHECK(ids.size() == 50001);
    CHECK(ids.front() == t.token_to_id("aaaa"));
    CHECK(ids.back() == t.token_to_id("a"));
  }
}

TEST_CASE("bpe: bad vocab.json and merges.txt give IOError naming the file (and the line)") {
  TempDir d;
  const std::string good_merges = d.write("good_merges.txt", "#version: 0.2\na b\n");
  const std::string good_vocab = d.write("good_vocab.json", fuzz::tiny_bpe_vocab({"ab"}).dump());
  CHECK_NOTHROW(BpeTokenizer::load(good_vocab, good_merges));

  auto vocab_error = [&](const std::string& text) {
    const std::string p = d.write("vocab.json", text);
    return message_of<IOError>([&] { BpeTokenizer::load(p, good_merges); });
  };
  auto has = [](const std::string& msg, const std::string& part) {
    INFO(msg);
    CHECK(msg.find(part) != std::string::npos);
  };
  has(message_of<IOError>([&] { BpeTokenizer::load((d.path / "missing.json").string(), good_merges); }),
      "missing.json: cannot open");
  has(vocab_error("{\"a\": 1,"), "vocab.json: not valid JSON");
  has(vocab_error("[1, 2]"), "vocab.json: expected a JSON object of token -> id, found array");
  has(vocab_error("{\"a\": {\"b\": 1}}"), "expected a flat object");
  has(vocab_error("\"text\""), "expected a JSON object of token -> id, found string");
  has(vocab_error("{}"), "vocabulary is empty");
  has(vocab_error("{\"a\": \"0\"}"), "token 'a': expected an integer id");
  has(vocab_error("{\"a\": 0, \"b\": 0}"), "both have id 0");
  has(vocab_error("{\"a\": 0, \"a\": 1}"), "token 'a' appears twice");
  has(vocab_error("{\"a\": 0, \"b\": 5}"), "token 'b': id 5 outside [0, 2)");
  has(vocab_error("{\"a\": 0, \"b\": -1}"), "id -1 outside");
  {
    // Without the byte symbol of the space; <mask> takes its id so the ids stay 0..n-1.
    nlohmann::json v = fuzz::tiny_bpe_vocab({"ab"});
    const int hole = v["Ġ"].get<int>();
    v.erase("Ġ");
    v["<mask>"] = hole;
    has(vocab_error(v.dump()), "vocab.json: the byte symbol 'Ġ' (byte 0x20) is missing");
  }
  {
    // Dropping <mask> (the last id) keeps ids dense.
    nlohmann::json v = fuzz::tiny_bpe_vocab({"ab"});
    v.erase("<mask>");
    has(vocab_error(v.dump()), "vocab.json: the special token <mask> is missing");
  }

  const std::string vocab = good_vocab;
  auto merges_error = [&](const std::string& text) {
    const std::string p = d.write("merges.txt", text);
    return message_of<IOError>([&] { BpeTokenizer::load(vocab, p); });
  };
  has(merges_error("#version: 0.2\na b\nab\n"), "merges.txt:3: expected two symbols separated by one space");
  has(merges_error("#version: 0.2\na b c\n"), "merges.txt:2: expected two symbols");
  has(merges_error("#version: 0.2\na  b\n"), "merges.txt:2: expected two symbols");
  has(merges_error("#version: 0.2\n\na b\n"), "merges.txt:2: expected two symbols");
  has(merges_error("#version: 0.2\na b\nb c\n"), "merges.txt:3: the merge result 'bc' is not in");
  has(merges_error("#version: 0.2\nab zz\n"), "merges.txt:2: symbol 'zz' is not in");
  has(merges_error("#version: 0.2\na b\na b\n"), "merges.txt:3: duplicate merge 'a b' (first on line 2)");
  has(merges_error("#version: 0.2\n"), "merges.txt: no merges");
  has(merges_error(""), "merges.txt: no merges");
}

TEST_CASE("bpe: the word cache is safe and consistent under concurrent encoding") {
  const BpeTokenizer* t = roberta();
  if (!t || !have(kGlue + "/CoLA/dev.tsv")) return;
  const auto rows = read_tsv(kGlue + "/CoLA/dev.tsv");
  std::vector<Ids> want;
  for (const auto& r : rows) want.push_back(t->encode(r[3]));
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k)
    threads.emplace_back([&, k] {
      for (size_t i = size_t(k); i < rows.size() * 2; i += 3) {
        const size_t row = (i * 7919) % rows.size();
        if (t->encode(rows[row][3]) != want[row]) ++bad;
      }
    });
  for (auto& th : threads) th.join();
  CHECK(bad == 0);
  CHECK(t->cache_size() > 100);
}

TEST_CASE("bpe: build/tokenize prints the ids per line and rejects bad flags with exit 2") {
  const std::string exe = (fs::read_symlink("/proc/self/exe").parent_path() / "tokenize").string();
  if (!fs::exists(exe)) {
    MESSAGE("tokenize not built next to the tests: skipped");
    return;
  }
  auto run = [&](const std::string& args) {
    std::string out;
    FILE* p = popen((exe + " " + args + " 2>&1").c_str(), "r");
    REQUIRE(p != nullptr);
    std::array<char, 4096> buf;
    while (size_t n = fread(buf.data(), 1, buf.size(), p)) out.append(buf.data(), n);
    const int st = pclose(p);
    return std::pair<int, std::string>{WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
  };
  auto [code, out] = run("--no-such-flag");
  CHECK(code == 2);
  CHECK(out.find("unknown flag --no-such-flag") != std::string::npos);
  CHECK(run("--vocab x.json").first == 2);  // --merges missing
  if (!fs::exists(kRoberta + "/vocab.json")) return;
  const std::string files = "--vocab " + kRoberta + "/vocab.json --merges " + kRoberta + "/merges.txt";
  CHECK(run(files + " --max-len 1 </dev/null").first == 2);
  // Feeding stdin needs a shell pipe, so these two build the command line themselves.
  std::string cmd = "printf 'Hello world!\\n Hello world\\n' | " + exe + " " + files + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string got;
  std::array<char, 4096> buf;
  while (size_t n = fread(buf.data(), 1, buf.size(), p)) got.append(buf.data(), n);
  CHECK(pclose(p) == 0);
  CHECK(got == "0 31414 232 328 2\n0 20920 232 2\n");
  cmd = "printf 'Hello world\\tHello world!\\nno tab\\n' | " + exe + " " + files + " --pair --max-len 6 2>&1";
  p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  got.clear();
  while (size_t n = fread(buf.data(), 1, buf.size(), p)) got.append(buf.data(), n);
  const int st = pclose(p);
  CHECK(WEXITSTATUS(st) == 1);
  // 2 + 3 tokens into a budget of 2: B, B (tie), A -> 1 and 1.
  CHECK(got.rfind("0 31414 2 2 31414 2\n", 0) == 0);
  CHECK(got.find("stdin:2: --pair expects exactly two tab-separated fields") != std::string::npos);
}
