// Flows and devices: every tensor a flow keeps besides its parameters (MADE masks, LULinear's
// constants, the standardisation statistics) is a registered buffer, so Module::to moves it; with
// a GPU, a flow moved there gives the CPU's log densities and draws to float32 rounding.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "autodiff/tape.hpp"
#include "core/backend.hpp"
#include "flows/flow.hpp"

namespace asbi::flows {
namespace {

std::unique_ptr<ConditionalFlow> standardized_maf(std::uint64_t seed) {
  core::Rng rng(seed, 0);
  FlowInputs inputs;
  inputs.target =
      nn::Standardizer(Tensor::from({0.5, -1.0, 2.0}, {3}), Tensor::from({2.0, 0.5, 1.0}, {3}));
  inputs.context = nn::Standardizer(Tensor::from({1.0, 1.0}, {2}), Tensor::from({3.0, 0.25}, {2}));
  return maf(3, 2, rng, {.transforms = 2, .hidden = 8}, std::move(inputs));
}

std::unique_ptr<ConditionalFlow> small_nsf(std::uint64_t seed) {
  core::Rng rng(seed, 0);
  return nsf(3, 2, rng, {.transforms = 2, .hidden = 8});
}

TEST(FlowDevice, EveryNonParameterTensorIsARegisteredBuffer) {
  // The flows outlive the buffer lists: a buffer points into its flow.
  const auto maf_flow = standardized_maf(1);
  const auto maf_buffers = maf_flow->registered_buffers();
  std::set<std::string> suffixes;
  for (const nn::NamedBuffer& b : maf_buffers) {
    EXPECT_TRUE(b.tensor->defined()) << b.name;
    suffixes.insert(b.name.substr(b.name.rfind('.') + 1));
  }
  EXPECT_EQ(suffixes, (std::set<std::string>{"mask", "mean", "std"}));
  // Two MAF layers of a 3-feature MADE with 2 blocks: input, 2 hidden and output masks each.
  EXPECT_EQ(std::count_if(maf_buffers.begin(), maf_buffers.end(),
                          [](const nn::NamedBuffer& b) { return b.name.ends_with(".mask"); }),
            2 * 4);
  const auto nsf_flow = small_nsf(1);
  bool one_zero = false;
  for (const nn::NamedBuffer& b : nsf_flow->registered_buffers())
    one_zero = one_zero || b.name.ends_with("one_zero");
  EXPECT_TRUE(one_zero) << "LULinear's constants must move with the flow";
}

TEST(FlowDevice, CudaFlowMatchesTheCpu) {
  if (!core::device_available(core::Device::cuda)) GTEST_SKIP() << "no CUDA device";
  for (int kind = 0; kind < 2; ++kind) {
    auto cpu = kind == 0 ? standardized_maf(2) : small_nsf(2);
    auto gpu = kind == 0 ? standardized_maf(2) : small_nsf(2);
    gpu->to(core::Device::cuda);
    EXPECT_EQ(gpu->device(), core::Device::cuda);
    core::Rng data(3, 0);
    std::vector<double> a(60), b(40);
    for (double& v : a) v = data.normal();
    for (double& v : b) v = data.normal();
    const Tensor ta = Tensor::from(a, {20, 3}), tb = Tensor::from(b, {20, 2});
    ad::NoGrad no_grad;
    const std::vector<double> lp_cpu = cpu->log_prob(ta, tb).value().to_vector();
    const Var lp = gpu->log_prob(ta.to(core::Device::cuda), tb.to(core::Device::cuda));
    EXPECT_EQ(lp.device(), core::Device::cuda);
    const std::vector<double> lp_gpu = lp.value().to_vector();
    for (std::size_t i = 0; i < lp_cpu.size(); ++i)
      EXPECT_NEAR(lp_gpu[i], lp_cpu[i], 1e-4 * (1 + std::abs(lp_cpu[i]))) << "row " << i;
    core::Rng r1(4, 1), r2(4, 1);
    const Tensor context = tb.rows(0, 1);
    const std::vector<double> s_cpu = cpu->sample(50, context, r1).to_vector();
    const Tensor s = gpu->sample(50, context.to(core::Device::cuda), r2);
    EXPECT_EQ(s.device(), core::Device::cuda);
    const std::vector<double> s_gpu = s.to_vector();
    for (std::size_t i = 0; i < s_cpu.size(); ++i)
      EXPECT_NEAR(s_gpu[i], s_cpu[i], 1e-4 * (1 + std::abs(s_cpu[i]))) << "entry " << i;
  }
}

}  // namespace
}  // namespace asbi::flows
