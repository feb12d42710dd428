// ∂ log p / ∂θ of every prior against central finite differences of log_prob_row.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <vector>

#include "core/error.hpp"
#include "sbi/prior.hpp"

namespace asbi::sbi {
namespace {

// Checks the analytic gradient at each row of `points` against central differences with step h;
// the error of a central difference is O(h² f‴), so 1e-6 relative is ample at h = 1e-5.
void expect_gradient_matches_differences(const Prior& prior, const std::vector<double>& points) {
  const auto d = static_cast<std::size_t>(prior.dim());
  ASSERT_EQ(points.size() % d, 0u);
  const std::int64_t n = static_cast<std::int64_t>(points.size() / d);
  const Tensor grad = prior.log_prob_gradient(Tensor::from(points, {n, prior.dim()}, DType::f64));
  const std::vector<double> g = grad.to_vector();
  constexpr double h = 1e-5;
  for (std::int64_t i = 0; i < n; ++i) {
    std::vector<double> theta(points.begin() + static_cast<std::ptrdiff_t>(i * d),
                              points.begin() + static_cast<std::ptrdiff_t>((i + 1) * d));
    for (std::size_t j = 0; j < d; ++j) {
      std::vector<double> up = theta, down = theta;
      up[j] += h;
      down[j] -= h;
      const double numeric = (prior.log_prob_row(up) - prior.log_prob_row(down)) / (2 * h);
      const double analytic = g[static_cast<std::size_t>(i) * d + j];
      EXPECT_NEAR(analytic, numeric, 1e-6 * (1 + std::abs(numeric)))
          << "row " << i << ", dimension " << j;
    }
  }
}

TEST(PriorGradient, GaussianFullCovarianceMatchesFiniteDifferences) {
  // A correlated 3-D covariance, so that both triangular solves matter.
  const Gaussian prior({0.5, -1.0, 2.0}, {2.0, 0.6, -0.3, 0.6, 1.0, 0.2, -0.3, 0.2, 0.5});
  EXPECT_TRUE(prior.has_log_prob_gradient());
  expect_gradient_matches_differences(prior, {0.0, 0.0, 0.0, 1.3, -2.2, 2.7, -3.0, 4.0, -1.0});
  // At the mean the density is flat.
  for (double v : prior.log_prob_gradient(Tensor::from({0.5, -1.0, 2.0}, {1, 3}, DType::f64))
                      .to_vector())
    EXPECT_NEAR(v, 0.0, 1e-12);
}

TEST(PriorGradient, LogNormalMatchesFiniteDifferencesAndIsZeroOutsideSupport) {
  const LogNormal prior({0.2, -1.0}, {0.5, 1.5});
  expect_gradient_matches_differences(prior, {1.0, 0.3, 0.2, 4.0, 2.5, 0.05});
  const std::vector<double> outside =
      prior.log_prob_gradient(Tensor::from({-1.0, 1.0}, {1, 2}, DType::f64)).to_vector();
  EXPECT_EQ(outside, (std::vector<double>{0.0, 0.0}));
}

TEST(PriorGradient, BoxUniformIsZero) {
  const BoxUniform prior({-1, -2}, {1, 2});
  const std::vector<double> g =
      prior.log_prob_gradient(Tensor::from({0.3, -1.5, 5.0, 0.0}, {2, 2}, DType::f32))
          .to_vector();
  EXPECT_EQ(g, std::vector<double>(4, 0.0));
}

TEST(PriorGradient, ProductConcatenatesItsPartsGradients) {
  const auto gaussian = std::make_shared<Gaussian>(std::vector<double>{1.0},
                                                   std::vector<double>{4.0});
  const auto lognormal = std::make_shared<LogNormal>(std::vector<double>{0.0, 0.5},
                                                     std::vector<double>{1.0, 0.3});
  const auto box = std::make_shared<BoxUniform>(std::vector<double>{0.0}, std::vector<double>{1.0});
  const Product prior({gaussian, lognormal, box});
  EXPECT_TRUE(prior.has_log_prob_gradient());
  expect_gradient_matches_differences(prior, {0.0, 1.0, 2.0, 0.5, -2.0, 0.4, 1.1, 0.9});
  // Outside one part's support the whole density is -inf: no slope in any dimension.
  const std::vector<double> g =
      prior.log_prob_gradient(Tensor::from({0.0, 1.0, 2.0, 1.5}, {1, 4}, DType::f64)).to_vector();
  EXPECT_EQ(g, std::vector<double>(4, 0.0));
}

// A prior that only knows its density: no gradient, and asking for one says which samplers work.
class DensityOnlyPrior : public Prior {
 public:
  std::int64_t dim() const override { return 1; }
  void sample_row(core::Rng& rng, std::span<double> out) const override { out[0] = rng.normal(); }
  double log_prob_row(std::span<const double> theta) const override {
    return -0.5 * theta[0] * theta[0];
  }
};

TEST(PriorGradient, PriorWithoutGradientThrowsStateError) {
  const DensityOnlyPrior prior;
  EXPECT_FALSE(prior.has_log_prob_gradient());
  const auto product = Product({std::make_shared<DensityOnlyPrior>(),
                                std::make_shared<BoxUniform>(std::vector<double>{0.0},
                                                             std::vector<double>{1.0})});
  EXPECT_FALSE(product.has_log_prob_gradient());
  EXPECT_THROW(prior.log_prob_gradient(Tensor::from({0.0}, {1, 1}, DType::f64)),
               core::StateError);
  EXPECT_THROW(prior.log_prob_gradient(Tensor::from({0.0, 0.0}, {1, 2}, DType::f64)),
               core::ShapeError);
}

}  // namespace
}  // namespace asbi::sbi
