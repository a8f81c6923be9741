// pipeline.h — the GPipe/1F1B executor: one worker thread per stage running its schedule order (or, with a transport,
// one stage per process), activations and gradients handed between neighbouring stages through bounded blocking
// queues, a boundary hook (encode on the sender, decode on the receiver) at every stage pair, optional recomputation,
// and per-step statistics (busy time, bubble, bytes per boundary).
// Not the model cutting (callers give each stage its units), deferred BatchNorm (layers/) or link emulation (link.h).
//
// Autograd across stages (torchgpipe's approach): a stage runs its units on what it received, made a fresh leaf that
// requires grad; in backward it calls backward() on its own output with the gradient the next stage sent, then sends
// the gradient of its input leaf back. Each stage's graph lives on its own thread, device and stream.
//
// Streams: each stage computes on its own compute stream (StreamGuard on the worker thread) and transfers on a copy
// stream; a cross-device message is copied with Tensor::to on the copy stream after waiting for the sender's compute
// stream, and the receiver's compute stream waits on the copy's event before decoding. On the CPU streams and events
// are no-op objects, so both devices run the same code.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/tensor.h"
#include "layers/module.h"
#include "pipeline/microbatch.h"
#include "pipeline/schedule.h"

namespace ep::pipeline {

struct Stage {
  std::vector<nn::Unit> units;  // run in order; their parameters must already be on `device`
  Device device = Device::cpu();
};

// What crosses one boundary for one micro-batch in one direction.
struct Message {
  Tensor tensor;                        // moved to the receiver's device by the pipeline (may be undefined)
  std::shared_ptr<const void> payload;  // data only the hook understands (e.g. a compress::Payload)
  uint64_t bytes = 0;                   // what crossed the boundary, for the statistics
  // GPU memory `payload` refers to, written on the sender's compute stream. A hook leaves sections there only for a
  // receiver on the same GPU in the same process (see BoundaryHook::connect); the pipeline then makes the receiver's
  // compute stream wait for the sender's before decode, and both stages hold the sections until their step ends.
  std::vector<Tensor> device_sections = {};
};

// The boundary between stage b and stage b+1. encode runs on the sender's thread (stage b for Pass::forward, b+1 for
// Pass::backward) with the sender's compute stream current; decode runs on the receiver's thread with its compute
// stream current and must return a tensor on `device`. Calls for one direction always come from the same two threads,
// in micro-batch order of the schedule; the two directions (and the encode and decode of one direction) may run
// concurrently, so state shared between them needs a lock. Exceptions propagate like any stage failure.
class BoundaryHook {
 public:
  virtual ~BoundaryHook() = default;
  // Called once by each pipeline the hook joins, before any step: the devices of the stages before and after the
  // boundary, and whether both run in this process. A hook may keep payload sections on a GPU (Message::
  // device_sections) only when the receiver is on that GPU here; anything else must cross as host data or a tensor.
  virtual void connect(Device before, Device after, bool same_process) {}
  virtual Message encode(const Tensor& x, Pass direction, int micro) = 0;
  virtual Tensor decode(Message msg, Pass direction, Device device, int micro) = 0;
  // Between processes (pipeline/transport.h) the message travels as bytes: to_wire on the sender after encode,
  // from_wire on the receiver before decode (msg.bytes is set again from what arrived). The default carries
  // msg.tensor (pipeline/wire.h); hooks whose messages are payloads, or that add to them, override both.
  virtual std::vector<uint8_t> to_wire(const Message& msg, Pass direction, int micro);
  virtual Message from_wire(const uint8_t* data, size_t size, Pass direction, int micro);
};

// The tensor itself crosses; bytes = its size. The default for boundaries without a hook.
class IdentityHook : public BoundaryHook {
 public:
  Message encode(const Tensor& x, Pass, int) override { return {x, nullptr, uint64_t(x.nbytes())}; }
  Tensor decode(Message msg, Pass, Device, int) override { return msg.tensor; }
};

// micro-batch i's term of the mini-batch loss: its summed loss / N (see mean_loss_share), a one-element tensor.
// Runs on the last stage's thread right after that stage's forward of the micro-batch.
using LossFn = std::function<Tensor(const Tensor& output, const MicroBatch& mb)>;

struct TaskTiming {
  Task task;
  double start_ms = 0, end_ms = 0;  // host clock from the start of the step, excluding the wait for the input
};
struct StageStats {
  double busy_ms = 0;               // compute + encode/decode time (CUDA: measured by events on the compute stream)
  std::vector<TaskTiming> tasks;    // in the order the stage ran them
};
struct BoundaryStats {
  uint64_t forward_bytes = 0, backward_bytes = 0;  // summed over the step's micro-batches
};
struct PipelineStats {
  double step_ms = 0;                   // wall time of the whole step, scatter to gather
  std::vector<StageStats> stages;
  std::vector<BoundaryStats> boundaries;  // stages - 1 entries
  // 1 - (sum of busy time) / (stages * step time): the share of stage-time spent idle (fill, drain, waits, overhead).
  double bubble_fraction = 0;
};

// For metrics.jsonl / summary.json: {"step_ms", "bubble_fraction", "stages": [{"busy_ms", "tasks"}],
// "boundaries": [{"forward_bytes", "backward_bytes"}]} (per-task timings left out: they are for timelines).
nlohmann::json to_json(const PipelineStats& stats);

struct PipelineOptions {
  int chunks = 1;
  ScheduleKind schedule = ScheduleKind::gpipe;
  // Activation recomputation per stage (empty: none). A checkpointed stage runs its forward without a graph, keeping
  // only its input, and redoes the forward right before the backward. Its units' generators are rewound to where the
  // first pass drew, and BatchNorm skips its side effects (nn::RecomputeGuard). The result is bit-identical, with less
  // memory held between the two passes.
  std::vector<bool> checkpoint = {};
};
// "never" | "except-last" | "always" for `stages` stages; ValueError naming --checkpoint otherwise.
std::vector<bool> parse_checkpoint(const std::string& mode, int stages);

struct StepResult {
  double loss = 0;                   // sum of the micro-batch terms, added in micro-batch order
  std::vector<double> micro_losses;  // each micro-batch's term
  Tensor output;                     // the last stage's outputs, concatenated in order, detached
  PipelineStats stats;
};

class Transport;

class Pipeline {
 public:
  // hooks: empty (identity everywhere) or one per boundary (stages - 1), where a null entry is the identity.
  // transport: null runs every stage in this process. Otherwise the job has one process per stage and this one runs
  // stage transport->rank() only: every process builds the same Pipeline (all stages, their hooks) and calls the same
  // steps with the same input and loss; messages to the neighbours go through the transport (to_wire/from_wire), and
  // at the end of each step the last stage sends its losses and outputs to all, so every process returns the same
  // StepResult. The first process's statistics cover every stage (the others send theirs to it); another process's
  // cover its own stage and sends.
  Pipeline(std::vector<Stage> stages, PipelineOptions options, std::vector<std::shared_ptr<BoundaryHook>> hooks = {},
           std::shared_ptr<Transport> transport = nullptr);
  ~Pipeline();
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  // One training step's forward and backward over input [N, ...] cut into options.chunks micro-batches (ctx.key_mask,
  // when defined, is cut alongside). Parameter gradients accumulate into .grad as backward() does: zero them before.
  // They accumulate in the schedule's backward order per stage (gpipe: C-1 .. 0, 1f1b: 0 .. C-1). The first exception
  // of any stage, hook or loss function is rethrown here once every worker has stopped.
  StepResult train_step(const Tensor& input, const LossFn& loss, const nn::UnitContext& ctx = {});
  // Forward only, without gradients (evaluation): the concatenated outputs. A batch with fewer rows than
  // options.chunks runs as one micro-batch per row.
  Tensor forward(const Tensor& input, const nn::UnitContext& ctx = {}, PipelineStats* stats = nullptr);

  // Between steps: another micro-batch count and schedule from the next step on (the trainers' recovery from a step
  // that ran out of memory, and an epoch's short last batch). ValueError with a transport, unless every_process: the
  // caller's count then comes from what every process sees alike (the batch's rows), so all change at the same step.
  void reschedule(int chunks, ScheduleKind schedule, bool every_process = false);

  int stages() const;
  int local_stage() const;  // the stage this process runs with a transport, -1 without (all of them)
  const PipelineOptions& options() const;
  const std::vector<std::vector<Task>>& orders() const;  // the schedule the workers follow

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ep::pipeline
