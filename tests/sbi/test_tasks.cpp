#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <numbers>
#include <string>
#include <utility>

#include "core/backend.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "sbi/task.hpp"
#include "sbi/task_kernels.hpp"
#include "test_util.hpp"

namespace asbi::sbi {
namespace {

constexpr std::int64_t kSims = 2000;

std::vector<double> row(const std::vector<double>& v, std::int64_t i, std::int64_t d) {
  return {v.begin() + i * d, v.begin() + (i + 1) * d};
}

bool have_reference() {
  const char* env = std::getenv("ASBI_REFERENCE_DIR");
  return env != nullptr && std::filesystem::is_directory(std::filesystem::path(env) / "sbibm");
}

TEST(Tasks, RegistryShapesAndDraws) {
  const std::vector<std::pair<std::string, std::pair<int, int>>> dims = {
      {"gaussian_linear", {10, 10}},
      {"gaussian_linear_uniform", {10, 10}},
      {"two_moons", {2, 2}},
      {"slcp", {5, 8}},
      {"gaussian_mixture", {2, 2}},
      {"bernoulli_glm", {10, 10}},
      {"bernoulli_glm_raw", {10, 100}},
      {"sir", {2, 10}},
      {"lotka_volterra", {4, 20}}};
  ASSERT_EQ(task_names().size(), dims.size() + 1);  // + slcp_distractors, below
  for (const auto& [name, d] : dims) {
    SCOPED_TRACE(name);
    const auto task = make_task(name);
    EXPECT_EQ(task->name(), name);
    EXPECT_EQ(task->theta_dim(), d.first);
    EXPECT_EQ(task->x_dim(), d.second);
    EXPECT_TRUE(task->has_likelihood());
    core::Rng rng(7, 0);
    const Tensor theta = task->prior().sample(100, rng);
    const Tensor x = task->simulator().simulate(theta, 9);
    EXPECT_EQ(x.shape(), (core::Shape{100, d.second}));
    for (double v : x.to_vector()) EXPECT_TRUE(std::isfinite(v));
    const std::vector<double> xv = x.to_vector();
    const std::vector<double> ll = task->log_likelihood(theta, row(xv, 0, d.second));
    EXPECT_TRUE(std::isfinite(ll[0]));
  }
  test_util::expect_error_naming<core::ValueError>([] { make_task("sir_ode"); },
                                                   {"sir_ode", "two_moons", "slcp"});
}

TEST(Tasks, GaussianLinearMatchesClosedForm) {
  const auto task = make_task("gaussian_linear");
  std::vector<double> theta(10), x(10);
  double expected = 0;
  for (std::size_t j = 0; j < 10; ++j) {
    theta[j] = 0.1 * static_cast<double>(j) - 0.4;
    x[j] = theta[j] + 0.05 * (j % 3 == 0 ? 1 : -1);
    const double d = x[j] - theta[j];
    expected += -0.5 * d * d / 0.1 - 0.5 * std::log(2 * std::numbers::pi * 0.1);
  }
  EXPECT_NEAR(task->log_likelihood(theta, x), expected, 1e-12);
  // Prior variance is 0.1 (not std): the sample variance of θ_1 over 20000 draws is 0.1 ± 5 SE.
  core::Rng rng(1, 0);
  const std::vector<double> t = task->prior().sample(20000, rng).to_vector();
  double ss = 0;
  for (std::size_t i = 0; i < 20000; ++i) ss += t[i * 10] * t[i * 10];
  EXPECT_NEAR(ss / 20000, 0.1, 5 * 0.1 * std::sqrt(2.0 / 20000));
}

// ∫ exp(log_likelihood) dx over a grid covering the mass: the density is normalised.
double grid_integral(const Task& task, const std::vector<double>& theta, double x0, double x1,
                     double y0, double y1, double step) {
  double total = 0;
  std::vector<double> x(2);
  for (x[0] = x0 + step / 2; x[0] < x1; x[0] += step)
    for (x[1] = y0 + step / 2; x[1] < y1; x[1] += step)
      total += std::exp(task.log_likelihood(theta, x)) * step * step;
  return total;
}

TEST(Tasks, TwoDimensionalLikelihoodsIntegrateToOne) {
  const auto moons = make_task("two_moons");
  const std::vector<double> theta = {0.3, -0.5};
  const double z1 = std::abs(theta[0] + theta[1]) / std::numbers::sqrt2;
  const double z2 = (theta[1] - theta[0]) / std::numbers::sqrt2;
  EXPECT_NEAR(grid_integral(*moons, theta, 0.25 - z1 - 0.01, 0.25 - z1 + 0.16, z2 - 0.16, z2 + 0.16,
                            0.0005),
              1.0, 0.01);
  const auto mixture = make_task("gaussian_mixture");
  EXPECT_NEAR(grid_integral(*mixture, {1.0, -2.0}, -6, 8, -9, 5, 0.01), 1.0, 1e-3);
}

TEST(Tasks, SlcpLikelihoodIsFourBivariateGaussians) {
  const auto task = make_task("slcp");
  const std::vector<double> theta = {0.5, -1.0, 1.2, -0.8, 0.7};
  const double s1 = 1.44, s2 = 0.64, rho = std::tanh(0.7);
  Gaussian g({0.5, -1.0}, {s1 * s1 + 1e-6, rho * s1 * s2, rho * s1 * s2, s2 * s2 + 1e-6});
  const std::vector<double> x = {0.1, -0.9, 1.5, -1.2, 0.4, -0.7, -1.1, -1.5};
  double expected = 0;
  for (std::size_t k = 0; k < 4; ++k)
    expected += g.log_prob(Tensor::from({x[2 * k], x[2 * k + 1]}, {1, 2}, DType::f64))[0];
  EXPECT_NEAR(task->log_likelihood(theta, x), expected, 1e-10);
  // Simulated draws have the mixture's moments: mean θ1:2 and variance θ3⁴.
  double sum = 0, ss = 0;
  const std::int64_t n = 5000;
  std::vector<double> rep;
  for (std::int64_t i = 0; i < n; ++i) rep.insert(rep.end(), theta.begin(), theta.end());
  const std::vector<double> xs =
      task->simulator().simulate(Tensor::from(rep, {n, 5}, DType::f64), 3).to_vector();
  for (std::int64_t i = 0; i < n; ++i) {
    const double v = xs[static_cast<std::size_t>(i * 8)];  // first coordinate of draw 1
    sum += v;
    ss += (v - 0.5) * (v - 0.5);
  }
  EXPECT_NEAR(sum / n, 0.5, 5 * s1 / std::sqrt(n));
  EXPECT_NEAR(ss / n, s1 * s1, 5 * s1 * s1 * std::sqrt(2.0 / n));
}

// Observation 1 of each task, regenerated in distribution: x_o's log-likelihood at θ* must be
// typical of simulations from θ* (above their 0.1% quantile), and θ* lies in the prior support.
TEST(Tasks, ReferenceObservationIsPlausible) {
  if (!have_reference())
    GTEST_SKIP() << "ASBI_REFERENCE_DIR/sbibm not found; reference checks skipped";
  for (const std::string& name : task_names()) {
    SCOPED_TRACE(name);
    const auto task = make_task(name);
    if (!task->has_likelihood()) continue;
    const std::vector<double> theta = reference_true_parameters(name, 1);
    const std::vector<double> x_o = reference_observation(name, 1);
    ASSERT_EQ(static_cast<std::int64_t>(theta.size()), task->theta_dim());
    ASSERT_EQ(static_cast<std::int64_t>(x_o.size()), task->x_dim());
    EXPECT_TRUE(std::isfinite(task->prior().log_prob_row(theta)));
    std::vector<double> rep;
    for (std::int64_t i = 0; i < kSims; ++i) rep.insert(rep.end(), theta.begin(), theta.end());
    const Tensor thetas = Tensor::from(rep, {kSims, task->theta_dim()}, DType::f64);
    const std::vector<double> xs = task->simulator().simulate(thetas, 17).to_vector();
    std::vector<double> lls;
    for (std::int64_t i = 0; i < kSims; ++i)
      lls.push_back(task->log_likelihood(theta, row(xs, i, task->x_dim())));
    std::sort(lls.begin(), lls.end());
    EXPECT_GT(task->log_likelihood(theta, x_o), lls[kSims / 1000]);
  }
  // Gaussian linear: the Mahalanobis distance of x_o from θ* under N(θ*, 0.1 I) is below the
  // 99.9% chi-square(10) quantile, 29.59.
  const std::vector<double> theta = reference_true_parameters("gaussian_linear", 1);
  const std::vector<double> x_o = reference_observation("gaussian_linear", 1);
  double d2 = 0;
  for (std::size_t j = 0; j < 10; ++j) d2 += (x_o[j] - theta[j]) * (x_o[j] - theta[j]) / 0.1;
  EXPECT_LT(d2, 29.59);
  // The summary statistic is sufficient: both GLM variants give the same likelihood at θ*.
  const std::vector<double> glm_theta = reference_true_parameters("bernoulli_glm", 1);
  EXPECT_NEAR(make_task("bernoulli_glm")
                  ->log_likelihood(glm_theta, reference_observation("bernoulli_glm", 1)),
              make_task("bernoulli_glm_raw")
                  ->log_likelihood(glm_theta, reference_observation("bernoulli_glm_raw", 1)),
              1e-3);
}

TEST(Tasks, SlcpDistractorsEmbedSlcpAtFixedPositions) {
  if (!have_reference())
    GTEST_SKIP() << "ASBI_REFERENCE_DIR/sbibm not found; slcp_distractors needs its data files";
  const auto task = make_task("slcp_distractors");
  EXPECT_EQ(task->theta_dim(), 5);
  EXPECT_EQ(task->x_dim(), 100);
  EXPECT_FALSE(task->has_likelihood());
  // TASKS.md: SLCP dims 0..7 land at output positions 22, 33, 23, 67, 42, 21, 16, 90.
  const std::array<std::size_t, 8> pos = {22, 33, 23, 67, 42, 21, 16, 90};
  const std::vector<double> x_o = reference_observation("slcp_distractors", 1);
  const std::vector<double> slcp_o = reference_observation("slcp", 1);
  for (std::size_t k = 0; k < 8; ++k) EXPECT_NEAR(x_o[pos[k]], slcp_o[k], 1e-6);
  // The simulated SLCP part matches the slcp task's row streams, and the distractors do not
  // depend on θ.
  const Tensor theta =
      Tensor::from({0.5, -1.0, 1.2, -0.8, 0.7, -2.0, 2.0, 0.3, 1.1, -0.4}, {2, 5}, DType::f64);
  const std::vector<double> x = task->simulator().simulate(theta, 21).to_vector();
  const std::vector<double> s = make_task("slcp")->simulator().simulate(theta, 21).to_vector();
  std::size_t same = 0;
  for (std::size_t j = 0; j < 100; ++j) same += x[j] == x[100 + j] ? 1 : 0;
  for (std::size_t k = 0; k < 8; ++k) {
    EXPECT_EQ(x[pos[k]], s[k]);
    EXPECT_EQ(x[100 + pos[k]], s[8 + k]);
  }
  EXPECT_EQ(same, 0u);  // different row streams give different distractors
  for (double v : x) EXPECT_TRUE(std::isfinite(v));
}

TEST(Tasks, MissingReferenceFileNamesThePath) {
  test_util::expect_error_naming<core::IoError>(
      [] { read_reference_rows("/nonexistent/asbi/obs.csv"); }, {"/nonexistent/asbi/obs.csv"});
}

// ---- the shared CPU/GPU kernels (sbi/task_kernels.hpp) ----------------------------------------

// Equal to rounding: the library is built with -march=native and the test is not, so the
// compiler may fuse a·b + c into one FMA in one of them (nvcc fuses on the GPU too).
bool same_to_rounding(double got, double want) {
  return std::abs(got - want) <= 1e-14 * std::max(1.0, std::abs(want));
}

const std::vector<std::pair<std::string, kernels::TaskKernel>> kKernelTasks = {
    {"gaussian_linear", kernels::TaskKernel::gaussian_linear},
    {"gaussian_linear_uniform", kernels::TaskKernel::gaussian_linear_uniform},
    {"two_moons", kernels::TaskKernel::two_moons},
    {"slcp", kernels::TaskKernel::slcp},
    {"gaussian_mixture", kernels::TaskKernel::gaussian_mixture}};

// The GPU draws through PhiloxRng what the CPU draws through core::Rng: the same bits for any
// mix of uniforms and normals (the cached second normal, half-used blocks), at any counter.
TEST(TaskKernels, PhiloxRngMatchesCoreRng) {
  for (const std::uint64_t counter : {std::uint64_t{0}, std::uint64_t{12345}}) {
    core::Rng reference(0x1234abcdULL, 77, counter);
    kernels::PhiloxRng rng(0x1234abcdULL, 77, counter);
    core::Rng pattern(5, 0);  // decides the next kind of draw
    for (int i = 0; i < 5000; ++i) {
      const std::uint32_t kind = pattern.next_u32() % 3;
      if (kind == 0) {
        ASSERT_EQ(rng.uniform(), reference.uniform()) << "draw " << i;
      } else if (kind == 1) {
        ASSERT_EQ(rng.normal(), reference.normal()) << "draw " << i;
      } else {
        ASSERT_EQ(rng.next_u32(), reference.next_u32()) << "draw " << i;
      }
    }
  }
}

// normal_at / uniform_at, which a GPU thread uses for one set element, are the bulk fills'
// elements, also across the block boundaries of an odd offset.
TEST(TaskKernels, ElementDrawsMatchTheBulkFills) {
  const std::uint64_t seed = 99, stream = kernels::set_stream_of(kernels::kSetNoisePurpose, 7);
  std::vector<double> z(1001), u(1001);
  core::fill_normal(seed, stream, 3, std::span(z));
  core::fill_uniform(seed, stream, 3, std::span(u));
  for (std::size_t i = 0; i < z.size(); ++i) {
    ASSERT_EQ(kernels::normal_at(seed, stream, 3 + i), z[i]) << "element " << i;
    ASSERT_EQ(kernels::uniform_at(seed, stream, 3 + i), u[i]) << "element " << i;
  }
}

// Each kernel task's prior is the task's Prior object: same support, same log density (to the
// last bits of log 2π), and sample_prior draws what Prior::sample draws from the same Rng.
TEST(TaskKernels, PriorsMatchTheTaskPriors) {
  for (const auto& [name, kernel] : kKernelTasks) {
    SCOPED_TRACE(name);
    const auto task = make_task(name);
    ASSERT_EQ(task->kernel(), kernel);
    const std::int64_t d = task->theta_dim();
    core::Rng rng(3, 0), copy(3, 0);
    const std::vector<double> theta = task->prior().sample(200, rng).to_vector();
    for (std::int64_t i = 0; i < 200; ++i) {
      std::vector<double> row(static_cast<std::size_t>(d));
      kernels::sample_prior(kernel, copy, row.data());
      for (std::int64_t j = 0; j < d; ++j)
        ASSERT_PRED2(same_to_rounding, row[static_cast<std::size_t>(j)],
                     theta[static_cast<std::size_t>(i * d + j)]);
      // Inside, then pushed outside a box (a Gaussian has no outside).
      for (const double shift : {0.0, 25.0}) {
        row[0] += shift;
        const double expected = task->prior().log_prob_row(row);
        const double got = kernels::log_prior(kernel, row.data());
        if (std::isinf(expected)) {
          EXPECT_EQ(got, expected);
        } else {
          EXPECT_PRED2(same_to_rounding, got, expected);
        }
      }
    }
  }
  // Box edges: closed below, open above, as BoxUniform.
  const std::vector<double> low = {-1.0, 0.0}, high = {1.0, 0.0};
  EXPECT_TRUE(std::isfinite(kernels::log_prior(kernels::TaskKernel::two_moons, low.data())));
  EXPECT_EQ(kernels::log_prior(kernels::TaskKernel::two_moons, high.data()),
            -std::numeric_limits<double>::infinity());
}

// The CPU simulator (core::Rng) and a GPU thread's generator (PhiloxRng) give the same rows, and
// the batched simulator's row i is the kernel at stream first_row + i.
TEST(TaskKernels, SimulatorRowsAreTheKernelAtTheRowStream) {
  for (const auto& [name, kernel] : kKernelTasks) {
    SCOPED_TRACE(name);
    const auto task = make_task(name);
    const std::int64_t d = task->theta_dim(), xd = task->x_dim(), b = 64;
    core::Rng rng(11, 0);
    const Tensor theta = task->prior().sample(b, rng);
    const std::vector<double> x = task->simulator().simulate(theta, 5, 1000).to_vector();
    const std::vector<double> th = theta.to_vector();
    for (std::int64_t i = 0; i < b; ++i) {
      kernels::PhiloxRng device_rng(5, 1000 + static_cast<std::uint64_t>(i));
      std::vector<double> row(static_cast<std::size_t>(xd));
      kernels::simulate(kernel, th.data() + i * d, row.data(), device_rng);
      for (std::int64_t j = 0; j < xd; ++j)
        ASSERT_PRED2(same_to_rounding, row[static_cast<std::size_t>(j)],
                     x[static_cast<std::size_t>(i * xd + j)])
            << "row " << i << " coordinate " << j;
    }
  }
}

TEST(TaskKernels, NonKernelTasksHaveNoKernel) {
  EXPECT_FALSE(make_task("bernoulli_glm")->kernel().has_value());
  EXPECT_FALSE(make_task("sir")->kernel().has_value());
}

// θ on a CUDA device needs x there too; without a device (or a CUDA build) the tensors cannot be
// made, and on a GPU machine a CPU x is a DeviceError.
TEST(TaskKernels, DeviceThetaNeedsDeviceX) {
  if (!core::device_available(core::Device::cuda)) GTEST_SKIP() << "no CUDA device";
  const auto task = make_task("two_moons");
  const Tensor theta = Tensor::zeros({4, 2}, DType::f32, core::Device::cuda);
  Tensor x = Tensor::zeros({4, 2}, DType::f32);
  test_util::expect_error_naming<core::DeviceError>(
      [&] { task->simulator().simulate(theta, x, 1, 0); }, {"cuda", "cpu"});
}

}  // namespace
}  // namespace asbi::sbi
