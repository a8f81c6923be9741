#!/usr/bin/env python3
# make_bpe_reference.py — an INDEPENDENT reference for data/bpe.cpp: a short GPT-2/RoBERTa byte-level BPE written from
# openai/gpt-2 src/encoder.py's algorithm, that writes the golden id files tests/test_bpe.cpp compares against.
# Not HF transformers and not our C++ code: nothing here calls the tokenizer under test.
#
# Needs the `regex` module for \p{L} / \p{N}: the `python3` on PATH (/root/.pyenv/versions/3.11.7/bin/python3) has it;
# Debian's /usr/bin/python3 does not (python3-regex is not installed there).
# Run from the repository root:  python3 tests/golden/make_bpe_reference.py [../shared/data]
#
# Writes (one line per example, ids space-separated, special tokens included, no truncation unless stated):
#   tests/golden/bpe_rte_dev.txt            every RTE dev pair as <s> s1 </s></s> s2 </s>   (277 lines)
#   tests/golden/bpe_cola_dev.txt           every CoLA dev sentence as <s> s </s>          (1043 lines)
#   tests/golden/bpe_rte_dev_truncated.txt  "max_len<TAB>row<TAB>ids" for the first 100 RTE dev pairs at 17, 32, 64,
#                                           truncated longest-first as HF's slow tokenizer does (ties cut the 2nd)
#   tests/golden/bpe_edge_cases.jsonl       {"text": ..., "ids": [...]} for hand-picked edge cases, no special tokens
# TSVs are read as UTF-8, split on "\n" and "\t" only, no quoting (formats.md A5), the last newline optional.
import json
import os
import sys

import regex

DATA = sys.argv[1] if len(sys.argv) > 1 else "../shared/data"
OUT = "tests/golden"
PAT = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
BOS, EOS = 0, 2


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


class Bpe:
    def __init__(self, vocab_path, merges_path):
        with open(vocab_path, encoding="utf-8") as f:
            self.vocab = json.load(f)
        with open(merges_path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        assert lines[0].startswith("#version")
        merges = [tuple(line.split(" ")) for line in lines[1:] if line]
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.byte_encoder = bytes_to_unicode()

    def bpe(self, token):
        word = list(token)
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and word[i] == best[0] and word[i + 1] == best[1]:
                    merged.append(best[0] + best[1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        return word

    def encode_text(self, text):
        ids = []
        for piece in PAT.findall(text):
            symbols = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            ids.extend(self.vocab[s] for s in self.bpe(symbols))
        return ids


def truncate_longest_first(a, b, max_len):
    # HF PreTrainedTokenizerBase.truncate_sequences, LONGEST_FIRST with a pair: one token at a time from the end of
    # the longer side; on a tie, from the second sequence. 4 = <s> A </s></s> B </s>'s special tokens.
    a, b = list(a), list(b)
    for _ in range(max(0, len(a) + len(b) + 4 - max_len)):
        if len(a) > len(b):
            a.pop()
        else:
            b.pop()
    return a, b


def read_tsv(path):
    with open(path, encoding="utf-8") as f:
        rows = f.read().split("\n")
    if rows and rows[-1] == "":
        rows.pop()
    return [r.split("\t") for r in rows]


def line(ids):
    return " ".join(map(str, ids)) + "\n"


EDGE_CASES = [
    "", " ", "  ", "\t", "\n", "a", "Hello world", " Hello world", "Hello world! cécé herlolip 418",
    "  leading and trailing  ", "multiple   spaces    here", "tabs\tand\t\tnewlines\n\nhere\r\n",
    "I'm you're we've he'll she'd it's don't", "DON'T SHE'S 'S", "''s 's' ' s", "rock 'n' roll",
    "1234567 3.14 1,000,000 ٣٤٥ Ⅻ ½", "$100.00!!! ...??", "e\u0301 café naïve Zürich Ørsted",
    "日本語のテキスト、中文文本。", "한국어 텍스트", "emoji 😀👍🏽 👨‍👩‍👧 🇫🇷", "Ελληνικά Русский עברית العربية हिन्दी ไทย",
    "non-breaking\u00a0space ideographic\u3000space line\u2028separator", "info\x1cseparator\x1fhere", "back\x08space",
    "math ∑ ∫ ≤ ≥ ∞ →", "<s>not special</s> <mask>", "a" * 3000, "ab" * 1500, "x1y2z3 ab12cd", "end with space ",
    "\u00ad soft hyphen \ufeffbom \ufffd replacement",
]


def main():
    tok = Bpe(os.path.join(DATA, "roberta-base/vocab.json"), os.path.join(DATA, "roberta-base/merges.txt"))
    assert tok.encode_text("Hello world! cécé herlolip 418") == [31414, 232, 328, 740, 1140, 12695, 69, 46078, 1588,
                                                                 42928]
    rte = read_tsv(os.path.join(DATA, "glue/RTE/dev.tsv"))[1:]
    cola = read_tsv(os.path.join(DATA, "glue/CoLA/dev.tsv"))
    assert len(rte) == 277 and len(cola) == 1043, (len(rte), len(cola))
    rte_ids = [(tok.encode_text(r[1]), tok.encode_text(r[2])) for r in rte]
    with open(os.path.join(OUT, "bpe_rte_dev.txt"), "w") as f:
        for a, b in rte_ids:
            f.write(line([BOS] + a + [EOS, EOS] + b + [EOS]))
    with open(os.path.join(OUT, "bpe_cola_dev.txt"), "w") as f:
        for r in cola:
            f.write(line([BOS] + tok.encode_text(r[3]) + [EOS]))
    with open(os.path.join(OUT, "bpe_rte_dev_truncated.txt"), "w") as f:
        for max_len in (17, 32, 64):
            for row, (a, b) in enumerate(rte_ids[:100]):
                ta, tb = truncate_longest_first(a, b, max_len)
                f.write(f"{max_len}\t{row}\t" + line([BOS] + ta + [EOS, EOS] + tb + [EOS]))
    with open(os.path.join(OUT, "bpe_edge_cases.jsonl"), "w") as f:
        for text in EDGE_CASES:
            f.write(json.dumps({"text": text, "ids": tok.encode_text(text)}) + "\n")
    print(f"wrote {OUT}/bpe_*: {len(rte)} RTE dev pairs, {len(cola)} CoLA dev sentences, {len(EDGE_CASES)} edge cases")


if __name__ == "__main__":
    main()
