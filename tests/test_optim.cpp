// test_optim.cpp — SGD and AdamW against hand-computed updates and a loop-by-loop transcription of torch.optim's
// single-tensor path, state visiting/restoring, clip_grad_norm_, CPU-vs-CUDA update parity, LR schedules against
// their closed forms, and bad options. Not autograd: optimizers record nothing, so there is no gradcheck here.
#include <doctest/doctest.h>

#include <cmath>
#include <numbers>

#include "engine/lr_schedule.h"
#include "engine/optim.h"
#include "tests/test_util.h"

using namespace ep;

namespace {

Tensor make_param(const std::vector<double>& v, DType dt = DType::f64, Device d = test::test_device()) {
  Tensor p = from_vector(v, {int64_t(v.size())}, dt, d);
  p.requires_grad_();
  return p;
}

void give_grad(Tensor& p, const std::vector<double>& g) {
  p.set_grad(from_vector(g, p.shape(), p.dtype(), p.device()));
}

double at(const Tensor& t, size_t i) { return t.to_double_vector()[i]; }

// Runs `steps` SGD steps on a one-element parameter starting at p0 with the given grads; returns p after each step.
std::vector<double> sgd_trace(const SGDOptions& o, double p0, const std::vector<double>& grads) {
  Tensor p = make_param({p0});
  SGD opt({p}, o);
  std::vector<double> out;
  for (double g : grads) {
    give_grad(p, {g});
    opt.step();
    out.push_back(at(p, 0));
  }
  return out;
}

}  // namespace

// ---- SGD against hand arithmetic -----------------------------------------------------------------------------------
TEST_CASE("sgd: plain, momentum, dampening, nesterov and weight decay match hand-computed steps") {
  const double tol = 1e-12;
  SUBCASE("plain") {
    // p = 1, lr 0.1: g 0.5 -> 1 - 0.05 = 0.95; g -1 -> 0.95 + 0.1 = 1.05
    auto p = sgd_trace({.lr = 0.1}, 1.0, {0.5, -1.0});
    CHECK(p[0] == doctest::Approx(0.95).epsilon(tol));
    CHECK(p[1] == doctest::Approx(1.05).epsilon(tol));
  }
  SUBCASE("momentum 0.9") {
    // step 1: buf = g = 0.5 (no dampening on the first step);  p = 1 - 0.1*0.5 = 0.95
    // step 2: buf = 0.9*0.5 + (-1) = -0.55;                      p = 0.95 + 0.055 = 1.005
    // step 3: buf = 0.9*(-0.55) + 2 = 1.505;                     p = 1.005 - 0.1505 = 0.8545
    auto p = sgd_trace({.lr = 0.1, .momentum = 0.9}, 1.0, {0.5, -1.0, 2.0});
    CHECK(p[0] == doctest::Approx(0.95).epsilon(tol));
    CHECK(p[1] == doctest::Approx(1.005).epsilon(tol));
    CHECK(p[2] == doctest::Approx(0.8545).epsilon(tol));
  }
  SUBCASE("momentum 0.9, dampening 0.5") {
    // step 1: buf = 0.5 (PyTorch clones the gradient: dampening is not applied);  p = 0.95
    // step 2: buf = 0.9*0.5 + 0.5*(-1) = -0.05;                                    p = 0.95 + 0.005 = 0.955
    // step 3: buf = 0.9*(-0.05) + 0.5*2 = 0.955;                                   p = 0.955 - 0.0955 = 0.8595
    auto p = sgd_trace({.lr = 0.1, .momentum = 0.9, .dampening = 0.5}, 1.0, {0.5, -1.0, 2.0});
    CHECK(p[0] == doctest::Approx(0.95).epsilon(tol));
    CHECK(p[1] == doctest::Approx(0.955).epsilon(tol));
    CHECK(p[2] == doctest::Approx(0.8595).epsilon(tol));
  }
  SUBCASE("nesterov") {
    // step 1: buf = 0.5;  d = 0.5 + 0.9*0.5 = 0.95;           p = 1 - 0.095 = 0.905
    // step 2: buf = 0.45 - 1 = -0.55;  d = -1 + 0.9*(-0.55) = -1.495;  p = 0.905 + 0.1495 = 1.0545
    auto p = sgd_trace({.lr = 0.1, .momentum = 0.9, .nesterov = true}, 1.0, {0.5, -1.0});
    CHECK(p[0] == doctest::Approx(0.905).epsilon(tol));
    CHECK(p[1] == doctest::Approx(1.0545).epsilon(tol));
  }
  SUBCASE("weight decay 0.1") {
    // step 1: d = 0.5 + 0.1*1 = 0.6;       p = 1 - 0.06 = 0.94
    // step 2: d = 0.5 + 0.1*0.94 = 0.594;  p = 0.94 - 0.0594 = 0.8806
    auto p = sgd_trace({.lr = 0.1, .weight_decay = 0.1}, 1.0, {0.5, 0.5});
    CHECK(p[0] == doctest::Approx(0.94).epsilon(tol));
    CHECK(p[1] == doctest::Approx(0.8806).epsilon(tol));
  }
  SUBCASE("weight decay 0.1 with momentum 0.9") {
    // step 1: d = 0.6;  buf = 0.6;                          p = 0.94
    // step 2: d = 0.5 + 0.094 = 0.594;  buf = 0.54 + 0.594 = 1.134;  p = 0.94 - 0.1134 = 0.8266
    auto p = sgd_trace({.lr = 0.1, .momentum = 0.9, .weight_decay = 0.1}, 1.0, {0.5, 0.5});
    CHECK(p[0] == doctest::Approx(0.94).epsilon(tol));
    CHECK(p[1] == doctest::Approx(0.8266).epsilon(tol));
  }
}

// A transcription of torch.optim.sgd._single_tensor_sgd / adamw's single-tensor path, element by element in double.
namespace {
struct RefSgd {
  SGDOptions o;
  std::vector<double> buf;
  void step(std::vector<double>& p, const std::vector<double>& g) {
    for (size_t i = 0; i < p.size(); ++i) {
      double d = g[i];
      if (o.weight_decay != 0) d += o.weight_decay * p[i];
      if (o.momentum != 0) {
        if (buf.size() < p.size()) buf.resize(p.size(), NAN);
        if (std::isnan(buf[i])) buf[i] = d;
        else buf[i] = o.momentum * buf[i] + (1 - o.dampening) * d;
        d = o.nesterov ? d + o.momentum * buf[i] : buf[i];
      }
      p[i] -= o.lr * d;
    }
  }
};
}  // namespace

TEST_CASE("sgd: every option combination follows torch.optim.SGD's loop over 3 steps of random grads") {
  const std::vector<SGDOptions> variants = {
      {.lr = 0.05},
      {.lr = 0.05, .momentum = 0.8},
      {.lr = 0.05, .momentum = 0.8, .dampening = 0.3},
      {.lr = 0.05, .momentum = 0.8, .weight_decay = 0.01, .nesterov = true},
      {.lr = 0.05, .momentum = 0.8, .dampening = 0.1, .weight_decay = 0.2},
  };
  for (size_t k = 0; k < variants.size(); ++k) {
    CAPTURE(k);
    Tensor p = test::randn({3, 5}, 10 + k, DType::f64, test::test_device());
    p.requires_grad_();
    std::vector<double> ref = p.to_double_vector();
    SGD opt({p}, variants[k]);
    RefSgd r{variants[k], {}};
    for (int s = 0; s < 3; ++s) {
      Tensor g = test::randn({3, 5}, 100 + 7 * k + s, DType::f64, test::test_device());
      p.set_grad(g);
      opt.step();
      r.step(ref, g.to_double_vector());
    }
    CHECK_ALLCLOSE(p, from_vector(ref, {3, 5}, DType::f64), 1e-13, 1e-12);
    CHECK(opt.step_count() == 3);
  }
}

// ---- AdamW -----------------------------------------------------------------------------------------------------------
TEST_CASE("adamw: three hand-computed steps with decoupled weight decay and bias correction") {
  // lr 0.1, betas (0.9, 0.999), eps 1e-8, weight decay 0.1; p = 1, grads 0.5, -1, 2.
  // step 1: p = 1*(1 - 0.01) = 0.99; m = 0.1*0.5 = 0.05; v = 0.001*0.25 = 0.00025;
  //         m/(1-0.9) = 0.5, v/(1-0.999) = 0.25, sqrt = 0.5; p = 0.99 - 0.1*0.5/(0.5+1e-8) = 0.890000002
  // step 2: p = 0.890000002*0.99 = 0.88110000198; m = 0.045 - 0.1 = -0.055; v = 0.00024975 + 0.001 = 0.00124975;
  //         m_hat = -0.055/0.19 = -0.28947368421; v_hat = 0.00124975/0.001999 = 0.62518759380, sqrt 0.79068805088;
  //         p = 0.88110000198 + 0.1*0.28947368421/0.79068805088 = 0.91771035422
  // step 3: p = 0.91771035422*0.99 = 0.90853325068; m = -0.0495 + 0.2 = 0.1505; v = 0.00124850025 + 0.004 =
  //         0.00524850025; m_hat = 0.1505/0.271 = 0.55535055351; v_hat = 0.00524850025/0.002997001 = 1.75125075033,
  //         sqrt 1.32334831028; p = 0.90853325068 - 0.1*0.55535055351/1.32334831028 = 0.86656768916
  Tensor p = make_param({1.0});
  AdamW opt({p}, {.lr = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.1});
  const double expect_p[] = {0.890000002, 0.9177103542205653, 0.8665676891558989};
  const double expect_m[] = {0.05, -0.055, 0.1505};
  const double expect_v[] = {0.00025, 0.00124975, 0.00524850025};
  const double grads[] = {0.5, -1.0, 2.0};
  for (int s = 0; s < 3; ++s) {
    CAPTURE(s);
    give_grad(p, {grads[s]});
    opt.step();
    CHECK(at(p, 0) == doctest::Approx(expect_p[s]).epsilon(1e-12));
    opt.visit_state([&](size_t i, const char* name, Tensor& t) {
      CHECK(i == 0);
      REQUIRE(t.defined());
      if (std::string(name) == "exp_avg") CHECK(at(t, 0) == doctest::Approx(expect_m[s]).epsilon(1e-12));
      else if (std::string(name) == "exp_avg_sq") CHECK(at(t, 0) == doctest::Approx(expect_v[s]).epsilon(1e-12));
      else FAIL("unexpected state name " << name);
    });
  }
  CHECK(opt.param_step(0) == 3);
}

TEST_CASE("adamw: bias correction makes the first step lr * sign(g) whatever the gradient's scale") {
  // t = 1: m_hat = g, v_hat = g^2, so the step is lr * g / (|g| + eps) ~= lr * sign(g) (eps tiny against |g|).
  for (double g : {1e-3, -0.7, 250.0}) {
    CAPTURE(g);
    Tensor p = make_param({2.0});
    AdamW opt({p}, {.lr = 0.01, .weight_decay = 0});
    give_grad(p, {g});
    opt.step();
    CHECK(at(p, 0) == doctest::Approx(2.0 - 0.01 * g / (std::abs(g) + 1e-8)).epsilon(1e-13));
  }
  // Without the correction, step 1 would be lr * 0.1*g / (sqrt(0.001)*|g|) = 3.16 * lr: check we are far from that.
  Tensor p = make_param({0.0});
  AdamW opt({p}, {.lr = 1.0, .weight_decay = 0});
  give_grad(p, {1.0});
  opt.step();
  CHECK(at(p, 0) == doctest::Approx(-1.0).epsilon(1e-7));
}

TEST_CASE("adamw: parameters without a grad are skipped and start their own step count later") {
  Tensor a = make_param({1.0, 2.0}), b = make_param({3.0});
  AdamW opt({a, b}, {.lr = 0.1, .weight_decay = 0.5});
  give_grad(a, {1.0, -1.0});
  opt.step();
  // b had no grad: untouched, even by weight decay (PyTorch skips it entirely), and it has no state yet.
  CHECK(at(b, 0) == 3.0);
  int undefined_states = 0;
  opt.visit_state([&](size_t i, const char*, Tensor& t) { undefined_states += (i == 1 && !t.defined()); });
  CHECK(undefined_states == 2);
  give_grad(b, {4.0});
  opt.step();
  CHECK(opt.param_step(0) == 2);
  CHECK(opt.param_step(1) == 1);
  // b's first step: 3*(1 - 0.05) - 0.1 * 4/(4 + 1e-8)
  CHECK(at(b, 0) == doctest::Approx(3.0 * 0.95 - 0.1 * 4.0 / (4.0 + 1e-8)).epsilon(1e-13));
  CHECK(opt.step_count() == 2);
}

TEST_CASE("adamw: weight-decay exemptions (HF's no_decay group) skip only the decay") {
  Tensor a = make_param({2.0}), b = make_param({2.0});
  AdamW opt({a, b}, {.lr = 0.1, .weight_decay = 0.5});
  opt.set_weight_decay_exempt({false, true});
  give_grad(a, {1.0});
  give_grad(b, {1.0});
  opt.step();
  // Both take the same Adam step -0.1 * 1/(1 + 1e-8); only a is first shrunk by 1 - 0.1*0.5.
  CHECK(at(a, 0) == doctest::Approx(2.0 * 0.95 - 0.1 / (1.0 + 1e-8)).epsilon(1e-13));
  CHECK(at(b, 0) == doctest::Approx(2.0 - 0.1 / (1.0 + 1e-8)).epsilon(1e-13));
  CHECK_THROWS_AS(opt.set_weight_decay_exempt({true}), ValueError);
}

namespace {
struct RefAdamW {
  AdamWOptions o;
  std::vector<double> m, v;
  int64_t t = 0;
  void step(std::vector<double>& p, const std::vector<double>& g, double lr) {
    if (m.empty()) m.assign(p.size(), 0), v.assign(p.size(), 0);
    ++t;
    const double bc1 = 1 - std::pow(o.beta1, double(t)), bc2 = 1 - std::pow(o.beta2, double(t));
    for (size_t i = 0; i < p.size(); ++i) {
      p[i] *= 1 - lr * o.weight_decay;
      m[i] = o.beta1 * m[i] + (1 - o.beta1) * g[i];
      v[i] = o.beta2 * v[i] + (1 - o.beta2) * g[i] * g[i];
      p[i] -= lr * (m[i] / bc1) / (std::sqrt(v[i] / bc2) + o.eps);
    }
  }
};
}  // namespace

TEST_CASE("adamw: follows the reference loop over 4 steps with a changing lr") {
  AdamWOptions o{.lr = 0.02, .beta1 = 0.8, .beta2 = 0.95, .eps = 1e-6, .weight_decay = 0.3};
  Tensor p = test::randn({4, 6}, 5, DType::f64, test::test_device());
  p.requires_grad_();
  std::vector<double> ref = p.to_double_vector();
  AdamW opt({p}, o);
  RefAdamW r{o, {}, {}};
  for (int s = 0; s < 4; ++s) {
    const double lr = 0.02 * (s + 1);
    opt.set_lr(lr);
    CHECK(opt.lr() == lr);
    Tensor g = test::randn({4, 6}, 50 + s, DType::f64, test::test_device());
    p.set_grad(g);
    opt.step();
    r.step(ref, g.to_double_vector(), lr);
  }
  CHECK_ALLCLOSE(p, from_vector(ref, {4, 6}, DType::f64), 1e-13, 1e-12);
}

// ---- state, zero_grad ------------------------------------------------------------------------------------------------
TEST_CASE("optimizer state is visited by name and a restored copy continues identically") {
  auto run = [](auto make_opt) {
    Tensor p = test::randn({2, 3}, 1, DType::f64, test::test_device());
    p.requires_grad_();
    auto opt = make_opt(p);
    for (int s = 0; s < 2; ++s) {
      p.set_grad(test::randn({2, 3}, 20 + s, DType::f64, test::test_device()));
      opt->step();
    }
    // "Checkpoint": parameter, state by (index, name), step count.
    Tensor p_saved = p.detach().clone();
    std::vector<std::pair<std::string, Tensor>> saved;
    opt->visit_state([&](size_t i, const char* name, Tensor& t) {
      REQUIRE(t.defined());
      saved.emplace_back(std::to_string(i) + "." + name, t.clone());
    });
    // Restore into a fresh optimizer over a fresh parameter.
    Tensor q = p_saved.clone();
    q.requires_grad_();
    auto opt2 = make_opt(q);
    size_t k = 0;
    opt2->visit_state([&](size_t i, const char* name, Tensor& t) {
      CHECK(!t.defined());
      REQUIRE(k < saved.size());
      CHECK(saved[k].first == std::to_string(i) + "." + name);
      t = saved[k++].second.clone();
    });
    CHECK(k == saved.size());
    opt2->set_step_count(opt->step_count());
    Tensor g = test::randn({2, 3}, 99, DType::f64, test::test_device());
    p.set_grad(g);
    q.set_grad(g.clone());
    opt->step();
    opt2->step();
    CHECK(p.to_double_vector() == q.to_double_vector());
    return saved.size();
  };
  CHECK(run([](Tensor& p) { return std::make_unique<SGD>(std::vector<Tensor>{p}, SGDOptions{.lr = 0.1, .momentum = 0.9}); }) == 1);
  CHECK(run([](Tensor& p) { return std::make_unique<AdamW>(std::vector<Tensor>{p}, AdamWOptions{.lr = 0.1}); }) == 2);
  // Plain SGD keeps no state at all.
  Tensor p = make_param({1.0});
  SGD plain({p}, {.lr = 0.1});
  int visits = 0;
  plain.visit_state([&](size_t, const char*, Tensor&) { ++visits; });
  CHECK(visits == 0);
}

TEST_CASE("zero_grad drops grads by default and zero-fills them on request; grad-less params are skipped") {
  Tensor a = make_param({1.0, 2.0}), b = make_param({3.0});
  SGD opt({a, b}, {.lr = 1.0});
  give_grad(a, {0.5, 0.5});
  opt.step();  // b has no grad: unchanged
  CHECK(b.to_double_vector() == std::vector<double>{3.0});
  CHECK(a.to_double_vector() == std::vector<double>{0.5, 1.5});
  opt.zero_grad(false);
  REQUIRE(a.grad().defined());
  CHECK(a.grad().to_double_vector() == std::vector<double>{0.0, 0.0});
  opt.zero_grad();
  CHECK(!a.grad().defined());
  opt.step();  // nothing has a grad: a no-op apart from the count
  CHECK(a.to_double_vector() == std::vector<double>{0.5, 1.5});
  CHECK(opt.step_count() == 2);
}

TEST_CASE("optimizers work on grads produced by backward()") {
  // loss = sum(w * x) -> dloss/dw = x; one SGD step with lr 0.5 moves w by -0.5 x.
  Tensor w = make_param({1.0, -1.0, 2.0});
  Tensor x = from_vector({0.2, 0.4, -0.6}, {3}, DType::f64, test::test_device());
  SGD opt({w}, {.lr = 0.5});
  sum(mul(w, x)).backward();
  opt.step();
  CHECK_ALLCLOSE(w, from_vector({0.9, -1.2, 2.3}, {3}, DType::f64), 1e-15, 1e-14);
}

// ---- clip_grad_norm_ -------------------------------------------------------------------------------------------------
TEST_CASE("clip_grad_norm_: total L2 norm over all grads, scaled by max_norm/(total+1e-6) only above it") {
  Tensor a = make_param({0.0, 0.0}), b = make_param({0.0}), c = make_param({5.0});  // c has no grad
  give_grad(a, {3.0, 4.0});
  give_grad(b, {12.0});
  // total = sqrt(9 + 16 + 144) = 13
  SUBCASE("below the threshold: returned, grads untouched") {
    CHECK(clip_grad_norm_({a, b, c}, 20.0) == doctest::Approx(13.0).epsilon(1e-15));
    CHECK(a.grad().to_double_vector() == std::vector<double>{3.0, 4.0});
    CHECK(b.grad().to_double_vector() == std::vector<double>{12.0});
  }
  SUBCASE("above: every grad times 6.5 / (13 + 1e-6)") {
    CHECK(clip_grad_norm_({a, b, c}, 6.5) == doctest::Approx(13.0).epsilon(1e-15));
    const double coef = 6.5 / (13.0 + 1e-6);
    CHECK_ALLCLOSE(a.grad(), from_vector({3 * coef, 4 * coef}, {2}, DType::f64), 1e-15, 1e-14);
    CHECK_ALLCLOSE(b.grad(), from_vector({12 * coef}, {1}, DType::f64), 1e-15, 1e-14);
    // The norm after clipping is just under max_norm.
    CHECK(clip_grad_norm_({a, b}, 100.0) == doctest::Approx(6.5).epsilon(1e-6));
  }
  SUBCASE("mixed f32 and f64 grads, and no grads at all") {
    Tensor d = make_param({0.0, 0.0}, DType::f32);
    give_grad(d, {1.0, 2.0});  // adds 5 to the squares: sqrt(174)
    CHECK(clip_grad_norm_({a, d, b}, 1e9) == doctest::Approx(std::sqrt(174.0)).epsilon(1e-12));
    CHECK(clip_grad_norm_({c}, 1.0) == 0.0);
    CHECK(clip_grad_norm_({}, 1.0) == 0.0);
  }
  SUBCASE("a large grad with odd size") {
    Tensor big = test::randn({1029, 917}, 3, DType::f64, test::test_device());
    big.requires_grad_();
    Tensor g = test::randn({1029, 917}, 4, DType::f64, test::test_device());
    big.set_grad(g);
    double expect = 0;
    for (double v : g.to_double_vector()) expect += v * v;
    expect = std::sqrt(expect);
    CHECK(clip_grad_norm_({big}, 1.0) == doctest::Approx(expect).epsilon(1e-12));
    CHECK(std::sqrt(sum(mul(big.grad(), big.grad())).item()) == doctest::Approx(1.0).epsilon(1e-5));
  }
}

TEST_CASE("clip_grad_norm_ in halves: per-parameter sums of squares, their norm, the scaling; split sums add up") {
  Tensor a = make_param({0.0, 0.0}), b = make_param({0.0}), c = make_param({5.0});  // c has no grad
  give_grad(a, {3.0, 4.0});
  give_grad(b, {12.0});
  const std::vector<double> sq = grad_sum_squares({a, c, b});
  CHECK(sq == std::vector<double>{25.0, 0.0, 144.0});
  CHECK(norm_from_sum_squares(sq) == 13.0);
  // Two "processes" holding a and b apart: their vectors, added element-wise, give the same sums and the same norm.
  const std::vector<double> first = grad_sum_squares({a, Tensor(), Tensor()});
  const std::vector<double> second = grad_sum_squares({Tensor(), c, b});
  std::vector<double> added(3);
  for (size_t i = 0; i < 3; ++i) added[i] = first[i] + second[i];
  CHECK(added == sq);
  clip_grads_to_norm({a, b}, 6.5, 13.0);
  const double coef = 6.5 / (13.0 + 1e-6);
  CHECK(a.grad().to_double_vector() == std::vector<double>{3.0 * coef, 4.0 * coef});
  CHECK(b.grad().to_double_vector() == std::vector<double>{12.0 * coef});
  clip_grads_to_norm({a, b}, 100.0, 6.5);  // under the limit: untouched
  CHECK(b.grad().to_double_vector() == std::vector<double>{12.0 * coef});
  CHECK_THROWS_AS(clip_grads_to_norm({a}, -1.0, 1.0), ValueError);
}

// ---- CPU vs CUDA -----------------------------------------------------------------------------------------------------
namespace {
// Steps a CPU and a CUDA copy of the same parameters with the same grads; compares params and state.
template <class MakeOpt>
void update_parity(MakeOpt make_opt, DType dt, double atol, double rtol) {
  // 40 tensors: the CUDA updates go 32 per launch, so the second launch and its short group are covered too.
  std::vector<Shape> shapes = {{1029, 917}, {1}, {0}, {5, 7}, {3, 1, 4}};
  for (int64_t k = 0; k < 35; ++k) shapes.push_back({1 + (k * 37) % 300, 1 + k % 3});
  std::vector<Tensor> pc, pg;
  for (size_t k = 0; k < shapes.size(); ++k) {
    Tensor p = test::randn(shapes[k], 30 + k, dt);
    pc.push_back(p.clone().requires_grad_());
    pg.push_back(p.to(Device::cuda()).requires_grad_());
  }
  auto oc = make_opt(pc);
  auto og = make_opt(pg);
  for (int s = 0; s < 3; ++s) {
    for (size_t k = 0; k < shapes.size(); ++k) {
      if (s == 1 && k == 3) {  // one parameter without a grad on one step
        pc[k].zero_grad();
        pg[k].zero_grad();
        continue;
      }
      Tensor g = test::randn(shapes[k], 300 + 10 * s + k, dt);
      pc[k].set_grad(g);
      pg[k].set_grad(g.to(Device::cuda()));
    }
    oc->step();
    og->step();
  }
  for (size_t k = 0; k < shapes.size(); ++k) {
    CAPTURE(k);
    CHECK_ALLCLOSE(pg[k].cpu(), pc[k], atol, rtol);
  }
  std::vector<Tensor> sc, sg;
  oc->visit_state([&](size_t, const char*, Tensor& t) { sc.push_back(t); });
  og->visit_state([&](size_t, const char*, Tensor& t) { sg.push_back(t); });
  REQUIRE(sc.size() == sg.size());
  for (size_t k = 0; k < sc.size(); ++k) {
    CAPTURE(k);
    REQUIRE(sc[k].defined() == sg[k].defined());
    if (sc[k].defined()) CHECK_ALLCLOSE(sg[k].cpu(), sc[k], atol, rtol);
  }
}
}  // namespace

TEST_CASE("cpu vs cuda: SGD and AdamW updates agree (f32 and f64, awkward shapes)") {
  if (!test::have_cuda()) return;
  for (DType dt : {DType::f32, DType::f64}) {
    CAPTURE(dtype_name(dt));
    const double atol = dt == DType::f32 ? 1e-6 : 1e-14, rtol = dt == DType::f32 ? 1e-5 : 1e-12;
    update_parity([](std::vector<Tensor>& p) {
      return std::make_unique<SGD>(p, SGDOptions{.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01, .nesterov = true});
    }, dt, atol, rtol);
    update_parity([](std::vector<Tensor>& p) {
      return std::make_unique<SGD>(p, SGDOptions{.lr = 0.1, .momentum = 0.5, .dampening = 0.2});
    }, dt, atol, rtol);
    update_parity([](std::vector<Tensor>& p) {
      return std::make_unique<AdamW>(p, AdamWOptions{.lr = 0.01, .weight_decay = 0.1});
    }, dt, atol, rtol);
  }
}

TEST_CASE("cpu vs cuda: clip_grad_norm_ totals and scaled grads agree") {
  if (!test::have_cuda()) return;
  for (DType dt : {DType::f32, DType::f64}) {
    CAPTURE(dtype_name(dt));
    std::vector<Tensor> pc, pg;
    const std::vector<Shape> shapes = {{1029, 917}, {0}, {1}, {7, 3}};
    for (size_t k = 0; k < shapes.size(); ++k) {
      Tensor g = test::randn(shapes[k], 40 + k, dt);
      Tensor a = zeros(shapes[k], dt), b = zeros(shapes[k], dt, Device::cuda());
      a.set_grad(g.clone());
      b.set_grad(g.to(Device::cuda()));
      pc.push_back(a);
      pg.push_back(b);
    }
    double tc = clip_grad_norm_(pc, 10.0), tg = clip_grad_norm_(pg, 10.0);
    CHECK(tg == doctest::Approx(tc).epsilon(dt == DType::f32 ? 1e-5 : 1e-12));
    for (size_t k = 0; k < shapes.size(); ++k) CHECK_ALLCLOSE(pg[k].grad().cpu(), pc[k].grad(), 1e-6, 1e-5);
    // Grads split over the CPU and the GPU count once each.
    Tensor a = zeros({2}, dt), b = zeros({1}, dt, Device::cuda());
    a.set_grad(from_vector({3, 4}, {2}, dt));
    b.set_grad(from_vector({12}, {1}, dt, Device::cuda()));
    CHECK(clip_grad_norm_({a, b}, 100.0) == doctest::Approx(13.0).epsilon(1e-7));
  }
}

// ---- bad inputs ------------------------------------------------------------------------------------------------------
TEST_CASE("optimizers reject bad options and bad parameters with the op named first") {
  Tensor p = make_param({1.0});
  CHECK_THROWS_WITH_AS(SGD({p}, {.lr = -0.1}), "[sgd] invalid learning rate: -0.1", ValueError);
  CHECK_THROWS_WITH_AS(SGD({p}, {.lr = 0.1, .momentum = -0.5}), "[sgd] invalid momentum value: -0.5", ValueError);
  CHECK_THROWS_WITH_AS(SGD({p}, {.lr = 0.1, .weight_decay = -1}), "[sgd] invalid weight_decay value: -1",
                       ValueError);
  CHECK_THROWS_WITH_AS(SGD({p}, {.lr = 0.1, .nesterov = true}),
                       "[sgd] nesterov momentum requires a momentum and zero dampening (momentum 0, dampening 0)",
                       ValueError);
  CHECK_THROWS_AS(SGD({p}, {.lr = 0.1, .momentum = 0.9, .dampening = 0.1, .nesterov = true}), ValueError);
  CHECK_THROWS_WITH_AS(AdamW({p}, {.lr = -1}), "[adamw] invalid learning rate: -1", ValueError);
  CHECK_THROWS_WITH_AS(AdamW({p}, {.beta1 = 1.0}), "[adamw] invalid beta parameter at index 0: 1 (must be in [0, 1))",
                       ValueError);
  CHECK_THROWS_WITH_AS(AdamW({p}, {.beta2 = -0.1}),
                       "[adamw] invalid beta parameter at index 1: -0.1 (must be in [0, 1))", ValueError);
  CHECK_THROWS_AS(AdamW({p}, {.beta2 = 1.5}), ValueError);
  CHECK_THROWS_WITH_AS(AdamW({p}, {.eps = -1e-8}), "[adamw] invalid epsilon value: -1e-08", ValueError);
  CHECK_THROWS_WITH_AS(AdamW({p}, {.weight_decay = -0.01}), "[adamw] invalid weight_decay value: -0.01",
                       ValueError);
  CHECK_NOTHROW(AdamW({p}, {.beta1 = 0.0, .beta2 = 0.0}));

  SGD opt({p}, {.lr = 0.1});
  CHECK_THROWS_WITH_AS(opt.set_lr(-2), "[sgd] invalid learning rate: -2", ValueError);
  CHECK(opt.lr() == 0.1);
  CHECK_THROWS_WITH_AS(SGD({p, p}), "[sgd] parameter 1 appears more than once", ValueError);
  CHECK_THROWS_WITH_AS(SGD({Tensor()}), "[sgd] parameter 0 is an undefined tensor", ValueError);
  Tensor ints = zeros({2}, DType::i64);
  CHECK_THROWS_AS(SGD({ints}), DTypeError);
  Tensor nonleaf = mul(p, 2.0);
  CHECK_THROWS_AS(AdamW({nonleaf}), ValueError);
  // A grad of the wrong dtype is caught at step().
  Tensor q = make_param({1.0, 2.0});
  q.set_grad(from_vector({1, 1}, {2}, DType::f32, q.device()));
  SGD o2({q});
  CHECK_THROWS_WITH_AS(o2.step(), "[sgd] grad of parameter 0 is f32, parameter f64", DTypeError);
  CHECK_THROWS_WITH_AS(clip_grad_norm_({q}, -1.0), "[clip_grad_norm_] max_norm must be >= 0, got -1", ValueError);
}

// ---- LR schedules ----------------------------------------------------------------------------------------------------
TEST_CASE("lr schedules match their closed forms") {
  const double tol = 1e-15;
  CHECK(lr_constant(0.3, 0) == 0.3);
  CHECK(lr_constant(0.3, 12345) == 0.3);
  // StepLR(step_size 3, gamma 0.5): 0.1 for steps 0-2, 0.05 for 3-5, 0.025 for 6-8, 0.0125 at 9.
  CHECK(lr_step_decay(0.1, 0, 3, 0.5) == doctest::Approx(0.1).epsilon(tol));
  CHECK(lr_step_decay(0.1, 2, 3, 0.5) == doctest::Approx(0.1).epsilon(tol));
  CHECK(lr_step_decay(0.1, 3, 3, 0.5) == doctest::Approx(0.05).epsilon(tol));
  CHECK(lr_step_decay(0.1, 8, 3, 0.5) == doctest::Approx(0.025).epsilon(tol));
  CHECK(lr_step_decay(0.1, 9, 3, 0.5) == doctest::Approx(0.0125).epsilon(tol));
  // Cosine, base 1, warmup 10, total 110: 0 at step 0, 0.5 at 5, 1 at 10; progress p = (s-10)/100;
  // s = 35: 0.5*(1+cos(pi/4)) = 0.85355339059; s = 60: 0.5; s = 110: 0; past the end: stays at min_lr.
  CHECK(lr_cosine_warmup(1.0, 0, 10, 110) == 0.0);
  CHECK(lr_cosine_warmup(1.0, 5, 10, 110) == doctest::Approx(0.5).epsilon(tol));
  CHECK(lr_cosine_warmup(1.0, 10, 10, 110) == doctest::Approx(1.0).epsilon(tol));
  CHECK(lr_cosine_warmup(1.0, 35, 10, 110) == doctest::Approx(0.8535533905932737).epsilon(1e-14));
  CHECK(lr_cosine_warmup(1.0, 60, 10, 110) == doctest::Approx(0.5).epsilon(1e-14));
  CHECK(lr_cosine_warmup(1.0, 110, 10, 110) == doctest::Approx(0.0).epsilon(tol));
  CHECK(lr_cosine_warmup(1.0, 500, 10, 110) == doctest::Approx(0.0).epsilon(tol));
  // With min_lr 0.1: min + (1 - min) * factor -> 0.55 mid-way, 0.1 at and after the end; warmup still from 0.
  CHECK(lr_cosine_warmup(1.0, 60, 10, 110, 0.1) == doctest::Approx(0.55).epsilon(1e-14));
  CHECK(lr_cosine_warmup(1.0, 110, 10, 110, 0.1) == doctest::Approx(0.1).epsilon(1e-14));
  CHECK(lr_cosine_warmup(1.0, 1000, 10, 110, 0.1) == doctest::Approx(0.1).epsilon(1e-14));
  CHECK(lr_cosine_warmup(1.0, 5, 10, 110, 0.1) == doctest::Approx(0.5).epsilon(tol));
  // No warmup: full lr at step 0.
  CHECK(lr_cosine_warmup(2.0, 0, 0, 100) == 2.0);
  // Linear, base 2, warmup 4, total 20: 0, 1 (step 2), 2 (step 4), then 2*(20-s)/16: 1 at 12, 0 at 20 and after.
  CHECK(lr_linear_warmup(2.0, 0, 4, 20) == 0.0);
  CHECK(lr_linear_warmup(2.0, 2, 4, 20) == doctest::Approx(1.0).epsilon(tol));
  CHECK(lr_linear_warmup(2.0, 4, 4, 20) == doctest::Approx(2.0).epsilon(tol));
  CHECK(lr_linear_warmup(2.0, 12, 4, 20) == doctest::Approx(1.0).epsilon(tol));
  CHECK(lr_linear_warmup(2.0, 20, 4, 20) == 0.0);
  CHECK(lr_linear_warmup(2.0, 25, 4, 20) == 0.0);
  // A schedule from a config string.
  LRSchedule s = parse_lr_schedule("cosine", 1.0);
  s.warmup_steps = 10;
  s.total_steps = 110;
  CHECK(s.kind == LRScheduleKind::cosine);
  for (int64_t step : {0, 3, 10, 47, 110, 111})
    CHECK(s.lr_at(step) == lr_cosine_warmup(1.0, step, 10, 110));
  s.kind = parse_lr_schedule_kind("step");
  s.step_size = 2;
  s.gamma = 0.1;
  CHECK(s.lr_at(5) == doctest::Approx(1e-2).epsilon(tol));
  s.kind = parse_lr_schedule_kind("linear");
  CHECK(s.lr_at(60) == doctest::Approx(0.5).epsilon(tol));
  CHECK(parse_lr_schedule("constant", 0.4).lr_at(7) == 0.4);
  for (auto k : {LRScheduleKind::constant, LRScheduleKind::step, LRScheduleKind::cosine, LRScheduleKind::linear})
    CHECK(parse_lr_schedule_kind(lr_schedule_name(k)) == k);
}

TEST_CASE("lr schedules reject unknown names and impossible parameters") {
  CHECK_THROWS_WITH_AS(parse_lr_schedule_kind("exponential"),
                       "[lr_schedule] unknown schedule 'exponential' (expected constant, step, cosine or linear)",
                       ValueError);
  CHECK_THROWS_AS(parse_lr_schedule("Cosine", 0.1), ValueError);
  CHECK_THROWS_WITH_AS(lr_constant(0.1, -1), "[lr_schedule] step must be >= 0, got -1", ValueError);
  CHECK_THROWS_WITH_AS(lr_step_decay(0.1, 0, 0, 0.5), "[lr_schedule] step needs step_size >= 1, got 0", ValueError);
  CHECK_THROWS_WITH_AS(lr_cosine_warmup(0.1, 0, 20, 10),
                       "[lr_schedule] cosine needs 0 <= warmup_steps <= total_steps and total_steps >= 1, got "
                       "warmup_steps 20, total_steps 10",
                       ValueError);
  CHECK_THROWS_AS(lr_linear_warmup(0.1, 0, 0, 0), ValueError);
  CHECK_THROWS_AS(lr_cosine_warmup(0.1, 0, 0, 10, 0.5), ValueError);  // min_lr above base
  CHECK_THROWS_AS(lr_constant(-0.1, 0), ValueError);
  LRSchedule s;  // constant needs nothing else
  CHECK(s.lr_at(3) == s.base_lr);
  s.kind = LRScheduleKind::cosine;  // total_steps left at 0
  CHECK_THROWS_AS(s.lr_at(0), ValueError);
}
