// test_util.cpp — implementation of the shared test helpers (see test_util.h).
#include <fstream>
#include "tests/test_util.h"
#include "tests/fuzz_targets.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <sstream>

namespace ep::test {

Device test_device() {
  static Device d = [] {
    const char* e = std::getenv("DEVICE");
    if (e && std::strncmp(e, "cuda", 4) == 0) {
      if (cuda_available()) return Device::parse(e);
      std::printf("DEVICE=%s requested but no GPU is present: running the suite on the CPU\n", e);
    }
    return Device::cpu();
  }();
  return d;
}

bool have_cuda() {
  static bool ok = [] {
    bool a = cuda_available();
    if (!a)
      std::printf("CUDA cases skipped: %s\n",
                  cuda_built() ? "no GPU present" : "built without CUDA (CUDA=0 or no nvcc/cuDNN found)");
    return a;
  }();
  return ok;
}

Tensor randn(const Shape& shape, uint64_t seed, DType dtype, Device device, double scale) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd(0.0, scale);
  std::vector<double> v(size_t(shape_numel(shape)));
  for (auto& x : v) x = nd(rng);
  return from_vector(v, shape, dtype, device);
}

Tensor rand_uniform(const Shape& shape, uint64_t seed, double lo, double hi, DType dtype, Device device) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> ud(lo, hi);
  std::vector<double> v(size_t(shape_numel(shape)));
  for (auto& x : v) x = ud(rng);
  return from_vector(v, shape, dtype, device);
}

Tensor rand_away_from(const Shape& shape, uint64_t seed, const std::vector<double>& kinks, double gap, double lo,
                      double hi, DType dtype, Device device) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> ud(lo, hi);
  std::vector<double> v(size_t(shape_numel(shape)));
  for (auto& x : v) {
    bool ok;
    do {
      x = ud(rng);
      ok = true;
      for (double k : kinks) ok = ok && std::fabs(x - k) >= gap;
    } while (!ok);
  }
  return from_vector(v, shape, dtype, device);
}

Tensor randint(const Shape& shape, uint64_t seed, int64_t lo, int64_t hi, DType dtype, Device device) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> ud(lo, hi - 1);
  std::vector<double> v(size_t(shape_numel(shape)));
  for (auto& x : v) x = double(ud(rng));
  return from_vector(v, shape, dtype, device);
}

bool allclose(const Tensor& a, const Tensor& b, double atol, double rtol, std::string* why, bool equal_nan) {
  if (a.shape() != b.shape()) {
    if (why) *why = "shape " + shape_str(a.shape()) + " vs " + shape_str(b.shape());
    return false;
  }
  std::vector<double> x = a.to_double_vector(), y = b.to_double_vector();
  double worst = 0;
  size_t bad = 0, worst_i = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    double err = std::fabs(x[i] - y[i]);
    bool ok = err <= atol + rtol * std::fabs(y[i]) || (std::isinf(x[i]) && x[i] == y[i]) ||
              (equal_nan && std::isnan(x[i]) && std::isnan(y[i]));
    if (!ok) {
      ++bad;
      if (!(err <= worst)) { worst = err; worst_i = i; }
    }
  }
  if (bad && why) {
    std::ostringstream os;
    os << bad << " of " << x.size() << " elements differ; worst at flat index " << worst_i << ": " << x[worst_i]
       << " vs " << y[worst_i] << " (atol " << atol << ", rtol " << rtol << ")";
    *why = os.str();
  }
  return bad == 0;
}

std::set<std::string>& gradchecked_ops() {
  static std::set<std::string> s;
  return s;
}
std::set<std::string>& parity_checked_ops() {
  static std::set<std::string> s;
  return s;
}

static void collect_ops(const Tensor& out, std::set<std::string>& into) {
  if (!out.grad_fn()) return;
  std::vector<Node*> stack{out.grad_fn().get()};
  std::set<Node*> seen;
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    if (!seen.insert(n).second) continue;
    into.insert(n->name);
    for (auto& c : n->next)
      if (c) stack.push_back(c.get());
  }
}

// sum(out * w) as a double, without recording.
static double weighted_sum(const Tensor& out, const Tensor& w) {
  std::vector<double> o = out.to_double_vector(), ww = w.to_double_vector();
  double s = 0;
  for (size_t i = 0; i < o.size(); ++i) s += o[i] * ww[i];
  return s;
}

std::set<std::string>& directional_checked_ops() {
  static std::set<std::string> s;
  return s;
}

// reliability.md goal 2, JAX's check_vjp in float32: one random direction u per input and a unit-norm cotangent w.
// The analytic side is (Jᵀw)·Δ from one float32 backward; the numeric side is w·(f(x+) − f(x−)), both over 2ε with
// ε = 1e-4, where x± = fl32(x ± εu) and Δ = x+ − x− is the displacement actually taken (the rounding of x ± εu to
// float32 would otherwise be part of the error). JAX's float32 tolerance, atol = rtol = 2e-3, on that scalar.
// On the CPU only: its kernels are the reference, and each CUDA twin is held to them by a parity case (cuDNN may pick
// FFT or Winograd convolutions, whose float32 rounding the 2ε difference would magnify past this tolerance).
static void directional_check_f32(const OpFn& fn, const std::vector<Tensor>& inputs64) {
  constexpr double eps = 1e-4, tol = 2e-3;
  for (const Tensor& t : inputs64)
    if (t.defined() && !t.device().is_cpu()) return;
  auto as_f32 = [](const Tensor& t) {
    if (!t.defined() || t.dtype() != DType::f64) return t;
    Tensor c = t.detach().to(DType::f32);
    if (t.requires_grad()) c.requires_grad_();
    return c;
  };
  std::vector<Tensor> x, plus, minus;
  for (const Tensor& t : inputs64) x.push_back(as_f32(t));
  plus = minus = x;
  std::vector<std::vector<double>> displacement(x.size());
  for (size_t k = 0; k < x.size(); ++k) {
    if (!x[k].defined() || !x[k].requires_grad()) continue;
    std::vector<double> xv = x[k].to_double_vector(), u = randn(x[k].shape(), 4242 + k).to_double_vector();
    std::vector<double> xp(xv.size()), xm(xv.size());  // float32 values, held as doubles
    displacement[k].resize(xv.size());
    for (size_t i = 0; i < xv.size(); ++i) {
      xp[i] = double(float(xv[i] + eps * u[i]));
      xm[i] = double(float(xv[i] - eps * u[i]));
      displacement[k][i] = xp[i] - xm[i];
    }
    plus[k] = from_vector(xp, x[k].shape(), DType::f32, x[k].device());
    minus[k] = from_vector(xm, x[k].shape(), DType::f32, x[k].device());
  }
  Tensor out = fn(x);
  if (out.dtype() != DType::f32) return;  // an op whose output is not floating point (none is differentiable)
  collect_ops(out, directional_checked_ops());
  std::vector<double> wv = randn(out.shape(), 24680).to_double_vector();
  double norm = 0;
  for (double v : wv) norm += v * v;
  norm = std::sqrt(norm);
  for (double& v : wv) v = norm > 0 ? v / norm : 0;
  Tensor w = from_vector(wv, out.shape(), DType::f32, out.device());
  out.backward(w);
  double analytic = 0;
  for (size_t k = 0; k < x.size(); ++k) {
    if (displacement[k].empty() || !x[k].grad().defined()) continue;
    std::vector<double> g = x[k].grad().to_double_vector();
    for (size_t i = 0; i < g.size(); ++i) analytic += g[i] * displacement[k][i];
  }
  analytic /= 2 * eps;
  double numeric;
  {
    NoGradGuard ng;
    numeric = (weighted_sum(fn(plus), w) - weighted_sum(fn(minus), w)) / (2 * eps);
  }
  INFO("float32 directional check: analytic " << analytic << ", numeric " << numeric << " (atol = rtol = " << tol
                                              << ", output " << out.str() << ")");
  CHECK(std::abs(analytic - numeric) <= tol + tol * std::abs(numeric));
}

void gradcheck(const OpFn& fn, std::vector<Tensor> inputs, GradcheckOptions opt) {
  directional_check_f32(fn, inputs);
  for (auto& t : inputs)
    if (t.defined() && t.requires_grad()) {
      REQUIRE_MESSAGE(t.dtype() == DType::f64, "gradcheck needs float64 inputs");
      t.zero_grad();
    }
  Tensor out = fn(inputs);
  REQUIRE(out.requires_grad());
  collect_ops(out, gradchecked_ops());
  Tensor w = randn(out.shape(), 12345, DType::f64, out.device());
  out.backward(w);
  for (size_t k = 0; k < inputs.size(); ++k) {
    Tensor& x = inputs[k];
    if (!x.defined() || !x.requires_grad()) continue;
    std::vector<double> xv = x.to_double_vector();
    std::vector<double> numeric(xv.size());
    for (size_t i = 0; i < xv.size(); ++i) {
      double orig = xv[i];
      auto eval = [&](double v) {
        xv[i] = v;
        Tensor xp = from_vector(xv, x.shape(), DType::f64, x.device());
        std::vector<Tensor> in2 = inputs;
        in2[k] = xp;
        NoGradGuard ng;
        return weighted_sum(fn(in2), w);
      };
      double plus = eval(orig + opt.eps), minus = eval(orig - opt.eps);
      xv[i] = orig;
      numeric[i] = (plus - minus) / (2 * opt.eps);
    }
    Tensor num = from_vector(numeric, x.shape(), DType::f64);
    Tensor analytic = x.grad().defined() ? x.grad() : zeros(x.shape(), DType::f64, x.device());
    INFO("gradcheck input " << k << " " << x.str());
    CHECK_ALLCLOSE(analytic, num, opt.atol, opt.rtol);
  }
}

void check_parity(const OpFn& fn, const std::vector<Tensor>& cpu_inputs, double atol, double rtol) {
  if (!have_cuda()) return;
  std::vector<Tensor> a, b;
  for (const Tensor& t : cpu_inputs) {
    if (!t.defined()) {
      a.push_back(t);
      b.push_back(t);
      continue;
    }
    Tensor ca = t.detach().clone(), cb = t.detach().to(Device::cuda());
    if (t.requires_grad()) {
      ca.requires_grad_();
      cb.requires_grad_();
    }
    a.push_back(ca);
    b.push_back(cb);
  }
  Tensor oa = fn(a), ob = fn(b);
  REQUIRE(ob.device().is_cuda());
  {
    INFO("parity forward " << oa.str());
    CHECK_ALLCLOSE(ob, oa, atol, rtol, true);
  }
  if (!oa.requires_grad()) return;
  collect_ops(ob, parity_checked_ops());
  Tensor w = randn(oa.shape(), 777, oa.dtype());
  oa.backward(w);
  ob.backward(w.to(Device::cuda()));
  for (size_t k = 0; k < a.size(); ++k) {
    if (!a[k].defined() || !a[k].requires_grad()) continue;
    INFO("parity gradient of input " << k << " " << a[k].str());
    REQUIRE(a[k].grad().defined());
    REQUIRE(b[k].grad().defined());
    CHECK_ALLCLOSE(b[k].grad(), a[k].grad(), atol, rtol, true);
  }
}

TempDir::TempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "edgepipe_test_XXXXXX").string();
  REQUIRE(::mkdtemp(pattern.data()) != nullptr);
  path = pattern;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
}

std::string TempDir::write(const std::string& name, const std::string& bytes) const {
  std::ofstream out(path / name, std::ios::binary);
  out << bytes;
  REQUIRE_MESSAGE(out.good(), "cannot write " << (path / name).string());
  return (path / name).string();
}

std::string mutate_bytes(const std::string& s, std::mt19937_64& rng) {
  static const char kSpecial[] = {0, char(0xff), char(0x80), '\t', '\n', '\r', '"', '[', ']', '{', '-', ','};
  std::string m = s;
  if (m.empty()) return std::string(1, char(rng()));
  const size_t at = rng() % m.size();
  switch (rng() % 8) {
    case 0:
      m[at] = char(m[at] ^ (1 << (rng() % 8)));
      break;
    case 1:
      m[at] = kSpecial[rng() % sizeof(kSpecial)];
      break;
    case 2: {  // a digit for another digit, at the first digit from `at` on (or anywhere, when there is none after)
      size_t d = m.find_first_of("0123456789", at);
      if (d == std::string::npos) d = m.find_first_of("0123456789");
      if (d != std::string::npos) m[d] = char('0' + rng() % 10);
      else m[at] = char(rng());
      break;
    }
    case 3:
      m.erase(at, 1 + rng() % 8);
      break;
    case 4:
      m.insert(at, m.substr(at, 1 + rng() % 16));
      break;
    case 5:
      m.insert(at, 1, char(rng()));
      break;
    case 6:
      m.resize(1 + rng() % m.size());
      break;
    default:
      m[at] = char(rng());
      break;
  }
  return m;
}

int fuzz_scale() {
  const char* v = std::getenv("EP_FUZZ_SCALE");
  const int scale = v != nullptr ? std::atoi(v) : 1;
  return scale > 0 ? scale : 1;
}

FuzzCounts fuzz_target_mutants(const std::string& target, int iterations, uint64_t rng_seed) {
  const fuzz::Target& t = fuzz::target(target);
  std::mt19937_64 rng(rng_seed);
  FuzzCounts counts;
  const int n = iterations * fuzz_scale();
  const std::vector<std::string> seeds = t.seeds();
  for (size_t s = 0; s < seeds.size(); ++s) {
    for (int trial = 0; trial < n; ++trial) {
      std::string m = seeds[s];
      const int edits = 1 + int(rng() % 3);
      for (int e = 0; e < edits; ++e) m = mutate_bytes(m, rng);
      try {
        ++(t.run(reinterpret_cast<const uint8_t*>(m.data()), m.size()) ? counts.accepted : counts.rejected);
      } catch (const std::exception& e) {
        FAIL(target << " seed " << s << " trial " << trial << " (" << m.size() << " bytes): " << e.what());
      }
    }
  }
  if (fuzz_scale() > 1)
    MESSAGE(target << ": " << n * int(seeds.size()) << " mutants, " << counts.accepted << " read whole, "
                   << counts.rejected << " rejected");
  return counts;
}

}  // namespace ep::test
