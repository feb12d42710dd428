// Mean-pool DeepSets (nn/deepset.hpp): streaming aggregation of large sets, and training steps on
// dense sets.
//
//   BM_deepset_aggregate_mlp           one set of 10⁶ one-dimensional elements through φ = Mlp
//                                      1 → 64 → 64 → 64 (relu), default chunks of 4096 rows
//   BM_deepset_aggregate_small_sets    10⁴ sets of 10 elements each, the same φ: stage 2's shape,
//                                      where a chunk holds hundreds of sets
//   BM_deepset_aggregate_conv          one set of 2·10⁴ fields of 16×16 through φ = ConvEncoder
//                                      {8, 16} → 64, chunks of 512 rows (a 4096-row chunk of this
//                                      encoder holds about 80 MB of im2col columns and indices)
//   BM_deepset_aggregate_mlp_cuda/chunk  the same 10⁶ elements with φ on the GPU (Module::to), for
//                                      chunks of 4096 … 262 144 rows: the source fills a host
//                                      chunk, which is staged in, encoded and summed there; skipped
//                                      without a CUDA device
//   BM_deepset_step/S                  Tape, forward of dense sets [B = 50, S, 1] through the MLP
//                                      DeepSet, mean of the squared features, backward, zero_grad;
//                                      S ∈ {2, 100, 1000}
//
// The sources write a cheap deterministic ramp, so the time is φ's and the pooling's.
//
// Counters:
//   elements_per_s  set elements encoded per wall second
//   GFLOPS          φ's GEMM flops per wall second (forward only for aggregation; forward and
//                   both backward GEMMs, except the first layer's ∂X, for the step)
//   peak_%          GFLOPS as a percentage of the peak (bench_common.hpp)
//   peak_MB         the allocator's peak live bytes above the baseline during one aggregation,
//                   arena blocks included
//   allocs          asbi tensor-storage allocations per call
//   heap_allocs     C++ operator new calls per call
#include <memory>
#include <thread>
#include <vector>

#include "autodiff/ops.hpp"
#include "autodiff/tape.hpp"
#include "bench_common.hpp"
#include "nn/conv.hpp"
#include "nn/deepset.hpp"

namespace {

using namespace asbi;
using core::Tensor;

constexpr std::int64_t E = 64;  // embedding width
// φ = Mlp 1 → 64 → 64 → 64: 2·(1·64 + 64·64 + 64·64) flops per element forward.
constexpr double mlp_flops = 2.0 * (1 * 64 + 64 * 64 + 64 * 64);
// φ = ConvEncoder 16×16, {8, 16} → 64: 8·8 positions × 9 taps × 1 → 8 channels, 4·4 × 9·8 → 16,
// then Linear 256 → 64.
constexpr double conv_flops = 2.0 * (64 * 9 * 8 + 16 * 72 * 16 + 256 * 64);

std::unique_ptr<nn::DeepSet> mlp_deepset() {
  core::Rng rng(1);
  return std::make_unique<nn::DeepSet>(
      std::make_unique<nn::Mlp>(1, std::vector<std::int64_t>{64, 64}, E, rng), 1, E);
}

// Element i of every set: a ramp over [−1, 1) in each of the out's columns.
void ramp(std::int64_t, std::int64_t begin, std::int64_t end, Tensor& out) {
  float* p = out.data<float>();
  const std::int64_t width = out.dim(1);
  for (std::int64_t i = begin; i < end; ++i)
    for (std::int64_t d = 0; d < width; ++d)
      *p++ = static_cast<float>((i * 7 + d * 13) % 2048) / 1024.0f - 1.0f;
}

void run_aggregation(benchmark::State& state, const nn::DeepSet& net,
                     const std::vector<std::int64_t>& sizes, double flops_per_element,
                     const nn::AggregateOptions& options = {}) {
  auto aggregate = [&] { benchmark::DoNotOptimize(net.aggregate(sizes, ramp, options).raw()); };
  // The peak is measured on a fresh thread, whose OpenMP team starts with empty arenas, so that
  // the arena blocks one aggregation needs are counted too.
  const int threads = omp_get_max_threads();
  std::int64_t peak = 0;
  std::thread fresh([&] {
    omp_set_num_threads(threads);
    const std::int64_t baseline = core::memory_stats().live_bytes;
    core::reset_peak_memory();
    aggregate();
    peak = core::memory_stats().peak_bytes - baseline;
  });
  fresh.join();
  state.counters["peak_MB"] = static_cast<double>(peak) / (1 << 20);
  aggregate();  // warm-up: grows this thread's arenas
  bench::report_allocations(state, aggregate, 2);
  bench::WallClock clock;
  for (auto _ : state) aggregate();
  const double seconds = clock.seconds();
  double elements = 0;
  for (std::int64_t n : sizes) elements += static_cast<double>(n);
  elements *= static_cast<double>(state.iterations());
  state.counters["elements_per_s"] = elements / seconds;
  state.counters["GFLOPS"] = elements * flops_per_element / seconds * 1e-9;
  state.counters["peak_%"] = 100.0 * state.counters["GFLOPS"] / bench::peak_gflops();
  bench::report_threads(state);
}

void BM_deepset_aggregate_mlp(benchmark::State& state) {
  run_aggregation(state, *mlp_deepset(), {1'000'000}, mlp_flops);
}

void BM_deepset_aggregate_mlp_cuda(benchmark::State& state) {
  if (!core::device_available(core::Device::cuda)) {
    state.SkipWithError("no CUDA device on this machine: skipped");
    return;
  }
  auto net = mlp_deepset();
  net->to(core::Device::cuda);
  nn::AggregateOptions options;
  options.chunk_elements = state.range(0);
  run_aggregation(state, *net, {1'000'000}, mlp_flops, options);
}

void BM_deepset_aggregate_small_sets(benchmark::State& state) {
  run_aggregation(state, *mlp_deepset(), std::vector<std::int64_t>(10'000, 10), mlp_flops);
}

void BM_deepset_aggregate_conv(benchmark::State& state) {
  core::Rng rng(2);
  const nn::DeepSet net(
      std::make_unique<nn::ConvEncoder>(16, 16, std::vector<std::int64_t>{8, 16}, E, rng), 256, E);
  nn::AggregateOptions options;
  options.chunk_elements = 512;
  run_aggregation(state, net, {20'000}, conv_flops, options);
}

void BM_deepset_step(benchmark::State& state) {
  constexpr std::int64_t B = 50;
  const std::int64_t S = state.range(0);
  auto net = mlp_deepset();
  Tensor sets = Tensor::empty({B * S, 1});
  ramp(0, 0, B * S, sets);
  sets = sets.reshape({B, S, 1});
  auto step = [&] {
    {
      ad::Tape tape;
      tape.backward(ad::mean(ad::square((*net)(sets))));
    }
    net->zero_grad();
  };
  step();  // warm-up: grows the arena
  bench::report_allocations(state, step);
  bench::WallClock clock;
  for (auto _ : state) step();
  const double seconds = clock.seconds();
  const double elements = static_cast<double>(B * S * state.iterations());
  // Backward: ∂W for every layer, ∂X for all but the first (its input is data).
  const double step_flops = 3 * mlp_flops - 2.0 * 64;
  state.counters["elements_per_s"] = elements / seconds;
  state.counters["GFLOPS"] = elements * step_flops / seconds * 1e-9;
  state.counters["peak_%"] = 100.0 * state.counters["GFLOPS"] / bench::peak_gflops();
  bench::report_threads(state);
}

BENCHMARK(BM_deepset_aggregate_mlp)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_deepset_aggregate_mlp_cuda)
    ->ArgName("chunk")
    ->Arg(4096)
    ->Arg(65536)
    ->Arg(262144)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_deepset_aggregate_small_sets)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_deepset_aggregate_conv)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_deepset_step)
    ->Arg(2)
    ->Arg(100)
    ->Arg(1000)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
