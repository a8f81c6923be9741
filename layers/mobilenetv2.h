// mobilenetv2.h — MobileNetV2 as torchvision builds it (key names, _make_divisible width rule, init), in two variants:
// `imagenet` (torchvision exactly) and `cifar` (stem stride 1 and kuangliu/pytorch-cifar's stage strides, formats.md A4).
// Not kuangliu's own MobileNetV2 (its projection shortcuts, ReLU and key names differ): only its strides are taken.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "layers/basic.h"

namespace ep::nn {

// torchvision's _make_divisible: the nearest multiple of `divisor` (at least `divisor`), never more than 10% below v.
int64_t make_divisible(double v, int64_t divisor = 8);

// Conv2dNormActivation: conv (key .0), BatchNorm2d (.1), ReLU6 (.2, no state).
struct ConvBNReLU6 {
  ConvBNReLU6() = default;
  ConvBNReLU6(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t groups, Generator& gen);
  Conv2d conv;
  BatchNorm2d bn;
  bool train = true;
  void set_train(bool on) { train = on; conv.set_train(on); bn.set_train(on); }
  template <class F> void visit(const std::string& prefix, F&& f) {
    conv.visit(key(prefix, "0"), f);
    bn.visit(key(prefix, "1"), f);
  }
  Tensor forward_no_act(const Tensor& x) { return bn.forward(conv.forward(x)); }  // for a split before the ReLU6
  Tensor forward(const Tensor& x) { return bn.forward(conv.forward(x), batch_norm_relu6); }  // relu6 fused
};

// torchvision's InvertedResidual: [1x1 expand + BN + ReLU6 when t != 1], 3x3 depthwise + BN + ReLU6, 1x1 project + BN
// (linear bottleneck); the input is added back iff stride 1 and in == out. Keys: conv.0 .. conv.3 (conv.0 .. conv.2
// without the expand conv).
struct InvertedResidual {
  InvertedResidual() = default;
  InvertedResidual(int64_t in, int64_t out, int64_t stride, int64_t expand_ratio, Generator& gen);
  int64_t in = 0, out = 0, stride = 1, hidden = 0;
  bool has_expand = false, use_residual = false;
  ConvBNReLU6 expand, depthwise;
  Conv2d project;
  BatchNorm2d project_bn;
  bool train = true;
  void set_train(bool on) {
    train = on;
    expand.set_train(on);
    depthwise.set_train(on);
    project.set_train(on);
    project_bn.set_train(on);
  }
  template <class F> void visit(const std::string& prefix, F&& f) {
    int i = 0;
    auto next = [&] { return key(prefix, "conv." + std::to_string(i++)); };
    if (has_expand) expand.visit(next(), f);
    depthwise.visit(next(), f);
    project.visit(next(), f);
    project_bn.visit(next(), f);
  }
  Tensor forward(const Tensor& x);
};

enum class MobileNetV2Variant { imagenet, cifar };
MobileNetV2Variant parse_mobilenetv2_variant(const std::string& s);  // "imagenet" | "cifar"; ValueError otherwise

struct MobileNetV2Options {
  int64_t num_classes = 1000;
  double width_mult = 1.0;
  MobileNetV2Variant variant = MobileNetV2Variant::imagenet;
  int64_t round_nearest = 8;
  double dropout = 0.2;
  uint64_t seed = 0;  // initialization draws from Generator(seed); dropout masks from Generator(seed + 1)
};

struct MobileNetV2 {
  explicit MobileNetV2(const MobileNetV2Options& opt = {});
  // Units capture `this`: the model must not be copied or moved once built.
  MobileNetV2(const MobileNetV2&) = delete;
  MobileNetV2& operator=(const MobileNetV2&) = delete;

  MobileNetV2Options opt;
  ConvBNReLU6 stem;                      // features.0
  std::vector<InvertedResidual> blocks;  // features.1 .. features.17
  ConvBNReLU6 head;                      // features.18
  AdaptiveAvgPool2d pool{1, 1};
  Dropout drop;                          // classifier.0
  Linear classifier;                     // classifier.1
  bool train = true;

  void set_train(bool on);
  // Every BatchNorm2d in deferred mode over `chunks` micro-batches (see BatchNorm2d::deferred_chunks); 0 turns it off.
  void set_deferred_batch_norm(int64_t chunks);
  template <class F> void visit(const std::string& prefix, F&& f) {
    stem.visit(key(prefix, "features.0"), f);
    for (size_t i = 0; i < blocks.size(); ++i) blocks[i].visit(key(prefix, "features." + std::to_string(i + 1)), f);
    head.visit(key(prefix, "features." + std::to_string(blocks.size() + 1)), f);
    classifier.visit(key(prefix, "classifier.1"), f);
  }
  Tensor forward(const Tensor& x);  // [N, 3, H, W] -> logits [N, num_classes]

  // stem (features.0), block1 .. block17 (features.1-17), head (features.18, the 1x1 conv: [N, 1280, h, w]),
  // classifier (global average pool + flatten + dropout + linear), so a split after the head carries the feature map
  // as the seeds' "first layer, last layer" boundary does. With split_stem, the stem is "stem.conv_bn" then "stem.relu6", the seeds'
  // split point before the first activation. Running the units in order equals forward().
  std::vector<Unit> units(bool split_stem = false);
};

}  // namespace ep::nn
