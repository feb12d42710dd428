// The GPU simulators and chains (sbi/cuda/) against the CPU: the same kernels from the same
// counters must give the same x (to the rounding of CUDA's libm and of fused multiply-adds), the
// same sets, and chains that agree with the host chains and with the analytic gaussian_linear
// posterior and sbibm's two_moons reference samples. Every test skips without a CUDA device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "core/backend.hpp"
#include "core/rng.hpp"
#include "sbi/csv.hpp"
#include "sbi/diagnostics.hpp"
#include "sbi/mcmc.hpp"
#include "sbi/set_task.hpp"
#include "sbi/task.hpp"

namespace asbi::sbi {
namespace {

using core::Device;
using core::DType;

#define ASBI_SKIP_WITHOUT_CUDA()                          \
  do {                                                    \
    if (!core::device_available(Device::cuda))            \
      GTEST_SKIP() << "no CUDA device";                   \
  } while (0)

const std::vector<std::string> kKernelTasks = {"gaussian_linear", "gaussian_linear_uniform",
                                               "two_moons", "slcp", "gaussian_mixture"};

// |a − b| within `ulps` units in the last place of the dtype, relative to max(1, |b|): CUDA's log,
// sin, cos and tanh are within a few ulp of glibc's, and nvcc fuses a·b + c where g++ may not.
bool close(double a, double b, DType dtype, double ulps) {
  const double eps = dtype == DType::f64 ? 0x1p-52 : 0x1p-23;
  return std::abs(a - b) <= ulps * eps * std::max(1.0, std::abs(b));
}

TEST(CudaSimulators, RowsMatchTheCpu) {
  ASBI_SKIP_WITHOUT_CUDA();
  for (const std::string& name : kKernelTasks) {
    for (const DType dtype : {DType::f64, DType::f32}) {
      SCOPED_TRACE(name + (dtype == DType::f64 ? " f64" : " f32"));
      const auto task = make_task(name);
      core::Rng rng(3, 0);
      const Tensor theta = task->prior().sample(10000, rng, dtype);
      const std::vector<double> cpu = task->simulator().simulate(theta, 17, 123).to_vector();
      const Tensor x_gpu = task->simulator().simulate(theta.to(Device::cuda), 17, 123);
      ASSERT_EQ(x_gpu.device(), Device::cuda);
      ASSERT_EQ(x_gpu.dtype(), dtype);
      const std::vector<double> gpu = x_gpu.to_vector();
      ASSERT_EQ(gpu.size(), cpu.size());
      // float64: a few ulp of the largest transcendental error; float32: the float64 values
      // round to the same float, or to neighbours where they straddle a boundary (1 ulp).
      std::int64_t far = 0;
      for (std::size_t i = 0; i < cpu.size(); ++i)
        if (!close(gpu[i], cpu[i], dtype, dtype == DType::f64 ? 64 : 1)) ++far;
      EXPECT_EQ(far, 0) << "of " << cpu.size() << " values";
    }
  }
}

TEST(CudaSimulators, ScalarSetsMatchTheCpu) {
  ASBI_SKIP_WITHOUT_CUDA();
  for (const std::string name : {"gaussian_nuisance", "mixture_nuisance"}) {
    SCOPED_TRACE(name);
    const auto task = make_set_task(name);
    core::Rng rng(4, 0);
    const Tensor theta = task->prior().sample(64, rng);
    const Tensor cpu = task->simulate_sets(theta, 5000, 31, 1000);
    const Tensor gpu = task->simulate_sets(theta.to(Device::cuda), 5000, 31, 1000);
    ASSERT_EQ(gpu.device(), Device::cuda);
    ASSERT_EQ(gpu.shape(), cpu.shape());
    const std::vector<double> a = gpu.to_vector(), b = cpu.to_vector();
    std::int64_t far = 0, exact = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
      far += close(a[i], b[i], DType::f32, 1) ? 0 : 1;
      exact += a[i] == b[i] ? 1 : 0;
    }
    EXPECT_EQ(far, 0);
    EXPECT_GT(static_cast<double>(exact), 0.99 * static_cast<double>(a.size()));
  }
  // gp_replicates has no GPU kernel: a DeviceError, not a silent CPU fallback.
  const auto gp = make_set_task("gp_replicates");
  EXPECT_THROW(gp->simulate_sets(Tensor::full({1, 2}, 0.5, DType::f64, Device::cuda), 10, 1, 0),
               core::DeviceError);
}

std::vector<double> simulated_observation(const Task& task, std::uint64_t seed) {
  core::Rng rng(seed, 0);
  return task.simulator().simulate(task.prior().sample(1, rng), seed).to_vector();
}

// The GPU chains make the host chains' moves: a last-bit difference can flip an accept decision
// near its threshold, after which that chain goes its own way, but most chains must agree
// throughout a short run.
TEST(CudaChains, FollowTheHostChains) {
  ASBI_SKIP_WITHOUT_CUDA();
  for (const std::string name : {"two_moons", "slcp", "gaussian_linear"}) {
    for (const SamplerKind kind : {SamplerKind::slice, SamplerKind::mh}) {
      SCOPED_TRACE(name + " " + sbi::name(kind));
      const auto task = make_task(name);
      const std::vector<double> x_o = simulated_observation(*task, 6);
      McmcOptions o;
      o.sampler = kind;
      o.chains = 512;
      o.warmup = 30;
      o.init_candidates = 100;
      o.seed = 8;
      const McmcResult cpu = sample_task_posterior(*task, x_o, 512 * 10, o, Device::cpu);
      const McmcResult gpu = sample_task_posterior(*task, x_o, 512 * 10, o, Device::cuda);
      ASSERT_EQ(gpu.chains.shape(), cpu.chains.shape());
      const std::vector<double> a = gpu.chains.to_vector(), b = cpu.chains.to_vector();
      const std::size_t per_chain = a.size() / 512;
      int agreeing = 0;
      for (std::size_t c = 0; c < 512; ++c) {
        bool same = true;
        for (std::size_t k = c * per_chain; k < (c + 1) * per_chain; ++k)
          same = same && std::abs(a[k] - b[k]) <= 1e-9 * std::max(1.0, std::abs(b[k]));
        agreeing += same ? 1 : 0;
      }
      EXPECT_GE(agreeing, 460) << "of 512 chains";
      EXPECT_NEAR(static_cast<double>(gpu.evaluations), static_cast<double>(cpu.evaluations),
                  0.02 * static_cast<double>(cpu.evaluations));
    }
  }
}

// 4096 chains on the GPU against the analytic posterior N(x_o / 2, 0.05 I), tolerances from the
// measured ESS (of the squared deviations for the variances).
TEST(CudaChains, GaussianLinearMatchesTheAnalyticPosterior) {
  ASBI_SKIP_WITHOUT_CUDA();
  const auto task = make_task("gaussian_linear");
  const std::vector<double> x_o = simulated_observation(*task, 1);
  for (const SamplerKind kind : {SamplerKind::slice, SamplerKind::mh}) {
    SCOPED_TRACE(sbi::name(kind));
    McmcOptions o;
    o.sampler = kind;
    o.chains = 4096;
    o.warmup = kind == SamplerKind::mh ? 300 : 50;
    o.thin = kind == SamplerKind::mh ? 5 : 1;
    o.init_candidates = 100;
    o.seed = 12;
    const std::int64_t n = 4096 * 8;
    const McmcResult r = sample_task_posterior(*task, x_o, n, o, Device::cuda);
    const std::int64_t d = 10;
    const std::vector<double> s = r.samples.to_vector();
    const std::vector<double> flat = r.chains.to_vector();
    for (std::int64_t j = 0; j < d; ++j) {
      double mean = 0;
      for (std::int64_t i = 0; i < n; ++i) mean += s[static_cast<std::size_t>(i * d + j)];
      mean /= static_cast<double>(n);
      double var = 0;
      for (std::int64_t i = 0; i < n; ++i) {
        const double v = s[static_cast<std::size_t>(i * d + j)] - mean;
        var += v * v;
      }
      var /= static_cast<double>(n - 1);
      // ESS of the squared deviations along the chains [C, T, 1].
      Tensor squares = Tensor::empty({4096, n / 4096, 1}, DType::f64);
      double* q = squares.data<double>();
      for (std::int64_t k = 0; k < n; ++k) {
        const double v = flat[static_cast<std::size_t>(k * d + j)] - mean;
        q[k] = v * v;
      }
      const double ess_mean = std::min(r.ess[static_cast<std::size_t>(j)], static_cast<double>(n));
      const double ess_var = effective_sample_size(squares)[0];
      ASSERT_GT(std::min(ess_mean, ess_var), 2000);
      EXPECT_NEAR(mean, x_o[static_cast<std::size_t>(j)] / 2, 4.5 * std::sqrt(0.05 / ess_mean));
      EXPECT_NEAR(var, 0.05, 4.5 * 0.05 * std::sqrt(2 / ess_var));
    }
  }
}

// The reference-posterior settings on the GPU against sbibm's shipped two_moons samples (the CPU
// sampler's test in test_mcmc.cpp, ReferencePosterior.TwoMoonsC2stAgainstShippedSamples).
TEST(CudaChains, TwoMoonsC2stAgainstShippedSamples) {
  ASBI_SKIP_WITHOUT_CUDA();
  const char* env = std::getenv("ASBI_REFERENCE_DIR");
  if (env == nullptr || !std::filesystem::is_directory(std::filesystem::path(env) / "sbibm"))
    GTEST_SKIP() << "ASBI_REFERENCE_DIR/sbibm not found";
  const auto task = make_task("two_moons");
  const std::vector<double> x_o = reference_observation("two_moons", 1);
  McmcOptions o;
  o.chains = 1000;
  o.warmup = 100;
  o.thin = 5;
  o.seed = 2;
  const McmcResult r = sample_task_posterior(*task, x_o, 1000, o, Device::cuda);
  const Tensor reference =
      read_csv((sbibm_reference_dir() / "two_moons" / "num_observation_1" /
                "reference_posterior_samples.csv")
                   .string())
          .rows(0, 1000);
  const double acc = c2st(reference, r.samples);
  RecordProperty("c2st", std::to_string(acc));
  EXPECT_LT(acc, 0.56);  // chance 0.5 ± 0.016 (sd) at 1000 + 1000 rows; one moon ≈ 0.75
}

}  // namespace
}  // namespace asbi::sbi
