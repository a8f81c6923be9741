// resnet.cpp — builds and runs the CIFAR ResNet-18 (kuangliu/pytorch-cifar topology and key names).
// Not a general ResNet factory: depths other than 18 are not built.
#include "layers/resnet.h"

namespace ep::nn {

namespace {
Conv2d conv(int64_t in, int64_t out, int64_t k, int64_t stride, Generator& gen) {
  return Conv2d(Conv2dOptions{in, out, k, stride, (k - 1) / 2, 1, false}, gen);
}
}  // namespace

BasicBlock::BasicBlock(int64_t in, int64_t planes, int64_t stride, Generator& gen)
    : conv1(conv(in, planes, 3, stride, gen)), conv2(conv(planes, planes, 3, 1, gen)), bn1(planes), bn2(planes) {
  has_shortcut = stride != 1 || in != planes;
  if (has_shortcut) {
    shortcut_conv = conv(in, planes, 1, stride, gen);
    shortcut_bn = BatchNorm2d(planes);
  }
}

Tensor BasicBlock::forward(const Tensor& x) {
  Tensor h = bn1.forward(conv1.forward(x), batch_norm_relu);
  h = bn2.forward(conv2.forward(h));
  return relu(h + (has_shortcut ? shortcut_bn.forward(shortcut_conv.forward(x)) : x));
}

ResNet18::ResNet18(const ResNetOptions& o) : opt(o) {
  EP_CHECK(o.num_classes > 0, ValueError, "[ResNet18] num_classes must be positive, got ", o.num_classes);
  Generator gen(o.seed);
  conv1 = conv(3, 64, 3, 1, gen);
  bn1 = BatchNorm2d(64);
  int64_t in = 64;
  const int64_t planes[4] = {64, 128, 256, 512};
  for (int l = 0; l < 4; ++l) {
    for (int b = 0; b < 2; ++b) {
      layers[l].emplace_back(in, planes[l], (b == 0 && l > 0) ? 2 : 1, gen);
      in = planes[l];
    }
  }
  linear = Linear(512, o.num_classes, LinearInit::torch_default, gen);
}

void ResNet18::set_deferred_batch_norm(int64_t chunks) {
  bn1.set_deferred_chunks(chunks);
  for (auto& layer : layers)
    for (auto& b : layer) {
      b.bn1.set_deferred_chunks(chunks);
      b.bn2.set_deferred_chunks(chunks);
      b.shortcut_bn.set_deferred_chunks(chunks);  // unused (and harmless) in blocks without a projection
    }
}

void ResNet18::set_train(bool on) {
  train = on;
  conv1.set_train(on);
  bn1.set_train(on);
  for (auto& layer : layers)
    for (auto& b : layer) b.set_train(on);
  pool.set_train(on);
  linear.set_train(on);
}

Tensor ResNet18::forward(const Tensor& x) {
  EP_CHECK(x.dim() == 4 && x.size(1) == 3, ShapeError, "[ResNet18] expected input [N,3,H,W], got ",
           shape_str(x.shape()));
  Tensor h = bn1.forward(conv1.forward(x), batch_norm_relu);
  for (auto& layer : layers)
    for (auto& b : layer) h = b.forward(h);
  return linear.forward(flatten(pool.forward(h), 1));
}

std::vector<Unit> ResNet18::units() {
  std::vector<Unit> u;
  u.push_back(Unit("stem", [this](const Tensor& x) { return bn1.forward(conv1.forward(x), batch_norm_relu); })
                  .owning(conv1, bn1));
  for (size_t l = 0; l < layers.size(); ++l)
    for (size_t b = 0; b < layers[l].size(); ++b)
      u.push_back(Unit("layer" + std::to_string(l + 1) + "." + std::to_string(b),
                       [this, l, b](const Tensor& x) { return layers[l][b].forward(x); })
                      .owning(layers[l][b]));
  u.push_back({"head", [this](const Tensor& x) { return flatten(pool.forward(x), 1); }});
  u.push_back(Unit("classifier", [this](const Tensor& x) { return linear.forward(x); }).owning(linear));
  return u;
}

}  // namespace ep::nn
