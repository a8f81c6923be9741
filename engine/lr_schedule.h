// lr_schedule.h — learning-rate schedules as pure functions of the step, plus a small config struct and its parser.
// `step` counts optimizer steps already taken (0 for the first), as the lambda of HF's LambdaLR-based schedules and
// PyTorch's StepLR see it. Not stateful schedulers: the training loop calls optimizer.set_lr(schedule.lr_at(step)).
#pragma once
#include <cstdint>
#include <string>

namespace ep {

// base_lr at every step.
double lr_constant(double base_lr, int64_t step);
// torch.optim.lr_scheduler.StepLR: base_lr * gamma^floor(step / step_size).
double lr_step_decay(double base_lr, int64_t step, int64_t step_size, double gamma);
// HF get_cosine_with_min_lr_schedule_with_warmup (num_cycles 0.5; min_lr 0 gives get_cosine_schedule_with_warmup):
// step < warmup: base_lr * step / max(1, warmup) (rising linearly from 0);
// then progress = (step - warmup) / max(1, total - warmup) and lr = min_lr + (base_lr - min_lr) * 0.5*(1+cos(pi*p)).
// Past `total` the lr stays at min_lr (HF's formula would climb back up the cosine there).
double lr_cosine_warmup(double base_lr, int64_t step, int64_t warmup, int64_t total, double min_lr = 0.0);
// HF get_linear_schedule_with_warmup: the same warmup, then base_lr * max(0, (total - step) / max(1, total - warmup)).
double lr_linear_warmup(double base_lr, int64_t step, int64_t warmup, int64_t total);

enum class LRScheduleKind { constant, step, cosine, linear };
// "constant" | "step" | "cosine" | "linear"; anything else is a ValueError naming it and the accepted names.
LRScheduleKind parse_lr_schedule_kind(const std::string& name);
const char* lr_schedule_name(LRScheduleKind kind);

// A schedule from a config. Only the fields of its kind are used: step -> step_size, gamma; cosine -> warmup_steps,
// total_steps, min_lr; linear -> warmup_steps, total_steps.
struct LRSchedule {
  LRScheduleKind kind = LRScheduleKind::constant;
  double base_lr = 1e-3;
  int64_t step_size = 1;
  double gamma = 0.1;
  int64_t warmup_steps = 0;
  int64_t total_steps = 0;
  double min_lr = 0.0;
  // ValueError for negative steps or a parameter its kind cannot use (step_size < 1, total_steps < max(1, warmup)...).
  double lr_at(int64_t step) const;
};
// The named kind with the given base lr and every other field at its default.
LRSchedule parse_lr_schedule(const std::string& name, double base_lr);

}  // namespace ep
