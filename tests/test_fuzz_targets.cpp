// test_fuzz_targets.cpp — the fuzz targets (fuzz_targets.h) in every make test: their seeds are read whole, mutants of
// the seeds are read whole or rejected with the reader's own error (thousands per target, EP_FUZZ_SCALE for more), and
// every input a fuzzer once failed on (tests/fuzz/regressions/<target>/) is replayed. Not coverage-guided fuzzing:
// that is `make fuzz` (clang's libFuzzer), which runs the same targets.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "tests/fuzz_targets.h"
#include "tests/test_util.h"

using namespace ep;
namespace fs = std::filesystem;

namespace {

bool run(const fuzz::Target& t, const std::string& input) {
  return t.run(reinterpret_cast<const uint8_t*>(input.data()), input.size());
}

// Mutants of each seed of `target`; both paths must be reached (a target that rejects everything tests nothing).
void mutants(const char* target, int iterations, uint64_t rng_seed) {
  const test::FuzzCounts n = test::fuzz_target_mutants(target, iterations, rng_seed);
  CHECK(n.accepted > 0);
  CHECK(n.rejected > 0);
}

}  // namespace

TEST_CASE("fuzz targets: every seed is read whole; the names are unique and found by name") {
  for (const fuzz::Target& t : fuzz::targets()) {
    INFO(std::string(t.name));
    CHECK(&fuzz::target(t.name) == &t);
    const std::vector<std::string> seeds = t.seeds();
    CHECK(!seeds.empty());
    for (const std::string& s : seeds) CHECK(run(t, s));
    CHECK(!run(t, ""));  // an empty input: no file is valid empty, and the selector-byte targets lack their byte
  }
  CHECK_THROWS_WITH_AS(fuzz::target("nope"), doctest::Contains("targets: safetensors"), std::invalid_argument);
}

TEST_CASE("fuzz targets: inputs a fuzzer once failed on (tests/fuzz/regressions) are read or rejected, never a crash") {
  const fs::path root = "tests/fuzz/regressions";
  if (!fs::exists(root)) return;  // no regressions recorded yet
  int replayed = 0;
  for (const auto& dir : fs::directory_iterator(root)) {
    const fuzz::Target& t = fuzz::target(dir.path().filename().string());
    for (const auto& f : fs::directory_iterator(dir.path())) {
      INFO(f.path().string());
      std::ifstream in(f.path(), std::ios::binary);
      const std::string input((std::istreambuf_iterator<char>(in)), {});
      CHECK_NOTHROW(run(t, input));
      ++replayed;
    }
  }
  MESSAGE(replayed << " regression inputs replayed");
}

TEST_CASE("fuzz: mutated safetensors files are read whole or rejected with IOError") {
  mutants("safetensors", 1500, 11);
}
TEST_CASE("fuzz: mutated checkpoints restore a consistent state or fail with IOError") {
  mutants("checkpoint", 800, 71);
}
TEST_CASE("fuzz: mutated CIFAR-10 records load with labels 0..9 or fail with IOError") { mutants("cifar10", 400, 51); }
TEST_CASE("fuzz: mutated PNG and JPEG images decode or fail with IOError naming the file") {
  mutants("image", 300, 52);
}
TEST_CASE("fuzz: mutated GLUE TSVs of every task load with valid labels or fail with IOError") {
  mutants("glue", 300, 31);
}
TEST_CASE("fuzz: mutated vocab.json + merges.txt load and encode within the vocabulary, or fail with IOError") {
  mutants("bpe_files", 1200, 41);
}
TEST_CASE("fuzz: mutated text tokenizes within the vocabulary and max_len") {
  const test::FuzzCounts n = test::fuzz_target_mutants("bpe_text", 500, 43);
  CHECK(n.rejected <= n.accepted / 10);  // only an emptied input (no selector byte) is turned away
}
TEST_CASE("fuzz: mutated config.json files parse to a usable config or fail with ValueError") {
  mutants("json_config", 1500, 61);
}
TEST_CASE("fuzz: mutated --config files apply or fail with a usage error") { mutants("cli_config", 1000, 62); }
TEST_CASE("fuzz: mutated tensor messages are received whole or rejected with an Error") { mutants("wire", 750, 21); }
TEST_CASE("fuzz: mutated compression payloads decode or fail with CompressError") { mutants("payload", 300, 99); }
TEST_CASE("fuzz: mutated compressed boundary messages decode at the receiver or fail with an Error") {
  mutants("boundary", 300, 22);
}
