// test_bench_loader.cpp — `bench loader`: how many batches and images its timing loop draws (counted by hand across
// epoch ends), the GPU figures it quotes against apps/bench/RESULTS.md, and a quick run of the app; also the other
// modes' flags (--parts, --profile-kernels) and the kernel profile's table. Not a benchmark.
#include <doctest/doctest.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "apps/bench_loader.h"
#include "engine/kernel_profile.h"
#include "engine/ops.h"
#include "tests/app_runner.h"
#include "tests/test_util.h"

using namespace ep;
using namespace ep::bench_loader_detail;

namespace {

// n blank 3x4x4 images, label i % 10: tiny, so the timing loop's bookkeeping is what the test sees.
std::shared_ptr<const data::ImageDataset> blank_set(int64_t n) {
  auto d = std::make_shared<data::ImageDataset>();
  d->height = d->width = 4;
  d->pixels.assign(size_t(n * d->image_bytes()), 0);
  for (int64_t i = 0; i < n; ++i) d->labels.push_back(i % 10);
  d->class_names.assign(10, "c");
  return d;
}

int count_rows(const std::string& out) {
  std::istringstream is(out);
  int rows = 0;
  for (std::string line; std::getline(is, line);)
    if (line.rfind("  train ", 0) == 0 || line.rfind("  eval ", 0) == 0) ++rows;
  return rows;
}

}  // namespace

TEST_CASE("bench loader: the timing loop draws two epochs' worth of batches across epoch ends") {
  // 300 images at batch 128: an epoch is 128, 128, 44. Two warm-up draws take batches 0 and 1 of epoch 0; the 6
  // timed draws are 44 | 128 128 44 | 128 128 = 600 images, two epochs' worth.
  data::LoaderOptions o;
  o.batch_size = 128;
  const LoaderFigures f = time_loader(blank_set(300), o, /*budget_s=*/1e9, /*max_epochs=*/2, /*min_batches=*/3,
                                      /*warmup=*/2);
  CHECK(f.batches == 6);
  CHECK(f.images == 600);
  CHECK(f.total_ms > 0);
  CHECK(f.median_ms > 0);
  CHECK(f.median_ms <= f.total_ms);

  // A spent budget stops at min_batches: 128 + 128 + 44 without warm-up.
  const LoaderFigures g = time_loader(blank_set(300), o, /*budget_s=*/0, 2, /*min_batches=*/3, /*warmup=*/0);
  CHECK(g.batches == 3);
  CHECK(g.images == 300);
}

TEST_CASE("bench loader: per-full-batch time and images/s from the totals") {
  LoaderFigures f;
  f.images = 600;
  f.total_ms = 300;  // 0.5 ms per image
  CHECK(f.ms_per_full_batch(128) == doctest::Approx(64.0));
  CHECK(f.images_per_s() == doctest::Approx(2000.0));
  CHECK(LoaderFigures{}.images_per_s() == 0);
  CHECK(LoaderFigures{}.ms_per_full_batch(128) == 0);
}

TEST_CASE("bench loader: the quoted H200 step times are the ones in apps/bench/RESULTS.md") {
  const std::string path = "apps/bench/RESULTS.md";
  if (!test::have_data(path)) return;
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  // The `bench model mobilenetv2` table rows: "| 128 | 21.26 ms, 6,020 img/s | ..." and the batch-256 one.
  for (int64_t batch : {int64_t(128), int64_t(256)}) {
    char row[64];
    std::snprintf(row, sizeof row, "| %ld | %.2f ms,", long(batch), h200_step_ms(batch));
    CHECK_MESSAGE(ss.str().find(row) != std::string::npos, "RESULTS.md has no row '" << row << "'");
  }
  CHECK(h200_step_ms(64) == 0);  // no figure: the table prints '-'
}

TEST_CASE("bench loader: `bench loader --quick` prints its table and exits 0; bad arguments fail") {
  if (!test::have_app("bench")) return;
  const test::AppRun r = test::run_app("bench", "loader --quick --data synthetic");
  INFO(r.out);
  CHECK(r.status == 0);
  CHECK(test::contains(r.out, "[loader]"));
  CHECK(test::contains(r.out, "synthetic shapes"));
  CHECK(test::contains(r.out, "512 images 3x32x32"));
  CHECK(test::contains(r.out, "vs GPU step"));
  CHECK(test::contains(r.out, "21.26 ms"));
  // train/eval x batch 128/256 x {1 thread, all cores}, then resize 224: 5 rows per thread count.
  const int threads = std::max(1, int(std::thread::hardware_concurrency()));
  CHECK(count_rows(r.out) == (threads > 1 ? 10 : 5));

  const test::AppRun bad = test::run_app("bench", "loader --frobnicate");
  CHECK(bad.status == 2);
  CHECK(test::contains(bad.out, "unknown argument '--frobnicate'"));
  const test::AppRun missing = test::run_app("bench", "loader --quick --data /nonexistent/cifar");
  CHECK(missing.status == 1);
  CHECK(test::contains(missing.out, "--data /nonexistent/cifar: no such file or directory"));
}

TEST_CASE("bench pipeline: --parts takes a list of 1-4 and rejects anything else with one line") {
  if (!test::have_app("bench")) return;
  for (const char* bad : {"5", "2,", ",2", "23", "", "2,,3", "a"}) {
    INFO("--parts '" << bad << "'");
    const test::AppRun r = test::run_app("bench", std::string("pipeline --device cpu --parts '") + bad + "'");
    CHECK(r.status == 1);
    CHECK(test::contains(r.out, "bench: --parts"));
    CHECK(test::contains(r.out, "expected a comma-separated list of 1, 2, 3, 4"));
  }
}

TEST_CASE("bench --profile-kernels: a run count from 1 to 100, else one line; the table's arithmetic") {
  if (test::have_app("bench")) {
    for (const char* bad : {"0", "101", "-3", "2x", "''"}) {
      INFO("--profile-kernels " << bad);
      const test::AppRun r = test::run_app("bench", std::string("compress --device cpu --profile-kernels ") + bad);
      CHECK(r.status == 1);
      CHECK(test::contains(r.out, "expected a number of runs from 1 to 100"));
    }
  }
  // Two names over 4 runs: per-run times, shares of the total, calls per run and the mean per call, by hand.
  const std::vector<KernelTime> rows = {{"gemm", 8, 6.0}, {"[memset]", 4, 2.0}, {"relu", 2, 0.5}};
  const std::string table = format_kernel_profile(rows, 2, 4);
  INFO(table);
  CHECK(test::contains(table, "    1.500  70.6%       2.0    750.00  gemm"));      // 6/4 ms, 6/8.5, 8/4, 6 ms / 8
  CHECK(test::contains(table, "    0.500  23.5%       1.0    500.00  [memset]"));  // 2/4, 2/8.5, 4/4, 2 ms / 4
  CHECK(test::contains(table, "    0.125   5.9%       0.5            (1 other names)"));
  CHECK(test::contains(table, "    2.125 100.0%       3.5            total GPU time per run"));
  CHECK(test::contains(table, "     ms/run  share calls/run   us/call  kernel"));  // the header over its columns
  const std::string long_name(150, 'k');  // a long name is cut when printed, not when summed
  CHECK(test::contains(format_kernel_profile({{long_name, 1, 1.0}}, 5, 1), std::string(117, 'k') + "...\n"));
  if (!cuda_built()) CHECK_THROWS_AS(KernelProfile(), DeviceError);
}

TEST_CASE("kernel profile (CUDA): a GEMM and a copy show up under their names, once per call") {
  if (!test::have_cuda()) return;
  const Device gpu = Device::cuda();
  Tensor a = test::randn({256, 256}, 1, DType::f32, gpu);
  synchronize(gpu);
  KernelProfile profile;
  for (int i = 0; i < 3; ++i) (void)matmul(a, a);
  (void)add(a, a);  // one of our own kernels: its name comes back demangled
  (void)a.cpu();
  const std::vector<KernelTime> rows = profile.stop();
  REQUIRE(!rows.empty());
  int64_t copies_to_host = 0, gemms = 0;
  bool ours_demangled = false;
  double total = 0;
  for (const KernelTime& r : rows) {
    INFO(r.name << ": " << r.calls);
    if (r.name == "[memcpy DtoH]") copies_to_host += r.calls;
    if (r.name.find("gemm") != std::string::npos) gemms += r.calls;
    ours_demangled |= r.name.rfind("_Z", 0) != 0 && r.name.find("ep::") != std::string::npos;
    total += r.total_ms;
  }
  CHECK(copies_to_host >= 1);
  CHECK(gemms >= 3);  // cuBLAS's kernel for each product (sm90_xmma_gemm_..., ampere_sgemm_..., cutlass ...sgemm...)
  CHECK(ours_demangled);
  CHECK(total > 0);
  CHECK_THROWS_AS((void)profile.stop(), DeviceError);  // stopped already
  KernelProfile again;                                 // the next profile starts clean
  CHECK(again.stop().empty());
}
