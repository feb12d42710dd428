// GEMM: C = A B on square float32 matrices, n = 64 … 1024, through asbi's CPU backend and, as the
// plain baseline beside it (CppAD's speed/ layout), through Eigen directly with no asbi at all.
//
// One product costs 2 n³ flops (n³ multiply-adds). Counters:
//   GFLOPS  achieved rate, 2 n³ · iterations / wall seconds / 1e9
//   peak_%  GFLOPS as a percentage of the peak (bench_common.hpp; ASBI_PEAK_GFLOPS overrides)
//   threads OpenMP threads (OMP_NUM_THREADS)
#include <Eigen/Core>

#include "bench_common.hpp"
#include "core/backend.hpp"

namespace {

using namespace asbi;
using core::Tensor;

void report_flops(benchmark::State& state, double flops_per_iter, double seconds) {
  const double gflops = flops_per_iter * static_cast<double>(state.iterations()) / seconds * 1e-9;
  state.counters["GFLOPS"] = gflops;
  state.counters["peak_%"] = 100.0 * gflops / bench::peak_gflops();
  bench::report_threads(state);
}

// asbi: core::backend(Device::cpu).gemm, the call every matmul and linear layer makes.
// trans_b = true is the spelling of linear's forward product, X Wᵀ.
void gemm_asbi(benchmark::State& state, bool trans_b) {
  const std::int64_t n = state.range(0);
  Tensor a = bench::random_tensor({n, n}, -1, 1, 1);
  Tensor b = bench::random_tensor({n, n}, -1, 1, 2);
  Tensor c = Tensor::zeros({n, n});
  core::Backend& cpu = core::backend(core::Device::cpu);
  cpu.gemm(false, trans_b, 1.0, a, b, 0.0, c);  // warm-up: caches, OpenMP team
  bench::WallClock clock;
  for (auto _ : state) {
    cpu.gemm(false, trans_b, 1.0, a, b, 0.0, c);
    benchmark::DoNotOptimize(c.raw());
    benchmark::ClobberMemory();
  }
  report_flops(state, 2.0 * static_cast<double>(n * n * n), clock.seconds());
}

void BM_gemm_asbi(benchmark::State& state) { gemm_asbi(state, false); }
void BM_gemm_asbi_nt(benchmark::State& state) { gemm_asbi(state, true); }

// The baseline: Eigen's SGEMM on row-major matrices, as the CPU backend maps them.
void BM_gemm_eigen(benchmark::State& state) {
  using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const Eigen::Index n = state.range(0);
  Matrix a = Matrix::Random(n, n), b = Matrix::Random(n, n), c(n, n);
  c.noalias() = a * b;
  bench::WallClock clock;
  for (auto _ : state) {
    c.noalias() = a * b;
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  report_flops(state, 2.0 * static_cast<double>(n * n * n), clock.seconds());
}

#define ASBI_GEMM_SIZES \
  ->RangeMultiplier(2)->Range(64, 1024)->UseRealTime()->Unit(benchmark::kMicrosecond)
BENCHMARK(BM_gemm_asbi) ASBI_GEMM_SIZES;
BENCHMARK(BM_gemm_asbi_nt) ASBI_GEMM_SIZES;
BENCHMARK(BM_gemm_eigen) ASBI_GEMM_SIZES;
#undef ASBI_GEMM_SIZES

}  // namespace
