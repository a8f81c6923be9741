// train_glue.cpp — `build/train_glue`: fine-tunes (or trains from scratch) a RoBERTa encoder with HF's classification
// head on a GLUE task (TSVs tokenized by our byte-level BPE) or on the synthetic token task, with checkpoints and exact
// CPU resume. Not the split/pipeline trainer (compression and pipeline flags arrive with their issues).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>

#include "apps/checkpoint.h"
#include "apps/cli.h"
#include "apps/oom_retry.h"
#include "apps/pipeline_cli.h"
#include "apps/split_cli.h"
#include "apps/step_guard.h"
#include "apps/run_log.h"
#include "data/bpe.h"
#include "data/glue.h"
#include "data/loader.h"
#include "data/synthetic_text.h"
#include "engine/lr_schedule.h"
#include "engine/ops.h"
#include "engine/ops/gemm_kernels.h"
#include "engine/optim.h"
#include "layers/roberta.h"

using namespace ep;
namespace fs = std::filesystem;

namespace {

// A tokenized split: one id sequence per example (with <s> and </s>), its class or score.
struct SeqDataset {
  std::vector<std::vector<int32_t>> ids;
  std::vector<int64_t> labels;  // classification; -1 when unlabeled
  std::vector<float> scores;    // regression (STS-B)
  int64_t size() const { return int64_t(ids.size()); }
};

struct ModelSource {
  nn::RobertaConfig config;
  std::string weights;  // a checkpoint path (file or folder) or "" for random initialization
  std::string vocab, merges;
};

// --model: "tiny", a folder (config.json [+ model.safetensors | index] [+ vocab.json, merges.txt]) or a config.json.
ModelSource resolve_model(const cli::Options& o, bool synthetic) {
  ModelSource s;
  const std::string m = o.str("model");
  s.vocab = o.str("vocab");
  s.merges = o.str("merges");
  if (m == "tiny") {
    // Small enough to train in seconds on a CPU.
    s.config = nn::tiny_roberta_config(synthetic ? o.integer("synthetic-vocab") : 50265, 64, 4, o.integer("max-len"));
  } else if (fs::is_directory(m)) {
    if (!fs::exists(fs::path(m) / "config.json")) o.fail("--model " + m + ": no config.json in the folder");
    s.config = nn::load_roberta_config((fs::path(m) / "config.json").string());
    for (const char* w : {"model.safetensors", "model.safetensors.index.json"})
      if (fs::exists(fs::path(m) / w)) s.weights = m;
    if (s.vocab.empty() && fs::exists(fs::path(m) / "vocab.json")) s.vocab = (fs::path(m) / "vocab.json").string();
    if (s.merges.empty() && fs::exists(fs::path(m) / "merges.txt")) s.merges = (fs::path(m) / "merges.txt").string();
  } else if (fs::is_regular_file(m)) {
    s.config = nn::load_roberta_config(m);
  } else {
    o.fail("--model " + m + ": expected tiny, a model folder or a config.json");
  }
  return s;
}

SeqDataset tokenize_split(const std::vector<data::GlueExample>& rows, const data::GlueTask& task,
                          const data::BpeTokenizer& tok, int64_t max_len) {
  SeqDataset d;
  d.ids.resize(rows.size());
  // Tokenizing is independent per row and the tokenizer's word cache is thread-safe.
#pragma omp parallel for schedule(dynamic, 64)
  for (size_t i = 0; i < rows.size(); ++i)
    d.ids[i] = task.pair ? tok.encode_pair(rows[i].text_a, rows[i].text_b, max_len) : tok.encode(rows[i].text_a, max_len);
  for (const auto& r : rows) {
    d.labels.push_back(r.label);
    d.scores.push_back(r.score);
  }
  return d;
}

SeqDataset from_token_examples(const std::vector<data::TokenExample>& ex) {
  SeqDataset d;
  for (const auto& e : ex) {
    d.ids.emplace_back(e.ids.begin(), e.ids.end());
    d.labels.push_back(e.label);
    d.scores.push_back(NAN);
  }
  return d;
}

struct Batch {
  Tensor ids, mask, labels, scores;  // i64 [B,T], u8 [B,T] (host), i64 [B] / f32 [B] (device)
  int64_t tokens = 0;
};

// Pads to the longest sequence of the batch (dynamic padding: the attention mask makes the result independent of it).
Batch make_batch(const SeqDataset& d, const std::vector<int64_t>& order, int64_t first, int64_t count, int32_t pad,
                 Device device) {
  std::vector<std::vector<int32_t>> seqs;
  std::vector<double> labels, scores;
  for (int64_t i = first; i < first + count; ++i) {
    const size_t k = size_t(order[size_t(i)]);
    seqs.push_back(d.ids[k]);
    labels.push_back(double(d.labels[k]));
    scores.push_back(double(d.scores[k]));
  }
  data::TokenBatch tb = data::pad_batch(seqs, pad);
  Batch b;
  b.ids = empty({tb.batch, tb.seq_len}, DType::i64);
  std::copy(tb.ids.begin(), tb.ids.end(), b.ids.data<int64_t>());
  b.mask = empty({tb.batch, tb.seq_len}, DType::u8);
  std::copy(tb.mask.begin(), tb.mask.end(), b.mask.data<uint8_t>());
  b.labels = from_vector(labels, {count}, DType::i64).to(device);
  b.scores = from_vector(scores, {count}, DType::f32).to(device);
  for (uint8_t v : tb.mask) b.tokens += v;
  return b;
}

Tensor task_loss(const Tensor& logits, const Batch& b, bool regression) {
  if (!regression) return cross_entropy(logits, b.labels);
  Tensor diff = sub(reshape(logits, {logits.size(0)}), b.scores);  // HF: MSELoss on squeezed logits
  return mean(mul(diff, diff));
}

struct EvalResult {
  double loss = 0;
  std::vector<data::MetricValue> metrics;
  double main() const { return metrics.empty() ? 0.0 : metrics.front().value; }
};

// The model's forward, whole or through the split's boundaries: (ids, attention mask) -> logits.
using ForwardFn = std::function<Tensor(const Tensor&, const Tensor&)>;

EvalResult evaluate(nn::RobertaForSequenceClassification& model, const ForwardFn& forward, const SeqDataset& d,
                    const data::GlueTask& task, int64_t batch_size, int32_t pad, Device device,
                    const std::string& dump_path, compress::CompressionLog& clog) {
  model.set_train(false);
  clog.set_recording(false);
  NoGradGuard ng;
  const std::vector<int64_t> order = data::epoch_order(d.size(), 0, 0, /*shuffle=*/false);
  double loss_sum = 0;
  std::vector<int64_t> pred, gold;
  std::vector<float> pred_s, gold_s;
  std::vector<Tensor> logits_all;
  const bool labeled = d.size() > 0 && (task.regression ? !std::isnan(d.scores[0]) : d.labels[0] >= 0);
  for (int64_t i = 0; i < d.size(); i += batch_size) {
    const int64_t n = std::min(batch_size, d.size() - i);
    Batch b = make_batch(d, order, i, n, pad, device);
    Tensor logits = forward(b.ids, b.mask);
    if (labeled) loss_sum += task_loss(logits, b, task.regression).item() * double(n);
    if (task.regression) {
      for (double v : logits.cpu().to_double_vector()) pred_s.push_back(float(v));
    } else {
      for (int64_t v : argmax(logits, 1).to_vector<int64_t>()) pred.push_back(v);
    }
    if (!dump_path.empty()) logits_all.push_back(logits.cpu());
  }
  for (int64_t i = 0; i < d.size(); ++i) {
    gold.push_back(d.labels[size_t(i)]);
    gold_s.push_back(d.scores[size_t(i)]);
  }
  if (!dump_path.empty() && !logits_all.empty()) {
    std::vector<double> lab(gold.begin(), gold.end());
    write_safetensors(dump_path,
                      {{"logits", concat(logits_all, 0)},
                       {task.regression ? "scores" : "labels",
                        task.regression ? from_vector(std::vector<double>(gold_s.begin(), gold_s.end()),
                                                      {d.size()}, DType::f32)
                                        : from_vector(lab, {d.size()}, DType::i64)}},
                      {{"format", "edgepipe-logits"}, {"task", task.name}});
  }
  model.set_train(true);
  clog.set_recording(true);
  EvalResult r;
  if (!labeled) return r;
  r.loss = d.size() ? loss_sum / double(d.size()) : 0.0;
  r.metrics = task.regression ? data::glue_evaluate(task, pred_s, gold_s) : data::glue_evaluate(task, pred, gold);
  return r;
}

std::string metrics_str(const EvalResult& r) {
  std::string s;
  for (const auto& m : r.metrics) s += (s.empty() ? "" : " ") + m.name + " " + std::to_string(100 * m.value).substr(0, 5);
  return s;
}

int run(int argc, char** argv) {
  cli::Options o("train_glue");
  o.add("task", "string", "rte", "cola | sst2 | mrpc | qqp | stsb | mnli | qnli | rte | wnli (with --data synthetic: ignored)")
      .add("data", "string", "synthetic", "the task's GLUE folder (train.tsv, dev.tsv) or synthetic")
      .add("model", "string", "tiny", "tiny | a model folder (config.json, model.safetensors, vocab.json, merges.txt) | a config.json")
      .add("vocab", "string", "", "vocab.json (default: the model folder's)")
      .add("merges", "string", "", "merges.txt (default: the model folder's)")
      .add("max-len", "int", 128, "maximum sequence length in tokens, <s> and </s> included (longest-first truncation)")
      .add("synthetic-size", "int", 2000, "training sequences of the synthetic task (dev: a quarter)")
      .add("synthetic-vocab", "int", 128, "vocabulary of the synthetic task (and of --model tiny with it)")
      .add("epochs", "int", 10, "epochs")
      .add("batch-size", "int", 16, "mini-batch size")
      .add("lr", "float", 2e-5, "peak learning rate")
      .add("beta1", "float", 0.9, "AdamW beta1")
      .add("beta2", "float", 0.98, "AdamW beta2")
      .add("eps", "float", 1e-6, "AdamW epsilon")
      .add("weight-decay", "float", 0.1, "AdamW weight decay (not on biases and LayerNorm weights, as HF)")
      .add("warmup-ratio", "float", 0.06, "linear warmup as a fraction of all steps")
      .add("schedule", "string", "linear", "linear | cosine | constant (after the warmup)")
      .add("clip-norm", "float", 0.0, "clip the gradient norm to this (0: off, fairseq's recipe)")
      .add("gemm-precision", "string", "f32", "f32 | bf16: autocast every GEMM to bf16 operands with fp32 accumulation (fp32 master weights)")
      .add("init-from", "string", "", "weights loaded by name before training (safetensors file or HF checkpoint folder)")
      .add("train-subset", "int", 0, "use the first N training examples (0: all)");
  cli::add_trainer_flags(o, "runs/train_glue", "dev");
  cli::add_split_flags(o, "RoBERTa: each encoder layer is two units (attention, FFN) instead of one");
  cli::add_pipeline_flags(o);
  if (!cli::parse_or_help(o, argc, argv)) return 0;
  const Device device = cli::checked_trainer_device(o);
  if (o.integer("max-len") < 3) o.fail("--max-len must be at least 3 (<s>, one token, </s>)");
  if (!(o.number("warmup-ratio") >= 0 && o.number("warmup-ratio") <= 1)) o.fail("--warmup-ratio must be in [0, 1]");
  if (o.number("clip-norm") < 0) o.fail("--clip-norm must be >= 0");
  GemmPrecision gemm_precision_choice = GemmPrecision::f32;
  try {
    gemm_precision_choice = parse_gemm_precision(o.str("gemm-precision"));
  } catch (const ValueError& e) {
    o.fail("--gemm-precision: " + std::string(e.what()));
  }
  GemmPrecisionGuard gemm_precision_scope(gemm_precision_choice);  // this thread runs forward and backward
  const bool synthetic = o.str("data") == "synthetic";
  const data::GlueTask task = synthetic ? data::GlueTask{"synthetic", "", 2, false, false, {"0", "1"},
                                                         {data::GlueMetric::accuracy}, {"train", "dev"}}
                                        : data::glue_task(o.str("task"));
  ModelSource src = resolve_model(o, synthetic);
  src.config.num_labels = task.num_labels;
  const int64_t max_len = std::min(o.integer("max-len"), src.config.max_sequence_length());

  // Data: tokenized once, up front.
  SeqDataset train_set, dev_set;
  int32_t pad = int32_t(src.config.pad_token_id);
  auto t_tok = std::chrono::steady_clock::now();
  if (synthetic) {
    if (o.integer("synthetic-vocab") > src.config.vocab_size) o.fail("--synthetic-vocab exceeds the model's vocabulary");
    const int64_t n = o.integer("synthetic-size");
    const int64_t hi = std::min<int64_t>(max_len, 48);
    train_set = from_token_examples(data::make_synthetic_text(n, o.integer("synthetic-vocab"), 8, hi, uint64_t(o.integer("seed"))));
    dev_set = from_token_examples(data::make_synthetic_text(std::max<int64_t>(1, n / 4), o.integer("synthetic-vocab"), 8, hi,
                                                            uint64_t(o.integer("seed")) + 1000003));
  } else {
    if (src.vocab.empty() || src.merges.empty()) o.fail("--vocab and --merges are needed (the model folder has none)");
    data::BpeTokenizer tok = data::BpeTokenizer::load(src.vocab, src.merges);
    if (tok.vocab_size() > src.config.vocab_size) o.fail("--vocab has more tokens than the model's vocab_size");
    pad = tok.pad_id();
    train_set = tokenize_split(data::load_glue(task, o.str("data"), "train"), task, tok, max_len);
    dev_set = tokenize_split(data::load_glue(task, o.str("data"), task.splits.size() > 1 ? task.splits[1] : "dev"),
                             task, tok, max_len);
  }
  if (o.integer("train-subset") > 0 && o.integer("train-subset") < train_set.size()) {
    const size_t n = size_t(o.integer("train-subset"));
    train_set.ids.resize(n);
    train_set.labels.resize(n);
    train_set.scores.resize(n);
  }
  const double tok_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_tok).count();
  int64_t train_tokens = 0;
  for (const auto& s : train_set.ids) train_tokens += int64_t(s.size());
  std::printf("%s: %lld train / %lld dev sequences, %lld train tokens (prepared in %.2fs)\n", task.name.c_str(),
              (long long)train_set.size(), (long long)dev_set.size(), (long long)train_tokens, tok_s);
  if (train_set.size() == 0 && !o.flag("eval-only")) o.fail("--data " + o.str("data") + ": no training examples");

  const cli::Processes procs = cli::start_processes(o);  // --distributed: this process's stage and rank
  const std::string out = cli::process_out_dir(o.str("out"), procs);
  fs::create_directories(out);
  runlog::write_json_atomic(out + "/config.json", o.resolved());

  nn::RobertaForSequenceClassification model(src.config, uint64_t(o.integer("seed")));
  if (src.weights.empty() && o.str("init-from").empty() && o.str("resume").empty())
    std::printf("model %s: no weights, random initialization (HF's: normal %.3g, zero biases)\n", o.str("model").c_str(),
                src.config.initializer_range);
  if (!src.weights.empty()) {
    nn::LoadReport r = nn::load_roberta_checkpoint(model, src.weights, o.flag("strict"));
    std::printf("model %s: %s%s\n", src.weights.c_str(), r.str().c_str(),
                r.missing.empty() ? "" : " (missing tensors keep HF's initialization)");
  }
  if (!o.str("init-from").empty()) {
    nn::LoadReport r = nn::load_roberta_checkpoint(model, o.str("init-from"), o.flag("strict"));
    std::printf("init-from %s: %s\n", o.str("init-from").c_str(), r.str().c_str());
  }
  nn::to_device(model, device);
  ForwardFn forward = [&model](const Tensor& ids, const Tensor& mask) { return model.forward(ids, mask); };
  // --chunks: the units as GPipe stages on threads (compression in the boundary hooks); else --split alone: the same
  // units in this thread with a CompressionLayer at each boundary, statistics to compression.jsonl.
  auto clog = std::make_shared<compress::CompressionLog>(o.str("split").empty() && o.str("stages").empty() ? "" : out);
  cli::PipelineSetup pipe = cli::make_pipeline(o, model.units(o.flag("split-fine")), device, /*has_batch_norm=*/false, clog,
                                               procs);
  auto evaluate_through_pipeline = [&] {
    pipeline::Pipeline* p = pipe.pipe.get();
    forward = [p, &model, device](const Tensor& ids, const Tensor& mask) {  // logits back on the data's device
      return p->forward(ids, nn::UnitContext{model.prepare_mask(ids, mask)}).to(device);
    };
  };
  if (pipe.pipe) {
    evaluate_through_pipeline();
  } else if (auto split = cli::make_split(o, model.units(o.flag("split-fine")), clog)) {
    std::printf("split: %s\n", split->describe().c_str());
    auto sm = std::make_shared<compress::SplitModel>(std::move(*split));
    forward = [sm, &model](const Tensor& ids, const Tensor& mask) {
      return sm->forward(ids, nn::UnitContext{model.prepare_mask(ids, mask)});
    };
  }
  std::printf("RoBERTa: %lld layers, hidden %lld, %lld parameters, on %s\n", (long long)src.config.num_hidden_layers,
              (long long)src.config.hidden_size, (long long)nn::count_parameters(model), device.str().c_str());

  std::vector<Tensor> params;
  std::vector<bool> no_decay;
  for (auto& [name, p] : nn::named_parameters(model)) {
    params.push_back(p);
    no_decay.push_back(name.ends_with(".bias") || name.ends_with("LayerNorm.weight"));
  }
  AdamW opt(params, {.lr = o.number("lr"), .beta1 = o.number("beta1"), .beta2 = o.number("beta2"),
                     .eps = o.number("eps"), .weight_decay = o.number("weight-decay")});
  opt.set_weight_decay_exempt(no_decay);
  const int64_t batch_size = o.integer("batch-size");
  const int64_t steps_per_epoch = (train_set.size() + batch_size - 1) / batch_size;
  LRSchedule sched = parse_lr_schedule(o.str("schedule"), o.number("lr"));
  sched.total_steps = std::max<int64_t>(1, o.integer("epochs") * steps_per_epoch);
  sched.warmup_steps = std::min(sched.total_steps, int64_t(o.number("warmup-ratio") * double(sched.total_steps)));

  ckpt::TrainState state;
  model.visit("", [&](const std::string& name, Tensor& t, bool) { state.tensors.emplace_back(name, &t); });
  model.visit_generators([&](const std::string& name, Generator& g) { state.generators.emplace_back(name, &g); });
  ckpt::Cursor cur;
  if (!o.str("resume").empty()) cur = ckpt::load(cli::process_path(o.str("resume"), procs), state, opt, steps_per_epoch);

  if (o.flag("eval-only")) {
    EvalResult r = evaluate(model, forward, dev_set, task, batch_size, pad, device, procs.rank == 0 ? o.str("dump-logits") : "", *clog);
    std::printf("eval: loss %.4f %s on %lld sequences\n", r.loss, metrics_str(r).c_str(), (long long)dev_set.size());
    nlohmann::json s{{"eval_loss", r.loss}};
    for (const auto& m : r.metrics) s["eval_" + m.name] = m.value;
    runlog::write_json_atomic(out + "/summary.json", s);
    return 0;
  }

  const bool resumed = !o.str("resume").empty();
  clog->start(resumed ? opt.step_count() : -1);
  runlog::Metrics metrics(out, resumed ? cur.epoch : -1);
  cli::PipelineLog pipeline_log;
  EvalResult last;
  // -2: below every metric (Matthews correlation reaches -1)
  double best = metrics.best_kept(std::string("val_") + data::glue_metric_name(task.metrics.front()), -2.0);
  double batch_ms_sum = 0;
  int64_t batches_timed = 0, tokens_timed = 0;
  const int64_t max_steps = o.integer("max-steps");
  cli::StepGuard guard = cli::step_guard(o, state);
  cli::OomRetry oom(o.flag("oom-retry"), procs.transport != nullptr, state);
  // To k micro-batches after a step ran out of memory: a run without --chunks becomes a pipeline.
  auto rechunk = [&](int64_t k) {
    if (pipe.pipe) return;
    pipe = cli::make_pipeline(o, model.units(o.flag("split-fine")), device, false, clog, procs, k);
    evaluate_through_pipeline();
  };
  oom.resume_at(cur.micro_batches, rechunk);
  bool stop = false;
  for (int64_t epoch = cur.epoch; epoch < o.integer("epochs") && !stop; ++epoch) {
    const std::vector<int64_t> order = data::epoch_order(train_set.size(), uint64_t(o.integer("seed")), epoch, true);
    runlog::Progress bar("epoch " + std::to_string(epoch + 1), steps_per_epoch);
    runlog::EpochMeter meter;
    int64_t b_index = epoch == cur.epoch ? cur.next_batch : 0;
    for (; b_index < steps_per_epoch;) {
      const int64_t first = b_index * batch_size, n = std::min(batch_size, train_set.size() - first);
      auto t0 = std::chrono::steady_clock::now();
      Batch b = make_batch(train_set, order, first, n, pad, device);
      opt.set_lr(sched.lr_at(opt.step_count()));
      clog->set_step(opt.step_count() + 1);
      Tensor logits;
      double l = 0;
      oom.step_chunks(pipe, n);  // --chunks or a retry's count; fewer for a short last batch
      auto attempt = [&] {
        if (pipe.pipe) {
          // Each micro-batch adds its share of the mini-batch mean, so the gradients are the full-batch ones.
          pipeline::StepResult r = pipe.pipe->train_step(
              b.ids,
              [&](const Tensor& out, const pipeline::MicroBatch& mb) {
                Batch part;
                part.labels = slice(b.labels, 0, mb.offset, mb.offset + mb.rows).to(out.device());  // last stage's
                part.scores = slice(b.scores, 0, mb.offset, mb.offset + mb.rows).to(out.device());
                return pipeline::mean_loss_share(task_loss(out, part, task.regression), mb);
              },
              nn::UnitContext{model.prepare_mask(b.ids, b.mask)});
          logits = r.output.to(device);
          l = r.loss;
          pipeline_log.add(r.stats);
        } else {
          // Locals until the step has fitted: an attempt that runs out of memory must not keep its graph alive.
          Tensor out = forward(b.ids, b.mask);
          Tensor loss = task_loss(out, b, task.regression);
          loss.backward();
          l = loss.item();  // waits for the device: the batch time below is real
          logits = out;
        }
      };
      oom.fit_step(opt.step_count() + 1, n, pipe, opt, *clog, attempt, rechunk);
      double grad_norm = 0;
      if (o.number("clip-norm") > 0) {
        // With one stage per process each holds its own parameters' grads: the processes add their per-parameter
        // sums in parameter order, so every one clips by the single-process norm, bit for bit.
        std::vector<double> sum_squares = grad_sum_squares(params);
        if (procs.transport) sum_squares = pipeline::sum_over_processes(*procs.transport, sum_squares);
        grad_norm = norm_from_sum_squares(sum_squares);
        clip_grads_to_norm(params, o.number("clip-norm"), grad_norm);
      }
      const bool update = guard.admit(l, grad_norm, opt.step_count() + 1, state);
      // Counted before the update is queued, so the optimizer's kernels overlap the next batch's preparation (see
      // train_cv.cpp).
      const int64_t correct = update && !task.regression ? runlog::count_correct(logits, b.labels) : 0;
      if (update) opt.step();
      opt.zero_grad();
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      batch_ms_sum += ms;
      ++batches_timed;
      tokens_timed += b.tokens;
      if (update)  // a skipped step's loss is not finite: it stays out of the epoch's mean
        meter.add(l, n, correct, task.regression ? 0 : n, ms);
      bar.update(++b_index, meter.line("seq"));
      stop = update && ckpt::finish_step(o.flag("log-steps"), max_steps, l, out + "/checkpoint.safetensors", state, opt,
                               {epoch, b_index, oom.micro_batches()}, o.resolved());
      if (stop) break;
    }
    if (stop) break;
    last = evaluate(model, forward, dev_set, task, batch_size, pad, device, "", *clog);
    best = std::max(best, last.main());
    nlohmann::json row{{"epoch", epoch + 1},
                       {"train_loss", meter.loss()},
                       {"train_acc", meter.accuracy()},
                       {"val_loss", last.loss},
                       {"lr", opt.lr()},
                       {"peak_memory_bytes", runlog::peak_memory_json(device, pipe.partition.devices)}};
    for (const auto& m : last.metrics) row["val_" + m.name] = m.value;
    pipeline_log.end_epoch(row);  // per-stage busy time, bubble fraction, bytes per boundary
    const nlohmann::json compression = clog->take_epoch_summary();  // this epoch's training steps, as in summary.json
    if (!compression.empty()) row["compression"] = compression;
    metrics.write(row);
    std::printf("epoch %lld: train loss %.4f | dev loss %.4f %s\n", (long long)(epoch + 1),
                meter.loss(), last.loss, metrics_str(last).c_str());
    if (!compression.empty()) std::printf("  %s\n", compress::epoch_summary_line(compression).c_str());
    ckpt::save(out + "/checkpoint.safetensors", state, opt, {epoch + 1, 0, oom.micro_batches()}, o.resolved());
  }
  nlohmann::json summary{{"task", task.name},
                         {"steps", opt.step_count()},
                         {"skipped_steps", guard.skipped()},
                         {"ms_per_batch", batches_timed ? batch_ms_sum / double(batches_timed) : 0.0},
                         {"tokens_per_s", batch_ms_sum > 0 ? 1000.0 * double(tokens_timed) / batch_ms_sum : 0.0},
                         {"device", device.str()},
                         {"peak_memory_bytes", runlog::peak_memory_json(device, pipe.partition.devices)},
                         {"peak_tensor_bytes", runlog::peak_tensor_json(device, pipe.partition.devices)},
                         {"oom_retries", oom.retries()}};
  if (!last.metrics.empty()) {
    summary["main_metric"] = last.metrics.front().name;
    summary["final"] = last.main();
    summary["best"] = best;
    for (const auto& m : last.metrics) summary["final_" + m.name] = m.value;
  }
  if (!clog->empty()) summary["compression"] = clog->summary();
  pipeline_log.summarize(summary);
  runlog::write_json_atomic(out + "/summary.json", summary);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return cli::trainer_main("train_glue", argv, [&] { return run(argc, argv); });
}
