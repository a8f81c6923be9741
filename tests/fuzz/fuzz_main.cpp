// fuzz_main.cpp — the libFuzzer entry point for every target of tests/fuzz_targets.h; the binary's name picks the
// target (build-fuzz/fuzz_glue runs "glue"). Not part of make test: it needs clang's libFuzzer (make fuzz, README).
// With EP_FUZZ_WRITE_SEEDS=DIR the binary writes its target's seeds into DIR and exits (make fuzz starts from them).
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>

#include "tests/fuzz_targets.h"

namespace {
const ep::fuzz::Target* g_target = nullptr;
}

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  std::string name = std::filesystem::path((*argv)[0]).filename().string();
  if (name.rfind("fuzz_", 0) == 0) name.erase(0, 5);
  try {
    g_target = &ep::fuzz::target(name);
    if (const char* dir = std::getenv("EP_FUZZ_WRITE_SEEDS")) {
      std::filesystem::create_directories(dir);
      const std::vector<std::string> seeds = g_target->seeds();
      for (size_t i = 0; i < seeds.size(); ++i) {
        std::ofstream out(std::filesystem::path(dir) / ("seed-" + std::to_string(i)), std::ios::binary);
        out << seeds[i];
        if (!out) throw std::runtime_error(std::string("cannot write a seed into ") + dir);
      }
      std::exit(0);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", (*argv)[0], e.what());
    std::exit(2);
  }
  return 0;
}

// A rejection is the reader's own error and returns here; a Finding or any other exception escapes, terminates the
// process, and libFuzzer saves the input as a crash.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  g_target->run(data, size);
  return 0;
}
