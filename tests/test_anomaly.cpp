// test_anomaly.cpp — anomaly mode: the first op to make NaN/Inf out of finite values is the one named, in its forward
// or its backward, with the module whose parameters it used; checks change no result. Graphs are built so that which
// op overflows first is known by hand (sqrt'(0) = Inf, log(0) = -Inf, 3e38 + 3e38 > FLT_MAX).
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "engine/anomaly.h"
#include "layers/mobilenetv2.h"
#include "tests/test_util.h"

using namespace ep;
using test::contains;

namespace {

// Anomaly mode is process-wide: on for one test case, then off with no names left behind.
struct AnomalyOn {
  AnomalyOn() { set_anomaly_mode(true); }
  ~AnomalyOn() {
    set_anomaly_mode(false);
    anomaly_forget_names();
  }
};

std::string anomaly_of(const std::function<void()>& f) { return test::error_of<AnomalyError>(f); }

nn::MobileNetV2Options tiny_mobilenet() {
  nn::MobileNetV2Options o;
  o.variant = nn::MobileNetV2Variant::cifar;
  o.num_classes = 10;
  o.width_mult = 0.25;
  o.dropout = 0;
  return o;
}

std::vector<std::pair<std::string, Tensor*>> named_state(nn::MobileNetV2& m) {
  std::vector<std::pair<std::string, Tensor*>> named;
  m.visit("", [&](const std::string& name, Tensor& t, bool) { named.emplace_back(name, &t); });
  return named;
}

}  // namespace

TEST_CASE("anomaly: off by default; a backward that makes Inf then passes unnoticed") {
  CHECK(!anomaly_mode());
  Tensor w = test::leaf(from_vector({1, 1, 1}, {3}, DType::f32));
  Tensor x = from_vector({1, 0, 2}, {3}, DType::f32);
  sum(sqrt(mul(x, w))).backward();  // d sqrt(u)/du at u = 0 is Inf
  CHECK(!std::isfinite(w.grad().to_double_vector()[1]));  // 0 * Inf
}

TEST_CASE("anomaly: the backward that makes Inf from a finite gradient is named, with the module before it") {
  AnomalyOn on;
  Tensor w = test::leaf(from_vector({1, 1, 1}, {3}, DType::f32));
  std::vector<std::pair<std::string, Tensor*>> names{{"layer.weight", &w}};
  anomaly_name_tensors(names);
  Tensor x = from_vector({1, 0, 2}, {3}, DType::f32);
  Tensor loss = sum(mul(sqrt(mul(x, w)), 2.0));  // forward finite: sqrt(0) = 0
  const std::string e = anomaly_of([&] { loss.backward(); });
  // sqrt, not the mul before it (whose incoming gradient would already be Inf) nor the scaling after it.
  CHECK_MESSAGE(contains(e, "[anomaly] sqrt backward (after layer, forward inputs [3]): returned NaN/Inf in the "
                            "gradient of its input 0 [3] from a finite incoming gradient"), e);
  CHECK(!w.grad().defined());  // stopped before anything reached the parameter
}

TEST_CASE("anomaly: a parameter's own gradient is named by its key") {
  AnomalyOn on;
  Tensor w = test::leaf(from_vector({4, 0, 1}, {3}, DType::f32));
  std::vector<std::pair<std::string, Tensor*>> names{{"encoder.scale", &w}};
  anomaly_name_tensors(names);
  Tensor loss = sum(sqrt(w));
  const std::string e = anomaly_of([&] { loss.backward(); });
  CHECK_MESSAGE(contains(e, "[anomaly] sqrt backward (in encoder, forward inputs [3]): returned NaN/Inf in the "
                            "gradient of encoder.scale from a finite incoming gradient"), e);
}

TEST_CASE("anomaly: a forward that makes -Inf from finite inputs, and one fed NaN, are told apart") {
  AnomalyOn on;
  Tensor w = test::leaf(from_vector({1, 1, 1}, {3}, DType::f32));
  std::vector<std::pair<std::string, Tensor*>> names{{"proj.weight", &w}};
  anomaly_name_tensors(names);
  std::string e = anomaly_of([&] { log(mul(from_vector({1, 0, 2}, {3}, DType::f32), w)); });
  CHECK_MESSAGE(contains(e, "[anomaly] log (after proj, forward inputs [3]): made NaN/Inf in its forward output [3] "
                            "from finite inputs"), e);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  e = anomaly_of([&] { mul(from_vector({1, nan, 2}, {3}, DType::f32), w); });
  CHECK_MESSAGE(contains(e, "[anomaly] mul (in proj, forward inputs [3], [3]): its forward output holds NaN/Inf "
                            "because input 0 [3] already did: it was not made by a recorded op (data fed to the "
                            "model"), e);
  w = test::leaf(from_vector({1, nan, 2}, {3}, DType::f32));  // a parameter gone bad, and named as such
  anomaly_name_tensors(names);
  e = anomaly_of([&] { mul(from_vector({1, 1, 1}, {3}, DType::f32), w); });
  CHECK_MESSAGE(contains(e, "because input 1 [3] already did: it is proj.weight"), e);
  // Without a gradient nothing is recorded, so nothing is checked: evaluation is never slowed or stopped.
  NoGradGuard ng;
  CHECK(anomaly_of([&] { log(mul(from_vector({0}, {1}, DType::f32), w)); }) == "");
}

TEST_CASE("anomaly: finite gradients that overflow when summed, at a fan-out and in a leaf's .grad") {
  AnomalyOn on;
  Tensor w = test::leaf(from_vector({1e-30}, {1}, DType::f32));  // small, so every forward value is finite
  std::vector<std::pair<std::string, Tensor*>> names{{"fc.weight", &w}};
  anomaly_name_tensors(names);
  Tensor a = sqrt(w);  // two consumers each send 3e38 (finite in f32); their sum is not
  Tensor loss = sum(add(mul(a, 3e38), mul(a, 3e38)));
  std::string e = anomaly_of([&] { loss.backward(); });
  CHECK_MESSAGE(contains(e, "[anomaly] sqrt backward (in fc, forward inputs [1]): the gradients its output's consumers "
                            "sent sum to NaN/Inf, though each was finite"), e);

  sum(mul(w, 3e38)).backward();  // .grad = 3e38
  e = anomaly_of([&] { sum(mul(w, 3e38)).backward(); });
  CHECK_MESSAGE(contains(e, "[anomaly] backward: adding a finite gradient to the .grad of fc.weight made it NaN/Inf"),
                e);

  e = anomaly_of([&] { sum(mul(w, 2.0)).backward(full({}, std::numeric_limits<double>::infinity())); });
  CHECK_MESSAGE(contains(e, "[anomaly] the gradient passed to backward() [] holds NaN/Inf"), e);
}

TEST_CASE("anomaly: in MobileNetV2 the overflowing convolution is named by its torchvision key, and by its unit") {
  nn::MobileNetV2 m(tiny_mobilenet());
  Tensor x = test::randn({2, 3, 32, 32}, 3, DType::f32);
  Tensor y = from_vector({1, 7}, {2}, DType::i64);
  auto named = named_state(m);
  Tensor* dw = nullptr;
  for (auto& [name, t] : named)
    if (name == "features.5.conv.1.0.weight") dw = t;  // block 5's depthwise 3x3 convolution
  REQUIRE(dw != nullptr);

  // Checks change nothing: a finite step has the same gradients, bit for bit, with anomaly mode on and off.
  cross_entropy(m.forward(x), y).backward();
  const std::vector<double> plain = dw->grad().to_double_vector();
  dw->zero_grad();
  {
    AnomalyOn on;
    anomaly_name_tensors(named);
    cross_entropy(m.forward(x), y).backward();
  }
  CHECK(dw->grad().to_double_vector() == plain);

  // 3e38 per tap: every output whose 9 inputs sum above 1.2 overflows, while every layer before it is unchanged.
  fill_(*dw, 3e38);
  AnomalyOn on;
  anomaly_name_tensors(named);
  std::string e = anomaly_of([&] { m.forward(x); });
  CHECK_MESSAGE(contains(e, "[anomaly] conv2d (in features.5.conv.1.0, forward inputs [2,"), e);
  CHECK_MESSAGE(contains(e, "made NaN/Inf in its forward output"), e);
  e = anomaly_of([&] {
    Tensor h = x;
    for (const nn::Unit& u : m.units()) h = u.forward(h);
  });
  CHECK_MESSAGE(contains(e, "[anomaly] conv2d (unit block5, in features.5.conv.1.0, forward inputs [2,"), e);
}
