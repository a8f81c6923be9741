// basic.h — the building-block modules: Conv2d, BatchNorm2d, Linear, LayerNorm, Embedding, Dropout, ReLU, ReLU6,
// AdaptiveAvgPool2d, with PyTorch's parameter names and the initializations torchvision's MobileNetV2 and ResNet and
// HF's RoBERTa apply (see each constructor).
// Not nn.Conv2d/nn.Linear's own default inits except where stated: models here always re-initialize as torchvision does.
#pragma once
#include <cstdint>
#include <string>

#include "engine/ops.h"
#include "engine/random.h"
#include "layers/module.h"

namespace ep::nn {

struct Conv2dOptions {
  int64_t in_channels = 0, out_channels = 0, kernel = 1, stride = 1, padding = 0, groups = 1;
  bool bias = false;  // torchvision's MobileNetV2 and ResNets use bias-free convs before BatchNorm
};

// weight [out, in/groups, k, k] initialized kaiming_normal_(mode="fan_out", nonlinearity="relu") — torchvision's
// choice for both MobileNetV2 and ResNet (MobileNetV2 leaves the nonlinearity at its leaky_relu(a=0) default, which
// has the same gain sqrt(2)); bias zeros.
struct Conv2d {
  Conv2d() = default;
  Conv2d(const Conv2dOptions& opt, Generator& gen);
  Conv2dOptions opt;
  Tensor weight, bias;
  bool train = true;
  void set_train(bool on) { train = on; }
  template <class F> void visit(const std::string& prefix, F&& f) { visit_weight_bias(prefix, f, weight, bias); }
  Tensor forward(const Tensor& x) const;
};

// nn.BatchNorm2d(C): weight ones, bias zeros, running_mean zeros, running_var ones, num_batches_tracked 0 (i64 [],
// kept on the host, see to_device). Train mode normalizes with batch statistics and updates the running ones.
struct BatchNorm2d {
  BatchNorm2d() = default;
  explicit BatchNorm2d(int64_t channels, double eps = 1e-5, double momentum = 0.1);
  int64_t channels = 0;
  double eps = 1e-5, momentum = 0.1;
  Tensor weight, bias, running_mean, running_var, num_batches_tracked;
  bool train = true;
  void set_train(bool on) { train = on; }
  template <class F> void visit(const std::string& prefix, F&& f) {
    f(key(prefix, "weight"), weight, false);
    f(key(prefix, "bias"), bias, false);
    f(key(prefix, "running_mean"), running_mean, true);
    f(key(prefix, "running_var"), running_var, true);
    f(key(prefix, "num_batches_tracked"), num_batches_tracked, true);
  }
  // Non-const: train mode updates the running statistics. `op` may fuse the activation that follows
  // (batch_norm_relu, batch_norm_relu6), with the same result as applying it after.
  Tensor forward(const Tensor& x, BatchNormFn op = batch_norm);

  // torchgpipe's DeferredBatchNorm, for micro-batched (pipelined) training: with deferred_chunks = C > 1, training
  // normalizes each micro-batch with its own statistics but leaves the running statistics alone until C micro-batches
  // have passed; it then commits once, from the mean and unbiased variance of all C together (Chan's pairwise
  // combination), i.e. what one pass over the whole mini-batch commits. 0 or 1: ordinary BatchNorm.
  int64_t deferred_chunks = 0;
  void set_deferred_chunks(int64_t chunks);

 private:
  Tensor deferred_mean_, deferred_m2_;  // running combination over the micro-batches seen so far
  int64_t deferred_count_ = 0, deferred_seen_ = 0;
  Tensor forward_deferred(const Tensor& x, BatchNormFn op);
};

enum class LinearInit {
  torch_default,  // nn.Linear: kaiming_uniform_(a=sqrt(5)) i.e. U(+-1/sqrt(in)), bias U(+-1/sqrt(in)) (torchvision ResNet fc)
  normal_001,     // N(0, 0.01), bias zeros: torchvision MobileNetV2's classifier
  normal_std,     // N(0, std), bias zeros: HF's _init_weights with std = config.initializer_range
};

// weight [out, in], bias [out].
struct Linear {
  Linear() = default;
  Linear(int64_t in_features, int64_t out_features, LinearInit init, Generator& gen, bool with_bias = true,
         double std = 0.02);
  int64_t in_features = 0, out_features = 0;
  Tensor weight, bias;
  bool train = true;
  void set_train(bool on) { train = on; }
  template <class F> void visit(const std::string& prefix, F&& f) { visit_weight_bias(prefix, f, weight, bias); }
  Tensor forward(const Tensor& x) const;
};

// nn.LayerNorm(D, eps): weight ones, bias zeros; normalizes the last dim with the biased variance.
struct LayerNorm {
  LayerNorm() = default;
  explicit LayerNorm(int64_t dim, double eps = 1e-5);
  int64_t dim = 0;
  double eps = 1e-5;
  Tensor weight, bias;
  bool train = true;
  void set_train(bool on) { train = on; }
  template <class F> void visit(const std::string& prefix, F&& f) { visit_weight_bias(prefix, f, weight, bias); }
  Tensor forward(const Tensor& x) const { return layer_norm(x, weight, bias, eps); }
};

// nn.Embedding(V, D, padding_idx) initialized as HF's _init_weights: N(0, std) with the padding row zeroed. The
// padding row gets no gradient (-1: no padding row).
struct Embedding {
  Embedding() = default;
  Embedding(int64_t num_embeddings, int64_t dim, int64_t padding_idx, double std, Generator& gen);
  int64_t num_embeddings = 0, dim = 0, padding_idx = -1;
  Tensor weight;
  bool train = true;
  void set_train(bool on) { train = on; }
  template <class F> void visit(const std::string& prefix, F&& f) { f(key(prefix, "weight"), weight, false); }
  Tensor forward(const Tensor& indices) const { return embedding(weight, indices, padding_idx); }
};

// Inverted dropout drawing its masks from its own Generator, so a run's masks follow from the seed alone.
struct Dropout {
  Dropout() = default;
  explicit Dropout(double p, uint64_t seed = 0);
  double p = 0.5;
  Generator gen;
  bool train = true;
  void set_train(bool on) { train = on; }
  template <class F> void visit(const std::string&, F&&) {}
  Tensor forward(const Tensor& x) { return dropout(x, p, train, gen); }
};

struct ReLU {
  bool train = true;
  void set_train(bool on) { train = on; }
  template <class F> void visit(const std::string&, F&&) {}
  Tensor forward(const Tensor& x) const { return relu(x); }
};

struct ReLU6 {
  bool train = true;
  void set_train(bool on) { train = on; }
  template <class F> void visit(const std::string&, F&&) {}
  Tensor forward(const Tensor& x) const { return relu6(x); }
};

// [N, C, H, W] -> [N, C, out_h, out_w]; (1, 1) is global average pooling.
struct AdaptiveAvgPool2d {
  AdaptiveAvgPool2d() = default;
  AdaptiveAvgPool2d(int64_t out_h, int64_t out_w) : out_h(out_h), out_w(out_w) {}
  int64_t out_h = 1, out_w = 1;
  bool train = true;
  void set_train(bool on) { train = on; }
  template <class F> void visit(const std::string&, F&&) {}
  Tensor forward(const Tensor& x) const { return adaptive_avg_pool2d(x, out_h, out_w); }
};

}  // namespace ep::nn
