#!/usr/bin/python3
# make_roberta_fixture.py — writes tests/golden/roberta_tiny.safetensors: a tiny random RobertaForSequenceClassification
# computed with plain torch following HF's modeling_roberta.py math (formats.md A2). Not run by the build: the fixture is
# committed; rerun only to regenerate it. HF transformers is not a Debian package, hence the re-implementation.
#
# Needs Debian's python3-torch (1.13): /usr/bin/python3 tests/golden/make_roberta_fixture.py
# The file holds, in F32 unless noted:
#   the state dict under HF's keys (roberta.embeddings..., roberta.encoder.layer.N..., classifier...),
#   "input_ids" [B,T] I64 (right-padded with pad id 1, one row left-padded: HF's position ids handle both),
#   "attention_mask" [B,T] I64, "labels" [B] I64, "logits" [B,num_labels] (dropout off: masks cannot match Philox),
#   "loss" (cross entropy, mean), "grad.<name>" = d loss / d param for every parameter,
#   and in the metadata the config.json text the model was built from.
import json
import math
import os

import numpy as np
import torch
import torch.nn.functional as F

from st_write import write_safetensors  # same folder

HERE = os.path.dirname(os.path.abspath(__file__))

CONFIG = {
    "architectures": ["RobertaForSequenceClassification"], "attention_probs_dropout_prob": 0.1, "bos_token_id": 0,
    "eos_token_id": 2, "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 32, "initializer_range": 0.02,
    "intermediate_size": 64, "layer_norm_eps": 1e-05, "max_position_embeddings": 40, "model_type": "roberta",
    "num_attention_heads": 4, "num_hidden_layers": 2, "pad_token_id": 1, "type_vocab_size": 1, "vocab_size": 1000,
    "id2label": {"0": "A", "1": "B", "2": "C"}, "classifier_dropout": None, "position_embedding_type": "absolute",
}


def make_params(c, labels, g):
    D, I, V, P = c["hidden_size"], c["intermediate_size"], c["vocab_size"], c["max_position_embeddings"]
    # Larger than HF's N(0, 0.02) so every layer changes its input measurably; LayerNorm affine randomized too.
    def rnd(*shape, std=0.2):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * std

    p = {
        "roberta.embeddings.word_embeddings.weight": rnd(V, D, std=1.0),
        "roberta.embeddings.position_embeddings.weight": rnd(P, D, std=0.5),
        "roberta.embeddings.token_type_embeddings.weight": rnd(1, D, std=0.5),
        "roberta.embeddings.LayerNorm.weight": 1 + rnd(D, std=0.1),
        "roberta.embeddings.LayerNorm.bias": rnd(D, std=0.1),
    }
    for n in range(c["num_hidden_layers"]):
        pre = f"roberta.encoder.layer.{n}."
        for name, (o, i) in {"attention.self.query": (D, D), "attention.self.key": (D, D),
                             "attention.self.value": (D, D), "attention.output.dense": (D, D),
                             "intermediate.dense": (I, D), "output.dense": (D, I)}.items():
            p[pre + name + ".weight"] = rnd(o, i, std=1 / math.sqrt(i))
            p[pre + name + ".bias"] = rnd(o, std=0.1)
        for name in ("attention.output.LayerNorm", "output.LayerNorm"):
            p[pre + name + ".weight"] = 1 + rnd(D, std=0.1)
            p[pre + name + ".bias"] = rnd(D, std=0.1)
    p["classifier.dense.weight"] = rnd(D, D, std=1 / math.sqrt(D))
    p["classifier.dense.bias"] = rnd(D, std=0.1)
    p["classifier.out_proj.weight"] = rnd(labels, D, std=1 / math.sqrt(D))
    p["classifier.out_proj.bias"] = rnd(labels, std=0.1)
    # Round to float32 so the float64 reference sees exactly the values the fixture stores.
    return {k: v.float().double().requires_grad_() for k, v in p.items()}


def forward(p, c, ids, mask):
    """HF RobertaForSequenceClassification in eval mode (modeling_roberta.py), in float64."""
    pad, eps, H = c["pad_token_id"], c["layer_norm_eps"], c["num_attention_heads"]
    D = c["hidden_size"]
    keep = (ids != pad).long()
    pos = torch.cumsum(keep, dim=1) * keep + pad  # create_position_ids_from_input_ids
    e = (F.embedding(ids, p["roberta.embeddings.word_embeddings.weight"], padding_idx=pad)
         + F.embedding(pos, p["roberta.embeddings.position_embeddings.weight"], padding_idx=pad)
         + F.embedding(torch.zeros_like(ids), p["roberta.embeddings.token_type_embeddings.weight"]))
    h = F.layer_norm(e, (D,), p["roberta.embeddings.LayerNorm.weight"], p["roberta.embeddings.LayerNorm.bias"], eps)
    bias = (1.0 - mask[:, None, None, :].double()) * torch.finfo(torch.float64).min
    B, T = ids.shape
    d = D // H
    for n in range(c["num_hidden_layers"]):
        pre = f"roberta.encoder.layer.{n}."
        lin = lambda x, name: F.linear(x, p[pre + name + ".weight"], p[pre + name + ".bias"])
        heads = lambda x: x.view(B, T, H, d).permute(0, 2, 1, 3)
        q, k, v = heads(lin(h, "attention.self.query")), heads(lin(h, "attention.self.key")), heads(lin(h, "attention.self.value"))
        scores = q @ k.transpose(-1, -2) / math.sqrt(d) + bias
        ctx = (torch.softmax(scores, dim=-1) @ v).permute(0, 2, 1, 3).reshape(B, T, D)
        a = F.layer_norm(lin(ctx, "attention.output.dense") + h, (D,), p[pre + "attention.output.LayerNorm.weight"],
                         p[pre + "attention.output.LayerNorm.bias"], eps)
        f = F.gelu(lin(a, "intermediate.dense"))  # erf form
        h = F.layer_norm(lin(f, "output.dense") + a, (D,), p[pre + "output.LayerNorm.weight"],
                         p[pre + "output.LayerNorm.bias"], eps)
    x = torch.tanh(F.linear(h[:, 0, :], p["classifier.dense.weight"], p["classifier.dense.bias"]))
    return F.linear(x, p["classifier.out_proj.weight"], p["classifier.out_proj.bias"])


def main():
    c = CONFIG
    labels_n = len(c["id2label"])
    g = torch.Generator().manual_seed(20261126)
    p = make_params(c, labels_n, g)
    B, T = 4, 12
    lengths = [12, 9, 5, 7]
    ids = torch.full((B, T), c["pad_token_id"], dtype=torch.long)
    for b, n in enumerate(lengths):
        body = torch.randint(4, c["vocab_size"], (n - 2,), generator=g)
        row = torch.cat([torch.tensor([0]), body, torch.tensor([2])])
        if b == 3:
            ids[b, T - n:] = row  # left padding: position ids still start at pad + 1 on the first real token
        else:
            ids[b, :n] = row
    mask = (ids != c["pad_token_id"]).long()
    labels = torch.tensor([0, 2, 1, 2])
    logits = forward(p, c, ids, mask)
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    tensors = [(k, v.detach().float().numpy()) for k, v in p.items()]
    tensors += [("input_ids", ids.numpy()), ("attention_mask", mask.numpy()), ("labels", labels.numpy()),
                ("logits", logits.detach().float().numpy()), ("loss", loss.detach().float().numpy())]
    tensors += [("grad." + k, v.grad.float().numpy()) for k, v in p.items()]
    meta = {"config": json.dumps(c), "torch": torch.__version__}
    write_safetensors(os.path.join(HERE, "roberta_tiny.safetensors"), tensors, meta)
    print("logits", logits.detach().numpy(), "loss", float(loss))


if __name__ == "__main__":
    main()
