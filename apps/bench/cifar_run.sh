#!/usr/bin/env bash
# cifar_run.sh — issue 3's GPU training run: MobileNetV2-cifar (width 1.0) on all of CIFAR-10 (the JPEG copy of
# ../shared/data, 20 MB, carried beside the device bundle) for EPOCHS epochs on cuda, then its test accuracy.
# Not a benchmark (bench model is). Prepare here:  make device-bundle && mkdir -p carry &&
#   cp ../shared/data/cifar10/cifar10-jpeg.tar.gz carry/   (carry/ is git-ignored: name both paths in `carry`).
# A run cut short by LIMIT leaves a checkpoint per epoch: RESUME=1 continues it in the next call.
set -uo pipefail
b=build/device-bundle
[ -d "$b" ] || tar xzf build/device-bundle.tar.gz -C build
tgz=${CIFAR_TGZ:-carry/cifar10-jpeg.tar.gz}
out=${OUT:-/tmp/cifar_run}
data=/tmp/cifar
mkdir -p "$out" "$data"
[ -d "$data/cifar10-jpeg/test" ] || tar xzf "$tgz" -C "$data" || { echo "cifar_run: cannot unpack $tgz"; exit 1; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
resume=()
[ "${RESUME:-0}" = 1 ] && [ -f "$out/run/checkpoint.safetensors" ] && resume=(--resume "$out/run/checkpoint.safetensors")
timeout "${LIMIT:-540}" "$b/run" train_cv --data "$data/cifar10-jpeg" --device cuda --epochs "${EPOCHS:-30}" \
  --batch-size 128 --lr 0.1 --warmup-epochs 1 --schedule cosine --weight-decay 5e-4 --out "$out/run" "${resume[@]}" \
  > "$out/train.log" 2>&1
echo "== train_cv rc=$?"
grep -E "^(epoch [0-9]+:|pipeline|loaded|data)" "$out/train.log" | tail -40
cat "$out/run/summary.json" 2>/dev/null
