// Conditional neural spline flows as sbi trains them: flows::nsf with sbi's build_nsf defaults
// (5 × [spline coupling with a ResidualNet conditioner of 50 hidden units and 2 blocks, 10 bins,
// tails at ±3 → LULinear]), float32, batch B = 200.
//
//   BM_nsf_log_prob_step/D/C   Tape, log_prob of a [200, D] batch given contexts [200, C], mean,
//                              backward (parameter gradients), zero_grad: the density-estimation
//                              part of a training step, for D ∈ {2, 5, 10}, C ∈ {2, 10, 100}
//   BM_nsf_two_moons_epoch     one epoch over 10 000 (θ, x) pairs of sbibm's two-moons simulator
//                              (D = C = 2): 50 steps of gather batch → log_prob → backward →
//                              clip_grad_norm(5) → Adam → zero_grad (sbi's training step).
//                              Target: ≤ 0.15 s
//   BM_nsf_sample/D            NoGrad draws of 10 000 samples given one context (C = 10):
//                              base draws and the inverse pass of every bijector
//
// Counters:
//   samples_per_s  rows of the batch (or draws) per wall second
//   epoch_s        wall seconds per epoch (two-moons)
//   allocs         asbi tensor-storage allocations per call (0 in steady state)
//   heap_allocs    C++ operator new calls per call
#include <cmath>
#include <numbers>
#include <vector>

#include "autodiff/ops.hpp"
#include "autodiff/tape.hpp"
#include "bench_common.hpp"
#include "flows/flow.hpp"
#include "nn/optim.hpp"

namespace {

using namespace asbi;
using core::Tensor;

constexpr std::int64_t B = 200;

Tensor normal(std::int64_t rows, std::int64_t cols, std::uint64_t stream) {
  core::Rng rng(17, stream);
  return flows::draw_normal({rows, cols}, core::DType::f32, rng);
}

void BM_nsf_log_prob_step(benchmark::State& state) {
  const std::int64_t D = state.range(0), C = state.range(1);
  core::Rng init(1, 0);
  auto flow = flows::nsf(D, C, init);
  const Tensor a = normal(B, D, 1), b = normal(B, C, 2);
  const std::vector<nn::NamedParameter> params = flow->parameters();  // once: names allocate
  auto step = [&] {
    {
      ad::Tape tape;
      tape.backward(ad::neg(ad::mean(flow->log_prob(a, b))));
    }
    for (const nn::NamedParameter& p : params) p.parameter->zero_grad();
  };
  step();  // warm-up: grows the arena
  bench::report_allocations(state, step);
  bench::WallClock clock;
  for (auto _ : state) step();
  state.counters["samples_per_s"] = static_cast<double>(B * state.iterations()) / clock.seconds();
  bench::report_threads(state);
}

// sbibm two moons: θ ~ U(-1, 1)², α ~ U(-π/2, π/2), r ~ N(0.1, 0.01²),
//   x = (r cos α + 0.25 - |θ₁ + θ₂| / √2, r sin α + (-θ₁ + θ₂) / √2).
void two_moons_pairs(std::int64_t n, Tensor& theta, Tensor& x) {
  core::Rng rng(5, 0);
  std::vector<double> t, s;
  for (std::int64_t i = 0; i < n; ++i) {
    const double t0 = 2 * rng.uniform() - 1, t1 = 2 * rng.uniform() - 1;
    const double alpha = std::numbers::pi * (rng.uniform() - 0.5);
    const double r = 0.1 + 0.01 * rng.normal();
    t.insert(t.end(), {t0, t1});
    s.insert(s.end(), {r * std::cos(alpha) + 0.25 - std::abs(t0 + t1) / std::numbers::sqrt2,
                       r * std::sin(alpha) + (-t0 + t1) / std::numbers::sqrt2});
  }
  theta = Tensor::from(t, {n, 2});
  x = Tensor::from(s, {n, 2});
}

void BM_nsf_two_moons_epoch(benchmark::State& state) {
  const std::int64_t n = 10000, steps = n / B;
  Tensor theta, x;
  two_moons_pairs(n, theta, x);
  core::Rng init(1, 0);
  auto flow = flows::nsf(2, 2, init);
  const std::vector<nn::NamedParameter> params = flow->parameters();
  auto opt = nn::adam(params);
  core::Rng shuffle(9, 1);
  auto epoch = [&] {
    const std::vector<std::int64_t> order = shuffle.permutation(n);
    for (std::int64_t s = 0; s < steps; ++s) {
      const std::span<const std::int64_t> index(order.data() + s * B, B);
      {
        ad::Tape tape;
        const ad::Var a = ad::gather_rows(theta, index), b = ad::gather_rows(x, index);
        tape.backward(ad::neg(ad::mean(flow->log_prob(a, b))));
      }
      nn::clip_grad_norm(params, 5.0);
      opt->step();
      opt->zero_grad();
    }
  };
  epoch();  // warm-up
  bench::report_allocations(state, epoch, 1);
  bench::WallClock clock;
  for (auto _ : state) epoch();
  state.counters["epoch_s"] = clock.seconds() / static_cast<double>(state.iterations());
  state.counters["samples_per_s"] = static_cast<double>(n * state.iterations()) / clock.seconds();
  bench::report_threads(state);
}

void BM_nsf_sample(benchmark::State& state) {
  const std::int64_t D = state.range(0), C = 10, n = 10000;
  core::Rng init(1, 0);
  auto flow = flows::nsf(D, C, init);
  const Tensor b = normal(1, C, 3);
  core::Rng draws(2, 0);
  auto call = [&] { benchmark::DoNotOptimize(flow->sample(n, b, draws).raw()); };
  call();
  bench::WallClock clock;
  for (auto _ : state) call();
  state.counters["samples_per_s"] = static_cast<double>(n * state.iterations()) / clock.seconds();
  bench::report_threads(state);
}

BENCHMARK(BM_nsf_log_prob_step)
    ->ArgsProduct({{2, 5, 10}, {2, 10, 100}})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_nsf_two_moons_epoch)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_nsf_sample)->Arg(2)->Arg(5)->Arg(10)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
