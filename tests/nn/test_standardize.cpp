// Standardizer: the statistics sbi's z-scoring computes, the round trip, the Jacobian term, the
// gradient, checkpoint state, and errors that say what was expected.
#include <gtest/gtest.h>

#include "test_util.hpp"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "autodiff/gradcheck.hpp"
#include "autodiff/ops.hpp"
#include "autodiff/tape.hpp"
#include "nn/standardize.hpp"

namespace asbi::nn {
namespace {

using asbi::test_util::expect_error_naming;

// Four rows, three columns; column 2 is constant.
Tensor data(DType dtype = DType::f64) {
  return Tensor::from({1, 10, 5,  //
                       2, 20, 5,  //
                       3, 40, 5,  //
                       6, 50, 5},
                      {4, 3}, dtype);
}

TEST(Standardize, FitGivesColumnMeanAndUnbiasedStdFlooredAtMinStd) {
  const Standardizer z = Standardizer::fit(data());
  EXPECT_EQ(z.features(), 3);
  const std::vector<double> mean = z.mean().to_vector(), std_dev = z.std().to_vector();
  EXPECT_DOUBLE_EQ(mean[0], 3.0);
  EXPECT_DOUBLE_EQ(mean[1], 30.0);
  EXPECT_DOUBLE_EQ(mean[2], 5.0);
  EXPECT_DOUBLE_EQ(std_dev[0], std::sqrt((4 + 1 + 0 + 9) / 3.0));  // N - 1, as torch.std
  EXPECT_DOUBLE_EQ(std_dev[1], std::sqrt((400 + 100 + 100 + 400) / 3.0));
  EXPECT_EQ(std_dev[2], Standardizer::default_min_std);  // constant column
  EXPECT_EQ(Standardizer::fit(data(), 0.5).std().at(2), 0.5);
}

TEST(Standardize, ApplyZScoresAndInverseRoundTrips) {
  const Tensor x = data();
  const Standardizer z = Standardizer::fit(x, 1e-3);
  ad::NoGrad no_grad;
  const Tensor zx = z.apply(x).value();
  const std::vector<double> v = zx.to_vector();
  for (int c = 0; c < 2; ++c) {  // the non-constant columns: mean 0, unbiased std 1
    double mean = 0, ss = 0;
    for (int r = 0; r < 4; ++r) mean += v[r * 3 + c] / 4;
    for (int r = 0; r < 4; ++r) ss += (v[r * 3 + c] - mean) * (v[r * 3 + c] - mean);
    EXPECT_NEAR(mean, 0, 1e-12);
    EXPECT_NEAR(ss / 3, 1, 1e-12);
  }
  const std::vector<double> back = z.inverse(zx).to_vector(), orig = x.to_vector();
  for (std::size_t i = 0; i < orig.size(); ++i) EXPECT_NEAR(back[i], orig[i], 1e-12);
  // Leading dimensions are carried: [B, S, D].
  const Tensor sets = z.inverse(Tensor::zeros({2, 5, 3}, DType::f64));
  EXPECT_EQ(sets.shape(), Shape({2, 5, 3}));
  EXPECT_DOUBLE_EQ(sets.at(3 * 7 + 1), 30.0);
}

TEST(Standardize, Float32DataKeepsItsDtype) {
  const Standardizer z = Standardizer::fit(data(DType::f32), 1e-3);
  EXPECT_EQ(z.mean().dtype(), DType::f32);
  ad::NoGrad no_grad;
  const Tensor back = z.inverse(z.apply(data(DType::f32)).value());
  EXPECT_EQ(back.dtype(), DType::f32);
  const std::vector<double> b = back.to_vector(), orig = data().to_vector();
  for (std::size_t i = 0; i < orig.size(); ++i)
    EXPECT_NEAR(b[i], orig[i], 1e-4 * std::abs(orig[i]));
}

TEST(Standardize, LogAbsDetIsMinusSumLogStd) {
  const Standardizer z = Standardizer::fit(data(), 0.25);
  const std::vector<double> s = z.std().to_vector();
  EXPECT_DOUBLE_EQ(z.log_abs_det(), -(std::log(s[0]) + std::log(s[1]) + std::log(0.25)));
  // The Jacobian of x ↦ z is diag(1/σ): its log-determinant from the gradient of each output.
  ad::Parameter x("x", Tensor::from({1, 2, 3}, {1, 3}, DType::f64));
  double log_det = 0;
  for (int d = 0; d < 3; ++d) {
    x.zero_grad();
    ad::Tape tape;
    tape.backward(ad::slice(z.apply(x), 1, d, d + 1));
    log_det += std::log(std::abs(x.grad().at(d)));
  }
  EXPECT_NEAR(log_det, z.log_abs_det(), 1e-12);
}

TEST(Standardize, ApplyGradcheck) {
  const Standardizer z = Standardizer::fit(data(), 0.5);
  const Tensor x = Tensor::from({0.3, -1, 2, 4, 0.5, -0.2}, {2, 3}, DType::f64);
  auto r = ad::gradcheck([&](std::span<const Var> v) { return z.apply(v[0]); }, {x});
  EXPECT_TRUE(r.passed) << r.str();
}

TEST(Standardize, StoredStatisticsReproduceTheFit) {
  const Standardizer fitted = Standardizer::fit(data(), 1e-3);
  const Standardizer stored(fitted.mean(), fitted.std());
  EXPECT_EQ(stored.mean().to_vector(), fitted.mean().to_vector());
  EXPECT_EQ(stored.log_abs_det(), fitted.log_abs_det());

  // An identity standardizer loaded in place, as a checkpoint does through state().
  Standardizer loaded = Standardizer::identity(3, DType::f64);
  EXPECT_EQ(loaded.log_abs_det(), 0.0);
  Standardizer source = Standardizer::fit(data(), 1e-3);
  auto from = source.state(), to = loaded.state();
  ASSERT_EQ(to.size(), 2u);
  EXPECT_EQ(to[0].first, "mean");
  EXPECT_EQ(to[1].first, "std");
  for (std::size_t i = 0; i < 2; ++i) to[i].second->copy_from(*from[i].second);
  EXPECT_EQ(loaded.inverse(Tensor::full({1, 3}, 1.0, DType::f64)).to_vector(),
            fitted.inverse(Tensor::full({1, 3}, 1.0, DType::f64)).to_vector());
}

TEST(Standardize, ErrorsNameWhatWasExpected) {
  expect_error_naming<core::ShapeError>([] { Standardizer::fit(Tensor::zeros({5})); },
                                        {"[N, D]", "[5]"});
  expect_error_naming<core::ValueError>(
      [] {
        Standardizer::fit(Tensor::zeros({0, 3}));
      },
      {"at least 2 rows", "[0, 3]"});
  expect_error_naming<core::ValueError>(
      [] {
        Standardizer::fit(Tensor::zeros({1, 3}));
      },
      {"at least 2 rows", "[1, 3]"});
  Tensor bad = data();
  bad.data<double>()[2 * 3 + 1] = std::numeric_limits<double>::quiet_NaN();
  expect_error_naming<core::ValueError>([&] { Standardizer::fit(bad); },
                                        {"finite", "nan", "row 2", "column 1"});
  const Standardizer z = Standardizer::fit(data());
  expect_error_naming<core::ShapeError>(
      [&] {
        z.apply(Tensor::zeros({4, 2}, DType::f64));
      },
      {"[..., 3]", "[4, 2]"});
  expect_error_naming<core::ShapeError>(
      [&] {
        z.inverse(Tensor::zeros({4, 5}, DType::f64));
      },
      {"[..., 3]", "[4, 5]"});
  expect_error_naming<core::ValueError>(
      [] {
        Standardizer(Tensor::zeros({2}), Tensor::from({1, 0}, {2}));
      },
      {"std > 0", "column 1"});
  expect_error_naming<core::ShapeError>(
      [] { Standardizer(Tensor::zeros({2}), Tensor::zeros({3})); }, {"[D]", "[2]", "[3]"});
}

}  // namespace
}  // namespace asbi::nn
