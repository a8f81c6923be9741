// reduce.cpp — sum and mean over any set of dims (or all), forward and backward. Max/min/argmax live in
// reduce_minmax.cpp. Kernels: sum_dim_{cpu,cuda} over an [outer, r, inner] view, one dim at a time.
#include <algorithm>
#include <cmath>

#include "engine/ops.h"
#include "engine/op_registry.h"
#include "engine/ops/elementwise_kernels.h"

namespace ep {

EP_DIFFERENTIABLE_OPS("sum", "mean");

// Sums over one dim, keeping it as size 1.
static Tensor sum_one_dim(const Tensor& x, int64_t d) {
  const Shape& s = x.shape();
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < d; ++i) outer *= s[size_t(i)];
  for (size_t i = size_t(d) + 1; i < s.size(); ++i) inner *= s[i];
  Shape os = s;
  os[size_t(d)] = 1;
  Tensor out = empty(os, x.dtype(), x.device());
  if (x.is_cuda())
    sum_dim_cuda(x.dtype(), x.raw_data(), out.raw_data(), outer, s[size_t(d)], inner, current_stream(x.device()));
  else
    sum_dim_cpu(x.dtype(), x.raw_data(), out.raw_data(), outer, s[size_t(d)], inner);
  return out;
}

static std::vector<int64_t> normalize_dims(const char* op, const std::vector<int64_t>& dims, int64_t ndim) {
  std::vector<int64_t> out;
  for (int64_t d : dims) out.push_back(normalize_dim(d, ndim, op));
  std::sort(out.begin(), out.end());
  EP_CHECK(std::adjacent_find(out.begin(), out.end()) == out.end(), ShapeError, "[", op, "] repeated dim");
  return out;
}

static Shape reduced_shape(const Shape& s, const std::vector<int64_t>& dims, bool keepdim) {
  Shape out;
  for (size_t i = 0; i < s.size(); ++i) {
    bool r = std::find(dims.begin(), dims.end(), int64_t(i)) != dims.end();
    if (!r) out.push_back(s[i]);
    else if (keepdim) out.push_back(1);
  }
  return out;
}

// Broadcasts a reduced gradient back to the input shape.
static Tensor expand_grad(const Tensor& g, const Shape& in, const std::vector<int64_t>& dims, double scale) {
  Tensor gk = reshape(g, reduced_shape(in, dims, true));
  Tensor z = zeros(in, g.dtype(), g.device());
  Tensor e = add(z, gk);
  if (scale != 1.0) mul_(e, scale);
  return e;
}

Tensor sum(const Tensor& a, const std::vector<int64_t>& dims_in, bool keepdim) {
  check_floating("sum", a);
  std::vector<int64_t> dims = normalize_dims("sum", dims_in, a.dim());
  Tensor x = a.detach();
  // Contiguous runs of dims merge into one reduction; others go one at a time, last dim first.
  if (!dims.empty() && dims.back() - dims.front() + 1 == int64_t(dims.size())) {
    Shape merged;
    for (int64_t i = 0; i < dims.front(); ++i) merged.push_back(a.shape()[size_t(i)]);
    int64_t r = 1;
    for (int64_t d : dims) r *= a.shape()[size_t(d)];
    merged.push_back(r);
    for (size_t i = size_t(dims.back()) + 1; i < a.shape().size(); ++i) merged.push_back(a.shape()[i]);
    x = sum_one_dim(reshape(x, merged), dims.front());
  } else {
    for (auto it = dims.rbegin(); it != dims.rend(); ++it) x = sum_one_dim(x, *it);
  }
  Tensor out = reshape(x, reduced_shape(a.shape(), dims, keepdim)).detach();
  record(out, "sum", {a}, [in = a.shape(), dims](const Tensor& g, const NeedsGrad&) {
    return std::vector<Tensor>{expand_grad(g, in, dims, 1.0)};
  });
  return out;
}

static std::vector<int64_t> all_dims(const Tensor& a) {
  std::vector<int64_t> d(size_t(a.dim()));
  for (size_t i = 0; i < d.size(); ++i) d[i] = int64_t(i);
  return d;
}

Tensor sum(const Tensor& a) { return sum(a, all_dims(a), false); }

// x * 0 is 0 for every finite x and NaN for NaN and ±Inf, so the sum is finite exactly when every element is: one
// product and one reduction with the kernels every device already has.
bool all_finite(const Tensor& a) {
  if (!a.defined() || !is_floating(a.dtype()) || a.numel() == 0) return true;
  NoGradGuard ng;
  return std::isfinite(sum(mul(a, 0.0)).item());
}

Tensor mean(const Tensor& a, const std::vector<int64_t>& dims_in, bool keepdim) {
  check_floating("mean", a);
  std::vector<int64_t> dims = normalize_dims("mean", dims_in, a.dim());
  int64_t count = 1;
  for (int64_t d : dims) count *= a.shape()[size_t(d)];
  Tensor out;
  {
    NoGradGuard ng;
    out = sum(a, dims, keepdim);
    mul_(out, 1.0 / double(count));  // count 0 gives NaN, as PyTorch
  }
  record(out, "mean", {a}, [in = a.shape(), dims, count](const Tensor& g, const NeedsGrad&) {
    return std::vector<Tensor>{expand_grad(g, in, dims, 1.0 / double(count))};
  });
  return out;
}

Tensor mean(const Tensor& a) { return mean(a, all_dims(a), false); }

}  // namespace ep
