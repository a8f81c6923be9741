// tokenize.cpp — `build/tokenize --vocab FILE --merges FILE [--pair] [--max-len N] [--stats]`: reads UTF-8 lines from
// stdin (with --pair, two tab-separated fields) and prints the RoBERTa ids of each, <s> ... </s> included,
// space-separated, one output line per input line. Not a GLUE reader: no header skipping, no column selection.
// Exit 2 on a usage error, 1 on a bad file or a bad input line (named "stdin:LINE: ...").
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>

#include "apps/cli.h"
#include "data/bpe.h"

using namespace ep;

namespace {

int run(int argc, char** argv) {
  cli::Options o("tokenize");
  o.add("vocab", "string", "", "vocab.json (token -> id)")
      .add("merges", "string", "", "merges.txt (one 'A B' merge per line)")
      .add("pair", "bool", false, "each line is two tab-separated sentences, encoded as <s> A </s></s> B </s>")
      .add("max-len", "int", 0, "truncate (longest-first for pairs) so each line has at most this many ids; 0 = none")
      .add("stats", "bool", false, "print lines/s and tokens/s to stderr at the end");
  if (!o.parse(argc, argv)) {
    std::printf("%s", o.help().c_str());
    return 0;
  }
  if (o.str("vocab").empty() || o.str("merges").empty()) o.fail("--vocab and --merges are required");
  const int64_t max_len = o.integer("max-len");
  const bool pair = o.flag("pair");
  if (max_len < 0 || (max_len > 0 && max_len < (pair ? 4 : 2)))
    o.fail("--max-len " + std::to_string(max_len) + ": must be 0 (no limit) or at least " + (pair ? "4" : "2") +
           " (room for the special tokens)");

  const auto t_load = std::chrono::steady_clock::now();
  const data::BpeTokenizer tok = data::BpeTokenizer::load(o.str("vocab"), o.str("merges"));
  const auto t0 = std::chrono::steady_clock::now();

  std::ios::sync_with_stdio(false);
  std::string line, out;
  int64_t lines = 0, tokens = 0;
  while (std::getline(std::cin, line)) {
    ++lines;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    std::vector<int32_t> ids;
    if (pair) {
      const size_t tab = line.find('\t');
      if (tab == std::string::npos || line.find('\t', tab + 1) != std::string::npos)
        EP_THROW(IOError, "stdin:", lines, ": --pair expects exactly two tab-separated fields");
      ids = tok.encode_pair(std::string_view(line).substr(0, tab), std::string_view(line).substr(tab + 1), max_len);
    } else {
      ids = tok.encode(line, max_len);
    }
    tokens += int64_t(ids.size());
    out.clear();
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i) out += ' ';
      out += std::to_string(ids[i]);
    }
    out += '\n';
    std::cout << out;
  }
  std::cout.flush();
  EP_CHECK(!std::cin.bad(), IOError, "stdin: read error");
  EP_CHECK(std::cout.good(), IOError, "stdout: write error");
  if (o.flag("stats")) {
    const auto t1 = std::chrono::steady_clock::now();
    const double s = std::chrono::duration<double>(t1 - t0).count();
    const double load_s = std::chrono::duration<double>(t0 - t_load).count();
    std::fprintf(stderr,
                 "tokenize: %lld lines, %lld tokens in %.3f s: %.0f lines/s, %.0f tokens/s (load %.3f s, %lld words "
                 "cached)\n",
                 (long long)lines, (long long)tokens, s, s > 0 ? lines / s : 0.0, s > 0 ? tokens / s : 0.0, load_s,
                 (long long)tok.cache_size());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return cli::guarded_main("tokenize", [&] { return run(argc, argv); });
}
