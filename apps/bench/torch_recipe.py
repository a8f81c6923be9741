#!/usr/bin/env python3
"""torch_recipe.py — train_cv's MobileNetV2-cifar recipe in PyTorch, to compare accuracy curves.
Data: CIFAR-10 binary files, or train/ and test/ image folders (<class>/*.jpg|png) read in train_cv's sorted order.
Recipe: torchvision's MobileNetV2 (kuangliu's strides, stride-1 stem), SGD with Nesterov momentum 0.9 and weight decay
5e-4 on every parameter, linear warmup from 0 then cosine to 0 per step, CIFAR-10 normalization, random crop with
4-pixel zero padding and horizontal flip, the last partial batch kept. Same flags and defaults as train_cv's.

  build/synthetic_data --synthetic-size 3000 --out /tmp/syn     # the images train_cv --data synthetic trains on
  python3 apps/bench/torch_recipe.py --data /tmp/syn --width 0.5 --batch-size 64 --lr 0.02 --seed 1
  python3 apps/bench/torch_recipe.py --data data/cifar10-jpeg --train-subset 5000 --test-subset 2000 --epochs 3

Not the same run as train_cv's: initialization, shuffling and augmentation draw from torch's generator, so the
comparison is between distributions over seeds, not between runs. Prints one line per epoch, as train_cv does.
"""
import argparse
import math
import os

import numpy as np
import torch
import torch.nn.functional as F

from torch_model import build  # the same CIFAR MobileNetV2 as the speed comparison (same folder)

MEAN = (0.4914, 0.4822, 0.4465)  # train_cv's default --normalize
STD = (0.2470, 0.2435, 0.2616)


def normalize(pixels):
    """uint8 NCHW pixels to float, normalized per channel as train_cv does."""
    x = torch.tensor(pixels).float() / 255
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def load(path):
    raw = np.fromfile(path, np.uint8)
    if raw.size == 0 or raw.size % 3073:
        raise SystemExit(f"torch_recipe: {path}: size {raw.size} is not a whole number of 3073-byte records")
    rec = raw.reshape(-1, 3073)
    return normalize(rec[:, 1:].reshape(-1, 3, 32, 32)), torch.tensor(rec[:, 0].astype(np.int64))


def load_folder(root):
    """train_cv's image-folder order: classes sorted by name, files sorted within each class."""
    from PIL import Image
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    images, labels = [], []
    for k, c in enumerate(classes):
        for f in sorted(os.listdir(os.path.join(root, c))):
            if f.lower().endswith((".jpg", ".jpeg", ".png")):
                images.append(np.asarray(Image.open(os.path.join(root, c, f)).convert("RGB")).transpose(2, 0, 1))
                labels.append(k)
    return normalize(np.stack(images)), torch.tensor(labels)


def strided(x, y, n):
    """train_cv's --train-subset/--test-subset: every (size / n)-th image, keeping class-sorted folders balanced."""
    if n <= 0 or n >= len(y):
        return x, y
    idx = torch.tensor([i * len(y) // n for i in range(n)])
    return x[idx], y[idx]


def augment(x, gen):
    n = x.shape[0]
    padded = F.pad(x, (4, 4, 4, 4))
    offsets = torch.randint(0, 9, (n, 2), generator=gen)
    flips = torch.rand(n, generator=gen) < 0.5
    out = torch.empty_like(x)
    for i in range(n):
        dy, dx = int(offsets[i, 0]), int(offsets[i, 1])
        img = padded[i, :, dy:dy + 32, dx:dx + 32]
        out[i] = img.flip(2) if flips[i] else img
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True,
                   help="data_batch_1..5.bin and test_batch.bin, or train/ and test/ image folders")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-subset", type=int, default=0)
    p.add_argument("--test-subset", type=int, default=0)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)
    if os.path.exists(os.path.join(a.data, "test_batch.bin")):
        parts = [load(os.path.join(a.data, f"data_batch_{k}.bin")) for k in range(1, 6)]
        xtr, ytr = torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts])
        xte, yte = load(os.path.join(a.data, "test_batch.bin"))
    else:
        (xtr, ytr), (xte, yte) = load_folder(os.path.join(a.data, "train")), load_folder(os.path.join(a.data, "test"))
    xtr, ytr = strided(xtr, ytr, a.train_subset)
    xte, yte = strided(xte, yte, a.test_subset)
    model = build(a.width, a.dropout)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    steps_per_epoch = math.ceil(len(ytr) / a.batch_size)
    total = a.epochs * steps_per_epoch
    warmup = min(total, int(a.warmup_epochs * steps_per_epoch))

    def lr_at(step):  # engine/lr_schedule.cpp's cosine: HF's warmup (step 0 at lr 0), then cosine to 0
        if step < warmup:
            return a.lr * step / max(1, warmup)
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return a.lr * 0.5 * (1 + math.cos(math.pi * progress))

    step = 0
    for epoch in range(a.epochs):
        model.train()
        order = torch.randperm(len(ytr), generator=gen)
        loss_sum, correct = 0.0, 0
        for b in range(steps_per_epoch):
            idx = order[b * a.batch_size:(b + 1) * a.batch_size]
            x, y = augment(xtr[idx], gen), ytr[idx]
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            loss_sum += loss.item() * len(idx)
            correct += (logits.argmax(1) == y).sum().item()
        model.eval()
        with torch.no_grad():
            logits = torch.cat([model(xte[i:i + 500]) for i in range(0, len(yte), 500)])
            val_loss = F.cross_entropy(logits, yte).item()
            val_top1 = (logits.argmax(1) == yte).float().mean().item()
        print(f"epoch {epoch + 1}: train loss {loss_sum / len(ytr):.4f} top-1 {100 * correct / len(ytr):.2f}% | "
              f"test loss {val_loss:.4f} top-1 {100 * val_top1:.2f}%", flush=True)


if __name__ == "__main__":
    main()
