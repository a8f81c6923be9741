// oom_retry.h — the trainers' recovery from a training step that runs out of memory (OutOfMemoryError: a device, or
// --memory-limit): the step is undone and the same batch retried in twice the micro-batches on a 1F1B schedule (one
// micro-batch's activations held at a time), until it fits or a micro-batch is down to one row.
// Not for --distributed runs, whose processes would all have to retry at the same step: there the error ends the run.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "apps/checkpoint.h"
#include "apps/pipeline_cli.h"
#include "compress/split.h"
#include "engine/check.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "pipeline/pipeline.h"

namespace ep::cli {

class OomRetry {
 public:
  // state: the run's parameters and buffers (by name) and random generators, as a checkpoint holds them.
  OomRetry(bool enabled, bool distributed, const ckpt::TrainState& state)
      : enabled_(enabled && !distributed), distributed_(distributed), state_(state) {}

  // Before each training step: its micro-batches are the last retry's count (1F1B), else the count and schedule the
  // pipeline was built with, and never more than the step's rows: an epoch's short last batch runs one row per
  // micro-batch. True when it rescheduled the pipe: the caller then re-arms deferred BatchNorm for the count. Every
  // process of a --distributed run sees the same rows, so they all reschedule at the same step.
  bool step_chunks(PipelineSetup& setup, int64_t rows) {
    if (!setup.pipe || rows < 1) return false;
    const int want = int(std::min<int64_t>(chunks_ != 0 ? chunks_ : setup.options.chunks, rows));
    if (setup.pipe->options().chunks == want) return false;
    setup.pipe->reschedule(want, chunks_ != 0 ? pipeline::ScheduleKind::one_f_one_b : setup.options.schedule,
                           /*every_process=*/true);
    return true;
  }

  // One training step: runs `attempt` (its forward and backward) until it fits. After an OutOfMemoryError it drops the
  // attempt's gradients and compression statistics, undoes what before_step() saved, reschedules `pipe` to more
  // micro-batches, and calls rechunk(k): the trainer builds the pipeline when it had none and re-arms deferred
  // BatchNorm. Then the statistics of the attempt that fitted are committed.
  template <class Attempt, class Rechunk>
  void fit_step(int64_t step, int64_t rows, PipelineSetup& pipe, Optimizer& opt, compress::CompressionLog& clog,
                Attempt&& attempt, Rechunk&& rechunk) {
    for (;;) {
      before_step();
      try {
        attempt();
        break;
      } catch (const OutOfMemoryError& e) {
        opt.zero_grad();
        clog.discard_step();
        const int64_t k = recover(e, step, rows, pipe.pipe ? pipe.pipe->options().chunks : 1);
        if (pipe.pipe) pipe.pipe->reschedule(int(k), pipeline::ScheduleKind::one_f_one_b);
        rechunk(k);
      }
    }
    armed_ = false;
    clog.commit_step();
  }

  int64_t retries() const { return retries_; }
  int64_t micro_batches() const { return chunks_; }  // for the checkpoint: 0 before any retry

  // A run resumed from a checkpoint written after a retry continues in its micro-batches: rechunk(k) as after a retry.
  template <class Rechunk> void resume_at(int64_t micro_batches, Rechunk&& rechunk) {
    if (micro_batches <= 0 || !enabled_) return;
    std::printf("resume: steps run in %lld micro-batches (1F1B), the count the run had reached before its checkpoint\n",
                (long long)micro_batches);
    chunks_ = micro_batches;
    rechunk(micro_batches);
  }

 private:
  // Before each attempt at a step. What a failed attempt changes besides gradients is saved, so it can be undone
  // exactly: the generators' offsets (dropout masks) always, the buffers (BatchNorm running statistics) until a step
  // has fitted at the current micro-batch count: later steps have the same shapes, so they fit too.
  void before_step() {
    if (!enabled_) return;
    offsets_.clear();
    for (const auto& [name, g] : state_.generators) offsets_.push_back(g->offset);
    if (!armed_) return;
    NoGradGuard no_grad;
    buffers_.clear();
    for (const auto& [name, t] : state_.tensors)
      if (!t->requires_grad()) buffers_.push_back(t->clone());
  }

  // After an attempt at step `step` of `rows` rows in `chunks` micro-batches threw `e`: undoes what before_step()
  // saved and returns the micro-batch count to retry with. Rethrows when recovery is off or impossible, with a line
  // saying what would help. The caller drops the gradients and compression statistics of the attempt.
  int64_t recover(const OutOfMemoryError& e, int64_t step, int64_t rows, int64_t chunks) {
    if (distributed_)
      EP_THROW(OutOfMemoryError, e.what(), "; a --distributed run cannot retry a step in smaller micro-batches: "
               "lower --batch-size or raise --chunks");
    if (!enabled_) throw e;
    if (chunks >= rows)
      EP_THROW(OutOfMemoryError, e.what(), "; step ", step, " does not fit even one row per micro-batch: lower "
               "--batch-size or --max-len, or raise --memory-limit");
    for (size_t i = 0; i < offsets_.size(); ++i) state_.generators[i].second->offset = offsets_[i];
    const bool restored = armed_;
    if (restored) {
      NoGradGuard no_grad;
      size_t b = 0;
      for (const auto& [name, t] : state_.tensors)
        if (!t->requires_grad()) copy_(*t, buffers_[b++]);
    }
    const int64_t next = std::min(rows, chunks * 2);
    std::fprintf(stderr, "step %lld: %s; retrying its %lld rows in %lld micro-batches (1F1B)%s\n", (long long)step,
                 e.what(), (long long)rows, (long long)next,
                 restored || buffers_.empty() ? "" : ", BatchNorm running statistics keep the failed attempt's update");
    armed_ = true;
    ++retries_;
    chunks_ = next;
    return next;
  }
  bool enabled_, distributed_;
  const ckpt::TrainState& state_;
  bool armed_ = true;
  std::vector<uint64_t> offsets_;
  std::vector<Tensor> buffers_;
  int64_t retries_ = 0;
  int64_t chunks_ = 0;  // the micro-batches of the last retry; 0 before any
};

}  // namespace ep::cli
