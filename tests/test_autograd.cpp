// test_autograd.cpp — the tape: accumulation, fan-out, NoGradGuard, leaves vs non-leaves, error messages, and a
// 100,000-node chain that must neither overflow on backward() nor on teardown.
#include <doctest/doctest.h>

#include <cmath>

#include "tests/test_util.h"

using namespace ep;

TEST_CASE("autograd: gradients accumulate across backward calls and over fan-out") {
  Device d = test::test_device();
  Tensor x = from_vector({1, 2, 3}, {3}, DType::f64, d).requires_grad_();
  Tensor y = sum(mul(x, x));  // dy/dx = 2x
  y.backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{2, 4, 6});
  Tensor z = sum(mul(x, x));
  z.backward();  // accumulates: 4x
  CHECK(x.grad().to_vector<double>() == std::vector<double>{4, 8, 12});
  x.zero_grad();
  CHECK(!x.grad().defined());
  // fan-out: x used three times -> 1 + 2x + 3
  Tensor w = sum(add(add(x, mul(x, x)), mul(x, 3.0)));
  w.backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{6, 8, 10});
}

TEST_CASE("autograd: NoGradGuard records nothing; detach cuts history; only leaves keep .grad") {
  Tensor x = from_vector({1, 2}, {2}, DType::f64).requires_grad_();
  {
    NoGradGuard ng;
    Tensor y = mul(x, 2.0);
    CHECK(!y.requires_grad());
    CHECK(!grad_enabled());
  }
  CHECK(grad_enabled());
  Tensor h = mul(x, 2.0);
  CHECK(h.requires_grad());
  CHECK(!h.is_leaf());
  CHECK(!h.detach().requires_grad());
  sum(h).backward();
  CHECK(!h.grad().defined());
  CHECK(x.grad().to_vector<double>() == std::vector<double>{2, 2});
  Tensor c = from_vector({1}, {1});
  CHECK_THROWS_WITH_AS(c.backward(), "[backward] the tensor does not require grad and has no grad_fn", Error);
  Tensor m = mul(x, 1.0);
  CHECK_THROWS_WITH_AS(m.backward(), "[backward] an implicit gradient needs a one-element tensor, got [2]",
                       ShapeError);
}

TEST_CASE("autograd: a leaf's grad owns its buffer (clipping it in place cannot corrupt another leaf)") {
  Tensor a = from_vector({1, 2}, {2}, DType::f64).requires_grad_();
  Tensor b = from_vector({3, 4}, {2}, DType::f64).requires_grad_();
  sum(add(a, b)).backward();  // add's backward hands the same dout to both inputs
  Tensor ga = a.grad();
  mul_(ga, 0.5);
  CHECK(b.grad().to_vector<double>() == std::vector<double>{1, 1});
}

TEST_CASE("autograd: 100,000-node chain backpropagates and tears down iteratively") {
  Tensor x = from_vector({1.0}, {1}, DType::f64).requires_grad_();
  Tensor y = x;
  const int n = 100000;
  for (int i = 0; i < n; ++i) y = add(y, 1e-5);
  y = mul(y, 2.0);
  sum(y).backward();
  CHECK(x.grad().item() == doctest::Approx(2.0));
  CHECK(y.item() == doctest::Approx(2.0 * (1.0 + n * 1e-5)));
  y = Tensor();  // drops the whole chain: must not recurse 100k deep
  CHECK(true);
}

TEST_CASE("autograd: a branch whose gradient is never produced still releases its inputs") {
  // y = a * 0-branch: the relu of negatives gives zero gradients, and a node fed only by undefined grads must not
  // stall the traversal.
  Tensor a = from_vector({-1, -2}, {2}, DType::f64).requires_grad_();
  Tensor b = from_vector({1, 2}, {2}, DType::f64).requires_grad_();
  Tensor y = sum(add(relu(a), b));
  y.backward();
  CHECK(a.grad().to_vector<double>() == std::vector<double>{0, 0});
  CHECK(b.grad().to_vector<double>() == std::vector<double>{1, 1});
}
