// pipeline_cli.h — the pipeline flags the trainers share (--chunks, --stages, --devices, --schedule, --bn,
// --edge-device, --cloud-device) and the Pipeline they build from a model's units, with a compressing hook at every
// boundary from the --compress* flags. Not the executor (pipeline/pipeline.h) nor the single-process split.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "apps/cli.h"
#include "apps/split_cli.h"
#include "compress/compressor.h"
#include "compress/split.h"
#include "pipeline/compress_hook.h"
#include "pipeline/link.h"
#include "pipeline/partition.h"
#include "pipeline/pipeline.h"
#include "pipeline/transport.h"

namespace ep::cli {

inline void add_pipeline_flags(Options& o) {
  o.add("chunks", "int", 0, "pipeline: micro-batches per mini-batch (0: no pipeline; --split then runs in one thread)")
      .add("stages", "string", "", "pipeline: units per stage, e.g. 4,10,7 (default with --chunks: from --split)")
      .add("devices", "string", "", "pipeline: device per stage, or one for all (default: --device)")
      .add("edge-device", "string", "", "pipeline with --split: device of the edge stages (default: --device)")
      .add("cloud-device", "string", "", "pipeline with --split: device of the cloud stage (default: --device)")
      .add("pipeline-schedule", "string", "gpipe", "pipeline schedule: gpipe (fill-drain) | 1f1b")
      .add("link", "string", "", "pipeline: emulate a network on every boundary, BANDWIDTH,LATENCY (e.g. 100Mbit,20ms): "
                                 "each payload's real bytes occupy the link (with --distributed: ranks on one machine)")
      .add("checkpoint", "string", "never", "pipeline activation recomputation: never | except-last | always (the "
                                          "same result; less memory between forward and backward)")
      .add("bn", "string", "deferred", "pipeline BatchNorm: deferred (statistics of the whole mini-batch, committed "
                                       "once) | per-microbatch (the seeds' behaviour)")
      .add("distributed", "string", "none", "pipeline: none (every stage a thread of this process) | mpi (one stage per "
                                            "process: mpirun -np STAGES ...; rank r>0 writes to OUT/rank<r>/)")
      .add("peer-timeout", "float", 120.0, "with --distributed: seconds to wait for a message from a neighbouring "
                                           "stage before the job ends with an error (a dead peer)");
}

// This process's place in a --distributed job: the transport (null without) and the rank.
struct Processes {
  std::shared_ptr<pipeline::Transport> transport;
  int rank = 0;
};

// Starts the job's transport for --distributed mpi (right after the flags are parsed, before any output is written).
// Ranks other than 0 print nothing on stdout (errors still go to stderr) and write their files under OUT/rank<r>/.
inline Processes start_processes(const Options& o) {
  Processes p;
  const std::string mode = o.str("distributed");
  if (mode == "none") return p;
  if (mode != "mpi") o.fail("--distributed: expected none or mpi, got '" + mode + "'");
  if (o.integer("chunks") < 1) o.fail("--distributed mpi needs --chunks C and --stages or --split (one stage per process)");
  if (!pipeline::mpi_built()) o.fail("--distributed mpi: this build has no MPI (install libopenmpi-dev, then rebuild: make deps all)");
  // Started by hand rather than by a launcher: say how to start it instead of running as a job of one process.
  if (!std::getenv("OMPI_COMM_WORLD_SIZE") && !std::getenv("PMI_SIZE") && !std::getenv("PMIX_RANK"))
    o.fail("--distributed mpi: not started by an MPI launcher; run it as mpirun -np STAGES " + o.app() + " ...");
  try {
    p.transport = pipeline::mpi_transport(o.number("peer-timeout"));
  } catch (const Error& e) {
    o.fail(std::string("--distributed mpi: ") + e.what());
  }
  p.rank = p.transport->rank();
  if (p.rank > 0 && !std::freopen("/dev/null", "w", stdout)) o.fail("--distributed: cannot silence stdout of rank " + std::to_string(p.rank));
  return p;
}

// A trainer's main: CPU threading set up, usage errors exit 2 and failures 1 (guarded_main), and a failure in a
// --distributed job ends every rank of it.
template <class Run> int trainer_main(const char* app, char** argv, Run&& run) {
  ensure_cpu_threading(argv);
  return pipeline::end_processes(guarded_main(app, std::forward<Run>(run)));
}

// The run folder of this process: OUT for rank 0, OUT/rank<r>/ for the others.
inline std::string process_out_dir(const std::string& out, const Processes& p) {
  return p.rank == 0 ? out : out + "/rank" + std::to_string(p.rank);
}

// A file of rank 0's run folder as rank r finds its own copy (--resume OUT/checkpoint.safetensors).
inline std::string process_path(const std::string& path, const Processes& p) {
  if (p.rank == 0 || path.empty()) return path;
  const std::filesystem::path f(path);
  return (f.parent_path() / ("rank" + std::to_string(p.rank)) / f.filename()).string();
}

// The pipeline's statistics in the run files: every step's, summarized per epoch in metrics.jsonl (the epoch's last
// step in full, the mean step time), and the run's last step in summary.json, also when --max-steps ends it.
class PipelineLog {
 public:
  void add(const pipeline::PipelineStats& stats) {
    last_ = pipeline::to_json(stats);
    step_ms_ += stats.step_ms;
    ++steps_;
  }
  // Adds the epoch's summary to its metrics row and starts the next epoch's.
  void end_epoch(nlohmann::json& row) {
    if (steps_ == 0) return;
    row["pipeline_last_step"] = last_;
    row["pipeline_mean_step_ms"] = step_ms_ / double(steps_);
    step_ms_ = 0;
    steps_ = 0;
  }
  void summarize(nlohmann::json& summary) const {
    if (!last_.is_null()) summary["pipeline_last_step"] = last_;
  }

 private:
  nlohmann::json last_;
  double step_ms_ = 0;
  int64_t steps_ = 0;
};

struct PipelineSetup {
  std::unique_ptr<pipeline::Pipeline> pipe;
  pipeline::PipelineOptions options;  // as built: --chunks and its schedule (or a retry's); the pipe may reschedule
  pipeline::Partition partition;
  bool deferred_bn = true;
};

// Builds the pipeline the flags ask for, or returns an empty pipe without --chunks. The model was built on `device`
// (--device, where the data arrive); a stage placed elsewhere gets its units' parameters and buffers moved to its
// device here, so the caller must collect the model's parameters (for the optimizer) after this call. The last
// stage's outputs stay on its device: the trainers move them back for the loss labels and metrics.
// retry_chunks > 0: the pipeline a run without --chunks switches to when a step runs out of memory (OomRetry): that
// many micro-batches on a 1F1B schedule, cut by --split (its compression in the hooks) or else one stage.
inline PipelineSetup make_pipeline(const Options& o, std::vector<nn::Unit> units, Device device, bool has_batch_norm,
                                   const std::shared_ptr<compress::CompressionLog>& log, const Processes& procs = {},
                                   int64_t retry_chunks = 0) {
  PipelineSetup s;
  const int64_t chunks = retry_chunks > 0 ? retry_chunks : o.integer("chunks");
  if (chunks == 0) {
    for (const char* f : {"stages", "devices", "edge-device", "cloud-device", "link"})
      if (!o.str(f).empty()) o.fail(std::string("--") + f + " needs --chunks C (the pipeline)");
    return s;
  }
  if (chunks < 0 || chunks > 4096) o.fail("--chunks must be in [1, 4096]");
  // More micro-batches than rows would run one row each on every step, not what was asked. (A shorter last batch of
  // an epoch is another matter: the trainers run it one row per micro-batch.)
  if (retry_chunks == 0 && chunks > o.integer("batch-size"))
    o.fail("--chunks " + std::to_string(chunks) + " is more than the " + std::to_string(o.integer("batch-size")) +
           " rows of --batch-size");
  if (o.str("bn") != "deferred" && o.str("bn") != "per-microbatch")
    o.fail("--bn: expected deferred or per-microbatch, got '" + o.str("bn") + "'");
  s.deferred_bn = o.str("bn") == "deferred";
  const int64_t n = int64_t(units.size());
  const std::string dev = device.str();
  try {
    if (!o.str("stages").empty()) {
      if (!o.str("split").empty()) o.fail("--stages and --split both cut the model: give one");
      s.partition = pipeline::parse_stages(o.str("stages"), o.str("devices").empty() ? dev : o.str("devices"), n);
    } else if (!o.str("split").empty()) {
      if (!o.str("devices").empty()) o.fail("--devices goes with --stages; with --split use --edge-device and --cloud-device");
      s.partition = pipeline::parse_split(o.str("split"), o.str("edge-device").empty() ? dev : o.str("edge-device"),
                                          o.str("cloud-device").empty() ? dev : o.str("cloud-device"), n);
    } else if (retry_chunks > 0) {
      s.partition = pipeline::parse_stages(std::to_string(n), dev, n);  // the whole model, one stage
    } else {
      o.fail("--chunks needs --stages a,b,... or --split K,M (where to cut the model)");
    }
    if (procs.transport) {
      if (s.partition.stages() != procs.transport->size())
        o.fail("--distributed mpi: " + std::to_string(s.partition.stages()) + " stages need " +
               std::to_string(s.partition.stages()) + " processes (mpirun -np " + std::to_string(s.partition.stages()) +
               "), this job has " + std::to_string(procs.transport->size()));
      // Each process checks only its own stage's device: the others are on other machines or GPUs.
      pipeline::Partition mine;
      mine.units = {s.partition.units[size_t(procs.rank)]};
      mine.devices = {s.partition.devices[size_t(procs.rank)]};
      pipeline::validate_devices(mine);
    } else {
      pipeline::validate_devices(s.partition);
    }
  } catch (const UsageError&) {
    throw;
  } catch (const Error& e) {
    o.fail(e.what());
  }

  // Boundary compressors: --split's two boundaries take the per-boundary flags; with --stages every boundary takes
  // the general ones.
  const compress::CompressFlags f = compress_flags(o);
  compress::BoundarySpecs specs;
  try {
    specs = compress::resolve_boundary_specs(f);
  } catch (const Error& e) {
    o.fail(e.what());
  }
  const int boundaries = s.partition.stages() - 1;
  if (!o.str("stages").empty() && (!f.b1.empty() || !f.b2.empty()))
    o.fail("--compress-b1/--compress-b2 name the boundaries of --split; with --stages use --compress, -fwd, -bwd");
  if (boundaries < 2 && !f.b2.empty()) o.fail("--compress-b2: the pipeline has no second boundary");
  std::optional<pipeline::LinkSpec> link;
  if (!o.str("link").empty()) {
    try {
      link = pipeline::parse_link(o.str("link"));
    } catch (const Error& e) {
      o.fail(e.what());
    }
  }
  std::vector<std::shared_ptr<pipeline::BoundaryHook>> hooks;
  for (int b = 0; b < boundaries; ++b) {
    const std::string& fw = specs.forward[std::min(b, 1)];
    const std::string& bw = specs.backward[std::min(b, 1)];
    std::shared_ptr<pipeline::BoundaryHook> hook;
    if (fw == "none" && bw == "none") hook = std::make_shared<pipeline::IdentityHook>();
    else {
      auto ch = std::make_shared<pipeline::CompressorHook>(compress::parse_compressor(fw), compress::parse_compressor(bw));
      // The error statistics of every compressed message, per micro-batch, to compression.jsonl.
      if (log)
        ch->set_stats_sink(
            [log, b](compress::Direction d, const compress::PendingStats& st) { log->record(b, d, st); });
      hook = ch;
    }
    if (link) hook = std::make_shared<pipeline::LinkHook>(hook, *link);
    hooks.push_back(hook);
  }
  std::vector<pipeline::Stage> stages;
  for (int st = 0; st < s.partition.stages(); ++st) {
    pipeline::Stage stage;
    stage.device = s.partition.devices[size_t(st)];
    const int64_t first = s.partition.first_unit(st);
    for (int64_t u = first; u < first + s.partition.units[size_t(st)]; ++u) {
      stage.units.push_back(units[size_t(u)]);
      // With processes, only this process's stage computes here: the other stages' units stay where they are.
      const bool here = !procs.transport || st == procs.rank;
      if (here && stage.device != device) stage.units.back().move_to(stage.device);
    }
    stages.push_back(std::move(stage));
  }
  pipeline::PipelineOptions po;
  po.chunks = int(chunks);
  try {
    po.checkpoint = pipeline::parse_checkpoint(o.str("checkpoint"), s.partition.stages());
  } catch (const Error& e) {
    o.fail(e.what());
  }
  try {
    po.schedule = retry_chunks > 0 ? pipeline::ScheduleKind::one_f_one_b
                                   : pipeline::parse_schedule(o.str("pipeline-schedule"));
  } catch (const Error& e) {
    o.fail(e.what());
  }
  std::vector<std::string> names;
  for (const auto& u : units) names.push_back(u.name);
  const std::string schedule = retry_chunks > 0 ? "1f1b" : o.str("pipeline-schedule");
  std::printf("pipeline: %s, %lld micro-batches, %s%s%s\n", s.partition.describe(names).c_str(), (long long)chunks,
              schedule.c_str(), has_batch_norm ? (", BatchNorm " + o.str("bn")).c_str() : "",
              procs.transport ? ", one process per stage (MPI)" : "");
  s.options = po;
  s.pipe = std::make_unique<pipeline::Pipeline>(std::move(stages), po, std::move(hooks), procs.transport);
  return s;
}

}  // namespace ep::cli
