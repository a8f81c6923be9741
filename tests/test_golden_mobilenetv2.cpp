// test_golden_mobilenetv2.cpp — parity with torchvision: loads the fixtures tests/golden/make_fixtures.py wrote (random
// weights, an input batch, PyTorch's eval logits, train-mode logits, loss, gradients and updated running statistics)
// and checks our MobileNetV2 (both variants, width 0.25) to 1e-4 relative, on the CPU and, when present, on CUDA.
// Not a test of the safetensors reader's validation rules (engine's own tests) nor of training dynamics.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <string>

#include "engine/safetensors.h"
#include "layers/mobilenetv2.h"
#include "layers/state.h"
#include "tests/test_util.h"

using namespace ep;
using namespace ep::nn;

namespace {

const char* kFixtureDir = "tests/golden/";  // committed next to this file; the suite runs from the repository root

bool is_reference_entry(const std::string& name) {
  return name == "input" || name == "labels" || name == "logits" || name == "logits_train" || name == "loss" ||
         name.starts_with("grad.") || name.starts_with("after.");
}

const Tensor& entry(const SafetensorsFile& f, const std::string& name) {
  for (const auto& [n, t] : f.tensors)
    if (n == name) return t;
  FAIL("fixture has no tensor '" << name << "'");
  throw std::logic_error("unreachable");
}

// Relative to the reference's scale: |got - ref| <= 1e-4 * (max|ref| + |ref|) element-wise, so tiny entries of a
// tensor are held to the tensor's scale and large ones to their own.
void check_close(const std::string& what, const Tensor& got, const Tensor& ref, double rtol = 1e-4) {
  Tensor g = got.detach().cpu().to(DType::f64), r = ref.to(DType::f64);
  REQUIRE_MESSAGE(g.shape() == r.shape(), what << ": shape " << shape_str(g.shape()) << " vs reference "
                                                << shape_str(r.shape()));
  double scale = 0;
  for (double v : r.to_double_vector()) scale = std::max(scale, std::abs(v));
  std::string why;
  bool ok = test::allclose(g, r, rtol * scale, rtol, &why);
  INFO(what << " (reference max |x| " << scale << "): " << why);
  CHECK(ok);
}

void run_fixture(const std::string& variant, Device device) {
  const std::string path = std::string(kFixtureDir) + "mobilenetv2_" + variant + ".safetensors";
  REQUIRE_MESSAGE(std::filesystem::exists(path), path << " missing: regenerate with tests/golden/make_fixtures.py");
  SafetensorsFile f = read_safetensors(path);
  CHECK(f.metadata.at("variant") == variant);

  MobileNetV2Options o;
  o.variant = parse_mobilenetv2_variant(variant);
  o.width_mult = std::stod(f.metadata.at("width_mult"));
  o.num_classes = std::stoll(f.metadata.at("num_classes"));
  MobileNetV2 m(o);
  SafetensorsFile weights;
  for (const auto& e : f.tensors)
    if (!is_reference_entry(e.first)) weights.tensors.push_back(e);
  LoadReport rep = load_state(m, weights, /*strict=*/true);  // every key present, none extra, all shapes equal
  CHECK(rep.loaded == weights.tensors.size());
  to_device(m, device);

  Tensor x = entry(f, "input").to(device);
  Tensor labels = entry(f, "labels").to(device);

  m.set_train(false);
  check_close(variant + " eval logits", m.forward(x), entry(f, "logits"));

  m.set_train(true);
  m.drop.set_train(false);  // the fixture's train pass holds dropout at identity (masks cannot match PyTorch's)
  Tensor logits = m.forward(x);
  check_close(variant + " train logits", logits, entry(f, "logits_train"));
  Tensor loss = cross_entropy(logits, labels);
  check_close(variant + " loss", loss, entry(f, "loss"));
  loss.backward();

  std::map<std::string, Tensor> params;
  for (auto& [name, p] : named_parameters(m)) params[name] = p;
  int grads = 0;
  for (const auto& [name, ref] : f.tensors) {
    if (!name.starts_with("grad.")) continue;
    const std::string pname = name.substr(5);
    REQUIRE_MESSAGE(params.count(pname), "fixture gradient for unknown parameter " << pname);
    REQUIRE_MESSAGE(params[pname].grad().defined(), pname << " got no gradient");
    check_close(variant + " " + name, params[pname].grad(), ref);
    ++grads;
  }
  CHECK(grads >= 8);

  std::map<std::string, Tensor> state;
  for (auto& [name, t] : state_dict(m)) state[name] = t;
  int after = 0;
  for (const auto& [name, ref] : f.tensors) {
    if (!name.starts_with("after.")) continue;
    check_close(variant + " " + name, state.at(name.substr(6)), ref);
    ++after;
  }
  CHECK(after == 4);
}

}  // namespace

TEST_CASE("golden mobilenetv2: cifar variant matches torchvision on the CPU") { run_fixture("cifar", Device::cpu()); }

TEST_CASE("golden mobilenetv2: imagenet variant matches torchvision on the CPU") {
  run_fixture("imagenet", Device::cpu());
}

TEST_CASE("golden mobilenetv2: both variants match torchvision on CUDA") {
  if (!test::have_cuda()) return;
  run_fixture("cifar", Device::cuda());
  run_fixture("imagenet", Device::cuda());
}
