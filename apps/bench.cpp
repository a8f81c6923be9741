// bench.cpp — `build/bench ops|model|compress|pipeline|loader`. ops: GEMM GFLOP/s (our wrapper vs the library called
// directly), conv2d forward+backward at MobileNetV2's layer shapes, element-wise and reduction GB/s against a measured
// copy, host overhead per op; the other modes live in apps/bench_*.h (models, compressors, the pipeline, the loader).
// Not a unit test: it prints figures (medians) and ratios; PyTorch side-by-side scripts live in apps/bench/*.py.
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "apps/bench_compress.h"
#include "apps/bench_loader.h"
#include "apps/bench_pipeline.h"
#include "apps/bench_pipeline_models.h"
#include "apps/bench_timing.h"
#include "apps/cli.h"
#include "engine/cuda_graph.h"
#include "engine/ops/gemm_kernels.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "layers/mobilenetv2.h"
#include "layers/roberta.h"
#include "engine/random.h"

#ifdef EP_CUDA
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "engine/cuda/context.h"
#endif

using namespace ep;

namespace {

using bench::median_ms;

Tensor rand_tensor(const Shape& s, Device d, uint64_t seed) {
  Tensor t = empty(s, DType::f32, d);
  Generator g(seed);
  uniform_(t, -1, 1, g);
  return t;
}

void bench_gemm(Device d) {
  std::printf("\n[gemm] f32, C = A B, square; GFLOP/s (median)%s\n",
              d.is_cuda() ? ", TF32 off (EP_ALLOW_TF32=1 to enable)" : "");
  std::printf("  %-6s %14s %14s %8s\n", "n", "edgepipe", d.is_cuda() ? "cuBLAS direct" : "OpenBLAS direct", "ratio");
  for (int64_t n : {int64_t(1024), int64_t(4096)}) {
    Tensor a = rand_tensor({n, n}, d, 1), b = rand_tensor({n, n}, d, 2);
    NoGradGuard ng;
    Tensor c = empty({n, n}, DType::f32, d);
    double ours = median_ms(d, [&] { c = matmul(a, b); }, d.is_cuda() ? 20 : 3, 1);
    double direct = 0;
    if (d.is_cuda()) {
#ifdef EP_CUDA
      const cublasHandle_t h = cuda::thread_handles(d.index).cublas;
      float alpha = 1, beta = 0;
      direct = median_ms(d, [&] {
        cublasSetStream(h, current_stream(d));
        cublasSetMathMode(h, CUBLAS_DEFAULT_MATH);
        cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, int(n), int(n), int(n), &alpha, b.data<float>(), int(n),
                    a.data<float>(), int(n), &beta, c.data<float>(), int(n));
      });
#endif
    } else {
      direct = median_ms(d, [&] {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(n), int(n), int(n), 1.f, a.data<float>(), int(n),
                    b.data<float>(), int(n), 0.f, c.data<float>(), int(n));
      }, 3, 1);
    }
    double flop = 2.0 * double(n) * double(n) * double(n);
    std::printf("  %-6ld %14.1f %14.1f %7.1f%%\n", long(n), flop / ours / 1e6, flop / direct / 1e6, 100 * direct / ours);
  }
}

struct ConvShape {
  const char* name;
  int64_t n, cin, h, w, cout, k, stride, groups;
};

void bench_conv(Device d) {
  // MobileNetV2 (CIFAR variant, width 1.0) layer shapes at batch 128 (CPU: batch 8).
  const ConvShape shapes[] = {
      {"stem 3->32 3x3", 128, 3, 32, 32, 32, 3, 1, 1},     {"dw 32 3x3", 128, 32, 32, 32, 32, 3, 1, 32},
      {"pw 32->16", 128, 32, 32, 32, 16, 1, 1, 1},          {"pw 16->96", 128, 16, 32, 32, 96, 1, 1, 1},
      {"dw 144 3x3 s2", 128, 144, 32, 32, 144, 3, 2, 144}, {"pw 192->32 16x16", 128, 192, 16, 16, 32, 1, 1, 1},
      {"dw 384 3x3 8x8", 128, 384, 8, 8, 384, 3, 1, 384},  {"pw 384->64 8x8", 128, 384, 8, 8, 64, 1, 1, 1},
      {"dw 960 3x3 4x4", 128, 960, 4, 4, 960, 3, 1, 960},  {"pw 320->1280 4x4", 128, 320, 4, 4, 1280, 1, 1, 1},
  };
  std::printf("\n[conv2d] f32 forward+backward (data, weight), MobileNetV2-CIFAR layers, batch %d; ms and GFLOP/s\n",
              d.is_cuda() ? 128 : 8);
  for (const auto& s : shapes) {
    int64_t n = d.is_cuda() ? s.n : 8;
    Tensor x = rand_tensor({n, s.cin, s.h, s.w}, d, 3).requires_grad_();
    Tensor w = rand_tensor({s.cout, s.cin / s.groups, s.k, s.k}, d, 4).requires_grad_();
    Conv2dOptions o;
    o.stride = {s.stride, s.stride};
    o.padding = {s.k / 2, s.k / 2};
    o.groups = s.groups;
    Tensor dy;
    double fwd = median_ms(d, [&] {
      NoGradGuard ng;
      dy = conv2d(x, w, Tensor(), o);
    }, 10, 2);
    double both = median_ms(d, [&] {
      Tensor y = conv2d(x, w, Tensor(), o);
      y.backward(dy);
    }, 10, 2);
    double ho = double((s.h + 2 * (s.k / 2) - s.k) / s.stride + 1), wo = double((s.w + 2 * (s.k / 2) - s.k) / s.stride + 1);
    double flop = 2.0 * double(n) * double(s.cout) * ho * wo * double(s.cin / s.groups) * double(s.k * s.k);
    std::printf("  %-20s fwd %8.3f ms %8.1f GFLOP/s | fwd+bwd %8.3f ms %8.1f GFLOP/s\n", s.name, fwd,
                flop / fwd / 1e6, both, 3 * flop / both / 1e6);
  }
}

void bench_bandwidth(Device d) {
  const int64_t n = d.is_cuda() ? (int64_t(1) << 24) : (int64_t(1) << 22);  // 64 MB / 16 MB of f32
  Tensor a = rand_tensor({n}, d, 5), b = rand_tensor({n}, d, 6), c = empty({n}, DType::f32, d);
  NoGradGuard ng;
  double bytes1 = double(n) * 4;
  double copy = median_ms(d, [&] { copy_(c, a); });
  double copy_gbs = 2 * bytes1 / copy / 1e6;
  std::printf("\n[bandwidth] %ld f32 elements (%.0f MB); copy %.1f GB/s (read+write)\n", long(n), bytes1 / 1e6,
              copy_gbs);
  auto row = [&](const char* name, double ms, double bytes) {
    double gbs = bytes / ms / 1e6;
    std::printf("  %-26s %8.3f ms %8.1f GB/s %6.1f%% of copy\n", name, ms, gbs, 100 * gbs / copy_gbs);
  };
  row("add (a + b)", median_ms(d, [&] { c = add(a, b); }), 3 * bytes1);
  row("mul by scalar", median_ms(d, [&] { c = mul(a, 2.0); }), 2 * bytes1);
  row("gelu", median_ms(d, [&] { c = gelu(a); }), 2 * bytes1);
  row("relu6", median_ms(d, [&] { c = relu6(a); }), 2 * bytes1);
  Tensor m = reshape(a, {4096, n / 4096});
  Tensor bias = rand_tensor({n / 4096}, d, 10);
  row("add bias [4096,k]+[k]", median_ms(d, [&] { c = add(m, bias); }), 2 * bytes1);
  row("sum over rows [4096,k]", median_ms(d, [&] { c = sum(m, {1}); }), bytes1);
  row("sum over cols [4096,k]", median_ms(d, [&] { c = sum(m, {0}); }), bytes1);
  row("softmax [4096,k]", median_ms(d, [&] { c = softmax(m); }), 2 * bytes1);
}

// GPU work to queue ahead of a timed host burst: a product of two [8192, 8192] f32 matrices, ~20 ms on an H200.
std::function<void()> busy_gpu(const Tensor& big) {
  return [big] {
    NoGradGuard ng;
    matmul(big, big);
  };
}

// Host time to issue one small op. On a GPU the device must not be the bottleneck, so each timed burst is issued
// behind a large matrix product: the launches queue up while the GPU is busy and only host work is measured.
void bench_overhead(Device d) {
  Tensor a = rand_tensor({16}, d, 7), b = rand_tensor({16}, d, 8);
  Tensor x = rand_tensor({16}, d, 9).requires_grad_();
  const int64_t big_n = d.is_cuda() ? 8192 : 0;
  Tensor big = d.is_cuda() ? rand_tensor({big_n, big_n}, d, 10) : Tensor();
  const int burst = 300;
  auto host_us = [&](const std::function<void()>& op) {
    const auto issue_burst = [&] {
      for (int i = 0; i < burst; ++i) op();
    };
    return 1000.0 * bench::host_issue_median_ms(d, issue_burst, busy_gpu(big)) / burst;
  };
  double plain = host_us([&] {
    NoGradGuard ng;
    a = add(a, b);
  });
  Tensor y = x;
  double recorded = host_us([&] { y = mul(y, 1.0); });
  // The parts: a launch into an existing tensor (no allocation), and an allocation + free alone (no launch).
  double launch_only = host_us([&] { fill_(a, 1.0); });
  double alloc_only = host_us([&] { Tensor t = empty({16}, DType::f32, d); });
  std::printf("\n[overhead] host time per op launch (16 elements, median of %d-op bursts): %.2f us; "
              "with autograd recording: %.2f us\n", burst, plain, recorded);
  std::printf("  of which: a launch into an existing tensor %.2f us, an allocation + free %.2f us\n", launch_only,
              alloc_only);
}

Tensor test_labels(int64_t n, Device d, int64_t classes = 10);
void print_host_issue(Device d, const std::function<void()>& step, const Tensor& big);
void print_graph_replay(Device d, const std::function<void(Tensor&)>& step, int64_t batch, const char* unit,
                        const Tensor& big, const std::function<void()>& reset);

// `bench model ... --cuda-graph`: each GPU step figure is followed by the same step captured as a CUDA graph.
bool& cuda_graph_wanted() {
  static bool wanted = false;
  return wanted;
}

// `bench model mobilenetv2`: training images/s of the CIFAR MobileNetV2 (width 1.0, 32x32, 10 classes): one step =
// forward, cross entropy, backward, SGD (momentum 0.9, nesterov, weight decay 5e-4); random data already on the
// device, so the loader is not in the figure. Median of timed steps after warm-up (the first steps pick cuDNN
// algorithms). apps/bench/torch_model.py does the same step in PyTorch (--cpu: on the CPU, batch 32).
void bench_model_mobilenetv2(Device d) {
  std::printf("\n[model] MobileNetV2-cifar width 1.0, f32, SGD training step%s\n",
              d.is_cuda() ? ", TF32 off" : " (CPU: batch 32, median of 10 steps)");
  // On a GPU, batch 32 too: a pipeline's micro-batch of 128 in 4, where host work may set the pace.
  Tensor big = d.is_cuda() ? rand_tensor({8192, 8192}, d, 10) : Tensor();
  for (int64_t batch : d.is_cuda() ? std::vector<int64_t>{32, 128, 256} : std::vector<int64_t>{32}) {
    nn::MobileNetV2Options mo;
    mo.num_classes = 10;
    mo.variant = nn::MobileNetV2Variant::cifar;
    auto model = std::make_unique<nn::MobileNetV2>(mo);
    nn::to_device(*model, d);
    SGDOptions so;
    so.lr = 0.05;
    so.momentum = 0.9;
    so.nesterov = true;
    so.weight_decay = 5e-4;
    SGD opt(nn::parameters(*model), so);
    Tensor x = rand_tensor({batch, 3, 32, 32}, d, 11);
    Tensor y = test_labels(batch, d);
    auto step = [&] {
      Tensor loss = cross_entropy(model->forward(x), y);
      loss.backward();
      opt.step();
      opt.zero_grad();
    };
    // CPU: 10 steps after 3, as apps/bench/torch_model.py --cpu (on a shared VM a median of 3 did not settle).
    double ms = median_ms(d, step, d.is_cuda() ? 30 : 10, d.is_cuda() ? 5 : 3);
    std::printf("  batch %-4ld %9.2f ms/step %9.0f images/s", long(batch), ms, 1000.0 * double(batch) / ms);
    print_host_issue(d, step, big);
    print_graph_replay(d, [&](Tensor& loss_out) {
      Tensor loss = cross_entropy(model->forward(x), y);
      loss.backward();
      copy_(loss_out, loss);
      opt.step();
      opt.zero_grad();
    }, batch, "images", big, [&] { opt.zero_grad(); });
  }
}

// On a GPU: the host's own time to issue one step (queued behind a busy GPU), next to the device's. When it is near
// the step time, launches and host work, not kernels, set the pace. Ends the line either way.
void print_host_issue(Device d, const std::function<void()>& step, const Tensor& big) {
  if (d.is_cuda()) {
    const double busy_ms = median_ms(d, busy_gpu(big), 3, 1, /*profiled=*/false);
    std::printf("  host issue %7.2f ms/step (queued behind %.1f ms of GPU work)",
                bench::host_issue_median_ms(d, step, busy_gpu(big), 5), busy_ms);
  }
  std::printf("\n");
}

// --cuda-graph, on a GPU: the step captured once (engine/cuda_graph.h) after the eager figures, then replayed; the
// host's per-kernel work is paid at capture only, so the gap to the eager figure is what launches and host work cost.
// A replay repeats its captured dropout masks and optimizer step count: it times the step, it does not train. The
// loss over the replays still moves (the parameters are updated in place), shown as a sign the graph does the work.
// A capture that fails prints its one-line reason; the eager figures stand, and reset() drops what the broken step
// left behind (gradients whose memory went with the graph) before the model is used again.
void print_graph_replay(Device d, const std::function<void(Tensor&)>& step, int64_t batch, const char* unit,
                        const Tensor& big, const std::function<void()>& reset) {
  if (!cuda_graph_wanted() || !d.is_cuda()) return;
  Tensor loss_out = zeros({}, DType::f32, d);
  try {
    step(loss_out);  // eager, once more: the loss's copy has run before the capture
    const double first = loss_out.item();
    CudaGraph graph = CudaGraph::capture(d, [&] { step(loss_out); });
    auto replay = [&] { graph.launch(); };
    const double ms = median_ms(d, replay, 30, 3, /*profiled=*/false);
    const double last = loss_out.item();
    std::printf("  batch %-4ld %9.2f ms/step %9.0f %s/s  CUDA graph replay; host issue %.3f ms/step; loss %.4f -> "
                "%.4f over 33 replays\n", long(batch), ms, 1000.0 * double(batch) / ms, unit,
                bench::host_issue_median_ms(d, replay, busy_gpu(big), 5), first, last);
  } catch (const Error& e) {
    std::printf("  batch %-4ld CUDA graph: %s\n", long(batch), e.what());
    reset();
    synchronize(d);
  }
}

Tensor test_labels(int64_t n, Device d, int64_t classes) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = double(i % classes);
  return from_vector(v, {n}, DType::i64, d);
}

// `bench model roberta`: training sequences/s of a roberta-base config (random init, 2 labels) at sequence length 128
// (no padding), batch 32 on a GPU: forward, cross entropy, backward, AdamW step. Dropout on (0.1), as in fine-tuning.
void bench_model_roberta(Device d) {
  nn::RobertaConfig c;  // the defaults are roberta-base's config.json
  const int64_t T = 128, batch = d.is_cuda() ? 32 : 4;
  std::printf("\n[model] RoBERTa-base (random init), f32, AdamW training step, seq %ld%s\n", long(T),
              d.is_cuda() ? ", TF32 off" : " (CPU: batch 4, median of 5 steps)");
  auto model = std::make_unique<nn::RobertaForSequenceClassification>(c, 1);
  nn::to_device(*model, d);
  AdamW opt(nn::parameters(*model), {.lr = 2e-5, .beta1 = 0.9, .beta2 = 0.98, .eps = 1e-6, .weight_decay = 0.1});
  std::vector<double> ids(size_t(batch * T));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = double(4 + (i * 7919) % (c.vocab_size - 4));
  for (int64_t b = 0; b < batch; ++b) {
    ids[size_t(b * T)] = 0;
    ids[size_t(b * T + T - 1)] = 2;
  }
  Tensor x = from_vector(ids, {batch, T}, DType::i64).to(d);
  Tensor mask = ones({batch, T}, DType::u8, d);
  Tensor y = test_labels(batch, d, 2);
  auto step = [&] {
    Tensor loss = cross_entropy(model->forward(x, mask), y);
    loss.backward();
    opt.step();
    opt.zero_grad();
  };
  Tensor big = d.is_cuda() ? rand_tensor({8192, 8192}, d, 10) : Tensor();
  // fp32 GEMMs, then (on a GPU) bf16-autocast GEMMs with the same fp32 master weights.
  for (GemmPrecision p : d.is_cuda() ? std::vector<GemmPrecision>{GemmPrecision::f32, GemmPrecision::bf16}
                                     : std::vector<GemmPrecision>{GemmPrecision::f32}) {
    GemmPrecisionGuard guard(p);
    // CPU: 5 steps after 2. The first two still first-touch the gradients and AdamW's moments (2 of 3 GiB); a
    // median of 2 after 1 read 5.3-6.0 s where the steady step takes 3.7 s.
    double ms = median_ms(d, step, d.is_cuda() ? 20 : 5, d.is_cuda() ? 3 : 2);
    std::printf("  batch %-4ld gemm %-4s %9.2f ms/step %9.1f sequences/s  peak memory %.2f GiB", long(batch),
                gemm_precision_name(p), ms, 1000.0 * double(batch) / ms, double(peak_memory_bytes(d)) / double(1ull << 30));
    print_host_issue(d, step, big);
    print_graph_replay(d, [&](Tensor& loss_out) {
      Tensor loss = cross_entropy(model->forward(x, mask), y);
      loss.backward();
      copy_(loss_out, loss);
      opt.step();
      opt.zero_grad();
    }, batch, "sequences", big, [&] { opt.zero_grad(); });
  }
}

int usage() {
  std::fprintf(stderr, "usage: bench ops|compress|pipeline [--scheduler-only | --parts 2,3,4]|loader [--quick] "
                       "[--data auto|synthetic|PATH]|model [mobilenetv2|roberta] [--device cpu|cuda|all] "
                       "[--profile-kernels RUNS] [--cuda-graph]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  ep::cli::ensure_cpu_threading(argv);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // a run killed by a time limit keeps every figure it printed
  const std::string mode = argc >= 2 ? argv[1] : "";
  if (mode != "ops" && mode != "model" && mode != "compress" && mode != "pipeline" && mode != "loader") return usage();
  if (mode == "loader") return bench_loader_main(argc, argv);  // host-side, once, whatever --device says
  if (mode == "pipeline" && std::find(argv, argv + argc, std::string("--scheduler-only")) != argv + argc) {
    bench_pipeline_scheduler();  // part (1) alone: synthetic stages on host threads, no device involved
    return 0;
  }
  const bool model = mode == "model";
  int first = 2;
  std::string model_name;
  if (model) {
    if (argc < 3 || (std::strcmp(argv[2], "mobilenetv2") != 0 && std::strcmp(argv[2], "roberta") != 0)) {
      std::fprintf(stderr, "bench: model: expected 'mobilenetv2' or 'roberta'\n");
      return usage();
    }
    model_name = argv[2];
    first = 3;
  }
  std::string which = "all";
  std::set<int> parts{1, 2, 3, 4};  // bench pipeline's parts (1: the scheduler alone, on the CPU pass)
  for (int i = first; i < argc; ++i) {
    if (std::strcmp(argv[i], "--device") == 0 && i + 1 < argc) {
      which = argv[++i];
    } else if (mode == "pipeline" && std::strcmp(argv[i], "--parts") == 0 && i + 1 < argc) {
      parts.clear();
      const std::string list = argv[++i];  // "2" or "2,3": single digits 1-4 between commas
      for (size_t k = 0; k < list.size(); k += 2) {
        if (list[k] < '1' || list[k] > '4' || (k + 1 < list.size() && list[k + 1] != ',') || k + 1 == list.size() - 1) {
          std::fprintf(stderr, "bench: --parts %s: expected a comma-separated list of 1, 2, 3, 4\n", list.c_str());
          return 1;
        }
        parts.insert(list[k] - '0');
      }
      if (parts.empty()) {
        std::fprintf(stderr, "bench: --parts: expected a comma-separated list of 1, 2, 3, 4\n");
        return 1;
      }
    } else if (std::strcmp(argv[i], "--cuda-graph") == 0) {
      cuda_graph_wanted() = true;
    } else if (std::strcmp(argv[i], "--profile-kernels") == 0 && i + 1 < argc) {
      const std::string runs = argv[++i];
      char* end = nullptr;
      const long n = std::strtol(runs.c_str(), &end, 10);
      if (runs.empty() || *end != '\0' || n < 1 || n > 100) {
        std::fprintf(stderr, "bench: --profile-kernels %s: expected a number of runs from 1 to 100\n", runs.c_str());
        return 1;
      }
      bench::profile_runs() = int(n);
    } else {
      std::fprintf(stderr, "bench: unknown argument '%s'\n", argv[i]);
      return usage();
    }
  }
  if (bench::profile_runs() > 0 && which != "cpu" && cuda_available()) {
    try {  // CUPTI missing or refusing: one line now, and the figures without their kernel tables
      KernelProfile probe;
      (void)probe.stop();
    } catch (const Error& e) {
      std::fprintf(stderr, "bench: --profile-kernels: %s (profiling off)\n", e.what());
      bench::profile_runs() = 0;
    }
  }
  try {
    std::vector<Device> devices;
    if (which == "all" || which == "cpu") devices.push_back(Device::cpu());
    if (which != "cpu" && cuda_available()) devices.push_back(which == "all" ? Device::cuda() : Device::parse(which));
    if (which != "all" && which != "cpu" && !cuda_available()) {
      std::fprintf(stderr, "bench: --device %s: no GPU present\n", which.c_str());
      return 1;
    }
    for (Device d : devices) {
      std::printf("==== device %s ====\n", d.str().c_str());
      if (mode == "pipeline") {
        if (d.is_cpu() && parts.count(1)) bench_pipeline_scheduler();  // part (1) runs once, on host threads
        bench_pipeline_detail::bench_pipeline_models(d, parts);
        continue;
      }
      if (mode == "compress") {
        bench_compress(d);
        continue;
      }
      if (model) {
        if (model_name == "roberta") bench_model_roberta(d);
        else bench_model_mobilenetv2(d);
        continue;
      }
      bench_gemm(d);
      bench_conv(d);
      bench_bandwidth(d);
      bench_overhead(d);
    }
    if (!cuda_available()) std::printf("\n(no GPU present: CUDA figures skipped)\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
