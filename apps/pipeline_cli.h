// pipeline_cli.h — the pipeline flags the trainers share (--chunks, --stages, --devices, --schedule, --bn,
// --edge-device, --cloud-device) and the Pipeline they build from a model's units, with a compressing hook at every
// boundary from the --compress* flags. Not the executor (pipeline/pipeline.h) nor the single-process split.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "apps/cli.h"
#include "apps/split_cli.h"
#include "compress/compressor.h"
#include "compress/split.h"
#include "pipeline/compress_hook.h"
#include "pipeline/link.h"
#include "pipeline/partition.h"
#include "pipeline/pipeline.h"

namespace ep::cli {

inline void add_pipeline_flags(Options& o) {
  o.add("chunks", "int", 0, "pipeline: micro-batches per mini-batch (0: no pipeline; --split then runs in one thread)")
      .add("stages", "string", "", "pipeline: units per stage, e.g. 4,10,7 (default with --chunks: from --split)")
      .add("devices", "string", "", "pipeline: device per stage, or one for all (default: --device)")
      .add("edge-device", "string", "", "pipeline with --split: device of the edge stages (default: --device)")
      .add("cloud-device", "string", "", "pipeline with --split: device of the cloud stage (default: --device)")
      .add("pipeline-schedule", "string", "gpipe", "pipeline schedule: gpipe (fill-drain) | 1f1b")
      .add("link", "string", "", "pipeline: emulate a network on every boundary, BANDWIDTH,LATENCY (e.g. 100Mbit,20ms): "
                                 "each payload's real bytes occupy the link")
      .add("checkpoint", "string", "never", "pipeline activation recomputation: never | except-last | always (the "
                                          "same result; less memory between forward and backward)")
      .add("bn", "string", "deferred", "pipeline BatchNorm: deferred (statistics of the whole mini-batch, committed "
                                       "once) | per-microbatch (the seeds' behaviour)");
}

struct PipelineSetup {
  std::unique_ptr<pipeline::Pipeline> pipe;
  pipeline::Partition partition;
  bool deferred_bn = true;
};

// Builds the pipeline the flags ask for, or returns an empty pipe without --chunks. The model was built on `device`
// (--device, where the data arrive); a stage placed elsewhere gets its units' parameters and buffers moved to its
// device here, so the caller must collect the model's parameters (for the optimizer) after this call. The last
// stage's outputs stay on its device: the trainers move them back for the loss labels and metrics.
inline PipelineSetup make_pipeline(const Options& o, std::vector<nn::Unit> units, Device device, bool has_batch_norm,
                                   const std::shared_ptr<compress::CompressionLog>& log) {
  PipelineSetup s;
  const int64_t chunks = o.integer("chunks");
  if (chunks == 0) {
    for (const char* f : {"stages", "devices", "edge-device", "cloud-device", "link"})
      if (!o.str(f).empty()) o.fail(std::string("--") + f + " needs --chunks C (the pipeline)");
    return s;
  }
  if (chunks < 0 || chunks > 4096) o.fail("--chunks must be in [1, 4096]");
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
    } else {
      o.fail("--chunks needs --stages a,b,... or --split K,M (where to cut the model)");
    }
    pipeline::validate_devices(s.partition);
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
      if (log) ch->set_stats_sink([log, b](compress::Direction d, const compress::CompressionStats& st) { log->record(b, d, st); });
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
      if (stage.device != device) stage.units.back().move_to(stage.device);
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
    po.schedule = pipeline::parse_schedule(o.str("pipeline-schedule"));
  } catch (const Error& e) {
    o.fail(e.what());
  }
  std::vector<std::string> names;
  for (const auto& u : units) names.push_back(u.name);
  std::printf("pipeline: %s, %lld micro-batches, %s%s\n", s.partition.describe(names).c_str(), (long long)chunks,
              o.str("pipeline-schedule").c_str(), has_batch_norm ? (", BatchNorm " + o.str("bn")).c_str() : "");
  s.pipe = std::make_unique<pipeline::Pipeline>(std::move(stages), po, std::move(hooks));
  return s;
}

}  // namespace ep::cli
