#!/usr/bin/env bash
# compress_study.sh — the seeds' accuracy tables on real data: one train_cv run per compression spec at the seeds'
# split (edge | cloud | edge), then a markdown table of test top-1, bytes on the wire and each boundary's error.
# Not a speed benchmark (bench compress, bench pipeline) and not a test: its figures belong to the budget it is given.
#
#   bash apps/bench/compress_study.sh      # the CPU budget: width 0.25, 10,000 training images, 6 epochs (~5 min a spec)
#   DEVICE=cuda WIDTH=1.0 TRAIN_SUBSET=0 TEST_SUBSET=0 EPOCHS=30 bash apps/bench/compress_study.sh   # the full table
#
# Environment (defaults in brackets): DATA [data/cifar10-jpeg, from `make data`], DEVICE [cpu], WIDTH [0.25],
# EPOCHS [6], BATCH [128], LR [0.05], TRAIN_SUBSET [10000], TEST_SUBSET [2000], SEED [1], SPLIT ["1,1 --split-fine":
# the seeds' first layer | last layer], SPECS [the seeds' methods, below], OUT [runs/compress_study], BIN [build].
# A spec compresses both directions; fwd/SPEC compresses only the activations and bwd/SPEC only the gradients (the
# other direction passes exactly). A spec whose run left a summary.json is not run again, so a study cut short goes on
# where it stopped; a failed run leaves none and is retried. The table goes to stdout and to $OUT/table.md.
set -uo pipefail
bin=${BIN:-build}
data=${DATA:-data/cifar10-jpeg}
out=${OUT:-runs/compress_study}
specs=${SPECS:-none quant:bits=16 quant:bits=12 quant:bits=10 quant:bits=8 quant:bits=6 quant:bits=4 quant:bits=2 \
sortquant:bits=6,split=2 sortquant:bits=3,split=1 sortquant:bits=2,split=2 topk:ratio=0.5 topk:ratio=0.2 \
kmeans:bits=4,iters=20 fp8:format=e4m3 lowrank:rank=4}
[ -x "$bin/train_cv" ] || { echo "compress_study: $bin/train_cv not built (make $bin/train_cv)"; exit 1; }
[ "$data" = synthetic ] || [ -d "$data" ] || { echo "compress_study: DATA=$data is not a folder (make data)"; exit 1; }
mkdir -p "$out"
for spec in $specs; do
  dir="$out/$(echo "$spec" | tr '/:,=' '-_._')"
  [ -f "$dir/summary.json" ] && { echo "== $spec: done before ($dir)"; continue; }
  echo "== $spec ($(date +%H:%M:%S))"
  case "$spec" in  # fwd/SPEC and bwd/SPEC compress one direction only, at both boundaries
    none) compress=() ;;
    fwd/*) compress=(--compress-fwd "${spec#fwd/}") ;;
    bwd/*) compress=(--compress-bwd "${spec#bwd/}") ;;
    *) compress=(--compress "$spec") ;;
  esac
  log="$dir.log"
  # shellcheck disable=SC2086  # SPLIT is two flags
  "$bin/train_cv" --data "$data" --device "${DEVICE:-cpu}" --width "${WIDTH:-0.25}" --epochs "${EPOCHS:-6}" \
    --batch-size "${BATCH:-128}" --lr "${LR:-0.05}" --train-subset "${TRAIN_SUBSET:-10000}" \
    --test-subset "${TEST_SUBSET:-2000}" --seed "${SEED:-1}" --split ${SPLIT:-1,1 --split-fine} "${compress[@]}" \
    --out "$dir" > "$log" 2>&1
  rc=$?
  [ $rc = 0 ] || { echo "   train_cv failed (rc $rc); the end of $log:"; tail -3 "$log"; }
done
# One row per spec from each run's summary.json: its accuracy, its boundaries' bytes against fp32, the mean SNR,
# cosine and |bias| (the error's shared offset, stats.h) of each boundary and direction, and the gradients' median
# error of the per-channel sums (sum_rel_err: what a BatchNorm shift upstream sees). b1 is the edge-front boundary,
# b2 the edge-back one.
python3 - "$out" $specs <<'EOF' | tee "$out/table.md"
import json, os, sys
out, specs = sys.argv[1], sys.argv[2:]
def cell(s, key, fmt):
    v = s.get(key) if s else None
    return fmt.format(v) if isinstance(v, (int, float)) else "-"
print("| spec | test top-1 by epoch, % | train loss, last epoch | wire vs fp32 | SNR dB fwd b1 / b2 "
      "| SNR dB bwd b1 / b2 | cosine bwd b1 / b2 | \\|bias\\| fwd b1 / b2 | \\|bias\\| bwd b1 / b2 "
      "| sums' error bwd b1 / b2 | ms/batch |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for spec in specs:
    name = spec.replace("/", "-").replace(":", "_").replace(",", ".").replace("=", "_")
    path = os.path.join(out, name, "summary.json")
    if not os.path.exists(path):
        print(f"| {spec} | (no run) | | | | | | | | | |"); continue
    s = json.load(open(path))
    c = s.get("compression", {})
    st = {(b, d): c.get(f"boundary{b}", {}).get(d) for b in (1, 2) for d in ("forward", "backward")}
    payload = sum(v["payload_bytes"] for v in st.values() if v)
    fp32 = sum(v["fp32_bytes"] for v in st.values() if v)
    wire = f"{payload / fp32:.3f}" if fp32 else "-"
    def pair(d, key, fmt):
        return " / ".join(cell(st[(b, d)], key, fmt) for b in (1, 2))
    rows = [json.loads(l) for l in open(os.path.join(os.path.dirname(path), "metrics.jsonl")) if l.strip()]
    top1 = " → ".join(f"{100 * r['val_top1']:.1f}" for r in rows if isinstance(r.get("val_top1"), (int, float)))
    loss = next((f"{r['train_loss']:.3f}" for r in reversed(rows) if "train_loss" in r and r["train_loss"] is not None),
                "-")
    print(f"| {spec} | {top1} | {loss} | {wire} | {pair('forward', 'mean_snr_db', '{:.1f}')} | "
          f"{pair('backward', 'mean_snr_db', '{:.1f}')} | {pair('backward', 'mean_cosine', '{:.4f}')} | "
          f"{pair('forward', 'mean_abs_bias', '{:.3f}')} | {pair('backward', 'mean_abs_bias', '{:.3f}')} | "
          f"{pair('backward', 'median_sum_rel_err', '{:.3g}')} | {cell(s, 'ms_per_batch', '{:.0f}')} |")
EOF
