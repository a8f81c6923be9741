// test_async_device.cpp — ops that never make the host wait for the GPU: input checks judged at the next
// synchronization point, host-to-device copies that return at once, and several threads issuing GEMMs and
// convolutions on their own streams with their own handles. CPU cases run everywhere; CUDA cases skip without a GPU.
// Not the ops' numerics (test_nn_ops.cpp, test_embedding.cpp, test_conv.cpp, test_matmul.cpp).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <exception>
#include <thread>
#include <vector>

#include "engine/determinism.h"
#include "engine/device_check.h"
#include "pipeline/microbatch.h"
#include "pipeline/pipeline.h"
#include "tests/test_util.h"

using namespace ep;

TEST_CASE("check_on_device: CPU words are judged at once") {
  int judged = 0;
  check_on_device(from_vector({-1}, {1}, DType::i64), [&](const int64_t* w) {
    ++judged;
    CHECK(w[0] == -1);
  });
  CHECK(judged == 1);
  CHECK_THROWS_WITH_AS(check_on_device(from_vector({3, 7}, {2}, DType::i64),
                                       [](const int64_t* w) {
                                         EP_CHECK(w[1] < 5, ValueError, "[op] word ", w[1], " is too large");
                                       }),
                       "[op] word 7 is too large", ValueError);
  CHECK(pending_device_checks() == 0);
  auto never = [](const int64_t*) { FAIL("judged a malformed check"); };
  CHECK_THROWS_AS(check_on_device(zeros({1}), never), ValueError);                 // f32, not i64
  CHECK_THROWS_AS(check_on_device(zeros({5}, DType::i64), never), ValueError);     // more than kMaxCheckWords
  CHECK_THROWS_AS(check_on_device(zeros({0}, DType::i64), never), ValueError);     // no words
  CHECK_THROWS_AS(check_on_device(zeros({1, 1}, DType::i64), never), ValueError);  // not 1-D
  CHECK_THROWS_AS(check_on_device(Tensor(), never), ValueError);
}

TEST_CASE("CUDA: a bad target or index is reported at the next synchronization point, not by the op") {
  if (!test::have_cuda()) return;
  const Device d = Device::cuda();
  synchronize(d);  // nothing left over from other cases
  REQUIRE(pending_device_checks() == 0);
  Tensor x = test::leaf(zeros({4, 10}, DType::f32, d));
  Tensor loss;
  CHECK_NOTHROW(loss = cross_entropy(x, from_vector({1, 2, 3, 12}, {4}, DType::i64, d)));
  CHECK_NOTHROW(loss.backward());  // the kernels skip the bad row: nothing out of bounds meanwhile
  CHECK_THROWS_WITH_AS(loss.item(), "[cross_entropy] target 12 out of range [0,10) at row 3", ValueError);
  CHECK(pending_device_checks() == 0);
  // Reported once; the next loss is unaffected.
  CHECK(cross_entropy(x, from_vector({1, 2, 3, 4}, {4}, DType::i64, d)).item() == doctest::Approx(std::log(10.0)));

  Tensor w = test::leaf(test::randn({6, 3}, 1, DType::f32, d));
  Tensor out = embedding(w, from_vector({0, 6, -2, 5}, {4}, DType::i64, d));
  CHECK_NOTHROW(sum(out).backward());  // the scatter-add skips the two bad indices
  CHECK_THROWS_WITH_AS(synchronize(d), "[embedding] index 6 out of range [0,6)", ValueError);
  CHECK(pending_device_checks() == 0);
  // The rows that were in range got their gradient (ones from the sum); the bad indices added nothing anywhere.
  const std::vector<float> grad = w.grad().to_vector<float>();
  for (int64_t r = 0; r < 6; ++r)
    for (int64_t c = 0; c < 3; ++c) CHECK(grad[size_t(r * 3 + c)] == (r == 0 || r == 5 ? 1.f : 0.f));
  // Good input afterwards: the rows come back exactly.
  const std::vector<float> wv = w.to_vector<float>();
  CHECK(embedding(w, from_vector({5, 0}, {2}, DType::i64, d)).to_vector<float>() ==
        std::vector<float>{wv[15], wv[16], wv[17], wv[0], wv[1], wv[2]});

  // A check queued on another stream is judged by that stream's synchronize().
  Stream side(d);
  {
    StreamGuard guard(side);
    cross_entropy(zeros({2, 3}, DType::f32, d), from_vector({0, -7}, {2}, DType::i32, d));
  }
  CHECK_THROWS_WITH_AS(side.synchronize(), "[cross_entropy] target -7 out of range [0,3) at row 1", ValueError);
  CHECK(pending_device_checks() == 0);
}

TEST_CASE("CUDA: a host buffer may be overwritten as soon as its copy to the GPU returns") {
  if (!test::have_cuda()) return;
  const Device d = Device::cuda();
  // Work queued ahead of the copy, so the copy cannot have run yet when it returns: a chain of large GEMMs.
  Tensor a = test::randn({2048, 2048}, 3, DType::f32, d, 0.01);
  for (int64_t n : {int64_t(7), int64_t(20000), int64_t(1) << 22}) {  // inline, staged, and many staging rounds
    INFO("elements " << n);
    std::vector<double> values(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) values[size_t(i)] = double((i * 2654435761u) % 1000003u);
    Tensor host = from_vector(values, {n}, DType::f32);
    Tensor busy = a;
    for (int k = 0; k < 8; ++k) busy = matmul(busy, a);
    Tensor dev = host.to(d);
    std::memset(host.raw_data(), 0xff, host.nbytes());  // NaNs, had the copy read the buffer late
    host = Tensor();                                     // and freed
    const std::vector<float> back = dev.to_vector<float>();
    bool same = true;
    for (int64_t i = 0; i < n; ++i) same = same && back[size_t(i)] == float(values[size_t(i)]);
    CHECK(same);
  }
}

TEST_CASE("CUDA: threads on their own streams issue GEMMs and convolutions at once, with one thread's results") {
  if (!test::have_cuda()) return;
  const Device d = Device::cuda();
  const Tensor x = test::randn({8, 16, 20, 20}, 4, DType::f32, d);
  const Tensor wc = test::randn({24, 16, 3, 3}, 5, DType::f32, d, 0.1);
  const Tensor wd = test::randn({24, 1, 3, 3}, 6, DType::f32, d, 0.1);
  const Tensor m = test::randn({400, 64}, 7, DType::f32, d);
  // Forward and backward of a conv, a depthwise conv and a GEMM: every cuDNN pass and a cuBLAS call per step.
  auto work = [&](int rounds) {
    std::vector<std::vector<float>> out;
    for (int r = 0; r < rounds; ++r) {
      Tensor xi = test::leaf(x.detach());
      Tensor w1 = test::leaf(wc.detach()), w2 = test::leaf(wd.detach()), mm = test::leaf(m.detach());
      Tensor y = conv2d(xi, w1, Tensor(), {.padding = {1, 1}});
      y = conv2d(y, w2, Tensor(), {.padding = {1, 1}, .groups = 24});
      Tensor z = matmul(reshape(y, {8 * 24, 400}), mm);
      sum(mul(z, z)).backward();
      out = {z.to_vector<float>(), xi.grad().to_vector<float>(), w1.grad().to_vector<float>(),
             w2.grad().to_vector<float>(), mm.grad().to_vector<float>()};
    }
    return out;
  };
  // Deterministic algorithms only (a cuDNN weight gradient may otherwise add with atomics); they are chosen and
  // cached once here, so every thread below runs the same ones.
  struct Deterministic {
    Deterministic() { set_deterministic(true); }
    ~Deterministic() { set_deterministic(false); }
  } deterministic_here;
  const auto want = work(1);
  constexpr int kThreads = 4;
  std::vector<std::vector<std::vector<float>>> got(kThreads);
  std::vector<std::thread> threads;
  std::vector<std::exception_ptr> errors(kThreads);
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      try {
        Stream mine(d);
        StreamGuard guard(mine);
        got[size_t(t)] = work(5);
        mine.synchronize();
      } catch (...) {
        errors[size_t(t)] = std::current_exception();
      }
    });
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) {
    INFO("thread " << t);
    if (errors[size_t(t)]) std::rethrow_exception(errors[size_t(t)]);
    CHECK(got[size_t(t)] == want);
  }
}

TEST_CASE("CUDA: bad labels fail the pipelined step at its end, and the pipeline stays usable") {
  if (!test::have_cuda()) return;
  const Device d = Device::cuda();
  Tensor w1 = test::leaf(test::randn({8, 5}, 8, DType::f32, d, 0.5));
  Tensor w2 = test::leaf(test::randn({3, 8}, 9, DType::f32, d, 0.5));
  std::vector<pipeline::Stage> stages(2);
  stages[0].units.emplace_back("a", [&](const Tensor& x) { return tanh(matmul(x, w1, false, true)); });
  stages[1].units.emplace_back("b", [&](const Tensor& x) { return matmul(x, w2, false, true); });
  for (auto& s : stages) s.device = d;
  pipeline::Pipeline pipe(std::move(stages), {4, pipeline::ScheduleKind::gpipe});
  const Tensor X = test::randn({8, 5}, 10, DType::f32, d);
  auto loss_for = [](Tensor labels) {
    return [labels](const Tensor& out, const pipeline::MicroBatch& mb) {
      return pipeline::mean_loss_share(cross_entropy(out, slice(labels, 0, mb.offset, mb.offset + mb.rows)), mb);
    };
  };
  const Tensor bad = from_vector({0, 1, 2, 0, 1, 9, 2, 0}, {8}, DType::i64, d);
  CHECK_THROWS_WITH_AS(pipe.train_step(X, loss_for(bad)), "[cross_entropy] target 9 out of range [0,3) at row 1",
                       ValueError);  // row 1 of micro-batch 2 (rows 4-5)
  CHECK(pending_device_checks() == 0);
  w1.zero_grad();
  w2.zero_grad();
  const Tensor good = from_vector({0, 1, 2, 0, 1, 2, 2, 0}, {8}, DType::i64, d);
  pipeline::StepResult r = pipe.train_step(X, loss_for(good));
  CHECK(std::isfinite(r.loss));
  CHECK(w1.grad().defined());
}
