# cuda_shards.sh — sourced by the GPU scripts: cuda_shards BUNDLE OUTDIR SECONDS runs the test files that touch CUDA
# with DEVICE=cuda as 2 parallel shards, prints failures and summaries, and returns when both are done. The ops shard
# holds every case that gradchecks or parity-checks an op (the pipeline's test op too), plus the coverage case, which
# needs all of them in one process. Left out: files that never touch CUDA (CI runs them) and the 1-4 stages x chunks
# matrix (CPU bit-exactness).
# Not a runner of its own: no `set` options, no exit.
cuda_shard() {  # cuda_shard BUNDLE OUTDIR SECONDS NAME FILTER...
  local b=$1 out=$2 secs=$3 name=$4; shift 4
  DEVICE=cuda OMP_NUM_THREADS=4 timeout -k 5 "$secs" stdbuf -oL "$b/run" tests "$@" > "$out/suite_$name.log" 2>&1
  echo "== suite shard $name rc=$?"
  grep -E "^tests/.*(ERROR|FATAL)|TEST CASE|  values:|logged:" "$out/suite_$name.log" | head -24
  grep -E "test cases:|assertions:" "$out/suite_$name.log"
}
cuda_shards() {  # waits for its own shards only (a caller may have other jobs running)
  local t='tests/test_' pids=()
  cuda_shard "$@" pipeline -sf="*${t}pipeline_workers.cpp,*${t}pipeline_schedule.cpp,*${t}pipeline_trainers.cpp" \
    -tce='*1-4 stages x*' -tc='pipeline workers*,pipeline schedule*,pipeline partition*,pipeline microbatch*,'\
'pipeline queue*,pipeline on the GPU*' &
  pids+=($!)
  cuda_shard "$@" ops -sf="*${t}golden_*,*${t}compress_cuda.cpp,*${t}compress_layer.cpp,*${t}attention.cpp,"\
"*${t}conv.cpp,*${t}batch_norm.cpp,*${t}edge_cases.cpp,*${t}layers.cpp,*${t}pool.cpp,*${t}embedding.cpp,"\
"*${t}elementwise.cpp,*${t}nn_ops.cpp,*${t}matmul.cpp,*${t}optim.cpp,*${t}core.cpp,*${t}autograd.cpp,*${t}init.cpp,"\
"*${t}layout.cpp,*${t}random.cpp,*${t}data.cpp,*${t}safetensors.cpp,*${t}zz_coverage.cpp,*${t}async_device.cpp,"\
"*${t}bench_loader.cpp,*${t}cuda_graph.cpp,"\
"*${t}pipeline_workers.cpp" -tce='pipeline workers*,pipeline queue*' &  # keeps the pipeline's test op
  pids+=($!)
  wait "${pids[@]}"
}
