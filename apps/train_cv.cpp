// train_cv.cpp — `build/train_cv`: trains and evaluates MobileNetV2 (cifar/imagenet variants) or ResNet-18 on CIFAR-10
// (binary records or an image folder) or the embedded synthetic shapes, with checkpoints and exact CPU resume.
// Not the split/pipeline trainer (pipeline/ arrives with its issue) and no mixed precision yet.
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <sstream>

#include "apps/checkpoint.h"
#include "apps/cli.h"
#include "apps/oom_retry.h"
#include "apps/pipeline_cli.h"
#include "apps/split_cli.h"
#include "apps/step_guard.h"
#include "apps/run_log.h"
#include "data/cifar10.h"
#include "data/image_folder.h"
#include "data/loader.h"
#include "data/synthetic.h"
#include "engine/lr_schedule.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "engine/safetensors.h"
#include "layers/mobilenetv2.h"
#include "layers/resnet.h"
#include "layers/state.h"

using namespace ep;
namespace fs = std::filesystem;

namespace {

// The model behind one interface: both architectures are plain structs with visit/forward/set_train.
struct Model {
  std::function<Tensor(const Tensor&)> forward;
  std::function<void(bool)> set_train;
  std::vector<std::pair<std::string, Tensor*>> state;  // parameters and buffers by state_dict name
  std::function<std::vector<Tensor>()> params;  // collected when asked: pipeline stages may have moved them
  std::vector<std::pair<std::string, Generator*>> generators;  // whose offsets a checkpoint must restore
  std::function<std::vector<nn::Unit>(bool fine)> units;       // for --split (fine: the stem before its ReLU6)
  std::function<void(int64_t chunks)> set_deferred_bn;          // for the pipeline's micro-batches
  std::shared_ptr<void> owner;
};

template <class M>
Model wrap(std::shared_ptr<M> m, Device device) {
  nn::to_device(*m, device);
  Model out;
  out.forward = [m](const Tensor& x) { return m->forward(x); };
  out.set_train = [m](bool on) { m->set_train(on); };
  m->visit("", [&](const std::string& name, Tensor& t, bool) { out.state.emplace_back(name, &t); });
  out.params = [m] { return nn::parameters(*m); };
  out.owner = m;
  return out;
}

Model build_model(const cli::Options& o, int64_t classes, Device device) {
  const std::string name = o.str("model");
  if (name == "mobilenetv2") {
    nn::MobileNetV2Options mo;
    mo.num_classes = classes;
    mo.width_mult = o.number("width");
    mo.variant = nn::parse_mobilenetv2_variant(o.str("variant"));
    mo.seed = uint64_t(o.integer("seed"));
    mo.dropout = o.number("dropout");
    if (!(mo.dropout >= 0 && mo.dropout < 1)) o.fail("--dropout must be in [0, 1)");
    auto m = std::make_shared<nn::MobileNetV2>(mo);
    Model out = wrap(m, device);
    out.generators = {{"classifier.0", &m->drop.gen}};
    out.units = [m](bool fine) { return m->units(fine); };
    out.set_deferred_bn = [m](int64_t chunks) { m->set_deferred_batch_norm(chunks); };
    return out;
  }
  if (name == "resnet18") {
    // MobileNetV2's knobs would be silently ignored: a run labelled width 0.5 would train the full ResNet-18.
    for (const char* knob : {"width", "variant", "dropout"})
      if (o.given(knob))
        o.fail(std::string("--") + knob +
               ": only for --model mobilenetv2 (ResNet-18 is the CIFAR variant, no dropout)");
    nn::ResNetOptions ro;
    ro.num_classes = classes;
    ro.seed = uint64_t(o.integer("seed"));
    auto m = std::make_shared<nn::ResNet18>(ro);
    Model out = wrap(m, device);
    out.units = [m](bool) { return m->units(); };
    out.set_deferred_bn = [m](int64_t chunks) { m->set_deferred_batch_norm(chunks); };
    return out;
  }
  o.fail("--model: expected mobilenetv2 or resnet18, got '" + name + "'");
}

// Train and test sets from --data: "synthetic", a CIFAR-10 binary directory, or an image folder with train/ and test/.
std::pair<data::ImageDataset, data::ImageDataset> load_data(const cli::Options& o) {
  const std::string d = o.str("data");
  if (d == "synthetic") {
    data::SyntheticSplit s = data::make_synthetic_split(o.integer("synthetic-size"), uint64_t(o.integer("seed")));
    return {std::move(s.train), std::move(s.test)};
  }
  if (!fs::is_directory(d)) o.fail("--data " + d + ": not a directory (or 'synthetic')");
  if (fs::exists(fs::path(d) / "test_batch.bin"))
    return {data::load_cifar10_dir(d, true), data::load_cifar10_dir(d, false)};
  if (fs::is_directory(fs::path(d) / "train") && fs::is_directory(fs::path(d) / "test"))
    return {data::load_image_folder((fs::path(d) / "train").string()),
            data::load_image_folder((fs::path(d) / "test").string())};
  o.fail("--data " + d + ": expected CIFAR-10 binary files (data_batch_*.bin, test_batch.bin) or train/ and test/ "
         "image folders");
}

// Every (size / n)-th image, so that class-sorted folders keep their class balance; n <= 0 or >= size keeps all.
data::ImageDataset strided_subset(data::ImageDataset d, int64_t n) {
  if (n <= 0 || n >= d.size()) return d;
  data::ImageDataset out;
  out.channels = d.channels;
  out.height = d.height;
  out.width = d.width;
  out.class_names = d.class_names;
  out.pixels.resize(size_t(n * d.image_bytes()));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t src = i * d.size() / n;
    std::copy(d.image(src), d.image(src) + d.image_bytes(), out.image(i));
    out.labels.push_back(d.labels[size_t(src)]);
  }
  return out;
}

data::Normalize parse_normalize(const cli::Options& o) {
  data::Normalize n;
  const std::string s = o.str("normalize");
  if (s.empty()) return n;
  std::vector<float> v;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) {
    char* end = nullptr;
    float x = std::strtof(item.c_str(), &end);
    if (item.empty() || *end != '\0') o.fail("--normalize: '" + item + "' is not a number");
    v.push_back(x);
  }
  if (v.size() != 6) o.fail("--normalize: expected MEAN_R,MEAN_G,MEAN_B,STD_R,STD_G,STD_B (6 numbers)");
  for (int c = 0; c < 3; ++c) {
    if (!(v[size_t(3 + c)] > 0)) o.fail("--normalize: standard deviations must be positive");
    n.mean[size_t(c)] = v[size_t(c)];
    n.std[size_t(c)] = v[size_t(3 + c)];
  }
  return n;
}

// --optimizer and its flags; the optimizers check their own numbers ("[sgd] ...", "[adamw] ..." ValueErrors).
std::unique_ptr<Optimizer> make_optimizer(const cli::Options& o, std::vector<Tensor> params) {
  const std::string name = o.str("optimizer");
  if (name != "sgd" && name != "adamw") o.fail("--optimizer must be sgd or adamw, got '" + name + "'");
  const bool sgd = name == "sgd";
  // The other optimizer's knobs would be silently ignored, as a ResNet-18 would ignore --width.
  const std::vector<const char*> others = sgd ? std::vector<const char*>{"beta1", "beta2", "eps"}
                                              : std::vector<const char*>{"momentum", "nesterov"};
  for (const char* knob : others)
    if (o.given(knob)) o.fail(std::string("--") + knob + ": only for --optimizer " + (sgd ? "adamw" : "sgd"));
  if (sgd)
    return std::make_unique<SGD>(std::move(params), SGDOptions{.lr = o.number("lr"), .momentum = o.number("momentum"),
                                                               .weight_decay = o.number("weight-decay"),
                                                               .nesterov = o.flag("nesterov")});
  return std::make_unique<AdamW>(std::move(params), AdamWOptions{.lr = o.number("lr"), .beta1 = o.number("beta1"),
                                                                 .beta2 = o.number("beta2"), .eps = o.number("eps"),
                                                                 .weight_decay = o.number("weight-decay")});
}

struct EvalResult {
  double loss = 0, acc = 0;
};

EvalResult evaluate(Model& model, data::DataLoader& loader, double smoothing, const std::string& dump_path,
                    compress::CompressionLog& clog) {
  model.set_train(false);
  clog.set_recording(false);
  NoGradGuard ng;
  loader.start_epoch(0);
  double loss_sum = 0;
  int64_t correct = 0, seen = 0;
  std::vector<Tensor> logits_all, labels_all;
  while (auto b = loader.next()) {
    Tensor logits = model.forward(b->images);
    const int64_t n = b->labels.size(0);
    loss_sum += cross_entropy(logits, b->labels, smoothing).item() * double(n);
    correct += runlog::count_correct(logits, b->labels);
    seen += n;
    if (!dump_path.empty()) {
      logits_all.push_back(logits.cpu());
      labels_all.push_back(b->labels.cpu());
    }
  }
  if (!dump_path.empty() && !logits_all.empty())
    write_safetensors(dump_path, {{"logits", concat(logits_all, 0)}, {"labels", concat(labels_all, 0)}},
                      {{"format", "edgepipe-logits"}});
  model.set_train(true);
  clog.set_recording(true);
  return {seen ? loss_sum / double(seen) : 0.0, seen ? double(correct) / double(seen) : 0.0};
}

int run(int argc, char** argv) {
  cli::Options o("train_cv");
  o.add("model", "string", "mobilenetv2", "mobilenetv2 | resnet18")
      .add("variant", "string", "cifar", "MobileNetV2 variant: cifar (32x32, stem stride 1) | imagenet (torchvision)")
      .add("width", "float", 1.0, "MobileNetV2 width multiplier")
      .add("dropout", "float", 0.2, "MobileNetV2: dropout before the classifier (torchvision's 0.2)")
      .add("data", "string", "synthetic", "synthetic | CIFAR-10 binary dir | image folder with train/ and test/")
      .add("synthetic-size", "int", 5000, "training images of the synthetic set (test: a fifth)")
      .add("epochs", "int", 5, "epochs")
      .add("batch-size", "int", 128, "mini-batch size")
      .add("lr", "float", 0.05, "peak learning rate")
      .add("optimizer", "string", "sgd", "sgd | adamw (torch.optim's update rules, every parameter in one group)")
      .add("momentum", "float", 0.9, "SGD momentum")
      .add("nesterov", "bool", true, "SGD: Nesterov momentum")
      .add("beta1", "float", 0.9, "AdamW beta1")
      .add("beta2", "float", 0.999, "AdamW beta2")
      .add("eps", "float", 1e-8, "AdamW epsilon")
      .add("weight-decay", "float", 5e-4, "weight decay (SGD: L2 added to the gradient; AdamW: decoupled)")
      .add("warmup-epochs", "float", 1.0, "linear warmup length in epochs")
      .add("schedule", "string", "cosine", "cosine | linear | step | constant")
      .add("label-smoothing", "float", 0.0, "label smoothing of the cross entropy")
      .add("normalize", "string", "", "MEAN_R,MEAN_G,MEAN_B,STD_R,STD_G,STD_B (default: CIFAR-10 statistics)")
      .add("train-subset", "int", 0, "use an evenly strided subset of this many training images (0: all)")
      .add("test-subset", "int", 0, "use an evenly strided subset of this many test images (0: all)")
      .add("augment", "bool", true, "random crop (4-pixel padding) and horizontal flip of training images")
      .add("loader-threads", "int", 1, "threads assembling each batch on the prefetch thread's behalf (the batches do "
                                       "not depend on it; `bench loader` shows when more help, e.g. with --resize 224)")
      .add("resize", "int", 0, "bilinear resize of every image to NxN after augmentation (e.g. 224; 0: off)")
      .add("init-from", "string", "", "safetensors weights loaded by name before training");
  cli::add_trainer_flags(o, "runs/train_cv", "test");
  cli::add_split_flags(o, "MobileNetV2: split the stem before its ReLU6 (units stem.conv_bn, stem.relu6), as the seeds");
  cli::add_pipeline_flags(o);
  if (!cli::parse_or_help(o, argc, argv)) return 0;
  const Device device = cli::checked_trainer_device(o);
  const cli::Processes procs = cli::start_processes(o);  // --distributed: this process's stage and rank
  const std::string out = cli::process_out_dir(o.str("out"), procs);
  fs::create_directories(out);
  runlog::write_json_atomic(out + "/config.json", o.resolved());

  auto [train_full, test_full] = load_data(o);
  data::ImageDataset train_set = strided_subset(std::move(train_full), o.integer("train-subset"));
  data::ImageDataset test_set = strided_subset(std::move(test_full), o.integer("test-subset"));
  const int64_t classes = train_set.num_classes();
  Model model = build_model(o, classes, device);
  if (!o.str("init-from").empty()) {
    nn::LoadReport r = nn::load_state_entries(model.state, read_safetensors(o.str("init-from")).tensors,
                                              o.flag("strict"));
    std::printf("init-from %s: %s\n", o.str("init-from").c_str(), r.str().c_str());
  }
  // --chunks: the units as GPipe stages on threads (compression in the boundary hooks); else --split alone: the same
  // units in this thread with a CompressionLayer at each boundary, statistics to compression.jsonl.
  auto clog = std::make_shared<compress::CompressionLog>(o.str("split").empty() && o.str("stages").empty() ? "" : out);
  cli::PipelineSetup pipe = cli::make_pipeline(o, model.units(o.flag("split-fine")), device, /*has_batch_norm=*/true, clog,
                                               procs);
  auto evaluate_through_pipeline = [&] {
    pipeline::Pipeline* p = pipe.pipe.get();
    // Evaluation: through the hooks, no gradients; the logits come back to the data's device.
    model.forward = [p](const Tensor& x) { return p->forward(x).to(x.device()); };
  };
  if (pipe.pipe) {
    if (pipe.deferred_bn) model.set_deferred_bn(o.integer("chunks"));
    evaluate_through_pipeline();
  } else if (auto split = cli::make_split(o, model.units(o.flag("split-fine")), clog)) {
    std::printf("split: %s\n", split->describe().c_str());
    auto sm = std::make_shared<compress::SplitModel>(std::move(*split));
    model.forward = [sm](const Tensor& x) { return sm->forward(x); };
  }

  data::LoaderOptions lo;
  lo.batch_size = o.integer("batch-size");
  lo.seed = uint64_t(o.integer("seed"));
  if (o.integer("loader-threads") < 1 || o.integer("loader-threads") > 256) o.fail("--loader-threads must be in [1, 256]");
  lo.threads = int(o.integer("loader-threads"));
  lo.device = device;
  lo.augment.norm = parse_normalize(o);
  lo.augment.crop = lo.augment.flip = o.flag("augment");
  if (o.integer("resize") < 0 || o.integer("resize") > 4096) o.fail("--resize must be in [0, 4096]");
  lo.augment.resize = int(o.integer("resize"));
  auto train_data = std::make_shared<const data::ImageDataset>(std::move(train_set));
  auto test_data = std::make_shared<const data::ImageDataset>(std::move(test_set));
  data::DataLoader train_loader(train_data, lo);
  data::LoaderOptions eo = lo;
  eo.shuffle = false;
  eo.train = false;
  data::DataLoader test_loader(test_data, eo);

  std::unique_ptr<Optimizer> optimizer = make_optimizer(o, model.params());
  Optimizer& opt = *optimizer;
  const int64_t steps_per_epoch = train_loader.batches_per_epoch();
  LRSchedule sched = parse_lr_schedule(o.str("schedule"), o.number("lr"));
  sched.total_steps = std::max<int64_t>(1, o.integer("epochs") * steps_per_epoch);
  sched.warmup_steps = std::min(sched.total_steps, int64_t(o.number("warmup-epochs") * double(steps_per_epoch)));
  sched.step_size = std::max<int64_t>(1, sched.total_steps / 3);  // "step": x0.1 at 1/3 and 2/3 of the run
  ckpt::TrainState state{model.state, model.generators};
  ckpt::Cursor cur;
  if (!o.str("resume").empty()) cur = ckpt::load(cli::process_path(o.str("resume"), procs), state, opt, steps_per_epoch);

  if (o.flag("eval-only")) {
    EvalResult r = evaluate(model, test_loader, o.number("label-smoothing"), procs.rank == 0 ? o.str("dump-logits") : "", *clog);
    std::printf("eval: loss %.4f top-1 %.2f%% on %lld images\n", r.loss, 100 * r.acc, (long long)test_data->size());
    runlog::write_json_atomic(out + "/summary.json", {{"eval_loss", r.loss}, {"eval_top1", r.acc}});
    return 0;
  }

  const bool resumed = !o.str("resume").empty();
  clog->start(resumed ? opt.step_count() : -1);
  runlog::Metrics metrics(out, resumed ? cur.epoch : -1);
  double best = metrics.best_kept("val_top1", 0.0), last_acc = 0, batch_ms_sum = 0;
  int64_t batches_timed = 0;
  cli::PipelineLog pipeline_log;
  const int64_t max_steps = o.integer("max-steps");
  cli::StepGuard guard = cli::step_guard(o, state);
  cli::OomRetry oom(o.flag("oom-retry"), procs.transport != nullptr, state);
  // To k micro-batches after a step ran out of memory: a run without --chunks becomes a pipeline.
  auto rechunk = [&](int64_t k) {
    if (!pipe.pipe) {
      pipe = cli::make_pipeline(o, model.units(o.flag("split-fine")), device, true, clog, procs, k);
      evaluate_through_pipeline();
    }
    if (pipe.deferred_bn) model.set_deferred_bn(k);
  };
  oom.resume_at(cur.micro_batches, rechunk);
  bool stop = false;
  for (int64_t epoch = cur.epoch; epoch < o.integer("epochs") && !stop; ++epoch) {
    train_loader.start_epoch(epoch, epoch == cur.epoch ? cur.next_batch : 0);
    runlog::Progress bar("epoch " + std::to_string(epoch + 1), steps_per_epoch);
    runlog::EpochMeter meter;
    int64_t b_index = epoch == cur.epoch ? cur.next_batch : 0;
    while (auto b = train_loader.next()) {
      auto t0 = std::chrono::steady_clock::now();
      opt.set_lr(sched.lr_at(opt.step_count()));
      clog->set_step(opt.step_count() + 1);
      Tensor logits;
      double l = 0;
      const int64_t n = b->labels.size(0);
      // --chunks, or an out-of-memory retry's count; fewer for a short last batch.
      if (oom.step_chunks(pipe, n) && pipe.deferred_bn) model.set_deferred_bn(pipe.pipe->options().chunks);
      auto attempt = [&] {
        if (pipe.pipe) {
          // Each micro-batch adds its share of the mini-batch mean (pipeline/microbatch.h), so gradients are the
          // full-batch ones; the step returns after every stage has finished its backward.
          const Tensor& labels = b->labels;
          const double smoothing = o.number("label-smoothing");
          auto loss = [&](const Tensor& out, const pipeline::MicroBatch& mb) {
            Tensor lab = slice(labels, 0, mb.offset, mb.offset + mb.rows).to(out.device());  // the last stage's
            return pipeline::mean_loss_share(cross_entropy(out, lab, smoothing), mb);
          };
          pipeline::StepResult r = pipe.pipe->train_step(b->images, loss);
          logits = r.output.to(device);
          l = r.loss;
          pipeline_log.add(r.stats);
        } else {
          // Locals until the step has fitted: an attempt that runs out of memory must not keep its graph alive.
          Tensor out = model.forward(b->images);
          Tensor loss = cross_entropy(out, b->labels, o.number("label-smoothing"));
          loss.backward();
          l = loss.item();  // waits for the device: the batch time below is real
          logits = out;
        }
      };
      oom.fit_step(opt.step_count() + 1, n, pipe, opt, *clog, attempt, rechunk);
      const bool update = guard.admit(l, 0.0, opt.step_count() + 1, state);
      // Counted before the update is queued: its read-back then finds the GPU idle anyway (loss.item() waited), and
      // the optimizer's kernels run while this thread fetches the next batch and queues its forward. Counted after,
      // it waited for the optimizer, leaving the GPU idle through the next step's start.
      const int64_t correct = update ? runlog::count_correct(logits, b->labels) : 0;
      if (update) opt.step();
      opt.zero_grad();
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      batch_ms_sum += ms;
      ++batches_timed;
      if (update) meter.add(l, n, correct, n, ms);  // a skipped step's loss is NaN
      bar.update(++b_index, meter.line("img"));
      stop = update && ckpt::finish_step(o.flag("log-steps"), max_steps, l, out + "/checkpoint.safetensors", state, opt,
                               {epoch, b_index, oom.micro_batches()}, o.resolved());
      if (stop) break;
    }
    if (stop) break;
    EvalResult r = evaluate(model, test_loader, o.number("label-smoothing"), "", *clog);
    last_acc = r.acc;
    best = std::max(best, r.acc);
    nlohmann::json row{{"epoch", epoch + 1},     {"train_loss", meter.loss()}, {"train_top1", meter.accuracy()},
                       {"val_loss", r.loss},      {"val_top1", r.acc},          {"lr", opt.lr()},
                       {"peak_memory_bytes", runlog::peak_memory_json(device, pipe.partition.devices)}};
    pipeline_log.end_epoch(row);  // per-stage busy time, bubble fraction, bytes per boundary
    const nlohmann::json compression = clog->take_epoch_summary();  // this epoch's training steps, as in summary.json
    if (!compression.empty()) row["compression"] = compression;
    metrics.write(row);
    std::printf("epoch %lld: train loss %.4f top-1 %.2f%% | test loss %.4f top-1 %.2f%%\n", (long long)(epoch + 1),
                meter.loss(), 100.0 * meter.accuracy(), r.loss,
                100 * r.acc);
    if (!compression.empty()) std::printf("  %s\n", compress::epoch_summary_line(compression).c_str());
    ckpt::save(out + "/checkpoint.safetensors", state, opt, {epoch + 1, 0, oom.micro_batches()}, o.resolved());
  }
  nlohmann::json summary{{"final_top1", last_acc},
                         {"best_top1", best},
                         {"steps", opt.step_count()},
                         {"skipped_steps", guard.skipped()},
                         {"ms_per_batch", batches_timed ? batch_ms_sum / batches_timed : 0.0},
                         {"device", device.str()},
                         {"peak_memory_bytes", runlog::peak_memory_json(device, pipe.partition.devices)},
                         {"peak_tensor_bytes", runlog::peak_tensor_json(device, pipe.partition.devices)},
                         {"oom_retries", oom.retries()}};
  if (!clog->empty()) summary["compression"] = clog->summary();
  pipeline_log.summarize(summary);
  runlog::write_json_atomic(out + "/summary.json", summary);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return cli::trainer_main("train_cv", argv, [&] { return run(argc, argv); });
}
