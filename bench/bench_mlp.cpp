// One training step of a 3-layer MLP, and the same step's matrix products alone.
//
//   X [B, 8] → linear → tanh → [B, H] → linear → tanh → [B, H] → linear → [B, 8],  B = 256
//   loss = mean((out - Y)²); tape.backward(loss); p -= lr ∂loss/∂p; zero_grad
//
// The _fused variants run each linear → tanh as one ad::linear_act node (GEMM + one fused
// bias/activation pass; backward: one pass for tanh' and the bias gradient, then the GEMMs).
//
// H ∈ {50, 128, 256}, float32. The step's flops are those of its GEMMs (the elementwise work is
// O(B·H), the GEMMs O(B·H²)): a layer with fan-in I and fan-out O costs 2·B·I·O forward, and in
// backward 2·B·I·O for ∂W = ∂Yᵀ X plus 2·B·I·O for ∂X = ∂Y W, except in the first layer, whose
// input X is data and gets no gradient. BM_mlp_matmul_only issues exactly those GEMM calls on
// preallocated tensors with no tape; a step within 2× of it keeps the tape and the elementwise
// kernels at most as expensive as the matrix products themselves.
//
// Counters:
//   GFLOPS       GEMM flops per step × steps / wall seconds / 1e9
//   peak_%       GFLOPS as a percentage of the peak (bench_common.hpp)
//   vs_matmul    step time / matmul-only time (measured in the same run; target ≤ 2)
//   allocs       asbi tensor-storage allocations per step (target 0 in steady state)
//   heap_allocs  C++ operator new calls per step
#include <array>
#include <cmath>
#include <vector>

#include "autodiff/ops.hpp"
#include "autodiff/parameter.hpp"
#include "autodiff/tape.hpp"
#include "bench_common.hpp"
#include "core/backend.hpp"

namespace {

using namespace asbi;
using core::Tensor;

constexpr std::int64_t B = 256;    // batch
constexpr std::int64_t X_in = 8;   // input width
constexpr std::int64_t X_out = 8;  // output width
constexpr double lr = 1e-3;

struct Layer {
  std::int64_t in, out;
};

std::array<Layer, 3> layers_for(std::int64_t H) { return {{{X_in, H}, {H, H}, {H, X_out}}}; }

// GEMM flops of one step (see the header).
double step_flops(std::int64_t H) {
  double flops = 0;
  bool first = true;
  for (const Layer& l : layers_for(H)) {
    const double f = 2.0 * B * l.in * l.out;
    flops += f + f + (first ? 0 : f);
    first = false;
  }
  return flops;
}

struct Mlp {
  std::vector<ad::Parameter> params;  // W1, b1, W2, b2, W3, b3
  bool fused;                         // linear → tanh as one ad::linear_act node
  Mlp(std::int64_t H, bool fused) : fused(fused) {
    params.reserve(6);
    unsigned seed = 10;
    for (const Layer& l : layers_for(H)) {
      const float s = 1.0f / std::sqrt(static_cast<float>(l.in));
      params.emplace_back("W", bench::random_tensor({l.out, l.in}, -s, s, seed++));
      params.emplace_back("b", bench::random_tensor({l.out}, -s, s, seed++));
    }
  }
  ad::Var forward(const ad::Var& x) const {
    auto hidden = [&](const ad::Var& in, int layer) {
      const ad::Parameter &w = params[std::size_t(2 * layer)],
                          &b = params[std::size_t(2 * layer + 1)];
      return fused ? ad::linear_act(in, w, b, core::Unary::tanh) : ad::tanh(ad::linear(in, w, b));
    };
    return ad::linear(hidden(hidden(x, 0), 1), params[4], params[5]);
  }
};

void train_step(Mlp& mlp, const Tensor& x, const Tensor& y) {
  {
    ad::Tape tape;
    ad::Var loss = ad::mean(ad::square(ad::sub(mlp.forward(x), y)));
    tape.backward(loss);
  }
  core::Backend& cpu = core::backend(core::Device::cpu);
  for (ad::Parameter& p : mlp.params) {
    cpu.axpy(-lr, p.grad(), p.value());
    p.zero_grad();
  }
}

// The step's GEMMs and nothing else: the same calls linear's forward and backward make.
struct MatmulOnly {
  std::vector<Tensor> w, act, grad_act, grad_w;  // act[0] = X, act[i+1] = layer i's output
  explicit MatmulOnly(std::int64_t H) {
    act.push_back(bench::random_tensor({B, X_in}, -1, 1, 1));
    grad_act.push_back(Tensor());  // X gets no gradient
    unsigned seed = 10;
    for (const Layer& l : layers_for(H)) {
      w.push_back(bench::random_tensor({l.out, l.in}, -1, 1, seed++));
      grad_w.push_back(Tensor::zeros({l.out, l.in}));
      act.push_back(bench::random_tensor({B, l.out}, -1, 1, seed++));
      grad_act.push_back(bench::random_tensor({B, l.out}, -1, 1, seed++));
    }
  }
  void run() {
    core::Backend& cpu = core::backend(core::Device::cpu);
    for (std::size_t i = 0; i < w.size(); ++i)  // Y = X Wᵀ
      cpu.gemm(false, true, 1.0, act[i], w[i], 0.0, act[i + 1]);
    for (std::size_t i = w.size(); i-- > 0;) {
      const Tensor& dy = grad_act[i + 1];
      if (grad_act[i].defined()) cpu.gemm(false, false, 1.0, dy, w[i], 1.0, grad_act[i]);  // ∂X
      cpu.gemm(true, false, 1.0, dy, act[i], 1.0, grad_w[i]);                              // ∂W
    }
  }
};

void report(benchmark::State& state, std::int64_t H, double seconds) {
  const double per_step = seconds / static_cast<double>(state.iterations());
  const double gflops = step_flops(H) / per_step * 1e-9;
  state.counters["GFLOPS"] = gflops;
  state.counters["peak_%"] = 100.0 * gflops / bench::peak_gflops();
  bench::report_threads(state);
}

void mlp_step(benchmark::State& state, bool fused) {
  const std::int64_t H = state.range(0);
  Mlp mlp(H, fused);
  const Tensor x = bench::random_tensor({B, X_in}, -1, 1, 1);
  const Tensor y = bench::random_tensor({B, X_out}, -1, 1, 2);
  train_step(mlp, x, y);  // warm-up: grows the arena to one step's size
  MatmulOnly mm(H);
  const double matmul_seconds = bench::seconds_per_call([&] { mm.run(); }, 0.2);

  bench::report_allocations(state, [&] { train_step(mlp, x, y); });
  bench::WallClock clock;
  for (auto _ : state) {
    train_step(mlp, x, y);
    benchmark::ClobberMemory();
  }
  const double seconds = clock.seconds();
  report(state, H, seconds);
  state.counters["vs_matmul"] = seconds / static_cast<double>(state.iterations()) / matmul_seconds;
}

void BM_mlp_step(benchmark::State& state) { mlp_step(state, false); }
void BM_mlp_step_fused(benchmark::State& state) { mlp_step(state, true); }

void BM_mlp_matmul_only(benchmark::State& state) {
  const std::int64_t H = state.range(0);
  MatmulOnly mm(H);
  mm.run();
  bench::WallClock clock;
  for (auto _ : state) {
    mm.run();
    benchmark::ClobberMemory();
  }
  report(state, H, clock.seconds());
}

// Forward only, under NoGrad: what inference costs (no nodes, no backward GEMMs).
void mlp_forward_nograd(benchmark::State& state, bool fused) {
  const std::int64_t H = state.range(0);
  Mlp mlp(H, fused);
  const Tensor x = bench::random_tensor({B, X_in}, -1, 1, 1);
  auto forward = [&] {
    core::ArenaScope scope;
    ad::NoGrad no_grad;
    benchmark::DoNotOptimize(mlp.forward(x).value().raw());
  };
  forward();
  bench::report_allocations(state, forward);
  for (auto _ : state) forward();
  bench::report_threads(state);
}

void BM_mlp_forward_nograd(benchmark::State& state) { mlp_forward_nograd(state, false); }
void BM_mlp_forward_nograd_fused(benchmark::State& state) { mlp_forward_nograd(state, true); }

#define ASBI_MLP_WIDTHS ->Arg(50)->Arg(128)->Arg(256)->UseRealTime()->Unit(benchmark::kMicrosecond)
BENCHMARK(BM_mlp_step) ASBI_MLP_WIDTHS;
BENCHMARK(BM_mlp_step_fused) ASBI_MLP_WIDTHS;
BENCHMARK(BM_mlp_matmul_only) ASBI_MLP_WIDTHS;
BENCHMARK(BM_mlp_forward_nograd) ASBI_MLP_WIDTHS;
BENCHMARK(BM_mlp_forward_nograd_fused) ASBI_MLP_WIDTHS;
#undef ASBI_MLP_WIDTHS

}  // namespace
