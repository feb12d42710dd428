// C2ST and MMD as sbibm defines them. C2ST: chance level (0.5) for two samples of one
// distribution, 1 for separated ones, the Bayes-optimal Φ(0.5) for N(0,1) against N(1,1), 0.5
// for two halves of a shipped reference posterior (and 0.5 ± 0.01 on average for 5000-row halves,
// sbibm's own check), the same number for the same seed. MMD: ≈ 0 for one distribution, > 0 for two,
// and equal to a brute-force evaluation of the protocol's formula on small sets.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "sbi/csv.hpp"
#include "sbi/diagnostics.hpp"

namespace asbi::sbi {
namespace {

// n × d standard normals shifted by `shift` in every coordinate.
Tensor normals(std::int64_t n, std::int64_t d, double shift, std::uint64_t stream) {
  std::vector<double> v(static_cast<std::size_t>(n * d));
  core::fill_normal(7, stream, 0, std::span<double>(v));
  for (double& x : v) x += shift;
  return Tensor::from(v, {n, d}, core::DType::f64);
}

TEST(C2st, SameDistributionIsChance) {
  const double acc = c2st(normals(1000, 2, 0.0, 1), normals(1000, 2, 0.0, 2));
  RecordProperty("c2st", std::to_string(acc));
  EXPECT_NEAR(acc, 0.5, 0.05);
}

TEST(C2st, SeparatedDistributionsAreSeparable) {
  const double acc = c2st(normals(500, 2, 0.0, 3), normals(500, 2, 10.0, 4));
  RecordProperty("c2st", std::to_string(acc));
  EXPECT_GT(acc, 0.99);
}

TEST(C2st, UnitShiftInOneDimensionReachesBayesAccuracy) {
  // Two equally likely classes N(0,1), N(1,1): the best rule thresholds at 0.5, right with
  // probability Φ(0.5).
  const double bayes = 0.5 * std::erfc(-0.5 / std::sqrt(2.0));
  const double acc = c2st(normals(1000, 1, 0.0, 5), normals(1000, 1, 1.0, 6));
  RecordProperty("c2st", std::to_string(acc));
  EXPECT_NEAR(acc, bayes, 0.03);
}

TEST(C2st, HalvesOfReferencePosteriorAreChance) {
  const char* root = std::getenv("ASBI_REFERENCE_DIR");
  const std::string path = std::string(root ? root : "") +
                           "/sbibm/two_moons/num_observation_1/reference_posterior_samples.csv";
  if (!root || !std::filesystem::exists(path))
    GTEST_SKIP() << "reference samples not found at " << path;
  const Tensor ref = read_csv(path);
  const double acc = c2st(ref.rows(0, 1000), ref.rows(1000, 2000));
  RecordProperty("c2st", std::to_string(acc));
  EXPECT_NEAR(acc, 0.5, 0.05);
}

TEST(C2st, LargeHalvesOfReferencePosteriorsAverageToChance) {
  // sbibm's own check: two sets of one distribution give 0.5 ± 0.01. With 1000 + 1000 rows the
  // cross-validated accuracy sits below 0.5 (about 0.485 for asbi and sklearn alike: a
  // classifier that learns only its training folds' class balance scores below chance on
  // unstratified test folds); with 5000 + 5000 the dip is under 0.005. Averaged over the five
  // two_moons observations to keep the check well inside its tolerance.
  const char* root = std::getenv("ASBI_REFERENCE_DIR");
  double sum = 0;
  for (int obs = 1; obs <= 5; ++obs) {
    const std::string path = std::string(root ? root : "") + "/sbibm/two_moons/num_observation_" +
                             std::to_string(obs) + "/reference_posterior_samples.csv";
    if (!root || !std::filesystem::exists(path))
      GTEST_SKIP() << "reference samples not found at " << path;
    const Tensor ref = read_csv(path);
    sum += c2st(ref.rows(0, 5000), ref.rows(5000, 10000), {.seed = static_cast<std::uint64_t>(obs)});
  }
  RecordProperty("mean_c2st", std::to_string(sum / 5));
  EXPECT_NEAR(sum / 5, 0.5, 0.01);
}

TEST(C2st, SameSeedSameAccuracy) {
  const Tensor x = normals(300, 2, 0.0, 40), y = normals(300, 2, 0.5, 41);
  EXPECT_EQ(c2st(x, y, {.seed = 3}), c2st(x, y, {.seed = 3}));
}

TEST(C2st, RefusesBadInput) {
  EXPECT_THROW(c2st(normals(20, 2, 0, 1), normals(20, 3, 0, 2)), core::ShapeError);
  EXPECT_THROW(c2st(normals(2, 2, 0, 1), normals(2, 2, 0, 2)), core::ValueError);
  const Tensor constant = Tensor::full({20, 1}, 3.0, core::DType::f64);
  EXPECT_THROW(c2st(constant, normals(20, 1, 0, 2)), core::ValueError);
}

TEST(Mmd, MedianIsTheLowerMiddleOfPairwiseDistances) {
  // Distances of {0, 1, 3, 7}: 1, 3, 7, 2, 6, 4 → sorted 1 2 3 4 6 7, lower middle 3.
  EXPECT_DOUBLE_EQ(median_pairwise_distance(Tensor::from({0, 1, 3, 7}, {4, 1}, core::DType::f64)),
                   3.0);
  // Three distances 5, 10, √97 (odd count) → the middle one.
  EXPECT_DOUBLE_EQ(
      median_pairwise_distance(Tensor::from({0, 0, 3, 4, -6, 8}, {3, 2}, core::DType::f64)),
      std::sqrt(97.0));
}

// The protocol's formula written out with full kernel matrices.
double brute_force_mmd(const Tensor& x, const Tensor& y) {
  const std::int64_t n = x.dim(0), m = y.dim(0), d = x.dim(1);
  const auto dist2 = [d](const Tensor& a, std::int64_t i, const Tensor& b, std::int64_t j) {
    double s = 0;
    for (std::int64_t k = 0; k < d; ++k) s += std::pow(a.at(i * d + k) - b.at(j * d + k), 2);
    return s;
  };
  std::vector<double> pd;
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = i + 1; j < n; ++j) pd.push_back(std::sqrt(dist2(x, i, x, j)));
  std::sort(pd.begin(), pd.end());
  const double sigma = pd[(pd.size() - 1) / 2];
  const auto k = [sigma](double r2) { return std::exp(-r2 / (2 * sigma * sigma)); };
  double kxx = 0, kyy = 0, kxy = 0;
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < n; ++j)
      if (i != j) kxx += k(dist2(x, i, x, j));
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < m; ++j)
      if (i != j) kyy += k(dist2(y, i, y, j));
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < m; ++j) kxy += k(dist2(x, i, y, j));
  return kxx / static_cast<double>(n * (n - 1)) + kyy / static_cast<double>(m * (m - 1)) -
         2 * kxy / static_cast<double>(n * m);
}

TEST(Mmd, MatchesBruteForce) {
  for (const auto& [n, m, shift] : {std::tuple{12, 9, 0.0}, {10, 10, 0.7}, {7, 15, 2.0}}) {
    const Tensor x = normals(n, 3, 0.0, 10), y = normals(m, 3, shift, 11);
    const double expected = brute_force_mmd(x, y);
    EXPECT_NEAR(mmd(x, y), expected, 1e-12 * (1 + std::abs(expected)));
  }
}

TEST(Mmd, NearZeroForSameAndPositiveForDifferent) {
  const Tensor x = normals(400, 2, 0.0, 20);
  const double same = mmd(x, normals(400, 2, 0.0, 21));
  const double different = mmd(x, normals(400, 2, 1.0, 22));
  EXPECT_LT(std::abs(same), 0.01);
  EXPECT_GT(different, 0.1);
  EXPECT_GT(different, 10 * std::abs(same));
}

TEST(Mmd, NanInputGivesNanAndShapesAreChecked) {
  Tensor y = normals(5, 2, 0.0, 31);
  y.data<double>()[3] = std::numeric_limits<double>::quiet_NaN();
  EXPECT_TRUE(std::isnan(mmd(normals(5, 2, 0.0, 30), y)));
  EXPECT_THROW(mmd(normals(5, 2, 0.0, 30), normals(5, 1, 0.0, 31)), core::ShapeError);
  EXPECT_THROW(mmd(normals(1, 2, 0.0, 30), normals(5, 2, 0.0, 31)), core::ValueError);
}

}  // namespace
}  // namespace asbi::sbi
