// test_cuda_graph.cpp — CudaGraph (engine/cuda_graph.h): a captured training step replays bit for bit like the same
// steps run eagerly, and each rule a capture must keep fails with its one-line reason, leaving the device usable.
// CPU builds and machines without a GPU check only the refusal; the rest runs on a GPU.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "engine/cuda_graph.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "tests/test_util.h"

using namespace ep;

namespace {

// A two-layer perceptron's weights, its data, and SGD with momentum and weight decay, all on `d`, the same values
// whenever built with the same seed.
struct TinyNet {
  Tensor w1, b1, w2, b2, x, y;
  std::unique_ptr<SGD> opt;
  TinyNet(Device d, uint64_t seed) {
    w1 = test::randn({16, 12}, seed, DType::f32).to(d).requires_grad_();
    b1 = test::randn({12}, seed + 1, DType::f32).to(d).requires_grad_();
    w2 = test::randn({12, 5}, seed + 2, DType::f32).to(d).requires_grad_();
    b2 = test::randn({5}, seed + 3, DType::f32).to(d).requires_grad_();
    x = test::randn({32, 16}, seed + 4, DType::f32).to(d);
    std::vector<double> labels(32);
    for (size_t i = 0; i < labels.size(); ++i) labels[i] = double(i % 5);
    y = from_vector(labels, {32}, DType::i64, d);
    SGDOptions so;
    so.lr = 0.1;
    so.momentum = 0.9;
    so.weight_decay = 1e-3;
    opt = std::make_unique<SGD>(std::vector<Tensor>{w1, b1, w2, b2}, so);
  }
  void step(Tensor& loss_out) {
    Tensor h = relu(add(matmul(x, w1), b1));
    Tensor loss = cross_entropy(add(matmul(h, w2), b2), y);
    loss.backward();
    copy_(loss_out, loss);
    opt->step();
    opt->zero_grad();
  }
};

}  // namespace

TEST_CASE("cuda graph: refused without a GPU; with one, a captured SGD step replays like eager steps, bit for bit") {
  CHECK_THROWS_AS(CudaGraph::capture(Device::cpu(), [] {}), DeviceError);
  if (!test::have_cuda()) return;
  const Device gpu = Device::cuda();
  TinyNet eager(gpu, 5), graphed(gpu, 5);
  Tensor loss_eager = zeros({}, DType::f32, gpu), loss_graph = zeros({}, DType::f32, gpu);
  // Two eager steps each (the momentum buffers are made at the first), then 5 more: eagerly, or as replays.
  for (int i = 0; i < 2; ++i) eager.step(loss_eager), graphed.step(loss_graph);
  CudaGraph g = CudaGraph::capture(gpu, [&] { graphed.step(loss_graph); });
  CHECK(g.defined());
  std::vector<double> eager_losses, graph_losses;
  for (int i = 0; i < 5; ++i) {
    eager.step(loss_eager);
    eager_losses.push_back(loss_eager.item());
    g.launch();
    graph_losses.push_back(loss_graph.item());
  }
  CHECK(eager_losses == graph_losses);
  CHECK(eager_losses.front() != eager_losses.back());  // the replays train: the loss moves
  CHECK(eager.w1.to_double_vector() == graphed.w1.to_double_vector());
  CHECK(eager.b2.to_double_vector() == graphed.b2.to_double_vector());
}

TEST_CASE("cuda graph: each broken rule fails the capture with its reason, and the device works on") {
  if (!test::have_cuda()) return;
  const Device gpu = Device::cuda();
  Tensor a = test::randn({64}, 7, DType::f32).to(gpu);
  auto reason = [&](const std::function<void()>& fn) {
    try {
      (void)CudaGraph::capture(gpu, fn);
    } catch (const DeviceError& e) {
      return std::string(e.what());
    }
    return std::string("captured");
  };
  // a read-back inside the step (refused before CUDA sees it)
  CHECK(test::contains(reason([&] { (void)mul(a, 2.0).item(); }), "to the host inside a captured step"));
  // waiting for the GPU inside the step: CUDA itself refuses it and invalidates the capture
  CHECK(test::contains(reason([&] { Tensor t = mul(a, 2.0); synchronize(gpu); }), "[cuda graph] capture failed"));
  // a copy from the host (a replay would repeat it from memory long gone)
  CHECK(test::contains(reason([&] { (void)from_vector({1.0, 2.0}, {2}, DType::f32, gpu); }), "from the host"));
  // a tensor made inside that outlives the step
  Tensor kept;
  CHECK(test::contains(reason([&] { kept = mul(a, 3.0); }), "outlive it"));
  kept = Tensor();  // its memory went with the graph: dropping it frees nothing twice
  // a tensor made before, released inside (a replay would read freed memory)
  Tensor before = mul(a, 4.0);
  CHECK(test::contains(reason([&] { before = Tensor(); }), "released inside it"));
  // the device works on: an eager op and a clean capture after the failures
  CHECK(mul(a, 0.5).to_double_vector()[3] == doctest::Approx(a.to_double_vector()[3] * 0.5));
  Tensor out = zeros({64}, DType::f32, gpu);
  CudaGraph ok = CudaGraph::capture(gpu, [&] { Tensor t = mul(a, 2.0); copy_(out, t); });
  ok.launch();
  CHECK(out.to_double_vector()[5] == doctest::Approx(a.to_double_vector()[5] * 2.0));
}
