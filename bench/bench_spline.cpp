// The fused rational-quadratic spline (flows::rq_spline), the hot spot of training a neural spline
// flow: N = 200 rows, D ∈ {2, 5, 10} features, K = 10 bins, float32, raw parameters uniform on
// [-1, 1] and x uniform on [-3.3, 3.3] (B = 3: about 10% of the elements fall in the tails).
//
//   BM_spline_step            Tape, forward, backward of L = Σ value + Σ log_det with x and the
//                             three parameter tensors all needing gradients (one kernel each way)
//   BM_spline_forward_nograd  the forward alone under NoGrad (density evaluation)
//   BM_spline_inverse_nograd  the inverse alone under NoGrad (sampling)
//
// Counters:
//   elements_per_s  N·D spline elements per wall second
//   ns_per_element  its inverse
//   allocs          asbi tensor-storage allocations per call (0 in steady state)
//   heap_allocs     C++ operator new calls per call
#include "autodiff/ops.hpp"
#include "autodiff/parameter.hpp"
#include "autodiff/tape.hpp"
#include "bench_common.hpp"
#include "flows/spline.hpp"

namespace {

using namespace asbi;
using core::Tensor;

constexpr std::int64_t N = 200;
constexpr int K = 10;
const flows::SplineOptions options{.bins = K, .tail_bound = 3.0};

struct Inputs {
  ad::Parameter x, widths, heights, derivatives;
  explicit Inputs(std::int64_t D)
      : x("x", bench::random_tensor({N, D}, -3.3f, 3.3f, 1)),
        widths("widths", bench::random_tensor({N, D, K}, -1, 1, 2)),
        heights("heights", bench::random_tensor({N, D, K}, -1, 1, 3)),
        derivatives("derivatives", bench::random_tensor({N, D, K - 1}, -1, 1, 4)) {}
  void zero_grad() {
    for (ad::Parameter* p : {&x, &widths, &heights, &derivatives}) p->zero_grad();
  }
};

void report(benchmark::State& state, std::int64_t D, double seconds) {
  const double elements = static_cast<double>(N * D) * static_cast<double>(state.iterations());
  state.counters["elements_per_s"] = elements / seconds;
  state.counters["ns_per_element"] = seconds / elements * 1e9;
  bench::report_threads(state);
}

void BM_spline_step(benchmark::State& state) {
  const std::int64_t D = state.range(0);
  Inputs in(D);
  auto step = [&] {
    {
      ad::Tape tape;
      flows::SplineResult r =
          flows::rq_spline(in.x, in.widths, in.heights, in.derivatives, options);
      tape.backward(ad::sum(r.value) + ad::sum(r.log_det));
    }
    in.zero_grad();
  };
  step();  // warm-up: grows the arena
  bench::report_allocations(state, step);
  bench::WallClock clock;
  for (auto _ : state) {
    step();
    benchmark::ClobberMemory();
  }
  report(state, D, clock.seconds());
}

void run_nograd(benchmark::State& state, bool inverse) {
  const std::int64_t D = state.range(0);
  Inputs in(D);
  auto call = [&] {
    core::ArenaScope scope;
    ad::NoGrad no_grad;
    flows::SplineResult r =
        flows::rq_spline(in.x, in.widths, in.heights, in.derivatives, options, inverse);
    benchmark::DoNotOptimize(r.log_det.value().raw());
  };
  call();
  bench::report_allocations(state, call);
  bench::WallClock clock;
  for (auto _ : state) call();
  report(state, D, clock.seconds());
}

void BM_spline_forward_nograd(benchmark::State& state) { run_nograd(state, false); }
void BM_spline_inverse_nograd(benchmark::State& state) { run_nograd(state, true); }

#define ASBI_SPLINE_WIDTHS ->Arg(2)->Arg(5)->Arg(10)->UseRealTime()->Unit(benchmark::kMicrosecond)
BENCHMARK(BM_spline_step) ASBI_SPLINE_WIDTHS;
BENCHMARK(BM_spline_forward_nograd) ASBI_SPLINE_WIDTHS;
BENCHMARK(BM_spline_inverse_nograd) ASBI_SPLINE_WIDTHS;
#undef ASBI_SPLINE_WIDTHS

}  // namespace
