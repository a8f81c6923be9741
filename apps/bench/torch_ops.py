#!/usr/bin/env python3
"""torch_ops.py — the PyTorch side of `build/bench ops`: same shapes, same timing rule (CUDA events, median).

Run where PyTorch and a GPU are: python3 apps/bench/torch_ops.py. TF32 is off, as in edgepipe's default; cuDNN uses its default heuristics (benchmark=False), as edgepipe does.
Not a test: it prints figures to compare with build/bench ops on the same GPU.
"""
import statistics
import sys
import time

import torch
import torch.nn.functional as F


def time_ms(fn, reps=20, warmup=3):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b))
    return statistics.median(ts)


def cpu_median_ms(step, warm_steps, reps):
    """Median wall-clock ms of `step` on the CPU after warm_steps untimed ones (the --cpu modes of the model scripts,
    timed as build/bench model --device cpu)."""
    for _ in range(warm_steps):
        step()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def time_graph_step(step, warm_steps, reps):
    """(median ms of one replay, None) of `step` captured as one CUDA graph, PyTorch's whole-network recipe: warm-up
    steps on a side stream, capture with torch.cuda.graph, then replays timed like eager steps (beside
    `build/bench model --cuda-graph`). (None, the reason in one line) when the step cannot be captured."""
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warm_steps):
                step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step()
        return time_ms(graph.replay, reps=reps, warmup=3), None
    except Exception as e:  # noqa: BLE001 - one line, and the other figures stand
        cause = e.__context__ or e  # torch.cuda.graph's exit error hides the call that broke the capture
        return None, str(cause).splitlines()[0][:150]


def time_training_step(step, compiled, warm_steps, reps, after_warmup=None):
    """(median ms of step, seconds of the warm-up): the warm-up is timed on its own, since it holds
    torch.compile's compilation when `compiled`; after_warmup() runs between the two (e.g. a peak-memory reset).
    With --profile on the command line, 3 more runs under torch.profiler print GPU time by kernel (eager only), to set
    against `build/bench ... --profile-kernels 3`."""
    fn = torch.compile(step) if compiled else step
    t0 = time.perf_counter()
    for _ in range(warm_steps):
        fn()
    torch.cuda.synchronize()
    warm = time.perf_counter() - t0
    if after_warmup:
        after_warmup()
    ms = time_ms(fn, reps=reps, warmup=0)
    if "--profile" in sys.argv and not compiled:
        print_kernel_profile(fn, runs=3)
    return ms, warm


def print_kernel_profile(fn, runs):
    """torch.profiler's CUDA kernels over `runs` calls of fn, the 25 largest by self GPU time (totals, not per run)."""
    from torch.profiler import ProfilerActivity, profile
    torch.cuda.synchronize()
    # CPU too: with CUDA alone some versions record no kernel events; the table still sorts by self GPU time.
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(runs):
            fn()
        torch.cuda.synchronize()
    for key in ("self_device_time_total", "self_cuda_time_total"):  # the name changed across PyTorch versions
        try:
            table = prof.key_averages().table(sort_by=key, row_limit=25)
        except Exception:  # noqa: BLE001 - an unknown sort key in this version: try the older name
            continue
        print(f"  -- GPU time by kernel of the next figure's step ({runs} profiled runs, totals):\n{table}", flush=True)
        return


def main():
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = "cuda"
    print(f"==== PyTorch {torch.__version__} on {torch.cuda.get_device_name()} ====")
    print("\n[gemm] f32 square, GFLOP/s")
    for n in (1024, 4096):
        a = torch.rand(n, n, device=dev) * 2 - 1
        b = torch.rand(n, n, device=dev) * 2 - 1
        ms = time_ms(lambda: a @ b)
        print(f"  {n:<6} {2 * n**3 / ms / 1e6:14.1f}")
    shapes = [("stem 3->32 3x3", 3, 32, 32, 3, 1, 1), ("dw 32 3x3", 32, 32, 32, 3, 1, 32),
              ("pw 32->16", 32, 32, 16, 1, 1, 1), ("pw 16->96", 16, 32, 96, 1, 1, 1),
              ("dw 144 3x3 s2", 144, 32, 144, 3, 2, 144), ("pw 192->32 16x16", 192, 16, 32, 1, 1, 1),
              ("dw 384 3x3 8x8", 384, 8, 384, 3, 1, 384), ("pw 384->64 8x8", 384, 8, 64, 1, 1, 1),
              ("dw 960 3x3 4x4", 960, 4, 960, 3, 1, 960), ("pw 320->1280 4x4", 320, 4, 1280, 1, 1, 1)]
    print("\n[conv2d] f32 forward+backward, batch 128; ms")
    for name, cin, hw, cout, k, s, g in shapes:
        x = (torch.rand(128, cin, hw, hw, device=dev) * 2 - 1).requires_grad_()
        w = (torch.rand(cout, cin // g, k, k, device=dev) * 2 - 1).requires_grad_()
        with torch.no_grad():
            dy = F.conv2d(x, w, None, s, k // 2, 1, g)
        fwd = time_ms(lambda: F.conv2d(x, w, None, s, k // 2, 1, g), 10, 2)
        both = time_ms(lambda: F.conv2d(x, w, None, s, k // 2, 1, g).backward(dy), 10, 2)
        print(f"  {name:<20} fwd {fwd:8.3f} ms | fwd+bwd {both:8.3f} ms")
    n = 1 << 24
    a = torch.rand(n, device=dev) * 2 - 1
    b = torch.rand(n, device=dev) * 2 - 1
    c = torch.empty_like(a)
    copy = time_ms(lambda: c.copy_(a))
    copy_gbs = 2 * n * 4 / copy / 1e6
    print(f"\n[bandwidth] {n} f32; copy {copy_gbs:.1f} GB/s")
    m = a.view(4096, -1)
    bias = torch.rand(n // 4096, device=dev)
    for name, fn, nbytes in [("add (a + b)", lambda: a + b, 3), ("mul by scalar", lambda: a * 2.0, 2),
                             ("gelu", lambda: F.gelu(a), 2), ("relu6", lambda: F.relu6(a), 2),
                             ("add bias [4096,k]+[k]", lambda: m + bias, 2),
                             ("sum over rows [4096,k]", lambda: m.sum(1), 1),
                             ("sum over cols [4096,k]", lambda: m.sum(0), 1),
                             ("softmax [4096,k]", lambda: torch.softmax(m, -1), 2)]:
        ms = time_ms(fn)
        gbs = nbytes * n * 4 / ms / 1e6
        print(f"  {name:<26} {ms:8.3f} ms {gbs:8.1f} GB/s {100 * gbs / copy_gbs:6.1f}% of copy")
    # Host time per op, each burst queued behind a large matrix product (as build/bench ops does).
    big = torch.rand(8192, 8192, device=dev)
    s16, t16 = torch.rand(16, device=dev), torch.rand(16, device=dev)
    x16 = torch.rand(16, device=dev, requires_grad=True)

    def host_us(op, burst=300):
        ts = []
        for _ in range(7):
            busy = big @ big
            t0 = time.perf_counter()
            for _ in range(burst):
                op()
            ts.append((time.perf_counter() - t0) / burst * 1e6)
            torch.cuda.synchronize()
        return statistics.median(ts)

    state = {"a": s16, "y": x16}

    def plain():
        with torch.no_grad():
            state["a"] = state["a"] + t16

    def recorded():
        state["y"] = state["y"] * 1.0

    print(f"\n[overhead] host time per op launch (16 elements, median of 300-op bursts): {host_us(plain):.2f} us; "
          f"with autograd recording: {host_us(recorded):.2f} us")


if __name__ == "__main__":
    main()
