#!/usr/bin/env python3
"""torch_model.py — the PyTorch side of `build/bench model mobilenetv2`: the same CIFAR MobileNetV2 (torchvision's,
built with kuangliu's strides and a stride-1 stem, width 1.0, 10 classes), the same SGD step on random on-device data,
timed the same way (CUDA events, median of 30 after 5 warm-up steps), in eager mode and under torch.compile.

Run where PyTorch and a GPU are: python3 apps/bench/torch_model.py [--no-compile | --compile-only] [--no-graph].
Each eager figure is followed by the same step captured as one CUDA graph (torch.cuda.graph) and replayed.
f32, TF32 off, NCHW.
--cpu: the CPU step instead (batch 32, one thread per core, median of 10 wall-clock steps after 3, eager only), to
compare with build/bench model mobilenetv2 --device cpu on the same machine (Debian's python3-torch 1.13 will do).
Not a test: it prints images/s to compare with build/bench model mobilenetv2 on the same GPU (or CPU).
"""
import os
import sys

import torch
import torch.nn.functional as F
from torchvision.models import MobileNetV2

# the ops benchmark's timing rules (same folder)
from torch_ops import cpu_median_ms, time_graph_step, time_training_step


def build(width=1.0, dropout=0.2):
    """train_cv's --variant cifar: torchvision's MobileNetV2 with kuangliu's stage strides and a stride-1 stem."""
    setting = [[1, 16, 1, 1], [6, 24, 2, 1], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]
    m = MobileNetV2(num_classes=10, width_mult=width, inverted_residual_setting=setting, dropout=dropout)
    m.features[0][0].stride = (1, 1)
    return m


def bench(batch, compiled, graph=False):
    model = build().cuda().train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x = torch.rand(batch, 3, 32, 32, device="cuda") * 2 - 1
    y = torch.arange(batch, device="cuda") % 10

    def step():
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    if graph:  # the step as one CUDA graph, beside build/bench model --cuda-graph
        ms, why = time_graph_step(step, warm_steps=5, reps=30)
        if why:
            print(f"  graph    batch {batch:<4} capture failed: {why}", flush=True)
            return
        print(f"  graph    batch {batch:<4} {ms:9.2f} ms/step {1000 * batch / ms:9.0f} images/s", flush=True)
        return
    ms, warm = time_training_step(step, compiled, warm_steps=5, reps=30)
    print(f"  {'compile' if compiled else 'eager':<8} batch {batch:<4} {ms:9.2f} ms/step {1000 * batch / ms:9.0f} images/s"
          f"  (warm-up {warm:.1f} s)", flush=True)


def bench_cpu(batch):
    torch.set_num_threads(os.cpu_count())
    model = build().train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x = torch.rand(batch, 3, 32, 32) * 2 - 1
    y = torch.arange(batch) % 10

    def step():
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    ms = cpu_median_ms(step, warm_steps=3, reps=10)
    print(f"  eager    batch {batch:<4} {ms:9.2f} ms/step {1000 * batch / ms:9.1f} images/s", flush=True)


def main():
    if "--cpu" in sys.argv:
        print(f"==== PyTorch {torch.__version__} on the CPU ({os.cpu_count()} threads): MobileNetV2-cifar training step ====")
        bench_cpu(32)
        return
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    print(f"==== PyTorch {torch.__version__} on {torch.cuda.get_device_name()}: MobileNetV2-cifar training step ====")
    if "--compile-only" not in sys.argv:  # the eager figures may come from an earlier call on the same GPU
        for batch in (32, 128, 256):  # 32: a pipeline micro-batch (128 in 4), where host work may set the pace
            bench(batch, False)
            if "--no-graph" not in sys.argv:
                bench(batch, False, graph=True)
    if "--no-compile" not in sys.argv:
        for batch in (128, 256):
            bench(batch, True)


if __name__ == "__main__":
    main()
