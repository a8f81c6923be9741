// bpe.cpp — byte-level BPE (GPT-2 / RoBERTa): UTF-8 repair, the GPT-2 pre-tokenizer written by hand on code points,
// merges by rank, the word cache, RoBERTa's sequence layouts and padding. Not a regex engine: the pattern is fixed.
#include "data/bpe.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <fstream>
#include <mutex>
#include <shared_mutex>
#include <sstream>

#include "data/unicode_classes.h"
#include "engine/check.h"

namespace ep::data {

namespace {

using unicode::CharClass;

// ---- bytes_to_unicode (openai/gpt-2 encoder.py; formats.md A3) ------------------------------------------------------
// The 188 printable bytes ! .. ~, ¡ .. ¬, ® .. ÿ map to themselves; every other byte b, in increasing order, maps to
// 256 + n. So each byte becomes one printable code point, and vocab.json's keys are strings of those code points.
struct ByteTable {
  std::array<char32_t, 256> to_cp{};
  std::array<int16_t, 324> from_cp{};  // code point -> byte, -1 if the code point stands for no byte
  ByteTable() {
    from_cp.fill(-1);
    int next = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      to_cp[b] = printable ? char32_t(b) : char32_t(256 + next++);
      from_cp[to_cp[b]] = int16_t(b);
    }
  }
};
const ByteTable& byte_table() {
  static const ByteTable t;
  return t;
}

// ---- UTF-8 ----------------------------------------------------------------------------------------------------------
void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

// One step of UTF-8 decoding at s[0..n), n >= 1. A well-formed sequence (Unicode Table 3-7) gives ok, its length
// and code point. Otherwise `len` is the maximal ill-formed subpart (the lead byte plus the continuation bytes that
// were still valid for it) that one U+FFFD replaces — the "maximal subparts" practice Python's decoder follows, so
// "\xE2\x82" is one U+FFFD, "\xED\xA0\x80" (a surrogate) three and "\xC0\x80" (overlong) two.
struct Utf8Step {
  size_t len;
  bool ok;
  char32_t cp;
};
Utf8Step utf8_step(const unsigned char* s, size_t n) {
  const unsigned char b0 = s[0];
  if (b0 < 0x80) return {1, true, b0};
  size_t need;
  char32_t cp;
  unsigned char lo = 0x80, hi = 0xBF;  // the valid range of the next continuation byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 1, cp = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 2, cp = b0 & 0x0F;
    if (b0 == 0xE0) lo = 0xA0;  // no overlong forms
    if (b0 == 0xED) hi = 0x9F;  // no surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 3, cp = b0 & 0x07;
    if (b0 == 0xF0) lo = 0x90;  // no overlong forms
    if (b0 == 0xF4) hi = 0x8F;  // nothing past U+10FFFF
  } else {
    return {1, false, 0};  // 0x80..0xC1, 0xF5..0xFF never start a sequence
  }
  for (size_t k = 1; k <= need; ++k) {
    if (k >= n || s[k] < lo || s[k] > hi) return {k, false, 0};
    cp = (cp << 6) | (s[k] & 0x3F);
    lo = 0x80, hi = 0xBF;
  }
  return {need + 1, true, cp};
}

constexpr char32_t kReplacement = 0xFFFD;

// The text as the pre-tokenizer sees it: repaired UTF-8, its code points, their classes and byte offsets.
struct DecodedText {
  std::string utf8;                 // valid UTF-8
  std::vector<char32_t> cps;        // code points
  std::vector<CharClass> classes;   // their classes
  std::vector<uint32_t> offsets;    // byte offset of each code point in utf8, plus utf8.size() at the end
};

void decode_text(std::string_view in, DecodedText& d) {
  // 32-bit offsets, and a repaired byte can triple: 1 GiB is far past any sentence and keeps them in range.
  EP_CHECK(in.size() <= (size_t(1) << 30), ValueError, "[bpe] text of ", in.size(), " bytes is over the 1 GiB limit");
  d.utf8.clear(), d.cps.clear(), d.classes.clear(), d.offsets.clear();
  d.utf8.reserve(in.size());
  const auto* s = reinterpret_cast<const unsigned char*>(in.data());
  for (size_t i = 0; i < in.size();) {
    const Utf8Step st = utf8_step(s + i, in.size() - i);
    const char32_t cp = st.ok ? st.cp : kReplacement;
    d.offsets.push_back(uint32_t(d.utf8.size()));
    if (st.ok) d.utf8.append(in.data() + i, st.len);
    else append_utf8(d.utf8, kReplacement);
    d.cps.push_back(cp);
    d.classes.push_back(unicode::classify(cp));
    i += st.len;
  }
  d.offsets.push_back(uint32_t(d.utf8.size()));
}

// ---- GPT-2 pre-tokenization -----------------------------------------------------------------------------------------
// The pattern  's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+  as regex.findall runs it:
// at each position the first alternative that matches wins, and every code point is in exactly one of the classes
// letter / number / space / other, so some alternative always matches and the pieces tile the text.
// Calls emit(begin_cp, end_cp) for each piece, in order.
template <class Emit>
void split_pieces(const std::vector<char32_t>& cps, const std::vector<CharClass>& cls, Emit&& emit) {
  const size_t n = cps.size();
  size_t i = 0;
  while (i < n) {
    // 's 't 'm 'd 're 've 'll: ASCII apostrophe, lower case only (the pattern is case-sensitive).
    if (cps[i] == U'\'' && i + 1 < n) {
      const char32_t c1 = cps[i + 1];
      if (c1 == U's' || c1 == U't' || c1 == U'm' || c1 == U'd') {
        emit(i, i + 2), i += 2;
        continue;
      }
      if (i + 2 < n) {
        const char32_t c2 = cps[i + 2];
        if ((c1 == U'r' && c2 == U'e') || (c1 == U'v' && c2 == U'e') || (c1 == U'l' && c2 == U'l')) {
          emit(i, i + 3), i += 3;
          continue;
        }
      }
    }
    // " ?X+" for X in letter, number, other: an optional U+0020 followed by a run of one class. A space followed by
    // whitespace (or by nothing) cannot start these, so it falls through to the whitespace rules.
    const size_t k = (cps[i] == U' ' && i + 1 < n && cls[i + 1] != CharClass::space) ? i + 1 : i;
    const CharClass c = cls[k];
    if (c != CharClass::space) {
      size_t end = k + 1;
      while (end < n && cls[end] == c) ++end;
      emit(i, end), i = end;
      continue;
    }
    // \s+(?!\S): a whitespace run that reaches the end, or the run minus its last character, which is left to
    // prefix the next word (" ?X+") or to stand alone; \s+ takes a single whitespace character before a non-space.
    size_t end = i + 1;
    while (end < n && cls[end] == CharClass::space) ++end;
    if (end < n && end - i >= 2) --end;
    emit(i, end), i = end;
  }
}

// ---- file helpers ---------------------------------------------------------------------------------------------------
std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  EP_CHECK(f.good(), IOError, path, ": cannot open the file");
  std::ostringstream ss;
  ss << f.rdbuf();
  EP_CHECK(!f.bad(), IOError, path, ": read error");
  return ss.str();
}

// A token for an error message: quoted, control characters escaped, long ones shortened.
std::string shown(std::string_view s) {
  std::string out = "'";
  for (size_t i = 0; i < s.size() && i < 60; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7F) {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += char(c);
    }
  }
  if (s.size() > 60) out += "...";
  return out + "'";
}

uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

// Words longer than this are encoded but not cached, and the cache stops growing at kCacheMaxWords (about 50 MB of
// typical words): a stream of unique junk cannot grow memory without bound, and natural text hits the cache anyway.
constexpr size_t kCacheMaxWordBytes = 256;
constexpr size_t kCacheMaxWords = 1 << 18;

}  // namespace

struct BpeTokenizer::Cache {
  mutable std::shared_mutex mu;
  std::unordered_map<std::string, std::vector<int32_t>, TransparentStringHash, std::equal_to<>> words;
};

BpeTokenizer::BpeTokenizer() : cache_(std::make_unique<Cache>()) {}
BpeTokenizer::BpeTokenizer(BpeTokenizer&&) noexcept = default;
BpeTokenizer& BpeTokenizer::operator=(BpeTokenizer&&) noexcept = default;
BpeTokenizer::~BpeTokenizer() = default;

// ---- loading --------------------------------------------------------------------------------------------------------
BpeTokenizer BpeTokenizer::load(const std::string& vocab_path, const std::string& merges_path) {
  BpeTokenizer t;
  const ByteTable& bt = byte_table();

  // vocab.json: a flat object token -> id. The parser callback rejects nesting and duplicate keys while parsing
  // (nlohmann would keep the last duplicate silently; a deep nesting is a stack hazard on copy, reliability.md §3).
  {
    const std::string text = read_file(vocab_path);
    std::string problem;
    std::unordered_map<std::string, int, TransparentStringHash, std::equal_to<>> seen;
    auto check = [&](int depth, nlohmann::json::parse_event_t ev, nlohmann::json& v) {
      if (!problem.empty()) return true;
      if ((ev == nlohmann::json::parse_event_t::object_start || ev == nlohmann::json::parse_event_t::array_start) &&
          depth > 0)
        problem = "expected a flat object of token -> integer id, found a nested object or array";
      if (ev == nlohmann::json::parse_event_t::key && depth == 1 && v.is_string() &&
          !seen.emplace(v.get_ref<const std::string&>(), 0).second)
        problem = "token " + shown(v.get_ref<const std::string&>()) + " appears twice";
      return true;
    };
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(text, check);
    } catch (const nlohmann::json::exception& e) {
      EP_THROW(IOError, vocab_path, ": not valid JSON (", e.what(), ")");
    }
    EP_CHECK(problem.empty(), IOError, vocab_path, ": ", problem);
    EP_CHECK(j.is_object(), IOError, vocab_path, ": expected a JSON object of token -> id, found ", j.type_name());
    EP_CHECK(!j.empty(), IOError, vocab_path, ": the vocabulary is empty");
    const int64_t n = int64_t(j.size());
    EP_CHECK(n < (int64_t(1) << 31), IOError, vocab_path, ": too many tokens (", n, ")");
    t.id_to_token_.assign(size_t(n), std::string());
    std::vector<bool> taken(size_t(n), false);
    t.token_to_id_.reserve(size_t(n));
    for (auto& [token, value] : j.items()) {
      EP_CHECK(value.is_number_integer(), IOError, vocab_path, ": token ", shown(token),
               ": expected an integer id, got ", value.dump());
      const int64_t id = value.get<int64_t>();
      EP_CHECK(id >= 0 && id < n, IOError, vocab_path, ": token ", shown(token), ": id ", id,
               " outside [0, ", n, ") (ids must number the tokens 0..n-1)");
      EP_CHECK(!taken[size_t(id)], IOError, vocab_path, ": tokens ", shown(t.id_to_token_[size_t(id)]), " and ",
               shown(token), " both have id ", id);
      taken[size_t(id)] = true;
      t.id_to_token_[size_t(id)] = token;
      t.token_to_id_.emplace(token, int32_t(id));
    }
  }

  // The raw bytes behind each token: code points of the byte alphabet map back to bytes; any other code point (a
  // token outside the byte-level alphabet, which the encoder never produces) stands for its own UTF-8.
  t.id_to_bytes_.resize(t.id_to_token_.size());
  for (size_t id = 0; id < t.id_to_token_.size(); ++id) {
    const std::string& tok = t.id_to_token_[id];
    std::string& bytes = t.id_to_bytes_[id];
    const auto* s = reinterpret_cast<const unsigned char*>(tok.data());
    for (size_t i = 0; i < tok.size();) {
      const Utf8Step st = utf8_step(s + i, tok.size() - i);  // keys are valid UTF-8: the JSON parser checked
      if (st.ok && st.cp < bt.from_cp.size() && bt.from_cp[st.cp] >= 0) bytes += char(bt.from_cp[st.cp]);
      else bytes.append(tok, i, st.len);
      i += st.len;
    }
  }

  for (int b = 0; b < 256; ++b) {
    std::string sym;
    append_utf8(sym, bt.to_cp[size_t(b)]);
    const int32_t id = t.token_to_id(sym);
    EP_CHECK(id >= 0, IOError, vocab_path, ": the byte symbol '", sym, "' (byte 0x", std::hex, b,
             ") is missing; not a byte-level BPE vocabulary");
    t.byte_to_id_[b] = id;
  }
  t.is_special_.assign(t.id_to_token_.size(), false);
  for (auto [name, slot] : {std::pair{"<s>", &t.bos_}, std::pair{"<pad>", &t.pad_}, std::pair{"</s>", &t.eos_},
                            std::pair{"<unk>", &t.unk_}, std::pair{"<mask>", &t.mask_}}) {
    *slot = t.token_to_id(name);
    EP_CHECK(*slot >= 0, IOError, vocab_path, ": the special token ", name, " is missing");
    t.is_special_[size_t(*slot)] = true;
  }

  // merges.txt: "#version: 0.2" (optional, line 1), then "A B" per line; rank = order among the merges. Like HF
  // tokenizers (Rust), a first line without "#version" is a merge, and the last merge may lack its newline.
  {
    const std::string text = read_file(merges_path);
    size_t pos = 0;
    int64_t line_no = 0;
    int64_t header_lines = 0;
    while (pos < text.size()) {
      size_t end = text.find('\n', pos);
      if (end == std::string::npos) end = text.size();
      std::string_view line(text.data() + pos, end - pos);
      pos = end + 1;
      ++line_no;
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line_no == 1 && line.rfind("#version", 0) == 0) {
        header_lines = 1;
        continue;
      }
      std::string_view parts[2];
      size_t fields = 0, start = 0;
      for (size_t i = 0; i <= line.size(); ++i)
        if (i == line.size() || line[i] == ' ') {
          if (fields < 2) parts[fields] = line.substr(start, i - start);
          ++fields, start = i + 1;
        }
      EP_CHECK(fields == 2 && !parts[0].empty() && !parts[1].empty(), IOError, merges_path, ":", line_no,
               ": expected two symbols separated by one space, got ", shown(line));
      const int32_t a = t.token_to_id(parts[0]), b = t.token_to_id(parts[1]);
      EP_CHECK(a >= 0, IOError, merges_path, ":", line_no, ": symbol ", shown(parts[0]), " is not in ", vocab_path);
      EP_CHECK(b >= 0, IOError, merges_path, ":", line_no, ": symbol ", shown(parts[1]), " is not in ", vocab_path);
      std::string joined(parts[0]);
      joined += parts[1];
      const int32_t merged = t.token_to_id(joined);
      EP_CHECK(merged >= 0, IOError, merges_path, ":", line_no, ": the merge result ", shown(joined), " is not in ",
               vocab_path);
      const int32_t rank = int32_t(t.merge_ranks_.size());
      auto [it, inserted] = t.merge_ranks_.emplace(pair_key(a, b), Merge{rank, merged});
      EP_CHECK(inserted, IOError, merges_path, ":", line_no, ": duplicate merge ", shown(line), " (first on line ",
               it->second.rank + 1 + header_lines, ")");
    }
    EP_CHECK(!t.merge_ranks_.empty(), IOError, merges_path, ": no merges");
  }
  return t;
}

int32_t BpeTokenizer::token_to_id(std::string_view token) const {
  auto it = token_to_id_.find(token);
  return it == token_to_id_.end() ? -1 : it->second;
}

const std::string& BpeTokenizer::id_to_token(int32_t id) const {
  EP_CHECK(id >= 0 && id < vocab_size(), ValueError, "[bpe] id ", id, " outside the vocabulary [0, ", vocab_size(),
           ")");
  return id_to_token_[size_t(id)];
}

int64_t BpeTokenizer::cache_size() const {
  std::shared_lock lock(cache_->mu);
  return int64_t(cache_->words.size());
}

// ---- BPE on one pre-token -------------------------------------------------------------------------------------------
// GPT-2's rule (encoder.py `bpe`): repeatedly take the adjacent pair with the lowest merge rank and merge all its
// non-overlapping occurrences left to right; stop when no adjacent pair has a rank. Done with a doubly linked list
// and a min-heap of (rank, position) candidates in O(n log n) instead of O(n^2) per word, so a 1 MB "word" cannot
// stall the loader. Pairs created by a merge are held back until every occurrence of the current rank is merged:
// that keeps GPT-2's round structure exactly even for a merges file whose later ranks are not built from earlier ones.
void BpeTokenizer::bpe_word(std::string_view word, std::vector<int32_t>& out) const {
  const size_t n = word.size();
  if (n == 1) {
    out.push_back(byte_to_id_[static_cast<unsigned char>(word[0])]);
    return;
  }
  const bool cacheable = n <= kCacheMaxWordBytes;
  if (cacheable) {
    std::shared_lock lock(cache_->mu);
    auto it = cache_->words.find(word);
    if (it != cache_->words.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }

  struct Sym {
    int32_t id, prev, next;  // id -1: merged into its left neighbour
  };
  struct Cand {
    int32_t rank, pos, left, right;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::vector<Sym> syms(n);
  for (size_t i = 0; i < n; ++i)
    syms[i] = {byte_to_id_[static_cast<unsigned char>(word[i])], int32_t(i) - 1, i + 1 < n ? int32_t(i + 1) : -1};
  std::vector<Cand> heap, pending;
  auto candidate = [&](int32_t pos, std::vector<Cand>& into) {
    const int32_t next = syms[size_t(pos)].next;
    if (next < 0) return;
    auto it = merge_ranks_.find(pair_key(syms[size_t(pos)].id, syms[size_t(next)].id));
    if (it != merge_ranks_.end()) into.push_back({it->second.rank, pos, syms[size_t(pos)].id, syms[size_t(next)].id});
  };
  for (size_t i = 0; i + 1 < n; ++i) candidate(int32_t(i), heap);
  const auto cmp = std::greater<Cand>();
  std::make_heap(heap.begin(), heap.end(), cmp);
  int32_t round_rank = -1;
  for (;;) {
    if (!pending.empty() && (heap.empty() || heap.front().rank != round_rank)) {
      for (const Cand& c : pending) {
        heap.push_back(c);
        std::push_heap(heap.begin(), heap.end(), cmp);
      }
      pending.clear();
    }
    if (heap.empty()) break;
    std::pop_heap(heap.begin(), heap.end(), cmp);
    const Cand c = heap.back();
    heap.pop_back();
    // Stale if either side has been merged since: ids only ever grow into longer strings, so equal ids at the same
    // position mean the pair is really there now.
    Sym& left = syms[size_t(c.pos)];
    if (left.id != c.left || left.next < 0 || syms[size_t(left.next)].id != c.right) continue;
    round_rank = c.rank;
    Sym& right = syms[size_t(left.next)];
    left.id = merge_ranks_.find(pair_key(c.left, c.right))->second.merged;
    right.id = -1;
    left.next = right.next;
    if (left.next >= 0) syms[size_t(left.next)].prev = c.pos;
    if (left.prev >= 0) candidate(left.prev, pending);
    candidate(c.pos, pending);
  }

  const size_t first = out.size();
  for (int32_t i = 0; i >= 0; i = syms[size_t(i)].next) out.push_back(syms[size_t(i)].id);
  if (cacheable) {
    std::unique_lock lock(cache_->mu);
    if (cache_->words.size() < kCacheMaxWords)
      cache_->words.emplace(std::string(word), std::vector<int32_t>(out.begin() + std::ptrdiff_t(first), out.end()));
  }
}

// ---- encoding -------------------------------------------------------------------------------------------------------
std::vector<int32_t> BpeTokenizer::encode_text(std::string_view utf8) const {
  DecodedText d;
  decode_text(utf8, d);
  std::vector<int32_t> ids;
  ids.reserve(d.utf8.size() / 3 + 4);
  split_pieces(d.cps, d.classes, [&](size_t b, size_t e) {
    bpe_word(std::string_view(d.utf8).substr(d.offsets[b], d.offsets[e] - d.offsets[b]), ids);
  });
  return ids;
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view a, int64_t max_len) const {
  EP_CHECK(max_len == 0 || max_len >= 2, ValueError, "[bpe] max_len ", max_len,
           " leaves no room for <s> and </s> (use 0 for no limit, or >= 2)");
  std::vector<int32_t> ta = encode_text(a);
  if (max_len > 0 && int64_t(ta.size()) + 2 > max_len) ta.resize(size_t(max_len - 2));
  std::vector<int32_t> ids;
  ids.reserve(ta.size() + 2);
  ids.push_back(bos_);
  ids.insert(ids.end(), ta.begin(), ta.end());
  ids.push_back(eos_);
  return ids;
}

std::vector<int32_t> BpeTokenizer::encode_pair(std::string_view a, std::string_view b, int64_t max_len) const {
  EP_CHECK(max_len == 0 || max_len >= 4, ValueError, "[bpe] max_len ", max_len,
           " leaves no room for <s> A </s></s> B </s> (use 0 for no limit, or >= 4)");
  std::vector<int32_t> ta = encode_text(a), tb = encode_text(b);
  if (max_len > 0) {
    // HF PreTrainedTokenizerBase.truncate_sequences, LONGEST_FIRST with a pair (transformers
    // src/transformers/tokenization_utils_base.py): one token at a time from the end of the longer side, and on a
    // tie from the SECOND sequence (`if len(ids) > len(pair_ids): ids = ids[:-1] else: pair_ids = pair_ids[:-1]`).
    // The fast (Rust) tokenizer splits ties the other way; we follow the slow one.
    int64_t remove = int64_t(ta.size() + tb.size()) + 4 - max_len;
    while (remove-- > 0) {
      if (ta.size() > tb.size()) ta.pop_back();
      else if (!tb.empty()) tb.pop_back();
    }
  }
  std::vector<int32_t> ids;
  ids.reserve(ta.size() + tb.size() + 4);
  ids.push_back(bos_);
  ids.insert(ids.end(), ta.begin(), ta.end());
  ids.push_back(eos_);
  ids.push_back(eos_);
  ids.insert(ids.end(), tb.begin(), tb.end());
  ids.push_back(eos_);
  return ids;
}

std::string BpeTokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::string bytes;
  for (int32_t id : ids) {
    EP_CHECK(id >= 0 && id < vocab_size(), ValueError, "[bpe] decode: id ", id, " outside the vocabulary [0, ",
             vocab_size(), ")");
    if (skip_special && is_special_[size_t(id)]) continue;
    bytes += id_to_bytes_[size_t(id)];
  }
  return repair_utf8(bytes);
}

std::vector<std::pair<size_t, size_t>> BpeTokenizer::pre_tokenize(std::string_view utf8) {
  DecodedText d;
  decode_text(utf8, d);
  std::vector<std::pair<size_t, size_t>> pieces;
  split_pieces(d.cps, d.classes, [&](size_t b, size_t e) { pieces.emplace_back(d.offsets[b], d.offsets[e]); });
  return pieces;
}

std::string BpeTokenizer::repair_utf8(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  const auto* s = reinterpret_cast<const unsigned char*>(bytes.data());
  for (size_t i = 0; i < bytes.size();) {
    const Utf8Step st = utf8_step(s + i, bytes.size() - i);
    if (st.ok) out.append(bytes.data() + i, st.len);
    else append_utf8(out, kReplacement);
    i += st.len;
  }
  return out;
}

// ---- batching -------------------------------------------------------------------------------------------------------
TokenBatch pad_batch(const std::vector<std::vector<int32_t>>& seqs, int32_t pad_id, int64_t fixed_len) {
  EP_CHECK(fixed_len >= 0, ValueError, "[bpe] pad_batch: fixed_len ", fixed_len, " < 0");
  TokenBatch b;
  b.batch = int64_t(seqs.size());
  if (fixed_len > 0) {
    b.seq_len = fixed_len;
    for (size_t r = 0; r < seqs.size(); ++r)
      EP_CHECK(int64_t(seqs[r].size()) <= fixed_len, ValueError, "[bpe] pad_batch: row ", r, " has ",
               seqs[r].size(), " tokens, more than the fixed length ", fixed_len, " (truncate when encoding)");
  } else {
    for (const auto& s : seqs) b.seq_len = std::max(b.seq_len, int64_t(s.size()));
  }
  b.ids.assign(size_t(b.batch * b.seq_len), pad_id);
  b.mask.assign(size_t(b.batch * b.seq_len), 0);
  for (size_t r = 0; r < seqs.size(); ++r) {
    const size_t row = r * size_t(b.seq_len);
    std::copy(seqs[r].begin(), seqs[r].end(), b.ids.begin() + std::ptrdiff_t(row));
    std::fill_n(b.mask.begin() + std::ptrdiff_t(row), seqs[r].size(), uint8_t(1));
  }
  return b;
}

}  // namespace ep::data
