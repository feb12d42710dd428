// Base distributions: log_prob against closed forms, sample moments, reproducibility of draws
// from a core::Rng, conditional moments, and the shape checks.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <vector>

#include "autodiff/ops.hpp"
#include "autodiff/tape.hpp"
#include "core/backend.hpp"
#include "flows/distributions.hpp"
#include "nn/layers.hpp"

namespace asbi::flows {
namespace {

using core::DType;

const double kLog2Pi = std::log(2 * std::numbers::pi);

struct Moments {
  std::vector<double> mean, var;
};

Moments column_moments(const Tensor& x) {
  const std::int64_t n = x.dim(0), d = x.dim(1);
  const std::vector<double> v = x.to_vector();
  Moments m{std::vector<double>(std::size_t(d), 0.0), std::vector<double>(std::size_t(d), 0.0)};
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < d; ++j) m.mean[std::size_t(j)] += v[std::size_t(i * d + j)] / n;
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < d; ++j) {
      const double e = v[std::size_t(i * d + j)] - m.mean[std::size_t(j)];
      m.var[std::size_t(j)] += e * e / (n - 1);
    }
  return m;
}

TEST(StandardNormal, LogProbIsTheClosedForm) {
  StandardNormal p(3, DType::f64);
  const Tensor x = Tensor::from({0.0, 0.0, 0.0, 1.0, -2.0, 0.5}, {2, 3}, DType::f64);
  const std::vector<double> lp = p.log_prob(x, {}).value().to_vector();
  EXPECT_NEAR(lp[0], -1.5 * kLog2Pi, 1e-14);
  EXPECT_NEAR(lp[1], -0.5 * (1 + 4 + 0.25) - 1.5 * kLog2Pi, 1e-14);
}

TEST(StandardNormal, SamplesAreStandardNormalAndReproducible) {
  for (DType dtype : {DType::f32, DType::f64}) {
    StandardNormal p(2, dtype);
    core::Rng a(42, 3), b(42, 3);
    const Tensor s1 = p.sample(20000, {}, a);
    const Tensor s2 = p.sample(20000, {}, b);
    EXPECT_EQ(s1.dtype(), dtype);
    EXPECT_EQ(s1.to_vector(), s2.to_vector());  // same Rng state, same draws
    const Tensor s3 = p.sample(20000, {}, a);   // the Rng moved on: new draws
    EXPECT_NE(s1.to_vector(), s3.to_vector());
    const Moments m = column_moments(s1);
    for (int j = 0; j < 2; ++j) {
      EXPECT_NEAR(m.mean[std::size_t(j)], 0.0, 0.03);  // 4 standard errors
      EXPECT_NEAR(m.var[std::size_t(j)], 1.0, 0.04);
    }
  }
}

// The draws are the bulk fill at the Rng's current block, and the Rng moves past the blocks read.
TEST(Sampling, DrawsAreTheBulkFillAtTheRngBlock) {
  core::Rng rng(7, 2, 10);
  rng.next_u32();  // a partly used block is skipped
  const Tensor z = draw_normal({3, 3}, DType::f32, rng);
  std::vector<float> expected(9);
  core::fill_normal(7, 2, 11 * core::kFloatsPerBlock, expected);
  const std::vector<double> got = z.to_vector();
  for (std::size_t i = 0; i < 9; ++i) EXPECT_EQ(static_cast<float>(got[i]), expected[i]);
  EXPECT_EQ(rng.counter(), 11u + 3u);  // ceil(9 / 4) blocks
  const Tensor u = draw_uniform({5}, DType::f64, rng);
  EXPECT_EQ(rng.counter(), 14u + 3u);  // ceil(5 / 2) blocks
  for (double x : u.to_vector()) EXPECT_TRUE(x > 0 && x < 1);
}

// With a context on a GPU the draws are made there: the CPU's normals to float rounding, and the
// Rng advances by the same blocks.
TEST(Sampling, DrawsOnTheContextsDeviceWithTheCpuNumbers) {
  if (!core::device_available(core::Device::cuda)) GTEST_SKIP() << "no CUDA device";
  for (DType dtype : {DType::f32, DType::f64}) {
    const StandardNormal p(3, dtype);
    const Tensor context = Tensor::zeros({1, 2}, dtype);
    core::Rng on_cpu(5, 1, 2), on_gpu(5, 1, 2);
    const Tensor want = p.sample(11, context, on_cpu);
    const Tensor got = p.sample(11, context.to(core::Device::cuda), on_gpu);
    EXPECT_EQ(got.device(), core::Device::cuda);
    EXPECT_EQ(on_gpu.counter(), on_cpu.counter());
    const std::vector<double> g = got.to_vector(), w = want.to_vector();
    const double tolerance = dtype == DType::f32 ? 1e-6 : 1e-14;
    for (std::size_t i = 0; i < w.size(); ++i)
      EXPECT_NEAR(g[i], w[i], tolerance * std::max(1.0, std::abs(w[i]))) << i;
  }
}

TEST(DiagonalGaussian, LogProbAndSamplesMatchItsParameters) {
  DiagonalGaussian p(2, DType::f64);
  p.parameter("mean").value().copy_from(Tensor::from({1.0, -2.0}, {2}, DType::f64));
  p.parameter("log_std").value().copy_from(Tensor::from({std::log(0.5), std::log(3.0)}, {2},
                                                        DType::f64));
  const Tensor x = Tensor::from({1.5, 1.0}, {1, 2}, DType::f64);
  const double expected = -0.5 * (1.0 + 1.0) - std::log(0.5) - std::log(3.0) - kLog2Pi;
  EXPECT_NEAR(p.log_prob(x, {}).item(), expected, 1e-13);
  core::Rng rng(1, 0);
  const Moments m = column_moments(p.sample(40000, {}, rng));
  EXPECT_NEAR(m.mean[0], 1.0, 0.02);
  EXPECT_NEAR(m.mean[1], -2.0, 0.06);
  EXPECT_NEAR(std::sqrt(m.var[0]), 0.5, 0.01);
  EXPECT_NEAR(std::sqrt(m.var[1]), 3.0, 0.05);
}

TEST(DiagonalGaussian, ParametersReceiveGradients) {
  DiagonalGaussian p(3, DType::f64);
  const Tensor x = Tensor::from({0.1, 0.2, 0.3, -1.0, 2.0, 0.5}, {2, 3}, DType::f64);
  {
    ad::Tape tape;
    tape.backward(ad::sum(p.log_prob(x, {})));
  }
  // ∂/∂μ Σ log p = Σ_rows (x - μ) / σ² = column sums at μ = 0, σ = 1
  const std::vector<double> g = p.parameter("mean").grad().to_vector();
  EXPECT_NEAR(g[0], -0.9, 1e-12);
  EXPECT_NEAR(g[1], 2.2, 1e-12);
  EXPECT_NEAR(g[2], 0.8, 1e-12);
}

TEST(DiagonalGaussian, ConditionalOnAContext) {
  // The encoder maps b [B, 1] to (μ, log σ) = (2b, 0): weight [[2], [0]], bias 0.
  core::Rng init(1, 0);
  auto encoder = std::make_unique<nn::Linear>(1, 2, init, true, DType::f64);
  encoder->weight().value().copy_from(Tensor::from({2.0, 0.0}, {2, 1}, DType::f64));
  encoder->bias()->value().copy_from(Tensor::zeros({2}, DType::f64));
  DiagonalGaussian p(1, std::move(encoder), DType::f64);
  EXPECT_TRUE(p.conditional());
  const Tensor b = Tensor::from({1.0, -1.0}, {2, 1}, DType::f64);
  const Tensor x = Tensor::from({2.0, 0.0}, {2, 1}, DType::f64);
  const std::vector<double> lp = p.log_prob(x, b).value().to_vector();
  EXPECT_NEAR(lp[0], -0.5 * kLog2Pi, 1e-13);
  EXPECT_NEAR(lp[1], -0.5 * 4 - 0.5 * kLog2Pi, 1e-13);
  core::Rng rng(5, 1);
  const Moments m = column_moments(p.sample(20000, Tensor::from({1.5}, {1, 1}, DType::f64), rng));
  EXPECT_NEAR(m.mean[0], 3.0, 0.03);
  EXPECT_NEAR(m.var[0], 1.0, 0.04);
  // One draw per context row.
  const Tensor per_row = p.sample(2, b, rng);
  EXPECT_EQ(per_row.shape(), core::Shape({2, 1}));
}

TEST(BoxUniform, LogProbInsideAndOutside) {
  BoxUniform p(Tensor::from({-1.0, 0.0}, {2}, DType::f64), Tensor::from({1.0, 4.0}, {2},
                                                                        DType::f64));
  const Tensor x = Tensor::from({0.0, 1.0, 1.5, 1.0, 0.0, -0.1}, {3, 2}, DType::f64);
  const std::vector<double> lp = p.log_prob(x, {}).value().to_vector();
  EXPECT_NEAR(lp[0], -std::log(8.0), 1e-14);
  EXPECT_TRUE(std::isinf(lp[1]) && lp[1] < 0);
  EXPECT_TRUE(std::isinf(lp[2]) && lp[2] < 0);
}

TEST(BoxUniform, SamplesStayInTheBox) {
  for (DType dtype : {DType::f32, DType::f64}) {
    BoxUniform p(Tensor::from({-2.0, 5.0}, {2}, dtype), Tensor::from({2.0, 6.0}, {2}, dtype));
    core::Rng rng(3, 4);
    const Tensor s = p.sample(20000, {}, rng);
    EXPECT_EQ(s.dtype(), dtype);
    for (double lp : p.log_prob(s, {}).value().to_vector()) ASSERT_TRUE(std::isfinite(lp));
    const Moments m = column_moments(s);
    EXPECT_NEAR(m.mean[0], 0.0, 0.05);
    EXPECT_NEAR(m.mean[1], 5.5, 0.01);
    EXPECT_NEAR(m.var[0], 16.0 / 12, 0.05);
  }
}

TEST(Distributions, ErrorsNameWhatWasExpected) {
  StandardNormal p(2);
  EXPECT_THROW(p.log_prob(Tensor::zeros({4, 3}), {}), core::ShapeError);
  EXPECT_THROW(p.log_prob(Tensor::zeros({4, 2}, DType::f64), {}), core::DtypeError);
  core::Rng rng(1);
  EXPECT_THROW(p.sample(5, Tensor::zeros({3, 1}), rng), core::ShapeError);
  EXPECT_THROW(p.sample(0, {}, rng), core::ValueError);
  EXPECT_THROW(BoxUniform(Tensor::from({1.0}, {1}), Tensor::from({1.0}, {1})), core::ValueError);
  try {
    p.log_prob(Tensor::zeros({4, 3}), {});
  } catch (const core::ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("[B, 2]"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace asbi::flows
