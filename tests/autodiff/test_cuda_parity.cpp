// The device seam end to end: a small MLP's forward and backward on the CPU and on CUDA agree.
#include <gtest/gtest.h>

#include <cmath>
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

}  // namespace
}  // namespace asbi
