// resnet.h — ResNet-18, CIFAR variant as kuangliu/pytorch-cifar writes it (3x3 stem stride 1, no max-pool, projection
// shortcuts, keys conv1/bn1/layerL.B.{conv1,bn1,conv2,bn2,shortcut.0,shortcut.1}/linear), initialized as torchvision's
// ResNet (kaiming_normal_ fan_out convs, BN ones/zeros, nn.Linear default for the classifier).
// Not the ImageNet ResNet (7x7 stem, max-pool, torchvision's downsample.* / fc keys) and no Bottleneck (ResNet-50+).
#pragma once
#include <array>
#include <string>
#include <vector>

#include "layers/basic.h"
#include "layers/mobilenetv2.h"  // Unit

namespace ep::nn {

struct BasicBlock {
  BasicBlock() = default;
  BasicBlock(int64_t in, int64_t planes, int64_t stride, Generator& gen);
  Conv2d conv1, conv2;
  BatchNorm2d bn1, bn2;
  bool has_shortcut = false;  // 1x1 conv + BN when the stride or channel count changes
  Conv2d shortcut_conv;
  BatchNorm2d shortcut_bn;
  bool train = true;
  void set_train(bool on) {
    train = on;
    conv1.set_train(on), bn1.set_train(on), conv2.set_train(on), bn2.set_train(on);
    shortcut_conv.set_train(on), shortcut_bn.set_train(on);
  }
  template <class F> void visit(const std::string& prefix, F&& f) {
    conv1.visit(key(prefix, "conv1"), f);
    bn1.visit(key(prefix, "bn1"), f);
    conv2.visit(key(prefix, "conv2"), f);
    bn2.visit(key(prefix, "bn2"), f);
    if (has_shortcut) {
      shortcut_conv.visit(key(prefix, "shortcut.0"), f);
      shortcut_bn.visit(key(prefix, "shortcut.1"), f);
    }
  }
  Tensor forward(const Tensor& x);
};

struct ResNetOptions {
  int64_t num_classes = 10;
  uint64_t seed = 0;
};

struct ResNet18 {
  explicit ResNet18(const ResNetOptions& opt = {});
  ResNet18(const ResNet18&) = delete;  // units() capture `this`
  ResNet18& operator=(const ResNet18&) = delete;

  ResNetOptions opt;
  Conv2d conv1;
  BatchNorm2d bn1;
  std::array<std::vector<BasicBlock>, 4> layers;  // layer1 .. layer4, two blocks each
  AdaptiveAvgPool2d pool{1, 1};  // kuangliu's avg_pool2d(4) at 32x32 input; global here so any size works
  Linear linear;
  bool train = true;

  void set_train(bool on);
  void set_deferred_batch_norm(int64_t chunks);  // every BatchNorm2d, see BatchNorm2d::deferred_chunks
  template <class F> void visit(const std::string& prefix, F&& f) {
    conv1.visit(key(prefix, "conv1"), f);
    bn1.visit(key(prefix, "bn1"), f);
    for (size_t l = 0; l < layers.size(); ++l)
      for (size_t b = 0; b < layers[l].size(); ++b)
        layers[l][b].visit(key(prefix, "layer" + std::to_string(l + 1) + "." + std::to_string(b)), f);
    linear.visit(key(prefix, "linear"), f);
  }
  Tensor forward(const Tensor& x);  // [N, 3, H, W] -> [N, num_classes]
  // stem (conv1+bn1+relu), layer1.0 .. layer4.1, head (global pool + flatten), classifier (linear).
  std::vector<Unit> units();
};

}  // namespace ep::nn
