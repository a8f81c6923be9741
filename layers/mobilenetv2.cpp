// mobilenetv2.cpp — builds torchvision's MobileNetV2 layer list for either variant and runs it.
// Not a loader or a trainer: weights come in through layers/state.h, training loops live in apps/.
#include "layers/mobilenetv2.h"

#include <cmath>

namespace ep::nn {

int64_t make_divisible(double v, int64_t divisor) {
  EP_CHECK(divisor > 0 && v > 0, ValueError, "[MobileNetV2] make_divisible needs positive arguments, got ", v, ", ",
           divisor);
  // Python: max(divisor, int(v + divisor / 2) // divisor * divisor), bumped by one step if below 0.9 * v.
  int64_t n = std::max<int64_t>(divisor, int64_t(v + double(divisor) / 2) / divisor * divisor);
  if (double(n) < 0.9 * v) n += divisor;
  return n;
}

ConvBNReLU6::ConvBNReLU6(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t groups, Generator& gen)
    : conv(Conv2dOptions{in, out, kernel, stride, (kernel - 1) / 2, groups, false}, gen), bn(out) {}

InvertedResidual::InvertedResidual(int64_t in, int64_t out, int64_t stride, int64_t t, Generator& gen)
    : in(in), out(out), stride(stride) {
  EP_CHECK(stride == 1 || stride == 2, ValueError, "[InvertedResidual] stride must be 1 or 2, got ", stride);
  EP_CHECK(t >= 1, ValueError, "[InvertedResidual] expand ratio must be >= 1, got ", t);
  hidden = in * t;  // torchvision: int(round(inp * expand_ratio)); exact for integer ratios
  has_expand = t != 1;
  use_residual = stride == 1 && in == out;
  if (has_expand) expand = ConvBNReLU6(in, hidden, 1, 1, 1, gen);
  depthwise = ConvBNReLU6(hidden, hidden, 3, stride, hidden, gen);
  project = Conv2d(Conv2dOptions{hidden, out, 1, 1, 0, 1, false}, gen);
  project_bn = BatchNorm2d(out);
}

Tensor InvertedResidual::forward(const Tensor& x) {
  Tensor h = has_expand ? expand.forward(x) : x;
  h = project_bn.forward(project.forward(depthwise.forward(h)));
  return use_residual ? x + h : h;
}

MobileNetV2Variant parse_mobilenetv2_variant(const std::string& s) {
  if (s == "imagenet") return MobileNetV2Variant::imagenet;
  if (s == "cifar") return MobileNetV2Variant::cifar;
  EP_THROW(ValueError, "[MobileNetV2] unknown variant '", s, "' (expected imagenet or cifar)");
}

namespace {
struct Stage {
  int64_t t, c, n, s;
};
// torchvision's inverted_residual_setting; the cifar variant changes row 2's stride to 1 (kuangliu/pytorch-cifar).
constexpr Stage kStages[7] = {{1, 16, 1, 1},  {6, 24, 2, 2},  {6, 32, 3, 2}, {6, 64, 4, 2},
                              {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
}  // namespace

MobileNetV2::MobileNetV2(const MobileNetV2Options& o) : opt(o) {
  EP_CHECK(o.num_classes > 0, ValueError, "[MobileNetV2] num_classes must be positive, got ", o.num_classes);
  EP_CHECK(o.width_mult > 0 && std::isfinite(o.width_mult), ValueError,
           "[MobileNetV2] width_mult must be positive, got ", o.width_mult);
  const bool cifar = o.variant == MobileNetV2Variant::cifar;
  Generator gen(o.seed);
  int64_t in = make_divisible(32 * o.width_mult, o.round_nearest);
  const int64_t last = make_divisible(1280 * std::max(1.0, o.width_mult), o.round_nearest);
  stem = ConvBNReLU6(3, in, 3, cifar ? 1 : 2, 1, gen);
  for (int row = 0; row < 7; ++row) {
    const Stage& st = kStages[row];
    const int64_t out = make_divisible(double(st.c) * o.width_mult, o.round_nearest);
    const int64_t stride = (cifar && row == 1) ? 1 : st.s;
    for (int64_t i = 0; i < st.n; ++i) {
      blocks.emplace_back(in, out, i == 0 ? stride : 1, st.t, gen);
      in = out;
    }
  }
  head = ConvBNReLU6(in, last, 1, 1, 1, gen);
  drop = Dropout(o.dropout, o.seed + 1);
  classifier = Linear(last, o.num_classes, LinearInit::normal_001, gen);
}

void MobileNetV2::set_deferred_batch_norm(int64_t chunks) {
  stem.bn.set_deferred_chunks(chunks);
  for (auto& b : blocks) {
    if (b.has_expand) b.expand.bn.set_deferred_chunks(chunks);
    b.depthwise.bn.set_deferred_chunks(chunks);
    b.project_bn.set_deferred_chunks(chunks);
  }
  head.bn.set_deferred_chunks(chunks);
}

void MobileNetV2::set_train(bool on) {
  train = on;
  stem.set_train(on);
  for (auto& b : blocks) b.set_train(on);
  head.set_train(on);
  pool.set_train(on);
  drop.set_train(on);
  classifier.set_train(on);
}

Tensor MobileNetV2::forward(const Tensor& x) {
  EP_CHECK(x.dim() == 4 && x.size(1) == 3, ShapeError, "[MobileNetV2] expected input [N,3,H,W], got ",
           shape_str(x.shape()));
  Tensor h = stem.forward(x);
  for (auto& b : blocks) h = b.forward(h);
  h = flatten(pool.forward(head.forward(h)), 1);
  return classifier.forward(drop.forward(h));
}

std::vector<Unit> MobileNetV2::units(bool split_stem) {
  std::vector<Unit> u;
  if (split_stem) {
    u.push_back(Unit("stem.conv_bn", [this](const Tensor& x) { return stem.forward_no_act(x); }).owning(stem));
    u.push_back({"stem.relu6", [](const Tensor& x) { return relu6(x); }});
  } else {
    u.push_back(Unit("stem", [this](const Tensor& x) { return stem.forward(x); }).owning(stem));
  }
  for (size_t i = 0; i < blocks.size(); ++i)
    u.push_back(Unit("block" + std::to_string(i + 1), [this, i](const Tensor& x) { return blocks[i].forward(x); })
                    .owning(blocks[i]));
  u.push_back(Unit("head", [this](const Tensor& x) { return head.forward(x); }).owning(head));
  u.push_back(Unit("classifier", [this](const Tensor& x) { return classifier.forward(drop.forward(flatten(pool.forward(x), 1))); })
                  .with_generators({&drop.gen})
                  .owning(classifier));
  return u;
}

}  // namespace ep::nn
