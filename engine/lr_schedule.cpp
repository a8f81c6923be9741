// lr_schedule.cpp — the closed forms of lr_schedule.h and their argument checks ("[lr_schedule] ..." ValueErrors).
// Not tied to an optimizer: nothing here keeps state between calls.
#include "engine/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "engine/check.h"

namespace ep {

static void check_common(double base_lr, int64_t step) {
  EP_CHECK(std::isfinite(base_lr) && base_lr >= 0, ValueError, "[lr_schedule] base lr must be finite and >= 0, got ",
           base_lr);
  EP_CHECK(step >= 0, ValueError, "[lr_schedule] step must be >= 0, got ", step);
}

static void check_warmup_total(const char* kind, int64_t warmup, int64_t total) {
  EP_CHECK(warmup >= 0 && total >= 1 && total >= warmup, ValueError, "[lr_schedule] ", kind,
           " needs 0 <= warmup_steps <= total_steps and total_steps >= 1, got warmup_steps ", warmup,
           ", total_steps ", total);
}

double lr_constant(double base_lr, int64_t step) {
  check_common(base_lr, step);
  return base_lr;
}

double lr_step_decay(double base_lr, int64_t step, int64_t step_size, double gamma) {
  check_common(base_lr, step);
  EP_CHECK(step_size >= 1, ValueError, "[lr_schedule] step needs step_size >= 1, got ", step_size);
  EP_CHECK(std::isfinite(gamma) && gamma >= 0, ValueError, "[lr_schedule] step needs a finite gamma >= 0, got ",
           gamma);
  return base_lr * std::pow(gamma, double(step / step_size));
}

// HF's warmup factor: step / max(1, warmup), so the first step (0) trains at lr 0.
static double warmup_factor(int64_t step, int64_t warmup) {
  return double(step) / double(std::max<int64_t>(1, warmup));
}

double lr_cosine_warmup(double base_lr, int64_t step, int64_t warmup, int64_t total, double min_lr) {
  check_common(base_lr, step);
  check_warmup_total("cosine", warmup, total);
  EP_CHECK(std::isfinite(min_lr) && min_lr >= 0 && min_lr <= base_lr, ValueError,
           "[lr_schedule] cosine needs 0 <= min_lr <= base lr, got min_lr ", min_lr, ", base lr ", base_lr);
  if (step < warmup) return base_lr * warmup_factor(step, warmup);
  double progress = double(step - warmup) / double(std::max<int64_t>(1, total - warmup));
  progress = std::min(progress, 1.0);
  return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
}

double lr_linear_warmup(double base_lr, int64_t step, int64_t warmup, int64_t total) {
  check_common(base_lr, step);
  check_warmup_total("linear", warmup, total);
  if (step < warmup) return base_lr * warmup_factor(step, warmup);
  return base_lr * std::max(0.0, double(total - step) / double(std::max<int64_t>(1, total - warmup)));
}

LRScheduleKind parse_lr_schedule_kind(const std::string& name) {
  for (LRScheduleKind k : {LRScheduleKind::constant, LRScheduleKind::step, LRScheduleKind::cosine,
                           LRScheduleKind::linear})
    if (name == lr_schedule_name(k)) return k;
  EP_THROW(ValueError, "[lr_schedule] unknown schedule '", name, "' (expected constant, step, cosine or linear)");
}

const char* lr_schedule_name(LRScheduleKind kind) {
  switch (kind) {
    case LRScheduleKind::constant: return "constant";
    case LRScheduleKind::step: return "step";
    case LRScheduleKind::cosine: return "cosine";
    case LRScheduleKind::linear: return "linear";
  }
  return "?";
}

double LRSchedule::lr_at(int64_t step) const {
  switch (kind) {
    case LRScheduleKind::constant: return lr_constant(base_lr, step);
    case LRScheduleKind::step: return lr_step_decay(base_lr, step, step_size, gamma);
    case LRScheduleKind::cosine: return lr_cosine_warmup(base_lr, step, warmup_steps, total_steps, min_lr);
    case LRScheduleKind::linear: return lr_linear_warmup(base_lr, step, warmup_steps, total_steps);
  }
  EP_THROW(ValueError, "[lr_schedule] bad schedule kind ", int(kind));
}

LRSchedule parse_lr_schedule(const std::string& name, double base_lr) {
  LRSchedule s;
  s.kind = parse_lr_schedule_kind(name);
  s.base_lr = base_lr;
  return s;
}

}  // namespace ep
