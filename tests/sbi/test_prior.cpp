#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <numbers>

#include "core/error.hpp"
#include "sbi/prior.hpp"
#include "test_util.hpp"

namespace asbi::sbi {
namespace {

using test_util::expect_error_naming;

// Column means and the covariance of a [n, D] sample.
struct Moments {
  std::vector<double> mean, cov;
};
Moments moments(const Tensor& t) {
  const std::vector<double> v = t.to_vector();
  const auto n = static_cast<std::size_t>(t.dim(0)), d = static_cast<std::size_t>(t.dim(1));
  Moments m{std::vector<double>(d, 0.0), std::vector<double>(d * d, 0.0)};
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < d; ++j) m.mean[j] += v[i * d + j] / static_cast<double>(n);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t a = 0; a < d; ++a)
      for (std::size_t b = 0; b < d; ++b)
        m.cov[a * d + b] +=
            (v[i * d + a] - m.mean[a]) * (v[i * d + b] - m.mean[b]) / static_cast<double>(n - 1);
  return m;
}

constexpr std::int64_t kN = 20000;

TEST(Prior, BoxUniformMomentsAndSupport) {
  BoxUniform prior({-1, 2}, {3, 2.5});
  core::Rng rng(11, 0);
  const Tensor t = prior.sample(kN, rng);
  EXPECT_EQ(t.shape(), (core::Shape{kN, 2}));
  EXPECT_EQ(t.dtype(), DType::f64);
  const Moments m = moments(t);
  const double var0 = 16.0 / 12.0, var1 = 0.25 / 12.0;
  // Tolerances: 5 standard errors of the mean and of the variance (≈ var·√(0.8/n) for uniforms).
  EXPECT_NEAR(m.mean[0], 1.0, 5 * std::sqrt(var0 / kN));
  EXPECT_NEAR(m.mean[1], 2.25, 5 * std::sqrt(var1 / kN));
  EXPECT_NEAR(m.cov[0], var0, 5 * var0 * std::sqrt(0.8 / kN));
  EXPECT_NEAR(m.cov[3], var1, 5 * var1 * std::sqrt(0.8 / kN));
  for (double lp : prior.log_prob(t)) EXPECT_DOUBLE_EQ(lp, -std::log(4.0 * 0.5));
  const Tensor out = Tensor::from({0.0, 2.6, 3.0, 2.1, -1.0, 2.0}, {3, 2}, DType::f32);
  const std::vector<bool> in = prior.in_support(out);
  EXPECT_FALSE(in[0]);
  EXPECT_FALSE(in[1]);  // the upper bound is excluded
  EXPECT_TRUE(in[2]);
  EXPECT_EQ(prior.log_prob(out)[0], -std::numeric_limits<double>::infinity());
  EXPECT_EQ(prior.sample(4, rng, DType::f32).dtype(), DType::f32);
}

TEST(Prior, GaussianMomentsAndDensity) {
  const std::vector<double> cov = {2.0, 0.6, 0.6, 1.0};
  Gaussian prior({1.0, -2.0}, cov);
  core::Rng rng(12, 0);
  const Moments m = moments(prior.sample(kN, rng));
  EXPECT_NEAR(m.mean[0], 1.0, 5 * std::sqrt(2.0 / kN));
  EXPECT_NEAR(m.mean[1], -2.0, 5 * std::sqrt(1.0 / kN));
  // SE of a Gaussian (co)variance estimate: √((σ_ab² + σ_aa σ_bb) / n).
  for (std::size_t a = 0; a < 2; ++a)
    for (std::size_t b = 0; b < 2; ++b)
      EXPECT_NEAR(m.cov[a * 2 + b], cov[a * 2 + b],
                  5 * std::sqrt((cov[a * 2 + b] * cov[a * 2 + b] + cov[a * 3] * cov[b * 3]) / kN));
  // Closed form at (0, 0): d = (-1, 2), det = 1.64, Σ⁻¹ = [[1, -0.6], [-0.6, 2]] / 1.64.
  const double q = (1.0 * 1 + 2 * 0.6 * 1 * 2 + 2.0 * 4) / 1.64;
  const double expected = -0.5 * q - 0.5 * std::log(1.64) - std::log(2 * std::numbers::pi);
  EXPECT_NEAR(prior.log_prob(Tensor::from({0.0, 0.0}, {1, 2}, DType::f64))[0], expected, 1e-12);
}

TEST(Prior, GaussianFromPrecisionInverts) {
  const std::vector<double> prec = {4.0, 1.0, 0.0, 1.0, 3.0, -1.0, 0.0, -1.0, 2.0};
  const Gaussian g = Gaussian::from_precision({0, 0, 0}, prec);
  const std::vector<double>& c = g.covariance();
  for (std::size_t i = 0; i < 3; ++i)
    for (std::size_t j = 0; j < 3; ++j) {
      double s = 0;
      for (std::size_t k = 0; k < 3; ++k) s += prec[i * 3 + k] * c[k * 3 + j];
      EXPECT_NEAR(s, i == j ? 1.0 : 0.0, 1e-12);
    }
}

TEST(Prior, LogNormalMomentsAndDensity) {
  LogNormal prior({std::log(0.4), -3.0}, {0.5, 0.2});
  core::Rng rng(13, 0);
  const Moments m = moments(prior.sample(kN, rng));
  for (std::size_t i = 0; i < 2; ++i) {
    const double mu = i == 0 ? std::log(0.4) : -3.0, s = i == 0 ? 0.5 : 0.2;
    const double mean = std::exp(mu + s * s / 2);
    const double var = (std::exp(s * s) - 1) * mean * mean;
    EXPECT_NEAR(m.mean[i], mean, 5 * std::sqrt(var / kN));
  }
  const double x = 0.3, l = std::log(x), z = (l - std::log(0.4)) / 0.5;
  const double lp0 = -0.5 * z * z - std::log(0.5 * x * std::sqrt(2 * std::numbers::pi));
  const double z1 = (std::log(0.05) + 3.0) / 0.2;
  const double lp1 = -0.5 * z1 * z1 - std::log(0.2 * 0.05 * std::sqrt(2 * std::numbers::pi));
  EXPECT_NEAR(prior.log_prob(Tensor::from({x, 0.05}, {1, 2}, DType::f64))[0], lp0 + lp1, 1e-12);
  EXPECT_FALSE(prior.in_support(Tensor::from({-0.1, 0.05}, {1, 2}, DType::f64))[0]);
}

TEST(Prior, ProductConcatenatesColumns) {
  auto box = std::make_shared<BoxUniform>(std::vector<double>{0.0}, std::vector<double>{2.0});
  auto gauss = std::make_shared<Gaussian>(std::vector<double>{0.0, 0.0},
                                          std::vector<double>{1.0, 0.0, 0.0, 1.0});
  Product prior({box, gauss});
  EXPECT_EQ(prior.dim(), 3);
  core::Rng rng(14, 0);
  const Tensor t = prior.sample(1000, rng);
  EXPECT_EQ(t.shape(), (core::Shape{1000, 3}));
  const std::vector<double> v = t.to_vector();
  for (std::size_t i = 0; i < 1000; ++i) EXPECT_TRUE(v[i * 3] >= 0 && v[i * 3] < 2);
  const double lp = prior.log_prob(Tensor::from({1.0, 0.0, 0.0}, {1, 3}, DType::f64))[0];
  EXPECT_NEAR(lp, -std::log(2.0) - std::log(2 * std::numbers::pi), 1e-12);
}

TEST(Prior, BadParametersAreNamed) {
  expect_error_naming<core::ValueError>([] { BoxUniform({0, 1}, {1, 1}); }, {"low[1]", "high[1]"});
  expect_error_naming<core::ValueError>([] { BoxUniform({0}, {1, 2}); }, {"same", "1", "2"});
  expect_error_naming<core::ValueError>(
      [] {
        Gaussian({0, 0}, {1, 2, 2, 1});
      },
      {"covariance", "positive-definite"});
  expect_error_naming<core::ValueError>(
      [] {
        Gaussian({0, 0}, {1, 0, 0});
      },
      {"covariance", "4", "3"});
  expect_error_naming<core::ValueError>([] { LogNormal({0}, {-1}); }, {"sigma[0]"});
  BoxUniform box({0, 0}, {1, 1});
  expect_error_naming<core::ShapeError>(
      [&] {
        box.log_prob(Tensor::zeros({2, 3}, DType::f64));
      },
      {"[n, 2]"});
}

}  // namespace
}  // namespace asbi::sbi
