// step_guard.h — the trainers' guard against a diverging step: a step whose loss or gradient norm is not finite is
// skipped (gradients dropped; weights, optimizer state and step count unchanged; its batch consumed), and
// --max-bad-steps such steps in a row end the run with an error, as does a model state that is no longer finite
// (weights an earlier update overflowed, or BatchNorm running statistics the skipped step's forward pass updated:
// skipping cannot bring those back). Not loss scaling: gradients here are fp32.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>

#include "apps/checkpoint.h"
#include "apps/cli.h"
#include "engine/anomaly.h"
#include "engine/check.h"
#include "engine/ops.h"

namespace ep::cli {

class StepGuard {
 public:
  explicit StepGuard(int64_t max_in_a_row) : max_(max_in_a_row) {}

  // True: apply the update. False: skip it (the caller still zeroes the gradients). Throws Error when this is the
  // max-th non-finite step in a row, or when a tensor of `state` holds a non-finite value (checked on skipped steps
  // only: a good step costs nothing). `grad_norm`: 0 when the trainer does not compute it.
  bool admit(double loss, double grad_norm, int64_t step, const ckpt::TrainState& state) {
    if (std::isfinite(loss) && std::isfinite(grad_norm)) {
      in_a_row_ = 0;
      return true;
    }
    ++in_a_row_;
    ++skipped_;
    std::fprintf(stderr, "step %lld: %s %g is not finite; update skipped (%lld in a row; the run stops at %lld)\n",
                 (long long)step, std::isfinite(loss) ? "gradient norm" : "loss", std::isfinite(loss) ? grad_norm : loss,
                 (long long)in_a_row_, (long long)max_);
    for (const auto& [name, t] : state.tensors)
      EP_CHECK(all_finite(*t), Error,
               "training diverged: ", name, " holds non-finite values at step ", step,
               ", which skipping the update cannot undo; lower --lr, or resume from the last checkpoint");
    EP_CHECK(in_a_row_ < max_, Error, "training diverged: ", max_,
             " steps in a row had a non-finite loss or gradient norm (the last would have been step ", step,
             "); lower --lr, or resume from the last checkpoint");
    return false;
  }
  int64_t skipped() const { return skipped_; }

 private:
  int64_t max_, in_a_row_ = 0, skipped_ = 0;
};

// The guard of --max-bad-steps (a flag of add_trainer_flags). Called once the model is in place (a pipeline has
// moved its stages' tensors), it also names the model's tensors for --detect-anomaly's findings.
inline StepGuard step_guard(const Options& o, const ckpt::TrainState& state) {
  if (o.integer("max-bad-steps") < 1) o.fail("--max-bad-steps must be at least 1");
  if (anomaly_mode()) anomaly_name_tensors(state.tensors);
  return StepGuard(o.integer("max-bad-steps"));
}

}  // namespace ep::cli
