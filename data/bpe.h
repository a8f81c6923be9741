// bpe.h — the GPT-2 / RoBERTa byte-level BPE tokenizer (Hugging Face vocab.json + merges.txt) with RoBERTa's special
// tokens, sequence layouts, longest-first truncation and padding into batches. It gives the ids of HF's slow
// RobertaTokenizer (formats.md A3). Not a trainer of merges, not a tokenizer.json reader, no offsets or added tokens.
//
// Deliberate choices, each different from some HF path:
// - Special-token strings inside the text ("<s>", "<mask>") are plain text, as with HF's split_special_tokens=True:
//   data cannot inject control tokens. (HF's default parses them; no GLUE sentence contains one.)
// - Invalid UTF-8 input is repaired before anything else: each maximal ill-formed subpart becomes U+FFFD, exactly as
//   Python's bytes.decode("utf-8", errors="replace") does, so the ids equal HF's on the text Python would read.
//   decode() applies the same rule to token bytes that do not form valid UTF-8 (HF's errors="replace").
// - Truncation never exceeds max_len; max_len must leave room for the special tokens (HF logs an error instead).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ep::data {

// Lets unordered_map<std::string, ...> be searched with a string_view without building a std::string.
struct TransparentStringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

class BpeTokenizer {
 public:
  // Reads vocab.json (a JSON object token -> id, ids unique and in [0, n)) and merges.txt (an optional "#version"
  // first line, then one "A B" merge per line, rank = order). Errors are IOError naming the file, and the line for
  // merges: "merges.txt:17: expected two space-separated symbols, got 3". Checked: every merge part and result is in
  // the vocabulary, no merge twice, all 256 byte symbols present, <s> <pad> </s> <unk> <mask> present.
  static BpeTokenizer load(const std::string& vocab_path, const std::string& merges_path);

  BpeTokenizer(BpeTokenizer&&) noexcept;
  BpeTokenizer& operator=(BpeTokenizer&&) noexcept;
  ~BpeTokenizer();

  // The ids of the text alone, no special tokens. Thread-safe (the word cache is shared under a lock).
  std::vector<int32_t> encode_text(std::string_view utf8) const;
  // <s> A </s>; max_len > 0 truncates A from the end so the whole fits (max_len >= 2), 0 = no limit.
  std::vector<int32_t> encode(std::string_view a, int64_t max_len = 0) const;
  // <s> A </s></s> B </s>; max_len > 0 truncates longest-first (max_len >= 4), 0 = no limit.
  std::vector<int32_t> encode_pair(std::string_view a, std::string_view b, int64_t max_len = 0) const;

  // The inverse: token bytes concatenated, invalid UTF-8 replaced by U+FFFD. Special tokens are written as their
  // strings ("<s>") unless skip_special. An id outside the vocabulary is a ValueError.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const;

  int32_t bos_id() const { return bos_; }    // <s> (= cls)
  int32_t pad_id() const { return pad_; }    // <pad>
  int32_t eos_id() const { return eos_; }    // </s> (= sep)
  int32_t unk_id() const { return unk_; }    // <unk>
  int32_t mask_id() const { return mask_; }  // <mask>
  int64_t vocab_size() const { return int64_t(id_to_token_.size()); }
  int64_t merge_count() const { return int64_t(merge_ranks_.size()); }
  // -1 when absent.
  int32_t token_to_id(std::string_view token) const;
  const std::string& id_to_token(int32_t id) const;  // ValueError when out of range
  // Words currently in the cache (for tests and the --stats line).
  int64_t cache_size() const;

  // The GPT-2 pre-tokenization of already valid UTF-8 (byte ranges [begin, end) into `utf8`), exposed for tests.
  static std::vector<std::pair<size_t, size_t>> pre_tokenize(std::string_view utf8);
  // Python's bytes.decode("utf-8", errors="replace") re-encoded as UTF-8.
  static std::string repair_utf8(std::string_view bytes);

 private:
  BpeTokenizer();
  void bpe_word(std::string_view word, std::vector<int32_t>& out) const;

  std::unordered_map<std::string, int32_t, TransparentStringHash, std::equal_to<>> token_to_id_;
  std::vector<std::string> id_to_token_;
  std::vector<std::string> id_to_bytes_;  // the raw bytes each token stands for (decode)
  std::vector<bool> is_special_;
  // (left id, right id) packed in 64 bits -> (rank, merged id).
  struct Merge {
    int32_t rank, merged;
  };
  std::unordered_map<uint64_t, Merge> merge_ranks_;
  int32_t byte_to_id_[256] = {};
  int32_t bos_ = -1, pad_ = -1, eos_ = -1, unk_ = -1, mask_ = -1;

  struct Cache;  // the word cache and its lock, behind a pointer so the tokenizer stays movable
  std::unique_ptr<Cache> cache_;
};

// Ids and attention masks of a batch, row-major [batch, seq_len], padded on the right.
struct TokenBatch {
  int64_t batch = 0, seq_len = 0;
  std::vector<int64_t> ids;   // batch * seq_len, pad_id after each sequence's end
  std::vector<uint8_t> mask;  // 1 = real token, 0 = padding
};

// Pads to the longest sequence (fixed_len = 0) or to fixed_len, which every sequence must fit (ValueError naming the
// row otherwise: truncation is the encoder's job, not the batcher's). An empty list gives a 0 x 0 batch.
TokenBatch pad_batch(const std::vector<std::vector<int32_t>>& seqs, int32_t pad_id, int64_t fixed_len = 0);

}  // namespace ep::data
