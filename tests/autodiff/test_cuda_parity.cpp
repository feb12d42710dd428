// The device seam end to end: a small MLP's forward and backward on the CPU and on CUDA agree.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "autodiff/ops.hpp"
#include "autodiff/parameter.hpp"
#include "autodiff/tape.hpp"
#include "core/backend.hpp"

namespace asbi {
namespace {

using core::Device;
using core::Tensor;

Tensor pattern(core::Shape shape, double phase) {
  std::vector<double> v(static_cast<std::size_t>(shape.numel()));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = 0.5 * std::sin(0.37 * double(i) + phase);
  return Tensor::from(v, shape);
}

struct MlpResult {
  double loss;
  std::vector<std::vector<double>> grads;
};

// y = W3 tanh(W2 tanh(W1 x + b1) + b2) + b3, loss = mean((y - t)²)
MlpResult run_mlp(Device device) {
  std::vector<ad::Parameter> p;
  p.emplace_back("w1", pattern({32, 5}, 0.1).to(device));
  p.emplace_back("b1", pattern({32}, 0.2).to(device));
  p.emplace_back("w2", pattern({32, 32}, 0.3).to(device));
  p.emplace_back("b2", pattern({32}, 0.4).to(device));
  p.emplace_back("w3", pattern({3, 32}, 0.5).to(device));
  p.emplace_back("b3", pattern({3}, 0.6).to(device));
  const Tensor x = pattern({64, 5}, 1.0).to(device), t = pattern({64, 3}, 2.0).to(device);
  MlpResult r;
  ad::Tape tape;
  ad::Var h = ad::tanh(ad::linear(x, p[0], p[1]));
  h = ad::tanh(ad::linear(h, p[2], p[3]));
  ad::Var loss = ad::mean(ad::square(ad::sub(ad::linear(h, p[4], p[5]), t)));
  tape.backward(loss);
  r.loss = loss.item();
  for (auto& param : p) r.grads.push_back(param.grad().to_vector());
  return r;
}

TEST(CudaParity, SmallMlpForwardBackwardMatchesCpu) {
  if (!core::device_available(Device::cuda))
    GTEST_SKIP() << "no CUDA device on this machine (or asbi built without CUDA): the CPU/GPU "
                    "parity check runs on the GPU machine";
  const MlpResult cpu = run_mlp(Device::cpu), gpu = run_mlp(Device::cuda);
  EXPECT_NEAR(cpu.loss, gpu.loss, 1e-5 * std::max(1.0, std::abs(cpu.loss)));
  for (std::size_t i = 0; i < cpu.grads.size(); ++i)
    for (std::size_t k = 0; k < cpu.grads[i].size(); ++k)
      EXPECT_NEAR(cpu.grads[i][k], gpu.grads[i][k], 1e-5 + 1e-4 * std::abs(cpu.grads[i][k]))
          << "parameter " << i << " element " << k;
}

// The fused linear + activation (+ residual) on both devices: outputs and every gradient.
struct LinearActResult {
  std::vector<double> y;
  std::vector<std::vector<double>> grads;  // x, W, b, r
};

LinearActResult run_linear_act(Device device, core::DType dtype, core::Unary f, core::UnaryParams p,
                               bool with_residual) {
  const std::int64_t B = 300, X = 7, H = 45;  // rows over several chunks, H over two tiles
  std::vector<ad::Parameter> v;
  v.emplace_back("x", pattern({B, X}, 0.1).to(dtype).to(device));
  v.emplace_back("w", pattern({H, X}, 0.2).to(dtype).to(device));
  v.emplace_back("b", pattern({H}, 0.3).to(dtype).to(device));
  v.emplace_back("r", pattern({B, H}, 0.4).to(dtype).to(device));
  const Tensor weights = pattern({B, H}, 0.5).to(dtype).to(device);
  LinearActResult out;
  ad::Tape tape;
  const ad::Var y =
      ad::linear_act(v[0], v[1], v[2], f, p, with_residual ? ad::Var(v[3]) : ad::Var());
  tape.backward(ad::sum(ad::mul(y, weights)));
  out.y = y.value().to_vector();
  for (auto& param : v) out.grads.push_back(param.grad().to_vector());
  return out;
}

TEST(CudaParity, LinearActForwardBackwardMatchesCpu) {
  if (!core::device_available(Device::cuda))
    GTEST_SKIP() << "no CUDA device on this machine (or asbi built without CUDA)";
  using core::Unary;
  const std::pair<Unary, core::UnaryParams> activations[] = {
      {Unary::relu, {}},    {Unary::leaky_relu, {0.01}}, {Unary::elu, {1.0}},
      {Unary::silu, {}},    {Unary::gelu, {}},           {Unary::tanh, {}},
      {Unary::sigmoid, {}}, {Unary::softplus, {}},       {Unary::identity, {}},
  };
  for (core::DType dtype : {core::DType::f32, core::DType::f64})
    for (auto [f, p] : activations)
      for (bool with_residual : {false, true}) {
        const LinearActResult cpu = run_linear_act(Device::cpu, dtype, f, p, with_residual);
        const LinearActResult gpu = run_linear_act(Device::cuda, dtype, f, p, with_residual);
        const double rtol = dtype == core::DType::f32 ? 1e-5 : 1e-12;
        const std::string what =
            core::str(core::name(f), " ", dtype, with_residual ? " with residual" : "");
        for (std::size_t k = 0; k < cpu.y.size(); ++k)
          ASSERT_NEAR(gpu.y[k], cpu.y[k], rtol * std::max(1.0, std::abs(cpu.y[k])))
              << what << ", y element " << k;
        for (std::size_t i = 0; i < cpu.grads.size(); ++i) {
          // Gradients are sums over up to 300 rows: scaled by their magnitude.
          double scale = 1;
          for (double g : cpu.grads[i]) scale = std::max(scale, std::abs(g));
          for (std::size_t k = 0; k < cpu.grads[i].size(); ++k)
            ASSERT_NEAR(gpu.grads[i][k], cpu.grads[i][k], 10 * rtol * scale)
                << what << ", gradient " << i << " element " << k;
        }
      }
}

}  // namespace
}  // namespace asbi
