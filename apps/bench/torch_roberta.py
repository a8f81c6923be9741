#!/usr/bin/env python3
"""torch_roberta.py — the PyTorch side of `build/bench model roberta`: HF transformers' RobertaForSequenceClassification
with the roberta-base config (random init, 2 labels), the same AdamW step (lr 2e-5, betas 0.9/0.98, eps 1e-6, weight
decay 0.1) on the same shape (batch 32, sequence 128, no padding, dropout 0.1), timed the same way (CUDA events, median
of 20 after warm-up), in eager mode with SDPA attention (also under bf16 autocast) and under torch.compile.

Run where PyTorch, transformers and a GPU are:
python3 apps/bench/torch_roberta.py [--no-compile | --compile-only] [--no-graph]. f32, TF32 off. The f32 SDPA step
is also captured as one CUDA graph (torch.cuda.graph, AdamW with capturable=True) and replayed.
--cpu: the CPU step instead (batch 4, one thread per core, median of 5 wall-clock steps after 2, as
`build/bench model roberta --device cpu`), with HF's model when transformers is installed, else the same math in plain
PyTorch (nn.TransformerEncoderLayer: post-LayerNorm, erf GELU, as RoBERTa's layers), which Debian's python3-torch runs.
Not a test: it prints sequences/s to compare with build/bench model roberta on the same GPU (or CPU).
"""
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

# the ops benchmark's timing rules (same folder)
from torch_ops import cpu_median_ms, time_graph_step, time_training_step

ROBERTA_BASE = dict(vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                    intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1,
                    bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5, hidden_dropout_prob=0.1,
                    attention_probs_dropout_prob=0.1, num_labels=2)


def bench(batch, seq, compiled, attn, bf16=False, graph=False):
    from transformers import RobertaConfig, RobertaForSequenceClassification

    cfg = RobertaConfig(**ROBERTA_BASE)
    model = RobertaForSequenceClassification._from_config(cfg, attn_implementation=attn).cuda().train()
    # capturable: AdamW keeps its step count on the GPU, which a CUDA graph needs (same arithmetic otherwise)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-5, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.1,
                            capturable=graph)
    ids = (torch.arange(batch * seq, device="cuda").view(batch, seq) * 7919) % (cfg.vocab_size - 4) + 4
    ids[:, 0], ids[:, -1] = 0, 2
    mask = torch.ones_like(ids)
    y = torch.arange(batch, device="cuda") % 2

    def step():
        # bf16: autocast as our --bf16 GEMMs are (bf16 operands, f32 accumulation and master weights)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            # A graph gets no mask: HF drops an all-ones mask after reading it on the host (a sync a capture refuses),
            # so both runs time SDPA without one.
            logits = model(input_ids=ids, attention_mask=None if graph else mask).logits
        loss = F.cross_entropy(logits.float(), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    if graph:  # the step as one CUDA graph, beside build/bench model roberta --cuda-graph
        ms, why = time_graph_step(step, warm_steps=3, reps=20)
        head = f"  graph    {attn:<6} {'bf16' if bf16 else 'f32':<4} batch {batch:<3} seq {seq}"
        if why:
            print(f"{head} capture failed: {why}", flush=True)
        else:
            print(f"{head} {ms:9.2f} ms/step {1000 * batch / ms:8.1f} sequences/s", flush=True)
        return
    ms, warm = time_training_step(step, compiled, warm_steps=3, reps=20,
                                  after_warmup=torch.cuda.reset_peak_memory_stats)
    peak = torch.cuda.max_memory_allocated() / 2**30
    mode = "compile" if compiled else "eager"
    print(f"  {mode:<8} {attn:<6} {'bf16' if bf16 else 'f32':<4} batch {batch:<3} seq {seq} {ms:9.2f} ms/step "
          f"{1000 * batch / ms:8.1f} sequences/s  peak {peak:.2f} GiB  (warm-up {warm:.1f} s)", flush=True)


def main():
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    print(f"==== PyTorch {torch.__version__} on {torch.cuda.get_device_name()}: RoBERTa-base training step ====")
    if "--compile-only" not in sys.argv:  # the eager figures may come from an earlier call on the same GPU
        bench(32, 128, False, "sdpa")
        bench(32, 128, False, "eager")
        bench(32, 128, False, "sdpa", bf16=True)  # beside `bench model roberta`'s bf16-GEMM figure
        if "--no-graph" not in sys.argv:
            bench(32, 128, False, "sdpa", graph=True)
    if "--no-compile" not in sys.argv:
        bench(32, 128, True, "sdpa")


class PlainRoberta(nn.Module):
    """RoBERTa-base for sequence classification in plain PyTorch (no transformers): embeddings (word, position from
    padding_idx + 1, token type) + LayerNorm + dropout, 12 post-LN encoder layers, dense -> tanh -> out_proj on <s>."""

    def __init__(self, c):
        super().__init__()
        h = c["hidden_size"]
        self.word = nn.Embedding(c["vocab_size"], h, padding_idx=c["pad_token_id"])
        self.position = nn.Embedding(c["max_position_embeddings"], h, padding_idx=c["pad_token_id"])
        self.token_type = nn.Embedding(c["type_vocab_size"], h)
        self.norm = nn.LayerNorm(h, eps=c["layer_norm_eps"])
        self.drop = nn.Dropout(c["hidden_dropout_prob"])
        self.layers = nn.ModuleList([
            nn.TransformerEncoderLayer(h, c["num_attention_heads"], c["intermediate_size"], c["hidden_dropout_prob"],
                                       activation="gelu", layer_norm_eps=c["layer_norm_eps"], batch_first=True)
            for _ in range(c["num_hidden_layers"])])
        self.dense = nn.Linear(h, h)
        self.out_proj = nn.Linear(h, c["num_labels"])
        self.pad = c["pad_token_id"]

    def forward(self, ids):
        positions = torch.arange(ids.shape[1]).unsqueeze(0) + self.pad + 1  # no padding in the benchmark
        h = self.drop(self.norm(self.word(ids) + self.position(positions) + self.token_type(torch.zeros_like(ids))))
        for layer in self.layers:
            h = layer(h)
        return self.out_proj(self.drop(torch.tanh(self.dense(self.drop(h[:, 0])))))


def bench_cpu(batch, seq):
    torch.set_num_threads(os.cpu_count())
    try:
        from transformers import RobertaConfig, RobertaForSequenceClassification
        model = RobertaForSequenceClassification(RobertaConfig(**ROBERTA_BASE))
        forward, which = (lambda ids: model(input_ids=ids).logits), "HF transformers"
    except ImportError:
        model = PlainRoberta(ROBERTA_BASE)
        forward, which = model, "plain PyTorch (transformers not installed)"
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-5, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.1)
    ids = (torch.arange(batch * seq).view(batch, seq) * 7919) % (ROBERTA_BASE["vocab_size"] - 4) + 4
    ids[:, 0], ids[:, -1] = 0, 2
    y = torch.arange(batch) % 2

    def step():
        F.cross_entropy(forward(ids), y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    ms = cpu_median_ms(step, warm_steps=2, reps=5)
    print(f"  eager    {which}: batch {batch} seq {seq} {ms:9.2f} ms/step {1000 * batch / ms:8.2f} sequences/s",
          flush=True)


if __name__ == "__main__":
    if "--cpu" in sys.argv:
        print(f"==== PyTorch {torch.__version__} on the CPU ({os.cpu_count()} threads): RoBERTa-base training step ====")
        bench_cpu(4, 128)
    else:
        main()
