// The fused small MLP on CUDA against cuBLAS + fused epilogues layer by layer, forward + backward.
//
//   x [B, 64] → linear → tanh → [B, H] → (linear → tanh) × 2 → [B, H] → linear → [B, 64]
//
// Both variants are core::Backend::fused_mlp_forward/backward on the CUDA backend: "fused" is its
// single-launch kernel (cuda/fused_mlp.cu), "layered" the base class's path it falls back to
// (one cuBLAS GEMM + one epilogue kernel per layer and direction), called by qualified name.
// H ∈ {32, 64, 128}, B ∈ {4096, 65536}, float32.
//
// Counters:
//   GFLOPS   matrix flops per pass (forward 2·B·Σ in·out, backward 4·B·Σ in·out: dW and dx)
//            × passes / wall seconds / 1e9
// Skipped, with a message, where no CUDA device is present.
#include <vector>

#include "bench_common.hpp"
#include "core/backend.hpp"

namespace {

using namespace asbi;
using core::Device;
using core::Tensor;

constexpr std::int64_t io_width = 64;

std::vector<std::int64_t> widths_for(std::int64_t H) { return {io_width, H, H, H, io_width}; }

template <bool Fused>
void BM_cuda_mlp_forward_backward(benchmark::State& state) {
  if (!core::device_available(Device::cuda)) {
    state.SkipWithError("no CUDA device on this machine: skipped");
    return;
  }
  const std::int64_t H = state.range(0), B = state.range(1);
  const std::vector<std::int64_t> widths = widths_for(H);
  core::Backend& gpu = core::backend(Device::cuda);
  const Tensor x = bench::random_tensor({B, io_width}, -1, 1, 1).to(Device::cuda);
  const Tensor parameters =
      bench::random_tensor({core::fused_mlp_parameter_count(widths)}, -0.1f, 0.1f, 2)
          .to(Device::cuda);
  const Tensor dy = bench::random_tensor({B, io_width}, -1, 1, 3).to(Device::cuda);
  Tensor y = Tensor::empty({B, io_width}, core::DType::f32, Device::cuda);
  Tensor hidden =
      Tensor::empty({B * core::fused_mlp_hidden_width(widths)}, core::DType::f32, Device::cuda);
  Tensor dx = Tensor::zeros({B, io_width}, core::DType::f32, Device::cuda);
  Tensor dparameters = Tensor::zeros(parameters.shape(), core::DType::f32, Device::cuda);
  auto pass = [&] {
    if constexpr (Fused) {
      gpu.fused_mlp_forward(x, parameters, widths, core::Unary::tanh, {}, y, &hidden);
      gpu.fused_mlp_backward(x, parameters, widths, core::Unary::tanh, {}, hidden, dy, &dx,
                             &dparameters);
    } else {
      gpu.core::Backend::fused_mlp_forward(x, parameters, widths, core::Unary::tanh, {}, y,
                                           &hidden);
      gpu.core::Backend::fused_mlp_backward(x, parameters, widths, core::Unary::tanh, {}, hidden,
                                            dy, &dx, &dparameters);
    }
  };
  pass();  // warm-up: cuBLAS handle, pool blocks, the kernels' shared-memory opt-in
  gpu.synchronize();
  double flops_per_pass = 0;
  for (std::size_t l = 0; l + 1 < widths.size(); ++l)
    flops_per_pass += 6.0 * static_cast<double>(B * widths[l] * widths[l + 1]);
  std::int64_t passes = 0;
  const bench::WallClock clock;
  for (auto _ : state) {
    pass();
    gpu.synchronize();
    ++passes;
  }
  state.counters["GFLOPS"] = flops_per_pass * static_cast<double>(passes) / clock.seconds() / 1e9;
}

void mlp_sizes(benchmark::internal::Benchmark* b) {
  for (std::int64_t H : {32, 64, 128})
    for (std::int64_t B : {4096, 65536}) b->Args({H, B});
  b->ArgNames({"H", "B"})->Unit(benchmark::kMicrosecond)->UseRealTime();
}

}  // namespace

BENCHMARK_TEMPLATE(BM_cuda_mlp_forward_backward, true)->Name("BM_cuda_mlp_fused")->Apply(mlp_sizes);
BENCHMARK_TEMPLATE(BM_cuda_mlp_forward_backward, false)
    ->Name("BM_cuda_mlp_layered")
    ->Apply(mlp_sizes);
