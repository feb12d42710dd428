// Module::to and the registered buffers: what moves, what a move to the device a module is
// already on leaves alone, the errors for an absent device and for a module split across devices,
// and (with a GPU) a CPU → CUDA → CPU round trip and the Trainer on CUDA following the CPU run.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "autodiff/ops.hpp"
#include "autodiff/tape.hpp"
#include "core/backend.hpp"
#include "nn/layers.hpp"
#include "nn/trainer.hpp"
#include "test_util.hpp"

namespace asbi::nn {
namespace {

using test_util::expect_error_naming;

// y = (x W) ⊙ s with a fixed per-column scale s (a buffer) and a child Linear after it: a
// parameter, a buffer and a child with parameters of its own.
class ScaledNet : public Layer {
 public:
  explicit ScaledNet(core::Rng& rng)
      : weight_(param("weight", kaiming_uniform({3, 4}, 3, rng))),
        scale_(Tensor::from({0.5, 1.0, 1.5, 2.0}, {4})),
        head_(child("head", std::make_unique<Linear>(4, 1, rng))) {
    register_buffer("scale", scale_);
  }
  Var forward(const Var& x) const override {
    return head_(ad::mul(ad::matmul(x, weight_), Var(scale_)));
  }
  const Tensor& scale() const { return scale_; }
  Parameter& weight() { return weight_; }

 private:
  Parameter& weight_;
  Tensor scale_;
  Linear& head_;
};

TEST(Module, RegisteredBuffersAreListedWithDottedNames) {
  core::Rng rng(1);
  ScaledNet net(rng);
  const std::vector<NamedBuffer> buffers = net.registered_buffers();
  ASSERT_EQ(buffers.size(), 1u);
  EXPECT_EQ(buffers[0].name, "scale");
  EXPECT_EQ(buffers[0].tensor, &net.scale());
  // A module without parameters or buffers is on the CPU.
  EXPECT_EQ(Sequential().device(), Device::cpu);
  EXPECT_EQ(net.device(), Device::cpu);
}

TEST(Module, MovingToTheDeviceItIsOnKeepsEveryTensor) {
  core::Rng rng(2);
  ScaledNet net(rng);
  std::vector<const void*> before;
  for (const NamedParameter& p : net.parameters()) {
    before.push_back(p.parameter->value().raw());
    before.push_back(p.parameter->grad().raw());
  }
  before.push_back(net.scale().raw());
  net.to(Device::cpu);
  std::vector<const void*> after;
  for (const NamedParameter& p : net.parameters()) {
    after.push_back(p.parameter->value().raw());
    after.push_back(p.parameter->grad().raw());
  }
  after.push_back(net.scale().raw());
  EXPECT_EQ(before, after) << "to(cpu) on a CPU module must not copy";
  EXPECT_EQ(net.device(), Device::cpu);
}

TEST(Module, MovingWhileATapeRecordsIsRefused) {
  core::Rng rng(8);
  ScaledNet net(rng);
  ad::Tape tape;
  const Var y = net(Tensor::full({2, 3}, 1.0));
  expect_error_naming<core::StateError>([&] { net.to(Device::cpu); }, {"tape"});
  tape.backward(ad::sum(y));
}

TEST(Module, MovingToAnAbsentDeviceThrowsAndMovesNothing) {
  if (core::device_available(Device::cuda)) GTEST_SKIP() << "a CUDA device is present";
  core::Rng rng(3);
  ScaledNet net(rng);
  const std::vector<double> weight = net.weight().value().to_vector();
  expect_error_naming<core::DeviceError>([&] { net.to(Device::cuda); }, {"cuda"});
  EXPECT_EQ(net.device(), Device::cpu);
  for (const NamedParameter& p : net.parameters())
    EXPECT_EQ(p.parameter->value().device(), Device::cpu) << p.name;
  EXPECT_EQ(net.weight().value().to_vector(), weight);
  EXPECT_FALSE(device_unavailable_reason(Device::cuda).empty());
  EXPECT_TRUE(device_unavailable_reason(Device::cpu).empty());
}

// --- with a GPU ----------------------------------------------------------------------------------

TEST(Module, CudaRoundTripMovesParametersGradientsAndBuffers) {
  if (!core::device_available(Device::cuda)) GTEST_SKIP() << "no CUDA device";
  core::Rng rng(4);
  ScaledNet net(rng);
  std::vector<std::vector<double>> values;
  for (const NamedParameter& p : net.parameters())
    values.push_back(p.parameter->value().to_vector());
  net.to(Device::cuda);
  EXPECT_EQ(net.device(), Device::cuda);
  for (const NamedParameter& p : net.parameters()) {
    EXPECT_EQ(p.parameter->value().device(), Device::cuda) << p.name;
    EXPECT_EQ(p.parameter->grad().device(), Device::cuda) << p.name;
  }
  EXPECT_EQ(net.scale().device(), Device::cuda);
  // A forward and backward run there; the gradients land on the device.
  {
    ad::Tape tape;
    const Var y = net(Tensor::full({5, 3}, 0.25).to(Device::cuda));
    EXPECT_EQ(y.device(), Device::cuda);
    tape.backward(ad::sum(y));
  }
  EXPECT_NE(net.weight().grad().to_vector(), std::vector<double>(12, 0.0));
  net.to(Device::cpu);
  EXPECT_EQ(net.device(), Device::cpu);
  std::size_t i = 0;
  for (const NamedParameter& p : net.parameters())
    EXPECT_EQ(p.parameter->value().to_vector(), values[i++]) << p.name << " changed in the trip";
  EXPECT_EQ(net.scale().to_vector(), (std::vector<double>{0.5, 1.0, 1.5, 2.0}));
}

TEST(Module, SplitAcrossDevicesIsAnErrorNamingBothTensors) {
  if (!core::device_available(Device::cuda)) GTEST_SKIP() << "no CUDA device";
  core::Rng rng(5);
  ScaledNet net(rng);
  net.weight().value() = net.weight().value().to(Device::cuda);
  expect_error_naming<core::DeviceError>([&] { net.device(); }, {"weight", "head.weight"});
  TrainOptions o;
  o.progress = ProgressMode::silent;
  const Tensor x = Tensor::full({20, 3}, 1.0), y = Tensor::full({20, 1}, 1.0);
  expect_error_naming<core::DeviceError>(
      [&] {
        Trainer trainer(
            net, {x, y}, [](std::span<const Tensor>) { return Var(); }, o);
      },
      {"weight"});
}

// The same initial weights and data trained for a few epochs on each device: the losses agree
// to float32 rounding (the split and the shuffles are the same; only the kernels differ).
TEST(Module, TrainerOnCudaFollowsTheCpuRun) {
  if (!core::device_available(Device::cuda)) GTEST_SKIP() << "no CUDA device";
  const std::int64_t n = 600;
  core::Rng data_rng(6, 0);
  std::vector<double> xs(static_cast<std::size_t>(n * 3)), ys(static_cast<std::size_t>(n));
  for (double& v : xs) v = data_rng.normal();
  for (std::int64_t i = 0; i < n; ++i) {
    const auto k = static_cast<std::size_t>(3 * i);
    ys[static_cast<std::size_t>(i)] =
        1.5 * xs[k] - 2.0 * xs[k + 1] + 0.5 * xs[k + 2] + 0.1 * data_rng.normal();
  }
  const Tensor x = Tensor::from(xs, {n, 3}), y = Tensor::from(ys, {n, 1});
  TrainOptions o;
  o.progress = ProgressMode::silent;
  o.batch_size = 50;
  o.max_epochs = 4;
  o.learning_rate = 1e-2;
  auto run = [&](Device device) {
    core::Rng rng(7);
    ScaledNet net(rng);
    net.to(device);
    const TrainResult r = train(
        net, {x, y},
        [&net](std::span<const Tensor> batch) {
          EXPECT_EQ(batch[0].device(), net.device());  // gathered where the model is
          const Var e = ad::square(ad::sub(net(batch[0]), batch[1]));
          return ad::reshape(e, {e.dim(0)});
        },
        o);
    return r;
  };
  const TrainResult cpu = run(Device::cpu), gpu = run(Device::cuda);
  ASSERT_EQ(cpu.validation_loss.size(), gpu.validation_loss.size());
  for (std::size_t e = 0; e < cpu.validation_loss.size(); ++e) {
    EXPECT_NEAR(gpu.train_loss[e], cpu.train_loss[e], 1e-4 * (1 + cpu.train_loss[e])) << e;
    EXPECT_NEAR(gpu.validation_loss[e], cpu.validation_loss[e], 1e-4 * (1 + cpu.validation_loss[e]))
        << e;
  }
  EXPECT_LT(gpu.validation_loss.back(), gpu.validation_loss.front());
}

}  // namespace
}  // namespace asbi::nn
