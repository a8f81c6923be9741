#!/usr/bin/env bash
# conv_policy_check.sh — does leaving cuDNN's FFT/Winograd algorithms out of strict f32 (the default since 2026-11-28;
# EP_CUDNN_FFT_WINOGRAD=1 lets them back in) bring CUDA to the CPU and cost no speed? Step losses of CPU, GPU and
# CPU+GPU runs under both policies, the algorithms the old policy chose, the CUDA suite's shards, the golden tests
# under memcheck (whose slowdown changes what timing picks) and bench model mobilenetv2 under both, beside PyTorch.
# About 200 s on an H200. Not device_session.sh (the benchmarks and the CIFAR run). Carry build/device-bundle.tar.gz.
set -uo pipefail
start=$(date +%s)
b=build/device-bundle
rm -rf "$b" && tar xzf build/device-bundle.tar.gz -C build  # always: a warm machine may hold an older bundle
out=${OUT:-/tmp/conv_policy}; mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
elapsed() { echo "$(( $(date +%s) - start )) s"; }
# old: FFT and Winograd allowed (the policy before 2026-11-28); new: left out.
policy() { if [ "$1" = old ]; then echo EP_CUDNN_FFT_WINOGRAD=1; else echo EP_CUDNN_FFT_WINOGRAD=0; fi; }
a="--data synthetic --synthetic-size 256 --batch-size 60 --width 0.25 --epochs 1 --max-steps 3 --log-steps"
a="$a --split-fine"
losses() {  # losses TAG POLICY ARGS...: the three step losses (hex) of one train_cv run
  local tag=$1 pol=$2; shift 2
  echo "-- $tag ($pol): $(env $(policy "$pol") timeout 60 $b/run train_cv $a "$@" --out /tmp/cp_run 2>&1 |
    grep -oE "step [0-9]+ loss [^ ]+" | tr '\n' ' ')"
}
losses cpu new --chunks 3 --stages 2,16,3
losses cpu1 new --chunks 4 --stages 21
for pol in new old; do
  losses cuda "$pol" --chunks 3 --stages 2,16,3 --device cuda
  losses mixed "$pol" --chunks 3 --stages 2,16,3 --devices cpu,cuda:0,cpu
  losses deterministic "$pol" --chunks 4 --stages 21 --device cuda --deterministic
done
EP_CUDNN_FFT_WINOGRAD=1 EP_CUDNN_VERBOSE=1 timeout 60 $b/run train_cv $a --chunks 3 --stages 2,16,3 --device cuda \
  --out /tmp/cp_run > "$out/verbose_old.log" 2>&1
echo "-- FFT/Winograd algorithms the old policy kept (fwd 4-7, bwd data 2-5, bwd filter 2, 5, 6):"
grep -E "forward for .*algo [4-7],|backward data for .*algo [2-5],|backward filter for .*algo [256]," \
  "$out/verbose_old.log" | head -12
echo "== losses done at $(elapsed)"
source apps/bench/cuda_shards.sh
cuda_shards "$b" "$out" 150
echo "== suite done at $(elapsed)"
for pol in new old; do
  env $(policy $pol) DEVICE=cpu timeout 90 compute-sanitizer --tool memcheck --print-limit 5 \
    $b/run tests -tc="golden*" > "$out/memcheck_$pol.log" 2>&1
  echo "== memcheck golden, $pol policy: rc=$?"
  grep -E "logged:|ERROR SUMMARY|test cases:" "$out/memcheck_$pol.log" | head -8
done
echo "== memcheck done at $(elapsed)"
for i in 1 2; do
  for pol in new old; do
    echo "-- bench model mobilenetv2, $pol policy"
    env $(policy $pol) timeout 40 $b/run bench model mobilenetv2 --device cuda 2>&1 | grep "ms/step"
  done
done
(cd $b && PYTHONUNBUFFERED=1 timeout 40 python3 torch_model.py --no-compile)
echo "== done at $(elapsed)"
