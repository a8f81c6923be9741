// bench_compress.h — `bench compress`: encode and decode GB/s (bytes of fp32 input per second, median of reps) of every
// compression method on split-point-sized tensors, next to the device's measured copy bandwidth, with each method's
// payload ratio to fp32 and SNR. Not a unit test; apps/bench/torch_compress.py times the PyTorch twins the same way.
// On a GPU, "encode" leaves the payload where the method's encoder leaves it (quant, sortquant, topk, kmeans, fp8 and
// none keep their codes on the GPU; compress/payload.h), as one-process split training uses it; "+ to host" adds the
// copy a wire needs (Payload::host_copy; on the CPU the encode itself); "decode" reads that GPU payload in place.
#pragma once
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "apps/bench_timing.h"
#include "compress/methods.h"
#include "compress/stats.h"
#include "engine/device.h"
#include "engine/random.h"
#include "engine/tensor.h"

namespace ep::compress_bench {

using namespace ep::compress;

using bench::median_ms;

// One size: returns the wall seconds it took (the CPU uses it to decide whether the big size fits the budget).
inline double bench_one_size(Device d, const Shape& shape, int reps, int warmup) {
  const auto wall0 = std::chrono::steady_clock::now();
  Tensor x = empty(shape, DType::f32, d);
  Generator gen(1234);
  normal_(x, 0.0, 1.0, gen);  // activation-like: most mass near 0, a few large values
  const double bytes = double(x.numel()) * 4.0;
  auto gbs = [&](double ms) { return ms > 0 ? bytes / (ms * 1e6) : 0.0; };
  const double copy_ms = median_ms(d, [&] { (void)x.clone(); }, reps, warmup);
  const double host_ms = d.is_cuda() ? median_ms(d, [&] { (void)x.cpu(); }, reps, warmup) : 0.0;
  std::printf("\n[compress] f32 %s (%.1f MB) on %s; GB/s of fp32 input, median of %d\n", shape_str(shape).c_str(),
              bytes / 1e6, d.str().c_str(), reps);
  std::printf("  copy on device (clone) %.1f GB/s%s", gbs(copy_ms), d.is_cuda() ? "" : "\n");
  if (d.is_cuda()) std::printf(" | device to host %.1f GB/s\n", gbs(host_ms));
  std::printf("  %-40s %12s %12s %12s %10s %9s\n", "method", "encode GB/s", "+ to host", "decode GB/s", "ratio",
              "SNR dB");
  const std::vector<std::string> specs = {"none", "quant:bits=8", "quant:bits=4", "sortquant:bits=6,split=2",
                                          "sortquant:bits=6,split=2,mode=sampled", "topk:ratio=0.1",
                                          "kmeans:bits=4", "lowrank:rank=4", "fp8"};
  for (const std::string& spec : specs) {
    auto c = parse_compressor(spec);
    Payload p = c->encode(x);
    const CompressionStats s = compute_stats(x, c->decode(p, d), p.bytes());
    const double enc_ms = median_ms(d, [&] { p = c->encode(x); }, reps, warmup);
    const double dec_ms = median_ms(d, [&] { (void)c->decode(p, d); }, reps, warmup);
    // On the CPU the payload is host memory already: "+ to host" is the encode itself.
    const double wire_ms = d.is_cuda() ? median_ms(d, [&] { (void)c->encode(x).host_copy(); }, reps, warmup) : enc_ms;
    std::printf("  %-40s %12.2f %12.2f %12.2f %10.4f %9.2f\n", spec.c_str(), gbs(enc_ms), gbs(wire_ms), gbs(dec_ms),
                s.ratio_fp32, s.snr_db);
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
}

}  // namespace ep::compress_bench

namespace ep {

// The 12.6 MB (32x128x768) and 102 MB (64x32x112x112) cases; on the CPU fewer reps, and the 102 MB case only when the
// small one suggests it fits in ~20 s. quick: one tiny tensor and one rep (the test suite's smoke run).
inline void bench_compress(Device d, bool quick = false) {
  using namespace compress_bench;
  if (quick) {
    bench_one_size(d, {4, 8, 33}, 1, 0);
    return;
  }
  const int reps = d.is_cuda() ? 20 : 3, warmup = d.is_cuda() ? 3 : 1;
  const double small_s = bench_one_size(d, {32, 128, 768}, reps, warmup);
  const double big_estimate_s = small_s * (64.0 * 32 * 112 * 112) / (32.0 * 128 * 768);
  if (d.is_cpu() && big_estimate_s > 20.0) {
    std::printf("\n[compress] [64,32,112,112] (102.8 MB) skipped on the CPU: estimated %.0f s from the 12.6 MB case\n",
                big_estimate_s);
    return;
  }
  bench_one_size(d, {64, 32, 112, 112}, reps, warmup);
}

}  // namespace ep
