#!/usr/bin/env bash
# device_session.sh — one call that fits a 15-minute lent GPU: the GPU benchmarks first on a quiet GPU (ours, then the
# PyTorch twin, each bounded), then the CUDA-touching test files as 2 parallel shards beside issue 3's 30-epoch
# CIFAR-10 run (cifar_run.sh; RESUME=1 in a next call continues it; CIFAR=0 leaves it out), then memcheck on the
# parity cases. PIPELINE_PARTS (default 2,3,4) picks bench pipeline's parts; COMPILE=1 adds the torch.compile steps;
# bench model adds each step's CUDA-graph replay (--cuda-graph: what launches and host work cost).
# PROFILE=1 follows each model and pipeline figure with its GPU time by kernel (ours: --profile-kernels 3 through
# CUPTI; PyTorch's: torch.profiler, --profile), the tables in $OUT/bench.log.
# Not device_check.sh (the unhurried full version). Carry build/device-bundle.tar.gz and carry/ (the CIFAR tarball).
set -uo pipefail
start=$(date +%s)
left() { echo $(( ${1} - ($(date +%s) - start) )); }  # seconds until the call's second $1
bounded() {  # bounded CAP DEADLINE cmd...: run cmd for at most CAP s and never past the call's second DEADLINE
  local cap=$1 dl=$(left $2); shift 2
  [ "$dl" -lt "$cap" ] && cap=$dl
  [ "$cap" -lt 5 ] && { echo "   (skipped, no time left: $*)"; return 124; }
  timeout -k 5 "$cap" stdbuf -oL "$@"  # line-buffered: a run cut off by the limit keeps what it printed
}
b=build/device-bundle
rm -rf "$b" && tar xzf build/device-bundle.tar.gz -C build  # always: a warm machine may hold an older bundle
out=${OUT:-/tmp/device_session}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
bench_until=${BENCH_UNTIL:-230}  # the benchmark phase ends by this second of the call
prof=; tprof=
[ "${PROFILE:-0}" = 1 ] && prof="--profile-kernels 3" && tprof=--profile
if [ "${BENCH:-1}" = 1 ]; then
  {
    for m in roberta mobilenetv2; do
      echo "== bench model $m"; bounded 70 $bench_until $b/run bench model $m --device cuda --cuda-graph $prof
      echo "rc=$?"
    done
    echo "== torch_roberta.py"
    (cd $b && PYTHONUNBUFFERED=1 bounded 90 $bench_until python3 torch_roberta.py --no-compile $tprof); echo "rc=$?"
    echo "== torch_model.py"
    (cd $b && PYTHONUNBUFFERED=1 bounded 60 $bench_until python3 torch_model.py --no-compile $tprof); echo "rc=$?"
    echo "== bench pipeline"  # before compress: the pipeline on one GPU is the open question the profile answers
    bounded 100 $bench_until $b/run bench pipeline --device cuda --parts "${PIPELINE_PARTS:-2,3,4}" $prof
    echo "rc=$?"
    echo "== bench compress"; bounded 80 $bench_until $b/run bench compress --device cuda; echo "rc=$?"
    echo "== torch_compress.py"; (cd $b && PYTHONUNBUFFERED=1 bounded 50 $bench_until python3 torch_compress.py)
    echo "rc=$?"
    if [ "${COMPILE:-0}" = 1 ]; then  # last: torch.compile took over 110 s to compile MobileNetV2 once
      echo "== torch_model.py --compile-only"
      (cd $b && PYTHONUNBUFFERED=1 bounded 150 $bench_until python3 torch_model.py --compile-only)
      echo "== torch_roberta.py --compile-only"
      (cd $b && PYTHONUNBUFFERED=1 bounded 150 $bench_until python3 torch_roberta.py --compile-only)
    fi
  } > "$out/bench.log" 2>&1
  # The figures on stdout (the kernel tables stay in bench.log, which comes back as a file).
  grep -E "^(==|\[|rc=)|ms/step|ms/run|GB/s|/s |rror|x " "$out/bench.log" | grep -v "^ *[0-9.]* *[0-9.]*% " |
    cut -c1-160 | head -150
fi
echo "== benchmarks done at $(( $(date +%s) - start )) s"
# Everything below ends by this second of the call. 480 leaves a warm machine's second call about 4 minutes of a
# 15-minute budget that also pays for the machine's start; 585 uses one call for everything.
end=${CALL_SECONDS:-480}
# Issue 3's CIFAR-10 run in the background (a correctness run, not a timing: the suite shares the GPU with it).
cifar=
if [ "${CIFAR:-1}" = 1 ]; then
  ( LIMIT=$(left $((end - 15))) OUT=/tmp/cifar_run bash apps/bench/cifar_run.sh > /tmp/cifar_run.txt 2>&1 ) &
  cifar=$!
fi
# The test files that touch CUDA, as 2 parallel shards (apps/bench/cuda_shards.sh), beside the CIFAR run.
source apps/bench/cuda_shards.sh
shard_secs=$(left $((end - 60)))
[ "$shard_secs" -lt 30 ] && shard_secs=30  # timeout 0 would mean no limit at all
cuda_shards "$b" "$out" "$shard_secs"
if command -v compute-sanitizer >/dev/null && [ "${SANITIZE:-1}" = 1 ]; then
  DEVICE=cpu bounded 240 $((end - 20)) compute-sanitizer --tool memcheck --target-processes all --print-limit 20 \
    $b/run tests -tc="*CUDA*,*parity*,*cuda*" -tce="kernel profile*" > "$out/memcheck.log" 2>&1
  echo "== memcheck (parity cases) rc=$? at $(( $(date +%s) - start )) s"
  grep -E "ERROR SUMMARY|test cases:|Invalid|========= " "$out/memcheck.log" | head -20
fi
if [ -n "$cifar" ]; then
  wait $cifar
  cat /tmp/cifar_run.txt
  cp /tmp/cifar_run/train.log "$out/cifar_train.log" 2>/dev/null
fi
echo "== done at $(( $(date +%s) - start )) s"
