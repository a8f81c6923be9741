// main.cpp — the one doctest binary. DEVICE=cuda runs the device-parametrized cases on the GPU (test_device()).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "apps/cli.h"
#include "tests/test_util.h"

int main(int argc, char** argv) {
  ep::cli::ensure_cpu_threading(argv);  // idle OpenMP threads must not spin against OpenBLAS's (see apps/cli.h)
  doctest::Context ctx;
  ctx.applyCommandLine(argc, argv);
  std::printf("edgepipe tests: device %s, CUDA %s, %d GPU(s)\n", ep::test::test_device().str().c_str(),
              ep::cuda_built() ? "built" : "not built", ep::cuda_device_count());
  int rc = ctx.run();
  return rc;
}
