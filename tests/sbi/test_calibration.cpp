// SBC and expected coverage on a conjugate Gaussian model, where the exact posterior is known:
// the exact posterior passes (uniform ranks, coverage on the diagonal), an overconfident one
// (std halved) and a biased one (mean shifted by one posterior std) fail. The p-value functions
// are checked against values from scipy (stats.chi2.sf, special.gammaincc, special.kolmogorov,
// stats.kstwo.sf for the exact finite-n KS distribution).
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "sbi/calibration.hpp"
#include "sbi/prior.hpp"
#include "sbi/simulator.hpp"

namespace asbi::sbi {
namespace {

// θ ~ N(0, s0² I), x | θ ~ N(θ, s² I): the posterior is N(w x, v I) with w = s0²/(s0² + s²) and
// v = s0² s²/(s0² + s²).
constexpr std::int64_t kDim = 2;
constexpr double kPriorStd = 1.0, kNoiseStd = 0.5;
constexpr double kWeight = kPriorStd * kPriorStd / (kPriorStd * kPriorStd + kNoiseStd * kNoiseStd);
const double kPosteriorStd = std::sqrt(kWeight) * kNoiseStd;

Gaussian model_prior() {
  return Gaussian(std::vector<double>(kDim, 0.0), {kPriorStd * kPriorStd, 0, 0, kPriorStd * kPriorStd});
}

CallableSimulator model_simulator() {
  return CallableSimulator::per_row(kDim, kDim, [](auto theta, auto x, core::Rng& rng) {
    for (std::size_t j = 0; j < theta.size(); ++j) x[j] = theta[j] + kNoiseStd * rng.normal();
  });
}

// The analytic posterior with its std multiplied by `std_scale` and its mean moved by `shift`
// posterior stds in the first coordinate (1, 0: exact).
class GaussianPosterior : public Posterior {
 public:
  GaussianPosterior(double std_scale, double shift) : std_scale_(std_scale), shift_(shift) {}
  std::int64_t theta_dim() const override { return kDim; }
  std::int64_t x_dim() const override { return kDim; }
  bool normalized() const override { return true; }

  Tensor sample(std::int64_t n, std::span<const double> x_o, std::uint64_t seed) const override {
    core::Rng rng(seed);
    std::vector<double> v(static_cast<std::size_t>(n * kDim));
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t d = 0; d < kDim; ++d)
        v[static_cast<std::size_t>(i * kDim + d)] = mean(x_o, d) + sd() * rng.normal();
    return Tensor::from(v, {n, kDim}, core::DType::f64);
  }

  std::vector<double> log_prob(const Tensor& theta, std::span<const double> x_o) const override {
    std::vector<double> out;
    for (std::int64_t i = 0; i < theta.dim(0); ++i) {
      double lp = 0;
      for (std::int64_t d = 0; d < kDim; ++d) {
        const double z = (theta.at(i * kDim + d) - mean(x_o, d)) / sd();
        lp += -0.5 * z * z - std::log(sd()) - 0.5 * std::log(2 * std::numbers::pi);
      }
      out.push_back(lp);
    }
    return out;
  }

 private:
  double sd() const { return std_scale_ * kPosteriorStd; }
  double mean(std::span<const double> x_o, std::int64_t d) const {
    return kWeight * x_o[static_cast<std::size_t>(d)] + (d == 0 ? shift_ * kPosteriorStd : 0.0);
  }
  double std_scale_, shift_;
};

SbcResult run(const Posterior& posterior, std::int64_t datasets = 1000) {
  const Gaussian prior = model_prior();
  const CallableSimulator sim = model_simulator();
  return sbc(posterior, prior, sim, {.num_datasets = datasets, .posterior_samples = 200, .seed = 3});
}

TEST(Sbc, ExactPosteriorHasUniformRanks) {
  const SbcResult r = run(GaussianPosterior(1.0, 0.0));
  ASSERT_EQ(r.datasets, 1000);
  ASSERT_EQ(r.ranks.size(), 2000u);
  for (const std::int64_t rank : r.ranks) ASSERT_TRUE(rank >= 0 && rank <= 200);
  ASSERT_EQ(r.uniformity.size(), 2u);
  for (const RankUniformity& u : r.uniformity) {
    RecordProperty("ks_pvalue_" + std::to_string(&u - r.uniformity.data()), std::to_string(u.ks_pvalue));
    EXPECT_GT(u.ks_pvalue, 0.01);
    EXPECT_GT(u.chi2_pvalue, 0.01);
    EXPECT_EQ(u.chi2_bins, 50);
  }
}

TEST(Sbc, OverconfidentPosteriorFails) {
  const SbcResult r = run(GaussianPosterior(0.5, 0.0));
  for (const RankUniformity& u : r.uniformity) {
    EXPECT_LT(u.ks_pvalue, 1e-3);
    EXPECT_LT(u.chi2_pvalue, 1e-3);
  }
}

TEST(Sbc, BiasedPosteriorFailsInTheBiasedDimension) {
  const SbcResult r = run(GaussianPosterior(1.0, 1.0));
  EXPECT_LT(r.uniformity[0].ks_pvalue, 1e-3);
  EXPECT_LT(r.uniformity[0].chi2_pvalue, 1e-3);
  EXPECT_GT(r.uniformity[1].ks_pvalue, 0.01);  // the other coordinate is exact
}

TEST(Sbc, SameSeedSameRanksAndDimensionsChecked) {
  const GaussianPosterior exact(1.0, 0.0);
  EXPECT_EQ(run(exact, 50).ranks, run(exact, 50).ranks);
  const Gaussian prior3(std::vector<double>(3, 0.0), {1, 0, 0, 0, 1, 0, 0, 0, 1});
  EXPECT_THROW(sbc(exact, prior3, model_simulator()), core::ShapeError);
  EXPECT_THROW(sbc(exact, model_prior(), model_simulator(), {.num_datasets = 0}),
               core::ValueError);
}

TEST(Coverage, ExactPosteriorIsOnTheDiagonal) {
  const SbcResult r = run(GaussianPosterior(1.0, 0.0));
  ASSERT_EQ(r.expected_coverage.size(), 101u);
  EXPECT_DOUBLE_EQ(r.expected_coverage.front(), 0.0);
  EXPECT_DOUBLE_EQ(r.expected_coverage.back(), 1.0);
  // Dvoretzky–Kiefer–Wolfowitz: the sup gap of 1000 uniforms exceeds 0.06 with probability
  // 2·exp(−2·1000·0.06²) ≈ 0.15%.
  EXPECT_LT(r.max_coverage_gap, 0.06);
  EXPECT_LT(std::abs(r.mean_coverage_gap), 0.03);
  const SbcReport rep = sbc_report(r);
  EXPECT_TRUE(rep.has_coverage);
  EXPECT_EQ(rep.ks_pvalue.size(), 2u);
  const std::string json = to_json(rep);
  EXPECT_NE(json.find("\"max_coverage_gap\""), std::string::npos);
  EXPECT_NE(json.find("\"ks_pvalue\""), std::string::npos);
}

TEST(Coverage, OverconfidentPosteriorIsBelowTheDiagonal) {
  const SbcResult r = run(GaussianPosterior(0.5, 0.0));
  // With the std halved, θ* lies in q's α-HPD region iff 4‖z‖² ≤ χ²₂⁻¹(α), z ~ N(0, I):
  // coverage(½) = 1 − exp(−ln 2 / 4) ≈ 0.16.
  EXPECT_NEAR(r.expected_coverage[50], 1 - std::exp(-std::log(2.0) / 4), 0.04);
  EXPECT_LT(r.mean_coverage_gap, -0.15);
  for (std::size_t k = 1; k + 1 < r.expected_coverage.size(); ++k)
    EXPECT_LT(r.expected_coverage[k], r.coverage_levels[k]) << "alpha " << r.coverage_levels[k];
}

TEST(Coverage, BiasedPosteriorIsBelowTheDiagonal) {
  const SbcResult r = run(GaussianPosterior(1.0, 1.0));
  EXPECT_LT(r.mean_coverage_gap, -0.05);
  EXPECT_GT(r.max_coverage_gap, 0.1);
}

TEST(Coverage, UnderconfidentPosteriorIsAboveTheDiagonal) {
  const SbcResult r = run(GaussianPosterior(2.0, 0.0));
  EXPECT_GT(r.mean_coverage_gap, 0.15);
}

TEST(Coverage, CurveCountsLevelsAtOrBelowAlpha) {
  const std::vector<double> c{0.1, 0.5, 0.5, 0.9};
  const std::vector<double> curve = expected_coverage_curve(c, 3);  // α = 0, ½, 1
  EXPECT_EQ(curve, (std::vector<double>{0.0, 0.75, 1.0}));
  EXPECT_THROW(expected_coverage_curve(c, 1), core::ValueError);
}

TEST(SbcPvalues, ChiSquareSurvivalMatchesScipy) {
  const struct {
    double x, df, expected;
  } cases[] = {{3.841458820694124, 1, 0.05},     {10, 5, 0.07523524614651217},
               {1, 1, 0.31731050786291115},      {100, 80, 0.064570368921133},
               {0.5, 3, 0.9188914116546758},     {30, 10, 0.000856641210775301},
               {200, 150, 0.003973185970821635}};
  for (const auto& c : cases)
    EXPECT_NEAR(chi2_survival(c.x, c.df), c.expected, 1e-12 * c.expected + 1e-14)
        << "x " << c.x << " df " << c.df;
  EXPECT_NEAR(regularized_gamma_q(0.5, 0.1), 0.6547208460185768, 1e-13);
  EXPECT_NEAR(regularized_gamma_q(2.5, 7.0), 0.01560941610026691, 1e-14);
  EXPECT_NEAR(regularized_gamma_q(10, 3), 0.9988975118698845, 1e-13);
  EXPECT_NEAR(regularized_gamma_q(1, 2), std::exp(-2.0), 1e-14);
  EXPECT_DOUBLE_EQ(chi2_survival(0, 4), 1.0);
  EXPECT_THROW(regularized_gamma_q(0, 1), core::ValueError);
}

TEST(SbcPvalues, KolmogorovMatchesScipy) {
  const struct {
    double lambda, expected;
  } cases[] = {{0.3, 0.9999906941986655}, {0.5, 0.9639452436648751}, {0.8, 0.5441424115741981},
               {1.0, 0.26999967167735456}, {1.1785, 0.12432977645481022},
               {1.2, 0.11224966667072497}, {1.36, 0.049485876755377876},
               {2.0, 0.0006709252557796953}};
  for (const auto& c : cases)
    EXPECT_NEAR(kolmogorov_survival(c.lambda), c.expected, 1e-12) << "lambda " << c.lambda;
  // Stephens' correction against the exact finite-n distribution (scipy stats.kstwo.sf).
  EXPECT_NEAR(kolmogorov_pvalue(100, 0.1), 0.2526927570063874, 0.01);
  EXPECT_NEAR(kolmogorov_pvalue(50, 0.2), 0.03143877776953241, 0.003);
  EXPECT_NEAR(kolmogorov_pvalue(1000, 0.04), 0.07933956059000224, 0.005);
  EXPECT_NEAR(kolmogorov_pvalue(20, 0.25), 0.13762569836717486, 0.01);
}

TEST(SbcPvalues, RankUniformityOfKnownRankSets) {
  // Every rank value equally often: χ² = 0, KS p near 1 (the jitter makes the points uniform).
  std::vector<std::int64_t> flat;
  for (int rep = 0; rep < 10; ++rep)
    for (std::int64_t r = 0; r <= 99; ++r) flat.push_back(r);
  const RankUniformity u = rank_uniformity(flat, 99, 10, 1);
  EXPECT_NEAR(u.chi2_statistic, 0.0, 1e-12);
  EXPECT_DOUBLE_EQ(u.chi2_pvalue, 1.0);
  EXPECT_GT(u.ks_pvalue, 0.9);
  // All ranks at the top: overwhelming evidence.
  const std::vector<std::int64_t> top(200, 99);
  const RankUniformity t = rank_uniformity(top, 99, 10, 1);
  EXPECT_LT(t.ks_pvalue, 1e-12);
  EXPECT_LT(t.chi2_pvalue, 1e-12);
  // Bins that do not divide L + 1: 7 rank values in 3 bins of 3, 2, 2 values (⌊r·3/7⌋).
  const std::vector<std::int64_t> seven{0, 1, 2, 3, 4, 5, 6};
  EXPECT_NEAR(rank_uniformity(seven, 6, 3, 1).chi2_statistic, 0.0, 1e-12);
  EXPECT_THROW(rank_uniformity(std::vector<std::int64_t>{100}, 99, 10, 1), core::ValueError);
}

}  // namespace
}  // namespace asbi::sbi
