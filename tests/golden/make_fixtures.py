#!/usr/bin/python3
# make_fixtures.py — writes the MobileNetV2 golden fixtures (tests/golden/mobilenetv2_{cifar,imagenet}.safetensors) from
# torchvision with random weights. Not run by the build: the fixtures are committed; rerun only to regenerate them.
#
# Needs Debian's python3-torch (1.13) and python3-torchvision (0.14), i.e. /usr/bin/python3 (a pyenv or venv python
# will not see them). Usage: /usr/bin/python3 tests/golden/make_fixtures.py
# Each file holds, in F32 unless noted:
#   the model's state dict under torchvision's keys in F16 (the model's values are rounded to F16 first, so the
#     reference outputs are exact for them; F16 keeps a fixture under 1 MB and exercises F16 -> f32 loading), with BN
#     affine and running statistics randomized so eval mode is a real test; num_batches_tracked I64,
#   "input" [N,3,H,W] (cifar 2x3x32x32, imagenet 4x3x64x64), "logits" (eval mode), "labels" (I64), "logits_train" and "loss" (train mode: batch statistics,
#     but dropout held at identity since its masks cannot match our Philox stream), "grad.<name>" for a few
#     parameters (d loss / d param from the train-mode pass), "after.<bn>.running_mean|running_var" (the running
#     statistics after that one train-mode pass).
# The safetensors container is written by st_write.py (formats.md A1, by hand).
import os
import sys

import numpy as np
import torch
import torchvision
from torchvision.models.mobilenetv2 import MobileNetV2

from st_write import write_safetensors  # same folder

HERE = os.path.dirname(os.path.abspath(__file__))


def build(variant, width, classes):
    setting = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]
    if variant == "cifar":
        setting[1][3] = 1  # kuangliu/pytorch-cifar: (6,24,2,1); built, not patched, so residual flags follow the stride
    m = MobileNetV2(num_classes=classes, width_mult=width, inverted_residual_setting=setting)
    if variant == "cifar":
        m.features[0][0].stride = (1, 1)  # the stem has no residual, so patching its stride is exact
    return m


def randomize_bn(m, g, bias_center=0.0):
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                c = mod.num_features
                mod.weight.copy_(1 + 0.2 * torch.randn(c, generator=g))
                mod.bias.copy_(bias_center + 0.1 * torch.randn(c, generator=g))
                mod.running_mean.copy_(0.1 * torch.randn(c, generator=g))
                mod.running_var.copy_(0.5 + torch.rand(c, generator=g))
                mod.num_batches_tracked.fill_(int(torch.randint(0, 100, (1,), generator=g)))


GRAD_NAMES = ["features.0.0.weight", "features.0.1.weight", "features.1.conv.0.0.weight", "features.3.conv.1.0.weight",
              "features.3.conv.1.1.bias", "features.10.conv.2.weight", "features.17.conv.2.weight", "features.18.1.weight", "classifier.1.weight",
              "classifier.1.bias"]
AFTER_BN = ["features.0.1", "features.18.1"]


def make(variant, width, classes, input_shape, labels, seed, bias_center=0.0):
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    m = build(variant, width, classes)
    randomize_bn(m, g, bias_center)
    with torch.no_grad():
        for v in m.state_dict().values():
            if v.is_floating_point():
                v.copy_(v.half().float())
    state = [(k, v.detach().clone().half().numpy() if v.is_floating_point() else v.detach().clone().numpy())
             for k, v in m.state_dict().items()]
    x = torch.randn(*input_shape, generator=g)
    y = torch.tensor(labels, dtype=torch.int64)
    # The reference runs in float64 (weights and input are exact there) and is stored as F32, so the C++ side's f32
    # result is held against the exact answer, not against PyTorch's own f32 rounding.
    m = m.double()
    xd = x.double()

    m.eval()
    with torch.no_grad():
        logits = m(xd).float()

    m.train()
    m.classifier[0].eval()  # dropout: identity (see the header comment)
    logits_train = m(xd)
    loss = torch.nn.functional.cross_entropy(logits_train, y)
    loss.backward()
    params = dict(m.named_parameters())
    buffers = dict(m.named_buffers())

    out = state + [
        ("input", x.numpy()),
        ("labels", y.numpy()),
        ("logits", logits.numpy()),
        ("logits_train", logits_train.detach().float().numpy()),
        ("loss", loss.detach().float().reshape(()).numpy()),
    ]
    out += [("grad." + n, params[n].grad.float().numpy()) for n in GRAD_NAMES]
    for bn in AFTER_BN:
        out += [("after." + bn + ".running_mean", buffers[bn + ".running_mean"].float().numpy()),
                ("after." + bn + ".running_var", buffers[bn + ".running_var"].float().numpy())]
    meta = {"variant": variant, "width_mult": str(width), "num_classes": str(classes), "seed": str(seed),
            "bn_bias_center": str(bias_center),
            "torch": torch.__version__, "torchvision": torchvision.__version__,
            "train_pass": "BatchNorm in train mode, dropout identity", "generator": "tests/golden/make_fixtures.py"}
    path = os.path.join(HERE, "mobilenetv2_%s.safetensors" % variant)
    write_safetensors(path, out, meta)
    n_params = sum(p.numel() for p in m.parameters())
    print("%s: %d parameters, %d bytes, loss %.6f" % (path, n_params, os.path.getsize(path), loss.item()))


if __name__ == "__main__":
    torch.set_num_threads(1)
    make("cifar", 0.25, 10, (2, 3, 32, 32), [1, 7], seed=1234)
    # Batch 4 at 64x64, not 1: with one image the last stages hold 2x2 = 4 values per BatchNorm channel in train mode,
    # and near-constant channels make the gradients ill-conditioned (PyTorch's own f32 result was 1% off its f64 one).
    # BatchNorm biases near 3, not 0: the last stages' channels hold only 16 values each, so one ReLU6 input that sits
    # on the kink at 0 or 6 decides the gradients upstream by ~1%, and which side an f32 run puts it on is rounding
    # luck. Seed 4321 with biases near 0 had an input 4e-7 (relative) from a kink in features.17: an FMA build, or
    # OpenBLAS's one-thread kernels, flipped it and failed the test at 1e-4. Here the smallest such margin in the 2x2
    # and 4x4 stages is 1.8e-4, well above f32's forward error there (~2e-5); 0.4% of the inputs are still clipped.
    make("imagenet", 0.25, 10, (4, 3, 64, 64), [1, 7, 3, 0], seed=2, bias_center=3.0)
    sys.exit(0)
