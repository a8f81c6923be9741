// bench_pipeline_models.h — `bench pipeline` parts (2), (3) and (4): MobileNetV2 and RoBERTa training steps pipelined
// (S stages, C micro-batches, one device) against the same step unpipelined; the seeds' Naive / To_device table (the
// edge | cloud | edge split unpipelined and as GPipe, time and peak memory per device); and the seeds' split over an
// emulated 100 Mbit/s link with each compressor, so the step time shows what the bytes cost. Prints figures only.
// Not the scheduler alone (bench_pipeline.h, part 1).
#pragma once
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "apps/bench_timing.h"
#include "compress/compressor.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "engine/random.h"
#include "layers/mobilenetv2.h"
#include "layers/roberta.h"
#include "pipeline/compress_hook.h"
#include "pipeline/link.h"
#include "pipeline/partition.h"
#include "pipeline/pipeline.h"

namespace ep::bench_pipeline_detail {


// The model's units cut into stages of the given sizes on devices[s] (one device: all stages), with `hooks` at the
// boundaries. A unit on another device than its model's is moved there.
inline std::unique_ptr<pipeline::Pipeline> make_stages(const std::vector<nn::Unit>& units,
                                                       const std::vector<int64_t>& sizes,
                                                       const std::vector<Device>& devices, int chunks,
                                                       std::vector<std::shared_ptr<pipeline::BoundaryHook>> hooks) {
  std::vector<pipeline::Stage> stages;
  size_t u = 0;
  for (size_t k = 0; k < sizes.size(); ++k) {
    pipeline::Stage s;
    s.device = devices.size() == 1 ? devices[0] : devices.at(k);
    for (int64_t i = 0; i < sizes[k]; ++i) {
      s.units.push_back(units[u++]);
      s.units.back().move_to(s.device);
    }
    stages.push_back(std::move(s));
  }
  return std::make_unique<pipeline::Pipeline>(std::move(stages), pipeline::PipelineOptions{chunks, pipeline::ScheduleKind::gpipe},
                                              std::move(hooks));
}

// Even cut of n units into s stages (the remainder goes to the first stages).
inline std::vector<int64_t> even_stages(int64_t n, int s) {
  std::vector<int64_t> sizes(static_cast<size_t>(s), n / s);
  for (int64_t i = 0; i < n % s; ++i) ++sizes[size_t(i)];
  return sizes;
}

// The CIFAR MobileNetV2 (10 classes) at a width, on d; on the heap because its units capture it.
inline std::unique_ptr<nn::MobileNetV2> cifar_mobilenetv2(double width, Device d) {
  nn::MobileNetV2Options mo;
  mo.variant = nn::MobileNetV2Variant::cifar;
  mo.num_classes = 10;
  mo.width_mult = width;
  auto m = std::make_unique<nn::MobileNetV2>(mo);
  nn::to_device(*m, d);
  return m;
}

inline Tensor random_images(int64_t batch, Device d, uint64_t seed) {
  Generator g(seed);
  Tensor x = empty({batch, 3, 32, 32}, DType::f32);
  normal_(x, 0, 1, g);
  return x.to(d);
}

inline Tensor class_labels(int64_t n, int64_t classes, Device d) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = double(i % classes);
  return from_vector(v, {n}, DType::i64, d);
}

// Part (2): one model, unpipelined then pipelined over 2 and 4 stages with C micro-batches.
template <class Model, class Step>
void pipelined_vs_plain(const char* title, Model& model, const std::vector<nn::Unit>& units, const Tensor& x,
                        const nn::UnitContext& ctx, const Tensor& y, Device d, const std::vector<int>& chunk_list,
                        Step&& plain_step, int reps) {
  std::vector<Tensor> params = nn::parameters(model);
  SGD opt(params, {.lr = 1e-4});
  const double plain = bench::wall_median_ms(d, [&] { plain_step(); opt.step(); opt.zero_grad(); }, reps, 1);
  std::printf("  %-34s %9.2f ms/step\n", (std::string(title) + " unpipelined").c_str(), plain);
  const pipeline::LossFn loss = [&](const Tensor& out, const pipeline::MicroBatch& mb) {
    return pipeline::mean_loss_share(cross_entropy(out, slice(y, 0, mb.offset, mb.offset + mb.rows)), mb);
  };
  for (int stages : {2, 4})
    for (int chunks : chunk_list) {
      auto pipe = make_stages(units, even_stages(int64_t(units.size()), stages), {d}, chunks, {});
      const double ms = bench::wall_median_ms(d, [&] { pipe->train_step(x, loss, ctx); opt.step(); opt.zero_grad(); }, reps, 1);
      std::printf("  %-34s %9.2f ms/step  %.2fx the unpipelined step\n",
                  (std::string(title) + " S=" + std::to_string(stages) + " C=" + std::to_string(chunks)).c_str(), ms,
                  ms / plain);
    }
}

// Part (3), the seeds' table "Naive | To_device": the edge | cloud | edge split of MobileNetV2 (stem before its
// ReLU6 | the middle | the classifier) on three stage devices, run unpipelined (one chunk: the whole mini-batch goes
// from stage to stage, each device idle while the others work: the seeds' Naive) and as GPipe with 4 micro-batches
// (the seeds' To_device). Time per mini-batch (median) and the peak tensor memory of each device during the steps.
inline void bench_naive_vs_to_device(Device d) {
  const bool gpu = d.is_cuda();
  const double width = gpu ? 1.0 : 0.5;
  const int64_t batch = gpu ? 256 : 64;
  std::vector<std::vector<Device>> placements{{d, d, d}};
  if (gpu) placements.push_back({Device::cpu(), d, Device::cpu()});               // edge on the host, cloud on the GPU
  if (gpu && cuda_device_count() >= 2) placements.push_back({d, Device::cuda(1), d});  // the seeds' two GPUs
  std::printf("\n[pipeline, part 3] the seeds' Naive vs To_device: MobileNetV2-cifar width %.1f, batch %lld, split "
              "edge | cloud | edge (1 | %d | 1 units), SGD step included\n", width, (long long)batch, 19);
  for (const auto& devs : placements) {
    auto names = [&] { return devs[0].str() + " | " + devs[1].str() + " | " + devs[2].str(); };
    for (int chunks : {1, 4}) {
      auto mp = cifar_mobilenetv2(width, d);
      nn::MobileNetV2& m = *mp;
      m.set_deferred_batch_norm(chunks);
      auto units = m.units(/*split_stem=*/true);
      auto pipe = make_stages(units, {1, int64_t(units.size()) - 2, 1}, devs, chunks, {});
      std::vector<Tensor> params = nn::parameters(m);
      SGD opt(params, {.lr = 1e-4, .momentum = 0.9});
      Tensor x = random_images(batch, devs[0], 5);
      Tensor y = class_labels(batch, 10, devs[2]);
      const pipeline::LossFn loss = [&](const Tensor& out, const pipeline::MicroBatch& mb) {
        return pipeline::mean_loss_share(cross_entropy(out, slice(y, 0, mb.offset, mb.offset + mb.rows)), mb);
      };
      auto step = [&] {
        pipe->train_step(x, loss);
        opt.step();
        opt.zero_grad();
      };
      step();  // momentum buffers and pools allocated before the peaks are reset
      for (const Device& dev : devs) {
        synchronize(dev);
        reset_peak_tensor_bytes(dev);
      }
      const double ms = bench::wall_median_ms(devs[1], step, gpu ? 5 : 3, 0);
      std::string mem;
      std::vector<Device> seen;
      for (const Device& dev : devs) {
        if (std::find(seen.begin(), seen.end(), dev) != seen.end()) continue;
        seen.push_back(dev);
        char buf[64];
        std::snprintf(buf, sizeof buf, "%s%s %.0f MB", mem.empty() ? "" : ", ", dev.str().c_str(),
                      double(peak_tensor_bytes(dev)) / 1e6);
        mem += buf;
      }
      std::printf("  %-26s %-10s %9.1f ms/batch   peak tensor memory: %s\n", names().c_str(),
                  chunks == 1 ? "Naive" : "To_device", ms, mem.c_str());
    }
  }
}

inline void bench_compressed_link(Device d, const std::string& link);
inline void bench_pipelined_vs_plain(Device d);

inline void bench_pipeline_models(Device d, const std::set<int>& parts) {
  const bool gpu = d.is_cuda();
  if (parts.count(2)) bench_pipelined_vs_plain(d);
  if (parts.count(3)) bench_naive_vs_to_device(d);
  // Part 4 at 100 Mbit/s; on the CPU also at 10 Mbit/s, where the link rather than the CPU's compute sets the step
  // time, as 100 Mbit/s does against a GPU's compute.
  std::vector<std::string> links{"100Mbit,20ms"};
  if (!gpu) links.push_back("10Mbit,20ms");
  if (parts.count(4))
    for (const std::string& link : links) bench_compressed_link(d, link);
}

inline void bench_pipelined_vs_plain(Device d) {
  const bool gpu = d.is_cuda();
  std::printf("\n[pipeline, part 2] pipelined vs unpipelined training step on %s (one device: stages share it, so\n"
              "  this measures the pipeline's overhead, not a speed-up)%s\n",
              d.str().c_str(), gpu ? "" : "; CPU: reduced widths and batches");
  {
    auto mp = cifar_mobilenetv2(gpu ? 1.0 : 0.5, d);
    nn::MobileNetV2& m = *mp;
    const int64_t batch = gpu ? 128 : 32;
    Tensor x = random_images(batch, d, 3);
    Tensor y = class_labels(batch, 10, d);
    m.set_deferred_batch_norm(0);
    auto units = m.units();
    pipelined_vs_plain("MobileNetV2-cifar", m, units, x, {}, y, d, gpu ? std::vector<int>{4, 8} : std::vector<int>{4},
                       [&] { cross_entropy(m.forward(x), y).backward(); }, gpu ? 10 : 2);
  }
  {
    nn::RobertaConfig c;  // roberta-base on a GPU; a 4-layer, 256-wide encoder on the CPU
    if (!gpu) {
      c.hidden_size = 256;
      c.num_hidden_layers = 4;
      c.num_attention_heads = 4;
      c.intermediate_size = 1024;
    }
    nn::RobertaForSequenceClassification m(c, 1);
    nn::to_device(m, d);
    const int64_t batch = gpu ? 32 : 8, T = 128;
    std::vector<double> ids(size_t(batch * T));
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = double(4 + (i * 7919) % size_t(c.vocab_size - 4));
    Tensor x = from_vector(ids, {batch, T}, DType::i64);
    Tensor mask = ones({batch, T}, DType::u8);
    nn::UnitContext ctx{m.prepare_mask(x, mask)};
    Tensor y = class_labels(batch, 2, d);
    pipelined_vs_plain(gpu ? "RoBERTa-base" : "RoBERTa 4x256", m, m.units(), x, ctx, y, d,
                       gpu ? std::vector<int>{4, 8} : std::vector<int>{4},
                       [&] { cross_entropy(m.forward(x, mask), y).backward(); }, gpu ? 10 : 2);
  }
}

// Part (4): the seeds' split over an emulated link with each compressor at both boundaries.
inline void bench_compressed_link(Device d, const std::string& link) {
  const bool gpu = d.is_cuda();
  std::printf("\n[pipeline, part 4] the seeds' split (edge | cloud | edge, %s) over an emulated %s link, "
              "4 micro-batches\n", gpu ? "MobileNetV2-cifar width 1.0, batch 128" : "MobileNetV2-cifar width 0.25, batch 32",
              link.c_str());
  auto mp = cifar_mobilenetv2(gpu ? 1.0 : 0.25, d);
  nn::MobileNetV2& m = *mp;
  m.set_deferred_batch_norm(4);
  const int64_t batch = gpu ? 128 : 32;
  Tensor x = random_images(batch, d, 4);
  Tensor y = class_labels(batch, 10, d);
  auto units = m.units(/*split_stem=*/true);
  const pipeline::LossFn loss = [&](const Tensor& out, const pipeline::MicroBatch& mb) {
    return pipeline::mean_loss_share(cross_entropy(out, slice(y, 0, mb.offset, mb.offset + mb.rows)), mb);
  };
  double none_ms = 0;
  uint64_t none_bytes = 0;
  for (const char* spec : {"none", "quant:bits=8", "sortquant:bits=6,split=2", "topk:ratio=0.5"}) {
    std::vector<std::shared_ptr<pipeline::BoundaryHook>> hooks;
    for (int b = 0; b < 2; ++b) {
      std::shared_ptr<pipeline::BoundaryHook> inner;
      if (std::string(spec) == "none") inner = std::make_shared<pipeline::IdentityHook>();
      else inner = std::make_shared<pipeline::CompressorHook>(compress::parse_compressor(spec), compress::parse_compressor(spec));
      hooks.push_back(std::make_shared<pipeline::LinkHook>(inner, pipeline::parse_link(link)));
    }
    auto pipe = make_stages(units, {1, int64_t(units.size()) - 2, 1}, {d}, 4, hooks);
    uint64_t bytes = 0;
    const double ms = bench::wall_median_ms(d, [&] {
      pipeline::StepResult r = pipe->train_step(x, loss);
      bytes = 0;
      for (const auto& b : r.stats.boundaries) bytes += b.forward_bytes + b.backward_bytes;
      nn::zero_grad(m);
    }, gpu ? 5 : 3, 1);
    if (none_ms == 0) none_ms = ms, none_bytes = bytes;
    std::printf("  %-26s %9.1f ms/step  %7.2f MB on the wire  time %.2fx, bytes %.2fx of none\n", spec, ms,
                double(bytes) / 1e6, ms / none_ms, double(bytes) / double(none_bytes));
  }
}

}  // namespace ep::bench_pipeline_detail
