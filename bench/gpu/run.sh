#!/usr/bin/env bash
# Runs asbi's GPU checks on the device machine from the programs bench/gpu/pack.sh packed, and
# writes what it finds under $OUT (or out/gpu when OUT is unset). Stages, each within the device
# tool's 10-minute limit:
#
#   tests     every test program, all tests (the CUDA ones no longer skip), JUnit XML per program
#   sanitize  compute-sanitizer memcheck and racecheck on the CUDA kernel tests
#   bench     the GPU benchmarks of docs/benchmarks.md ("GPU"), JSON per program
#   all       the three in turn
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-out/gpu}
mkdir -p "$out"
stage=${1:-all}
[[ -f .gpu/pack.tar.xz ]] || { echo "run.sh: no .gpu/pack.tar.xz; run bench/gpu/pack.sh and carry .gpu" >&2; exit 2; }
if [[ ! -f .gpu/built_in || ! -d build ]] || [[ .gpu/pack.tar.xz -nt .gpu/built_in ]]; then
  tar -xJf .gpu/pack.tar.xz
fi
built_in=$(cat .gpu/built_in)
if [[ "$built_in" != "$PWD" && ! -e "$built_in" ]]; then
  mkdir -p "$(dirname "$built_in")" && ln -s "$PWD" "$built_in"
fi
build=$(cd build && ls -d gpu cudacheck 2>/dev/null | head -1)
build=build/$build
export ASBI_REFERENCE_DIR=$PWD/.gpu/reference OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
for lib in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib; do
  [[ -d "$lib" ]] && export LD_LIBRARY_PATH=$lib:${LD_LIBRARY_PATH:-}
done
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem \
  --format=csv > "$out/device.csv" 2>&1
status=0

run_tests() {
  for t in core autodiff nn flows sbi; do
    "$build/tests/asbi_${t}_tests" --gtest_output="xml:$out/tests_$t.xml" > "$out/tests_$t.log" 2>&1 ||
      status=1
  done
  "$build/tests/cuda/asbi_cuda_tests" --gtest_output="xml:$out/tests_cuda.xml" > "$out/tests_cuda.log" 2>&1 ||
    status=1
  # What failed and what still skipped, one line each.
  grep -h -E "^\[  (FAILED|SKIPPED) \] [^ ]+$" "$out"/tests_*.log | sort -u | tee "$out/tests_summary.txt"
  grep -h -E "tests? ran|PASSED" "$out"/tests_*.log
}

run_sanitize() {
  local s=compute-sanitizer
  command -v $s >/dev/null || s=/usr/local/cuda/bin/compute-sanitizer
  $s --tool memcheck --error-exitcode 3 "$build/tests/cuda/asbi_cuda_tests" > "$out/memcheck.log" 2>&1 ||
    status=1
  $s --tool racecheck --error-exitcode 3 "$build/tests/cuda/asbi_cuda_tests" \
    --gtest_filter='CudaKernels*:CudaNormPool*:FusedMlp*' > "$out/racecheck.log" 2>&1 || status=1
  tail -n 3 "$out/memcheck.log" "$out/racecheck.log"
}

run_bench() {
  "$build/bench/asbi_bench_cuda_kernels" --benchmark_min_time=0.2s \
    --benchmark_out="$out/bench_cuda_kernels.json" --benchmark_out_format=json > /dev/null || status=1
  "$build/bench/asbi_bench_core" --benchmark_filter='BM_cuda_mlp|BM_deepset_aggregate_mlp' \
    --benchmark_out="$out/bench_core_cuda.json" --benchmark_out_format=json > /dev/null || status=1
  { for batch in 200 4096; do
      for device in cpu cuda; do
        "$build/bench/asbi_npe_throughput" --device $device --batch-size $batch --simulations 100000 --epochs 3
      done
      python3 bench/peers/npe_throughput_torch.py --device cuda --batch-size $batch --simulations 100000 --epochs 3
    done
    "$build/bench/asbi_gpu_simulate_bench"
  } > "$out/bench_sbi.jsonl" 2> "$out/bench_sbi.log" || status=1
  tail -n 20 "$out/bench_sbi.jsonl"
}

case "$stage" in
  tests) run_tests ;;
  sanitize) run_sanitize ;;
  bench) run_bench ;;
  all) run_tests; run_sanitize; run_bench ;;
  *) echo "run.sh: stage is tests, sanitize, bench or all, got '$stage'" >&2; exit 2 ;;
esac
exit $status
