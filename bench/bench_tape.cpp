// Tape overhead: a chain of N = 1000 adds and muls on tiny tensors ([1] and [2, 2]), where the
// arithmetic is a few nanoseconds and everything else is bookkeeping. The chain starts at a
// parameter, so every op is recorded; the other operands are constants.
//
//   BM_tape_kernels          the backend calls alone (binary + binary_backward per op) on
//                            preallocated tensors: the floor no tape can go under
//   BM_tape_nograd           the ops under NoGrad inside an ArenaScope: dispatch + checks + scratch
//   BM_tape_record           the ops under a Tape, forward only: + one node per op
//   BM_tape_record_backward  + tape.backward and zero_grad: a whole step
//
// Counters:
//   ns_per_op    wall ns per op (per op of the chain; the loss's sum counts as one more op)
//   overhead_ns  ns_per_op minus the same chain's kernels-only ns_per_op, measured in the same
//                run (BM_tape_record_backward: forward and backward kernels; BM_tape_record and
//                BM_tape_nograd: forward kernels): what asbi adds per op. Target ≤ 300 ns.
//   allocs       asbi tensor-storage allocations per step; heap_allocs: operator new calls per
//                step. Both should be 0 in steady state.
#include <vector>

#include "autodiff/ops.hpp"
#include "autodiff/parameter.hpp"
#include "autodiff/tape.hpp"
#include "bench_common.hpp"
#include "core/backend.hpp"

namespace {

using namespace asbi;
using core::Binary;
using core::Shape;
using core::Tensor;

constexpr int chain_length = 1000;

Shape tiny_shape(std::int64_t numel) { return numel == 1 ? Shape{1} : Shape{2, 2}; }

// Even ops add a small constant, odd ops multiply by one: the values stay finite forever.
bool is_add(int i) { return i % 2 == 0; }

struct Chain {
  ad::Parameter start;
  Tensor add_c, mul_c;
  explicit Chain(std::int64_t numel)
      : start("start", Tensor::full(tiny_shape(numel), 0.5)),
        add_c(Tensor::full(tiny_shape(numel), 1e-3)),
        mul_c(Tensor::full(tiny_shape(numel), 1.0)) {}

  ad::Var forward() const {
    ad::Var v = start;
    for (int i = 0; i < chain_length; ++i) v = is_add(i) ? ad::add(v, add_c) : ad::mul(v, mul_c);
    return v;
  }
};

// The chain's backend calls on preallocated tensors, as a tape would issue them.
struct KernelsOnly {
  std::vector<Tensor> value, grad;
  Tensor add_c, mul_c;
  explicit KernelsOnly(std::int64_t numel)
      : add_c(Tensor::full(tiny_shape(numel), 1e-3)), mul_c(Tensor::full(tiny_shape(numel), 1.0)) {
    for (int i = 0; i <= chain_length; ++i) {
      value.push_back(Tensor::full(tiny_shape(numel), 0.5));
      grad.push_back(Tensor::zeros(tiny_shape(numel)));
    }
  }
  void forward() {
    core::Backend& cpu = core::backend(core::Device::cpu);
    for (int i = 0; i < chain_length; ++i)
      cpu.binary(is_add(i) ? Binary::add : Binary::mul, value[i], is_add(i) ? add_c : mul_c,
                 value[i + 1]);
  }
  void backward() {
    core::Backend& cpu = core::backend(core::Device::cpu);
    for (int i = chain_length; i-- > 0;)
      cpu.binary_backward(is_add(i) ? Binary::add : Binary::mul, value[i],
                          is_add(i) ? add_c : mul_c, grad[i + 1], &grad[i], nullptr);
  }
};

double kernels_ns_per_op(std::int64_t numel, bool with_backward) {
  KernelsOnly k(numel);
  const double s = with_backward ? bench::seconds_per_call([&] { k.forward(), k.backward(); })
                                 : bench::seconds_per_call([&] { k.forward(); });
  return s / chain_length * 1e9;
}

void report(benchmark::State& state, double seconds, int ops, double baseline_ns) {
  const double ns = seconds / static_cast<double>(state.iterations()) / ops * 1e9;
  state.counters["ns_per_op"] = ns;
  if (baseline_ns > 0) state.counters["overhead_ns"] = ns - baseline_ns;
  bench::report_threads(state);
}

// Times `step` (a whole chain) and reports ns per op against the raw kernels of the same chain.
template <typename Step>
void time_chain(benchmark::State& state, Step&& step, int ops, bool with_backward) {
  step();
  const double baseline = kernels_ns_per_op(state.range(0), with_backward);
  bench::report_allocations(state, step);
  bench::WallClock clock;
  for (auto _ : state) step();
  report(state, clock.seconds(), ops, baseline);
}

void BM_tape_kernels(benchmark::State& state) {
  KernelsOnly k(state.range(0));
  k.forward();
  k.backward();
  bench::WallClock clock;
  for (auto _ : state) {
    k.forward();
    k.backward();
    benchmark::ClobberMemory();
  }
  report(state, clock.seconds(), chain_length, 0);
}

void BM_tape_nograd(benchmark::State& state) {
  Chain chain(state.range(0));
  auto step = [&] {
    core::ArenaScope scope;
    ad::NoGrad no_grad;
    benchmark::DoNotOptimize(chain.forward().value().raw());
  };
  time_chain(state, step, chain_length, false);
}

void BM_tape_record(benchmark::State& state) {
  Chain chain(state.range(0));
  auto step = [&] {
    ad::Tape tape;
    benchmark::DoNotOptimize(chain.forward().value().raw());
  };
  time_chain(state, step, chain_length, false);
}

void BM_tape_record_backward(benchmark::State& state) {
  Chain chain(state.range(0));
  auto step = [&] {
    {
      ad::Tape tape;
      tape.backward(ad::sum(chain.forward()));
    }
    chain.start.zero_grad();
  };
  time_chain(state, step, chain_length + 1, true);
}

#define ASBI_TINY ->ArgName("numel")->Arg(1)->Arg(4)->UseRealTime()->Unit(benchmark::kMicrosecond)
BENCHMARK(BM_tape_kernels) ASBI_TINY;
BENCHMARK(BM_tape_nograd) ASBI_TINY;
BENCHMARK(BM_tape_record) ASBI_TINY;
BENCHMARK(BM_tape_record_backward) ASBI_TINY;
#undef ASBI_TINY

}  // namespace
