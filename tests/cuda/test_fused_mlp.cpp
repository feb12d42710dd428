// The fused small-MLP kernels (cuda/fused_mlp.cu) against the CPU's layer-by-layer path
// (core/cpu/fused_mlp.cpp): output, saved pre-activations, dx and the parameter gradient, for
// hidden widths {16, 50, 64, 128}, one to three hidden layers, batches that are not multiples of
// the 64-row tile, and every activation the networks use. Every test skips without a CUDA device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/backend.hpp"
#include "core/tensor.hpp"
#include "cuda/cuda_backend.hpp"
#include "cuda_test_util.hpp"

namespace asbi::cuda {
namespace {

using core::Device;
using core::DType;
using core::Shape;
using core::Tensor;
using core::Unary;
using core::UnaryParams;

class FusedMlpTest : public test_util::CudaTest {};

const std::pair<Unary, UnaryParams> kActivations[] = {
    {Unary::relu, {}},    {Unary::leaky_relu, {0.01}}, {Unary::elu, {1.0}},
    {Unary::silu, {}},    {Unary::gelu, {}},           {Unary::tanh, {}},
    {Unary::sigmoid, {}}, {Unary::softplus, {}},       {Unary::identity, {}},
};

// Smooth, sign-changing values of magnitude ≤ amplitude.
Tensor pattern(std::int64_t n, double phase, double amplitude, DType dtype) {
  std::vector<double> v(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < v.size(); ++i)
    v[i] = amplitude * std::sin(0.37 * static_cast<double>(i) + phase);
  return Tensor::from(v, {n}, dtype);
}

// Parameters scaled by 1/√in per layer, as an initialisation would, so that activations stay
// of order one through the layers.
Tensor parameters_for(const std::vector<std::int64_t>& widths, DType dtype) {
  std::vector<double> v;
  for (std::size_t l = 0; l + 1 < widths.size(); ++l) {
    const std::int64_t count = widths[l + 1] * (widths[l] + 1);
    const std::vector<double> layer =
        pattern(count, 0.3 * static_cast<double>(l), 1.5 / std::sqrt(double(widths[l])), DType::f64)
            .to_vector();
    v.insert(v.end(), layer.begin(), layer.end());
  }
  return Tensor::from(v, {static_cast<std::int64_t>(v.size())}, dtype);
}

struct MlpRun {
  std::vector<double> y, hidden, dx, dparameters;
};

// Forward then backward on one device. The gradients start non-zero, checking that the backward
// accumulates; a gradient not asked for stays empty.
MlpRun run(Device device, const std::vector<std::int64_t>& widths, Unary f, UnaryParams p,
           std::int64_t rows, DType dtype = DType::f32, bool want_dx = true,
           bool want_dparameters = true) {
  core::Backend& be = core::backend(device);
  const std::int64_t in = widths.front(), out = widths.back();
  const Tensor x = pattern(rows * in, 0.1, 1.0, dtype).reshape({rows, in}).to(device);
  const Tensor parameters = parameters_for(widths, dtype).to(device);
  const Tensor dy = pattern(rows * out, 0.7, 1.0, dtype).reshape({rows, out}).to(device);
  Tensor y = Tensor::zeros({rows, out}, dtype, device);
  Tensor hidden = Tensor::zeros({rows * core::fused_mlp_hidden_width(widths)}, dtype, device);
  Tensor dx = Tensor::full({rows, in}, 0.25, dtype, device);
  Tensor dparameters = Tensor::full(parameters.shape(), 0.5, dtype, device);
  be.fused_mlp_forward(x, parameters, widths, f, p, y, &hidden);
  be.fused_mlp_backward(x, parameters, widths, f, p, hidden, dy, want_dx ? &dx : nullptr,
                        want_dparameters ? &dparameters : nullptr);
  MlpRun r;
  r.y = y.to_vector();
  r.hidden = hidden.to_vector();
  if (want_dx) r.dx = dx.to_vector();
  if (want_dparameters) r.dparameters = dparameters.to_vector();
  return r;
}

// |got - want| ≤ rtol · max(1, max |want|): sums of many float terms err relative to the
// largest magnitude around, not to each entry.
void expect_close(const std::vector<double>& got, const std::vector<double>& want, double rtol,
                  const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double scale = 1;
  for (double w : want) scale = std::max(scale, std::abs(w));
  for (std::size_t i = 0; i < want.size(); ++i)
    ASSERT_NEAR(got[i], want[i], rtol * scale) << what << ", element " << i;
}

void expect_parity(const std::vector<std::int64_t>& widths, Unary f, UnaryParams p,
                   std::int64_t rows, const std::string& what) {
  const MlpRun cpu = run(Device::cpu, widths, f, p, rows);
  const MlpRun gpu = run(Device::cuda, widths, f, p, rows);
  expect_close(gpu.y, cpu.y, 2e-5, what + ": y");
  expect_close(gpu.hidden, cpu.hidden, 2e-5, what + ": hidden");
  expect_close(gpu.dx, cpu.dx, 1e-4, what + ": dx");
  expect_close(gpu.dparameters, cpu.dparameters, 1e-4, what + ": dparameters");
}

std::string describe(const std::vector<std::int64_t>& widths, Unary f, std::int64_t rows) {
  std::string s = core::str(core::name(f), ", rows ", rows, ", widths");
  for (std::int64_t w : widths) s += core::str(" ", w);
  return s;
}

TEST_F(FusedMlpTest, MatchesTheLayerByLayerCpuPath) {
  for (std::int64_t hidden_width : {16, 50, 64, 128})
    for (int hidden_layers : {1, 2, 3})
      for (std::int64_t rows : {1, 63, 130})
        for (auto [f, p] : kActivations) {
          std::vector<std::int64_t> widths{5};
          for (int l = 0; l < hidden_layers; ++l) widths.push_back(hidden_width);
          widths.push_back(3);
          expect_parity(widths, f, p, rows, describe(widths, f, rows));
          if (HasFatalFailure()) return;
        }
}

TEST_F(FusedMlpTest, FullWidthNetworkAndBlocksOverManyTiles) {
  // Every width at the limit, and more 64-row tiles than the backward's 256 blocks, so that
  // blocks accumulate partials over several tiles.
  const std::int64_t rows = 64 * 300 + 17;
  for (Unary f : {Unary::tanh, Unary::relu}) {
    const std::vector<std::int64_t> widths{128, 128, 128, 128};
    expect_parity(widths, f, {}, rows, describe(widths, f, rows));
    if (HasFatalFailure()) return;
  }
  // A zero-width hidden buffer: a single layer.
  expect_parity({7, 2}, Unary::identity, {}, 77, "one layer");
}

TEST_F(FusedMlpTest, FallsBackAboveTheWidthLimitAndInFloat64) {
  expect_parity({5, 130, 3}, Unary::tanh, {}, 70, "width 130 (cuBLAS + epilogue)");
  const std::vector<std::int64_t> widths{5, 16, 16, 3};
  const MlpRun cpu = run(Device::cpu, widths, Unary::silu, {}, 70, DType::f64);
  const MlpRun gpu = run(Device::cuda, widths, Unary::silu, {}, 70, DType::f64);
  expect_close(gpu.y, cpu.y, 1e-12, "float64 y");
  expect_close(gpu.dx, cpu.dx, 1e-12, "float64 dx");
  expect_close(gpu.dparameters, cpu.dparameters, 1e-12, "float64 dparameters");
}

TEST_F(FusedMlpTest, RepeatsBitForBitAndSkipsGradientsNotAskedFor) {
  const std::vector<std::int64_t> widths{9, 64, 50, 4};
  const std::int64_t rows = 64 * 270 + 5;
  const MlpRun first = run(Device::cuda, widths, Unary::gelu, {}, rows);
  const MlpRun second = run(Device::cuda, widths, Unary::gelu, {}, rows);
  EXPECT_EQ(first.y, second.y);
  EXPECT_EQ(first.dx, second.dx);
  EXPECT_EQ(first.dparameters, second.dparameters);
  // One gradient alone comes out of the same sums.
  const MlpRun only_parameters =
      run(Device::cuda, widths, Unary::gelu, {}, rows, DType::f32, false, true);
  const MlpRun only_dx = run(Device::cuda, widths, Unary::gelu, {}, rows, DType::f32, true, false);
  EXPECT_EQ(only_parameters.dparameters, first.dparameters);
  EXPECT_EQ(only_dx.dx, first.dx);
}

}  // namespace
}  // namespace asbi::cuda
