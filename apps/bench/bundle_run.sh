#!/usr/bin/env bash
# run — starts a binary of this device bundle with its libraries: ./run tests | ./run bench ops
# Finds the CUDA libraries in the toolkit or in the nvidia-* wheels a PyTorch install ships (cuDNN usually lives there);
# the bundle's own CUPTI (lib/cupti, for --profile-kernels) comes last.
d=$(cd "$(dirname "$0")" && pwd)
lib="$d/lib"
for p in $(python3 -c 'import nvidia, os; print(" ".join(os.path.join(q, x, "lib") for q in nvidia.__path__ for x in sorted(os.listdir(q))))' 2>/dev/null); do
  [ -d "$p" ] && lib="$lib:$p"
done
for p in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib "$d/lib/cupti"; do
  [ -d "$p" ] && lib="$lib:$p"
done
export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec "$d/$1" "${@:2}"
