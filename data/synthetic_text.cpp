// synthetic_text.cpp — draws the group-majority token task from per-example Philox streams.
// Not tunable on purpose: one fixed rule keeps "the tiny config reaches high accuracy" a stable test.
#include "data/synthetic_text.h"

#include <algorithm>
#include <numeric>

#include "engine/check.h"
#include "engine/philox.h"

namespace ep::data {

namespace {

constexpr uint32_t kTextDomain = 0x54585431u;  // "TXT1": apart from the image set's and the loaders' draws
constexpr int64_t kMaxSignal = 7;

// The random numbers of one example: draw k is block k of the example's own Philox stream.
struct ExampleRng {
  uint64_t seed, index;
  uint32_t k = 0;
  uint32_t next() {
    return philox4x32_10(Philox4{{uint32_t(index), uint32_t(index >> 32), k++, kTextDomain}}, uint32_t(seed),
                         uint32_t(seed >> 32))
        .v[0];
  }
  // Uniform in [lo, hi] by the multiply-shift map (bias below 2^-32 * range, irrelevant here).
  int64_t uniform_int(int64_t lo, int64_t hi) {
    const uint64_t range = uint64_t(hi - lo + 1);
    return lo + int64_t((uint64_t(next()) * range) >> 32);
  }
};

int64_t group_size(int64_t vocab) { return (vocab - kFirstContentId) / 4; }

}  // namespace

int synthetic_text_group(int64_t id, int64_t vocab) {
  const int64_t g = group_size(vocab);
  if (id >= kFirstContentId && id < kFirstContentId + g) return 0;
  if (id >= kFirstContentId + g && id < kFirstContentId + 2 * g) return 1;
  return -1;
}

std::vector<TokenExample> make_synthetic_text(int64_t n, int64_t vocab, int64_t min_len, int64_t max_len,
                                              uint64_t seed) {
  EP_CHECK(n >= 0, ValueError, "[synthetic_text] n must be >= 0, got ", n);
  EP_CHECK(vocab >= 8, ValueError, "[synthetic_text] vocab must be >= 8 (4 specials, two token groups and filler), got ",
           vocab);
  EP_CHECK(min_len >= 3 && min_len <= max_len, ValueError,
           "[synthetic_text] need 3 <= min_len <= max_len (lengths count <s> and </s>), got min_len ", min_len,
           " and max_len ", max_len);
  const int64_t g = group_size(vocab);
  const int64_t a0 = kFirstContentId, b0 = kFirstContentId + g, filler0 = kFirstContentId + 2 * g;

  std::vector<TokenExample> out(static_cast<size_t>(n));
  std::vector<int64_t> slots;
  for (int64_t i = 0; i < n; ++i) {
    ExampleRng rng{seed, uint64_t(i)};
    TokenExample& ex = out[size_t(i)];
    ex.label = i % 2;
    const int64_t len = rng.uniform_int(min_len, max_len);
    const int64_t content = len - 2;
    // An odd number of signal tokens, so one group always wins; the winner gets a random majority.
    int64_t max_signal = std::min(kMaxSignal, content);
    if (max_signal % 2 == 0) --max_signal;
    const int64_t signal = 1 + 2 * rng.uniform_int(0, (max_signal - 1) / 2);
    const int64_t majority = rng.uniform_int(signal / 2 + 1, signal);

    ex.ids.assign(size_t(len), 0);
    ex.ids.front() = kBosId;
    ex.ids.back() = kEosId;
    for (int64_t p = 1; p <= content; ++p) ex.ids[size_t(p)] = rng.uniform_int(filler0, vocab - 1);
    // The first `signal` slots of a partial Fisher-Yates shuffle of positions 1..content.
    slots.resize(size_t(content));
    std::iota(slots.begin(), slots.end(), int64_t(1));
    const int64_t win0 = ex.label == 1 ? a0 : b0, lose0 = ex.label == 1 ? b0 : a0;
    for (int64_t s = 0; s < signal; ++s) {
      std::swap(slots[size_t(s)], slots[size_t(rng.uniform_int(s, content - 1))]);
      const int64_t base = s < majority ? win0 : lose0;
      ex.ids[size_t(slots[size_t(s)])] = base + rng.uniform_int(0, g - 1);
    }
  }
  return out;
}

}  // namespace ep::data
