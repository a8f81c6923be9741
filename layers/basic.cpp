// basic.cpp — constructors (shape checks and torchvision's initializations) and forwards of the basic modules.
// Not the math: conv2d, batch_norm, linear and dropout are engine ops (engine/ops.h).
#include "layers/basic.h"

#include <algorithm>
#include <cmath>

#include "engine/init.h"

namespace ep::nn {

Conv2d::Conv2d(const Conv2dOptions& o, Generator& gen) : opt(o) {
  EP_CHECK(o.in_channels > 0 && o.out_channels > 0 && o.kernel > 0 && o.stride > 0 && o.padding >= 0 && o.groups > 0,
           ValueError, "[Conv2d] bad options: in ", o.in_channels, ", out ", o.out_channels, ", kernel ", o.kernel,
           ", stride ", o.stride, ", padding ", o.padding, ", groups ", o.groups);
  EP_CHECK(o.in_channels % o.groups == 0 && o.out_channels % o.groups == 0, ValueError, "[Conv2d] groups ", o.groups,
           " must divide in_channels ", o.in_channels, " and out_channels ", o.out_channels);
  weight = empty({o.out_channels, o.in_channels / o.groups, o.kernel, o.kernel});
  kaiming_normal_(weight, 0, "fan_out", "relu", gen);
  weight.requires_grad_();
  if (o.bias) bias = zeros({o.out_channels}).requires_grad_();
}

Tensor Conv2d::forward(const Tensor& x) const {
  ep::Conv2dOptions c;
  c.stride = {opt.stride, opt.stride};
  c.padding = {opt.padding, opt.padding};
  c.groups = opt.groups;
  return conv2d(x, weight, bias, c);
}

BatchNorm2d::BatchNorm2d(int64_t channels, double eps, double momentum)
    : channels(channels), eps(eps), momentum(momentum) {
  EP_CHECK(channels > 0, ValueError, "[BatchNorm2d] channels must be positive, got ", channels);
  weight = ones({channels}).requires_grad_();
  bias = zeros({channels}).requires_grad_();
  running_mean = zeros({channels});
  running_var = ones({channels});
  num_batches_tracked = zeros({}, DType::i64);
}

void BatchNorm2d::set_deferred_chunks(int64_t chunks) {
  EP_CHECK(chunks >= 0, ValueError, "[BatchNorm2d] deferred chunks must be >= 0, got ", chunks);
  deferred_chunks = chunks;
  deferred_mean_ = deferred_m2_ = Tensor();
  deferred_count_ = deferred_seen_ = 0;
}

Tensor BatchNorm2d::forward_deferred(const Tensor& x, BatchNormFn op) {
  // The micro-batch's own statistics come out of the normalizing op itself: as "running" statistics that start at 0
  // with momentum 1, batch_norm leaves exactly the batch mean and unbiased variance in them. A separate mean, centring
  // and sum of squares cost 3 more passes over the activation and 4 more launches per layer and micro-batch.
  const int64_t n = x.numel() / std::max<int64_t>(1, x.size(1));
  Tensor mean_c = zeros({channels}, x.dtype(), x.device()), var_c = zeros({channels}, x.dtype(), x.device());
  Tensor y = op(x, weight, bias, mean_c, var_c, true, /*momentum=*/1.0, eps);
  NoGradGuard ng;
  if (n > 0) {
    if (deferred_count_ == 0) {  // f64 accumulators: the merged statistics lose nothing to f32 rounding
      deferred_mean_ = empty({channels}, DType::f64, x.device());
      deferred_m2_ = empty({channels}, DType::f64, x.device());
    }
    batch_norm_merge_stats_(deferred_mean_, deferred_m2_, deferred_count_, mean_c, var_c, n);  // one launch
    deferred_count_ += n;
  }
  if (++deferred_seen_ < deferred_chunks) return y;
  if (deferred_count_ > 0) {
    batch_norm_commit_stats_(running_mean, running_var, deferred_mean_, deferred_m2_, deferred_count_, momentum);
    if (num_batches_tracked.is_cuda()) num_batches_tracked = num_batches_tracked.cpu();
    *num_batches_tracked.data<int64_t>() += 1;
  }
  deferred_mean_ = deferred_m2_ = Tensor();
  deferred_count_ = deferred_seen_ = 0;
  return y;
}

static thread_local bool t_recomputing = false;
bool recomputing() { return t_recomputing; }
RecomputeGuard::RecomputeGuard() : previous_(t_recomputing) { t_recomputing = true; }
RecomputeGuard::~RecomputeGuard() { t_recomputing = previous_; }

Tensor BatchNorm2d::forward(const Tensor& x, BatchNormFn op) {
  if (train && recomputing()) {
    // The first pass already counted this micro-batch (torchgpipe skips tracking under recomputation too): normalize
    // with its statistics again, touching no running statistics.
    Tensor no_mean, no_var;
    return op(x, weight, bias, no_mean, no_var, true, momentum, eps);
  }
  if (train && deferred_chunks > 1) return forward_deferred(x, op);
  Tensor y = op(x, weight, bias, running_mean, running_var, train, momentum, eps);
  if (train) {
    // Host-side counter (to_device keeps it on the CPU): PyTorch only reads it when momentum is None.
    if (num_batches_tracked.is_cuda()) num_batches_tracked = num_batches_tracked.cpu();
    int64_t* n = num_batches_tracked.data<int64_t>();
    *n += 1;
  }
  return y;
}

Linear::Linear(int64_t in, int64_t out, LinearInit init, Generator& gen, bool with_bias, double std)
    : in_features(in), out_features(out) {
  EP_CHECK(in > 0 && out > 0, ValueError, "[Linear] features must be positive, got in ", in, ", out ", out);
  weight = empty({out, in});
  if (with_bias) bias = empty({out});
  if (init == LinearInit::normal_001 || init == LinearInit::normal_std) {
    normal_(weight, 0.0, init == LinearInit::normal_001 ? 0.01 : std, gen);
    if (with_bias) zeros_(bias);
  } else {
    // nn.Linear.reset_parameters: kaiming_uniform_(a=sqrt(5)) gives bound 1/sqrt(fan_in); the bias uses the same.
    kaiming_uniform_(weight, std::sqrt(5.0), "fan_in", "leaky_relu", gen);
    if (with_bias) {
      const double b = 1.0 / std::sqrt(double(in));
      uniform_(bias, -b, b, gen);
    }
  }
  weight.requires_grad_();
  if (with_bias) bias.requires_grad_();
}

Tensor Linear::forward(const Tensor& x) const { return linear(x, weight, bias); }

LayerNorm::LayerNorm(int64_t dim, double eps) : dim(dim), eps(eps) {
  EP_CHECK(dim > 0 && eps > 0, ValueError, "[LayerNorm] need dim > 0 and eps > 0, got dim ", dim, ", eps ", eps);
  weight = ones({dim}).requires_grad_();
  bias = zeros({dim}).requires_grad_();
}

Embedding::Embedding(int64_t num_embeddings, int64_t dim, int64_t padding_idx, double std, Generator& gen)
    : num_embeddings(num_embeddings), dim(dim), padding_idx(padding_idx) {
  EP_CHECK(num_embeddings > 0 && dim > 0, ValueError, "[Embedding] sizes must be positive, got ", num_embeddings,
           " x ", dim);
  EP_CHECK(padding_idx >= -1 && padding_idx < num_embeddings, ValueError, "[Embedding] padding_idx ", padding_idx,
           " outside [0, ", num_embeddings, ")");
  weight = empty({num_embeddings, dim});
  normal_(weight, 0.0, std, gen);
  if (padding_idx >= 0) std::fill_n(weight.data<float>() + padding_idx * dim, dim, 0.0f);
  weight.requires_grad_();
}

Dropout::Dropout(double p, uint64_t seed) : p(p), gen(seed) {
  EP_CHECK(p >= 0 && p <= 1, ValueError, "[Dropout] p must be in [0,1], got ", p);
}

}  // namespace ep::nn
