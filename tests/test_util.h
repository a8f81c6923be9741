// test_util.h — shared test helpers: the device under test, random inputs, closeness, a float64 central-difference
// gradcheck, and a CPU-vs-CUDA parity check (forward and backward). Both record which ops they covered, so
// test_zz_coverage.cpp can fail when a registered differentiable op has no case.
#pragma once
#include <doctest/doctest.h>

#include <filesystem>
#include <functional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/tensor.h"

namespace ep::test {

// DEVICE=cuda selects the GPU when one is present (else prints a notice once and uses the CPU).
Device test_device();
// True when a GPU is present; otherwise prints "CUDA cases skipped: ..." once and returns false.
bool have_cuda();

// `t` made a leaf that requires a gradient (for building gradcheck and parity inputs inline).
inline Tensor leaf(Tensor t) {
  t.requires_grad_();
  return t;
}

// Deterministic random tensors (std::mt19937_64 on the host, then placed on `device`).
Tensor randn(const Shape& shape, uint64_t seed, DType dtype = DType::f64, Device device = Device::cpu(),
             double scale = 1.0);
Tensor rand_uniform(const Shape& shape, uint64_t seed, double lo, double hi, DType dtype = DType::f64,
                    Device device = Device::cpu());
// Uniform values kept at least `gap` away from each kink (e.g. {0} for relu, {0, 6} for relu6).
Tensor rand_away_from(const Shape& shape, uint64_t seed, const std::vector<double>& kinks, double gap, double lo,
                      double hi, DType dtype = DType::f64, Device device = Device::cpu());
Tensor randint(const Shape& shape, uint64_t seed, int64_t lo, int64_t hi, DType dtype = DType::i64,
               Device device = Device::cpu());

// max |a-b| <= atol + rtol*|b| elementwise. NaN passes only where both are NaN and equal_nan is set (parity checks:
// both backends must agree that, e.g., the mean of an empty dim is NaN). On failure, `why` says where.
bool allclose(const Tensor& a, const Tensor& b, double atol, double rtol, std::string* why = nullptr,
              bool equal_nan = false);
#define CHECK_ALLCLOSE(a, b, atol, rtol, ...)                                          \
  do {                                                                                 \
    std::string why_;                                                                  \
    bool ok_ = ::ep::test::allclose((a), (b), (atol), (rtol), &why_, ##__VA_ARGS__);   \
    INFO(why_);                                                          \
    CHECK(ok_);                                                          \
  } while (0)

using OpFn = std::function<Tensor(const std::vector<Tensor>&)>;

struct GradcheckOptions {
  double eps = 1e-6, atol = 1e-5, rtol = 1e-3;
};
// Central differences in float64 on the inputs' device. Inputs with requires_grad set are checked. The scalar checked
// is sum(out * w) for a fixed random w, so every output element's gradient matters. First, on the CPU, the same
// function runs in float32 (float64 inputs cast) for a random-direction check at eps 1e-4, atol = rtol = 2e-3
// (reliability.md goal 2).
void gradcheck(const OpFn& fn, std::vector<Tensor> inputs, GradcheckOptions opt = {});

// Runs fn on the CPU inputs (f32) and on CUDA copies; compares the outputs and, for inputs with requires_grad, the
// gradients of sum(out * w). Skips (once-printed notice) without a GPU.
void check_parity(const OpFn& fn, const std::vector<Tensor>& cpu_inputs, double atol = 1e-3, double rtol = 1e-3);

std::set<std::string>& gradchecked_ops();
std::set<std::string>& directional_checked_ops();  // by gradcheck's float32 random-direction check (goal 2)
std::set<std::string>& parity_checked_ops();

// ---- files and errors, for the loaders' bad-input tests -------------------------------------------------------
// A fresh directory under the system temp folder, removed with its contents when the object goes.
struct TempDir {
  std::filesystem::path path;
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  // Writes `bytes` verbatim to `name` inside the directory and returns the file's path.
  std::string write(const std::string& name, const std::string& bytes) const;
};

// Runs f and returns the message of the exception of type E it throws: "" when it throws nothing,
// "<other exception>" when it throws something else.
template <class E, class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  } catch (...) {
    return "<other exception>";
  }
  return "";
}

inline bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// Whether the real data at `path` (e.g. ../shared/data/...) is here; says so and lets the test skip when it is not.
inline bool have_data(const std::string& path) {
  if (std::filesystem::exists(path)) return true;
  MESSAGE("skipped: " << path << " not found (run from the repo root with ../shared/data present)");
  return false;
}

// ---- mutation fuzzing of the readers of untrusted bytes ----------------------------------------------------------

// One random edit of `s`, the kind a fuzzer's havoc stage makes: flip a bit; set a byte to a value parsers treat
// specially (0, 0xff, 0x80, tab, newline, '\r', a quote, a bracket, a minus); replace a digit by another digit (this
// reaches the numbers inside text headers: offsets, shapes, ids, labels); delete, duplicate or insert a short run;
// truncate (to at least one byte). A deletion can empty a very short input; an empty input gets one random byte.
std::string mutate_bytes(const std::string& s, std::mt19937_64& rng);

// Runs `iterations` (times EP_FUZZ_SCALE, default 1) mutants (1 to 3 edits each) of every seed of the fuzz target
// `target` (tests/fuzz_targets.h). A mutant may be read whole or rejected with the reader's own error type; any other
// exception fails the test with the mutant's size and trial number. Returns {accepted, rejected}, so a case can check
// that the mutants reach both paths. Under AddressSanitizer (make SANITIZE=address) a read past a buffer is a crash,
// which is the point. libFuzzer runs the same targets guided by coverage (make fuzz).
struct FuzzCounts { int accepted = 0, rejected = 0; };
int fuzz_scale();  // EP_FUZZ_SCALE (default 1): longer fuzzing runs, e.g. EP_FUZZ_SCALE=50 under SANITIZE=address
FuzzCounts fuzz_target_mutants(const std::string& target, int iterations, uint64_t rng_seed);

}  // namespace ep::test
