// test_zz_coverage.cpp — runs last (doctest orders by file name): every registered differentiable op must have been
// gradchecked, in float64 and along a float32 direction (and parity-checked against the CPU when a GPU is present),
// and every recorded node name must be registered. Skipped when a test filter ran only part of the suite.
#include <doctest/doctest.h>

#include "engine/op_registry.h"
#include "tests/test_util.h"

using namespace ep;

// The name avoids the words "cuda" and "parity" so that filtered runs of the GPU cases (-tc="*cuda*,*parity*") skip it.
TEST_CASE("registry coverage: every differentiable op has a float64 gradcheck and a CPU-vs-GPU twin check") {
  if (test::gradchecked_ops().empty()) {
    MESSAGE("no gradcheck ran (filtered run): coverage not checked");
    return;
  }
  for (const auto& op : differentiable_ops()) {
    INFO("op " << op);
    if (op == "to_device" && !test::have_cuda()) continue;  // needs a second device to record a node at all
    CHECK_MESSAGE(test::gradchecked_ops().count(op) == 1, "no gradcheck case covers '" << op << "'");
    if (test::test_device().is_cpu())  // the float32 check runs on the CPU only (test_util.cpp)
      CHECK_MESSAGE(test::directional_checked_ops().count(op) == 1,
                    "no float32 directional check (part of gradcheck) covers '" << op << "'");
    if (test::have_cuda())
      CHECK_MESSAGE(test::parity_checked_ops().count(op) == 1, "no CPU-vs-CUDA parity case covers '" << op << "'");
  }
  for (const auto& op : recorded_ops())
    CHECK_MESSAGE(differentiable_ops().count(op) == 1,
                  "node '" << op << "' was recorded but is not in the registry (EP_DIFFERENTIABLE_OPS)");
}
