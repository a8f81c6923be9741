// fuzz_targets.h — every reader of bytes from outside as a fuzz target: the bytes reach the reader the way a user or
// a peer hands them over (a file on disk, a received message), and the reader's own error type is the only allowed
// failure. The same targets run under libFuzzer (`make fuzz`, tests/fuzz/fuzz_main.cpp) and in the suite, which
// replays their seeds and every input a fuzzer once failed on (tests/fuzz/regressions/). Not a mutator: the suite's
// own mutation cases (test_util.h fuzz_mutants) and libFuzzer make the inputs.
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace ep::fuzz {

// A reader misbehaved on an input it accepted (e.g. returned an out-of-range label): a finding, like a crash.
struct Finding : std::logic_error { using std::logic_error::logic_error; };

struct Target {
  const char* name;
  const char* what;  // one line: the reader and how the input reaches it
  // Runs the reader on the input. True: read whole (and checked); false: rejected with the reader's own error type.
  // Anything else (another exception, a Finding, a crash, a sanitizer report) is a bug.
  bool (*run)(const uint8_t* data, size_t size);
  // Valid inputs (each is read whole): libFuzzer's starting corpus, and a check that the target still reaches the
  // reader's accepting path.
  std::vector<std::string> (*seeds)();
};

const std::vector<Target>& targets();
// The target called `name`; std::invalid_argument listing the names when there is none.
const Target& target(std::string_view name);

// A tiny byte-level BPE vocabulary built from formats.md A3's rule (not from data/bpe.cpp): <s> <pad> </s> <unk> as
// 0..3, the 256 byte symbols, then `extra`, then <mask>. Shared with test_bpe.cpp.
nlohmann::json tiny_bpe_vocab(const std::vector<std::string>& extra);
std::string utf8(char32_t cp);  // code points below U+10000

}  // namespace ep::fuzz
