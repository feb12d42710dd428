#!/usr/bin/env bash
# Packs everything the GPU checks need into .gpu/pack.tar.xz, for the device machine, which has
# the CUDA toolkit but none of asbi's other dependencies (Eigen, GoogleTest, Google Benchmark,
# CLI11, toml++…) and no network: the test and benchmark programs are built here, for sm_90 only
# (H100/H200), stripped and carried with the sbibm reference files. bench/gpu/run.sh unpacks and
# runs them there. Usage, from the repository root:
#
#   bash bench/gpu/pack.sh                 # configure and build build/gpu, then pack
#   bash bench/gpu/pack.sh build/cudacheck # pack an existing CUDA build instead
#
# then call the device tool with carry [".gpu"] and command "bash bench/gpu/run.sh all".
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build/gpu}
reference=${ASBI_REFERENCE_DIR:-../shared/reference}
if [[ "$build" == build/gpu ]]; then
  cmake -S . -B build/gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DASBI_CUDA=ON \
    -DASBI_CUDA_ARCHITECTURES=90 -DASBI_BUILD_BENCH=ON -DASBI_NATIVE=OFF >/dev/null
  cmake --build build/gpu
fi
programs=(tests/asbi_core_tests tests/asbi_autodiff_tests tests/asbi_nn_tests
          tests/asbi_flows_tests tests/asbi_sbi_tests tests/cuda/asbi_cuda_tests sbi/cli/asbi
          bench/asbi_bench_core bench/asbi_bench_cuda_kernels bench/asbi_npe_throughput
          bench/asbi_gpu_simulate_bench)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
for p in "${programs[@]}"; do
  [[ -x "$build/$p" ]] || { echo "pack.sh: $build/$p is not built" >&2; exit 1; }
  mkdir -p "$stage/$build/$(dirname "$p")"
  strip -o "$stage/$build/$p" "$build/$p"
done
mkdir -p "$stage/.gpu"
cp -r "$reference" "$stage/.gpu/reference"
# The tests call the asbi command by the absolute path they were built with; run.sh links that
# path to the repository root on the device.
echo "$PWD" > "$stage/.gpu/built_in"
mkdir -p .gpu
tar -C "$stage" -cJf .gpu/pack.tar.xz .
echo "pack.sh: .gpu/pack.tar.xz, $(du -h .gpu/pack.tar.xz | cut -f1) (the device tool carries 64 MiB)"
