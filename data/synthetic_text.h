// synthetic_text.h — a procedural two-class token-sequence task, the embedded default for train_glue. Not language
// and not a batcher (pad with data/bpe.h's pad_batch): the label is "which of two token groups is more frequent", a
// rule a 1-2 layer transformer learns in a few hundred steps, independent of the sequence length.
#pragma once
#include <cstdint>
#include <vector>

namespace ep::data {

// RoBERTa's special ids, which the synthetic sequences respect: <s> = 0, <pad> = 1, </s> = 2, <unk> = 3.
inline constexpr int64_t kBosId = 0, kPadId = 1, kEosId = 2, kUnkId = 3;
inline constexpr int64_t kFirstContentId = 4;

struct TokenExample {
  std::vector<int64_t> ids;  // starts with <s>, ends with </s>, no padding
  int64_t label = -1;
};

// The content ids [4, vocab) are cut into group A = [4, 4+g), group B = [4+g, 4+2g) and filler [4+2g, vocab), with
// g = (vocab - 4) / 4. Each sequence holds an odd number s in [1, 7] (capped by its room) of A and B tokens at random
// positions, the rest filler; label 1 iff A tokens outnumber B tokens. Returns 0 (A), 1 (B) or -1 (neither).
int synthetic_text_group(int64_t id, int64_t vocab);

// n examples. Example i has label i % 2 (balanced to within one), a length drawn uniformly in [min_len, max_len]
// counting <s> and </s>, and every random choice from Philox keyed by (seed, i): the same arguments give the same
// data on any machine, and example i does not depend on n. The number of A/B tokens and the length are drawn
// independently of the label, so neither predicts it. ValueError unless vocab >= 8, 3 <= min_len <= max_len, n >= 0.
std::vector<TokenExample> make_synthetic_text(int64_t n, int64_t vocab, int64_t min_len, int64_t max_len,
                                              uint64_t seed);

}  // namespace ep::data
