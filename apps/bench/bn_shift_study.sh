#!/usr/bin/env bash
# bn_shift_study.sh — where a biased gradient compressor's error goes: the stem BatchNorm's shift (beta) at the seeds'
# split, measured from checkpoints after 2..60 steps and predicted from compression.jsonl's mean error alone.
# Not a general tool and not a test: it replays train_cv's SGD (momentum, Nesterov, weight decay, the warmup) in
# Python for one parameter, and reads the checkpoints with a minimal safetensors reader (F32 tensors by name).
#
#   bash apps/bench/bn_shift_study.sh        # quant:bits=4 and quant:bits=4,zero=exact, about 8 min on 2 cores
#   SPECS="quant:bits=6" STEPS="5 20 60" bash apps/bench/bn_shift_study.sh
#
# The stem's BatchNorm output is the first boundary's activation (--split 1,1 --split-fine), so the gradient crossing
# that boundary is exactly dL/dy of that BatchNorm, and its shift's gradient is that gradient's channel sums: the sums
# that sum_rel_err (compress/stats.h) compares. The compressed gradient's error moves every channel's sum by
# n * mean_err / C on average, so the channels' mean beta follows SGD fed with that alone, when the error dominates.
# Environment: DATA [data/cifar10-jpeg], SPECS, STEPS [2 3 5 8 12 20 30 45 60], OUT [runs/bn_shift], BIN [build]; the
# run settings are compress_study.sh's CPU budget (width 0.25, 10,000 images, batch 128, lr 0.05, 6-epoch schedule).
set -uo pipefail
bin=${BIN:-build}
data=${DATA:-data/cifar10-jpeg}
out=${OUT:-runs/bn_shift}
specs=${SPECS:-quant:bits=4 quant:bits=4,zero=exact}
steps=${STEPS:-2 3 5 8 12 20 30 45 60}
[ -x "$bin/train_cv" ] || { echo "bn_shift_study: $bin/train_cv not built (make $bin/train_cv)"; exit 1; }
[ -d "$data" ] || { echo "bn_shift_study: DATA=$data is not a folder (make data)"; exit 1; }
for spec in $specs; do
  base="$out/$(echo "$spec" | tr '/:,=' '-_._')"
  for s in $steps; do
    [ -f "$base/s$s/checkpoint.safetensors" ] && continue
    mkdir -p "$base"
    "$bin/train_cv" --data "$data" --width 0.25 --epochs 6 --batch-size 128 --lr 0.05 --momentum 0.9 \
      --weight-decay 5e-4 --warmup-epochs 1 --train-subset 10000 --test-subset 2000 --seed 1 --split 1,1 --split-fine \
      --compress "$spec" --max-steps "$s" --out "$base/s$s" > "$base/s$s.log" 2>&1 ||
      { echo "bn_shift_study: train_cv failed, see $base/s$s.log"; exit 1; }
  done
  echo "== $spec"
  python3 - "$base" $steps <<'EOF'
import json, math, struct, sys
base, steps = sys.argv[1], [int(s) for s in sys.argv[2:]]
def tensor(path, name):
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        entry = json.loads(f.read(n))[name]
        assert entry['dtype'] == 'F32', entry
        a, b = entry['data_offsets']
        f.seek(8 + n + a)
        return struct.unpack('<%df' % ((b - a) // 4), f.read(b - a))
last = max(steps)
config = json.load(open(f'{base}/s{last}/config.json'))
per_epoch = -(-config['train-subset'] // config['batch-size'])  # the loader keeps a short last batch
warmup, total, lr0 = int(config['warmup-epochs'] * per_epoch), config['epochs'] * per_epoch, config['lr']
assert config['schedule'] == 'cosine' and config['nesterov'], 'the replay knows the cosine schedule and Nesterov only'
def lr(k):  # engine/lr_schedule.cpp, lr_cosine_warmup with min_lr 0, at optimizer step k (0-based)
    if k < warmup: return lr0 * k / max(1, warmup)
    return lr0 * 0.5 * (1 + math.cos(math.pi * min(1.0, (k - warmup) / max(1, total - warmup))))
mu, wd = config['momentum'], config['weight-decay']
channels = len(tensor(f'{base}/s{last}/checkpoint.safetensors', 'model.features.0.1.bias'))
err = {}
for line in open(f'{base}/s{last}/compression.jsonl'):
    r = json.loads(line)
    if r['boundary'] == 1 and r['direction'] == 'backward':
        err[r['step']] = r['mean_err'] * r['elements'] / channels
beta, buf, predicted = 0.0, None, {}
for s in range(1, last + 1):  # train_cv's SGD (engine/optim.h) on the channels' mean beta, fed the error alone
    g = err[s] + wd * beta
    buf = g if buf is None else mu * buf + g
    beta -= lr(s - 1) * (g + mu * buf)
    predicted[s] = beta
print('step | beta, channel mean: predicted from the error alone | measured | measured range')
for s in steps:
    b = tensor(f'{base}/s{s}/checkpoint.safetensors', 'model.features.0.1.bias')
    print(f'{s:4d} | {predicted[s]:10.3f} | {sum(b) / len(b):10.3f} | {min(b):.2f} .. {max(b):.2f}')
EOF
done
