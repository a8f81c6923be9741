# torch_compress.py — the PyTorch twin of `bench compress`: the seeds' compression math written with PyTorch ops on the
# GPU (torch.sort-based sort quantization, torch.topk, a k-means loop with torch.cdist/argmin, uniform quant, low rank
# power iteration, fp8 casts), timed like apps/bench_compress.h (CUDA events, median of reps), printing GB/s of fp32
# input per method. Not bit-packed: codes stay uint8 tensors, which flatters PyTorch's encode a little. Each method
# runs twice: with its payload left on the GPU (as `bench compress`'s "encode" column) and copied to the host
# ("+ to host").
# --cpu: the same math on the CPU (one thread per core, wall-clock medians), next to `bench compress --device cpu`:
# the edge device of a split encodes on its CPU. Debian's python3-torch 1.13 will do; it has no fp8 dtype, so there
# fp8 is emulated by float ops that round to the e4m3 grid (fp8_emulated).
import os
import sys

import torch

from torch_ops import cpu_median_ms, time_ms  # the same medians as the ops benchmark (same folder)


TO_HOST = True  # main() runs every method with the payload left on the GPU, then copied to the host


def out(t):
    """A payload tensor as the wire sees it: copied to the host, or left on the GPU."""
    return t.cpu() if TO_HOST else t


def scalar(t):
    return t.item() if TO_HOST else t


def quant(x, bits):
    mn, mx = x.min(), x.max()
    step = (mx - mn) / (2**bits - 1)
    q = torch.round((x - mn) / step).to(torch.uint8 if bits <= 8 else torch.int16)
    return (out(q), scalar(mn), scalar(step)), lambda p: p[0].to(x.device).float() * p[2] + p[1]


def sortquant(x, bits, split, sampled):
    flat = x.flatten()
    k = 2**split
    if sampled:
        s = flat[torch.randint(0, flat.numel(), (65536,), device=x.device)].sort().values
        th = s[(torch.arange(1, k, device=x.device) * s.numel() + k - 1) // k - 1]
        bucket = torch.bucketize(flat, th)
    else:
        order = flat.argsort(stable=True)
        bucket = torch.empty_like(order)
        bucket[order] = torch.cat([torch.full((len(c),), i, device=x.device)
                                   for i, c in enumerate(torch.tensor_split(order, k))])
    lo = torch.full((k,), float("inf"), device=x.device).scatter_reduce(0, bucket, flat, "amin")
    hi = torch.full((k,), float("-inf"), device=x.device).scatter_reduce(0, bucket, flat, "amax")
    step = (hi - lo) / (2**bits - 1)
    level = torch.round((flat - lo[bucket]) / step[bucket].clamp_min(1e-30))
    codes = (bucket * 2**bits + level.long()).to(torch.int16)
    return (out(codes), out(lo), out(step)), None


def topk(x, ratio):
    flat = x.flatten()
    idx = flat.abs().topk(int(-(-ratio * flat.numel() // 1))).indices.sort().values
    return (out(idx.int()), out(flat[idx])), None


def kmeans(x, bits, iters=20):
    flat = x.flatten()[:, None]
    c = flat.flatten().sort().values[((torch.arange(2**bits, device=x.device) + 0.5) / 2**bits
                                      * flat.numel()).long()][:, None]
    for _ in range(iters):
        assign = torch.cdist(flat, c).argmin(1)
        sums = torch.zeros_like(c).index_add_(0, assign, flat)
        counts = torch.zeros_like(c).index_add_(0, assign, torch.ones_like(flat))
        c = torch.where(counts > 0, sums / counts.clamp_min(1), c)
    return (out(torch.cdist(flat, c).argmin(1).to(torch.uint8)), out(c)), None


def lowrank(x, rank, iters=2):
    m = x.reshape(x.shape[0], x.shape[1], -1).double()
    p = torch.randn(m.shape[0], m.shape[2], rank, device=x.device, dtype=torch.float64)
    for it in range(iters):
        p = torch.linalg.qr(p).Q if it + 1 == iters else p / p.norm(dim=1, keepdim=True)
        q = m @ p
        if it + 1 == iters:
            q = torch.linalg.qr(q).Q
        p = m.transpose(1, 2) @ q
    return (out(q.float()), out(p.float())), None


def fp8(x):
    scale = 2.0 ** torch.ceil(torch.log2(x.abs().max() / 448.0))
    return (out((x / scale).to(torch.float8_e4m3fn).view(torch.uint8)), scalar(scale)), None


def fp8_emulated(x):
    """e4m3 nearest-even rounding in float ops, for a PyTorch without fp8 dtypes (Debian's 1.13): the grid values
    come out as fp16 (exact there), 2 bytes an element against the real cast's 1."""
    scale = 2.0 ** torch.ceil(torch.log2(x.abs().max() / 448.0))
    y = x / scale
    quantum = torch.exp2(torch.floor(torch.log2(y.abs())).clamp(min=-6) - 3)  # subnormals share 2^-9
    r = (torch.round(y / quantum) * quantum).clamp(-448.0, 448.0)
    return (out(r.half()), scalar(scale)), None


def main():
    on_cpu = "--cpu" in sys.argv
    dev = "cpu" if on_cpu else "cuda"
    if on_cpu:
        torch.set_num_threads(os.cpu_count())
        where = f"the CPU ({os.cpu_count()} threads)"
        # bench compress --device cpu: 3 timed runs after 1 (kmeans too); the payload is host memory already.
        timed = lambda fn, reps, warmup=1: cpu_median_ms(fn, warm_steps=1, reps=3)
    else:
        where = torch.cuda.get_device_name()
        timed = lambda fn, reps, warmup=1: time_ms(fn, reps, warmup)
    print(f"==== PyTorch {torch.__version__} on {where}: compression, GB/s of fp32 input ====")
    global TO_HOST
    # none: the copy to the host (on the CPU, where .cpu() copies nothing, a clone: bench compress's none copies too)
    methods = [("none", lambda x: out(x) if TO_HOST and not on_cpu else x.clone()),
               ("quant:bits=8", lambda x: quant(x, 8)),
               ("quant:bits=4", lambda x: quant(x, 4)),
               ("sortquant:bits=6,split=2", lambda x: sortquant(x, 6, 2, False)),
               ("sortquant:bits=6,split=2,mode=sampled", lambda x: sortquant(x, 6, 2, True)),
               ("topk:ratio=0.1", lambda x: topk(x, 0.1)), ("kmeans:bits=4", lambda x: kmeans(x, 4)),
               ("lowrank:rank=4", lambda x: lowrank(x, 4))]
    if hasattr(torch, "float8_e4m3fn"):
        methods.append(("fp8", fp8))
    else:
        methods.append(("fp8 (emulated, fp16 codes)", fp8_emulated))
    # The CPU: the 12.6 MB case only, as bench compress there when the big one would take too long.
    for shape in [(32, 128, 768)] + ([] if on_cpu else [(64, 32, 112, 112)]):
        x = torch.randn(*shape, device=dev)
        nbytes = x.numel() * 4
        copy = timed(lambda: x.clone(), 20, 3)
        d2h = timed(lambda: x.cpu(), 20, 3)
        print(f"\n[compress] f32 {list(shape)} ({nbytes / 1e6:.1f} MB); copy {nbytes / copy / 1e6:.1f} GB/s"
              + ("" if on_cpu else f", device to host {nbytes / d2h / 1e6:.1f} GB/s"))
        for name, fn in methods:
            reps = 3 if name.startswith("kmeans") else 20  # cdist over 2^b centroids is slow on big tensors
            gbs = []
            for TO_HOST in ((True,) if on_cpu else (False, True)):
                ms = timed(lambda: fn(x), reps)
                gbs.append(nbytes / ms / 1e6)
            print(f"  {name:<40} encode {gbs[0]:10.2f} GB/s" + ("" if on_cpu else f"   + to host {gbs[1]:10.2f} GB/s"))
        TO_HOST = True
        q = quant(x, 8)
        ms = timed(lambda: q[1](q[0]), 20, 3)
        print(f"  {'quant:bits=8 decode':<40} decode {nbytes / ms / 1e6:10.2f} GB/s")


if __name__ == "__main__":
    main()
