#!/usr/bin/env bash
# device_check.sh — what a lent GPU session runs, from the repository root with build/device-bundle carried:
# the suite with DEVICE=cuda (gradchecks on the GPU, parity against the CPU), build/bench ops, the model training
# steps, the pipeline benchmark, the PyTorch side-by-side and compute-sanitizer. OPS=0, MODELS=0, PIPELINE=0,
# SANITIZE=0 skip parts (SANITIZE=all runs all four sanitizer tools). Full logs go under $OUT.
set -uo pipefail
b=build/device-bundle
rm -rf "$b" && tar xzf build/device-bundle.tar.gz -C build  # always: a warm machine may hold an older bundle
out=${OUT:-/tmp/device_check}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv,noheader
summary() {  # the failing checks of a doctest log, then its summary lines
  grep -E "^tests/.*(ERROR|FATAL)|TEST CASE|logged:|values:|  CHECK" "$1" | head -${2:-40}
  grep -E "test cases:|assertions:" "$1"
}
# DEVICE=cuda runs every case, the CPU-vs-CUDA parity cases included; the DEVICE=cpu pass only re-runs the
# device-parametrized cases on the CPU, which CI covers, so it is opt-in (CPU_SUITE=1) to save lent GPU time.
devs="cuda"; [ "${CPU_SUITE:-0}" = 1 ] && devs="cuda cpu"
for dev in $devs; do
  s=$(date +%s)
  DEVICE=$dev timeout 300 $b/run tests > "$out/tests_$dev.log" 2>&1
  echo "== DEVICE=$dev suite: rc=$? in $(( $(date +%s) - s )) s"
  summary "$out/tests_$dev.log"
done
# A training run on the GPU: the make-run configuration (synthetic shapes, MobileNetV2-cifar width 0.5).
timeout 120 $b/run train_cv --config apps/configs/make_run.json --device cuda --out "$out/train_run" > "$out/train.log" 2>&1
echo "== train_cv on cuda rc=$?"; grep -E "^epoch [0-9]+:" "$out/train.log"; cat "$out/train_run/summary.json" 2>/dev/null
if [ "${OPS:-1}" = 1 ]; then  # bench ops and its PyTorch side (OPS=0 skips them: measured on 2026-11-26)
  timeout 200 $b/run bench ops --device cuda > "$out/bench.log" 2>&1; echo "== bench rc=$?"
  timeout 150 python3 $b/torch_ops.py > "$out/torch.log" 2>&1; echo "== torch rc=$?"
  cat "$out/bench.log" "$out/torch.log"
fi
# The model training steps against PyTorch eager and torch.compile on the same GPU (MODELS=0 skips them).
if [ "${MODELS:-1}" = 1 ]; then
  for m in mobilenetv2 roberta; do
    timeout 150 $b/run bench model $m --device cuda > "$out/bench_$m.log" 2>&1; echo "== bench model $m rc=$?"
    cat "$out/bench_$m.log"
  done
  timeout 150 $b/run bench compress --device cuda > "$out/bench_compress.log" 2>&1; echo "== bench compress rc=$?"
  cat "$out/bench_compress.log"
  (cd $b && timeout 200 python3 torch_model.py --no-compile; timeout 200 python3 torch_roberta.py;
   timeout 150 python3 torch_compress.py) \
    > "$out/torch_models.log" 2>&1; echo "== torch models rc=$?"; cat "$out/torch_models.log"
fi
# The pipeline on the GPU: pipelined vs unpipelined steps, Naive vs To_device (CPU and GPU stages), the compressed
# split over an emulated 100 Mbit/s link (PIPELINE=0 skips it).
if [ "${PIPELINE:-1}" = 1 ]; then
  timeout 200 $b/run bench pipeline --device cuda > "$out/bench_pipeline.log" 2>&1; echo "== bench pipeline rc=$?"
  cat "$out/bench_pipeline.log"
  # The data loader on this machine's cores (host only; the CIFAR JPEGs when carried and unpacked, else synthetic).
  data=synthetic; [ -d /tmp/cifar/cifar10-jpeg/train ] && data=/tmp/cifar/cifar10-jpeg/train
  timeout 60 $b/run bench loader --data $data > "$out/bench_loader.log" 2>&1; echo "== bench loader rc=$?"
  cat "$out/bench_loader.log"
fi
# compute-sanitizer on every CUDA kernel the parity cases launch, and on the edge shapes (empty, scalar, 1029x917,
# NaN/Inf) run on the GPU (reliability.md goal 10; slow: last, and bounded). SANITIZE=1 runs memcheck;
# SANITIZE=all adds racecheck, initcheck and synccheck; SANITIZE=0 skips it.
if command -v compute-sanitizer >/dev/null && [ "${SANITIZE:-1}" != 0 ]; then
  tools="memcheck"; [ "${SANITIZE:-1}" = all ] && tools="memcheck racecheck initcheck synccheck"
  for tool in $tools; do
    DEVICE=cpu timeout 240 compute-sanitizer --tool $tool --target-processes all --print-limit 20 \
      $b/run tests -tc="*CUDA*,*parity*,*cuda*" -tce="kernel profile*" > "$out/${tool}.log" 2>&1  # no CUPTI under it
    echo "== $tool (parity cases) rc=$?"
    grep -E "ERROR SUMMARY|test cases:|Invalid|========= " "$out/${tool}.log" | head -20
    DEVICE=cuda timeout 120 compute-sanitizer --tool $tool --target-processes all --print-limit 20 \
      $b/run tests -tc="edge cases*" > "$out/${tool}_edge.log" 2>&1
    echo "== $tool (edge cases on the GPU) rc=$?"
    grep -E "ERROR SUMMARY|test cases:|Invalid|========= " "$out/${tool}_edge.log" | head -20
  done
fi
