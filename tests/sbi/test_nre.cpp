// NRE-A, NRE-B and NRE-C on the conjugate Gaussian model (gaussian_model.hpp): the classifier's
// logit against the true log ratio, MCMC posteriors against the analytic posterior, the
// potential's gradient, saving and loading, errors and reproducibility.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <memory>

#include "core/backend.hpp"
#include "core/error.hpp"
#include "gaussian_model.hpp"
#include "sbi/estimator.hpp"
#include "sbi/potential_posterior.hpp"
#include "test_util.hpp"

namespace asbi::sbi {
namespace {

namespace gm = gaussian_model;
using test_util::expect_error_naming;

constexpr std::int64_t kSimulations = 2000;

EstimatorOptions nre_options(Method method) {
  EstimatorOptions o{.method = method, .seed = 3};
  o.train.seed = 4;
  o.train.progress = nn::ProgressMode::silent;
  return o;
}

// One trained estimator per method, shared by the suite (training dominates its time).
class Nre : public ::testing::TestWithParam<Method> {
 protected:
  static Estimator& trained(Method method) {
    std::unique_ptr<Estimator>& e = estimators_[method];
    if (!e) {
      e = make_estimator(gm::prior(), gm::kDim, nre_options(method));
      const gm::Data data = gm::simulate(kSimulations, /*seed=*/7);
      e->append_simulations(data.theta, data.x);
      e->train();
    }
    return *e;
  }
  static void TearDownTestSuite() { estimators_.clear(); }
  static std::map<Method, std::unique_ptr<Estimator>> estimators_;
};
std::map<Method, std::unique_ptr<Estimator>> Nre::estimators_;

double correlation(const std::vector<double>& a, const std::vector<double>& b) {
  const auto n = static_cast<double>(a.size());
  double ma = 0, mb = 0;
  for (std::size_t i = 0; i < a.size(); ++i) ma += a[i] / n, mb += b[i] / n;
  double sab = 0, saa = 0, sbb = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) * (a[i] - ma);
    sbb += (b[i] - mb) * (b[i] - mb);
  }
  return sab / std::sqrt(saa * sbb);
}

TEST_P(Nre, LogitTracksTheTrueLogRatio) {
  ASBI_SKIP_STATISTICAL_FIT_IF_FAST();
  const Estimator& estimator = trained(GetParam());
  EXPECT_EQ(estimator.history().back().stop_reason, nn::StopReason::converged);
  // At each observation, θ ~ N(posterior mean, (1.5 posterior std)²): where MCMC goes. NRE-B's
  // logit is log r + c(x_o), so the two are compared up to a constant per observation.
  // Measured (2000 simulations): correlations 0.96-0.99, RMS differences 0.4-0.8 nats, mean
  // differences within ±0.45 nats for NRE-A and NRE-C. A classifier that had not learnt the
  // ratio would show no correlation.
  core::Rng rng(31, 0);
  for (const std::vector<double>& x_o : gm::observations()) {
    std::vector<double> theta(2 * 100), truth, learned;
    for (std::size_t i = 0; i < theta.size(); ++i)
      theta[i] = gm::posterior_mean(x_o[i % 2]) + 1.5 * gm::posterior_std() * rng.normal();
    const Tensor t = Tensor::from(theta, {100, 2}, DType::f64);
    const std::vector<double> potential = estimator.posterior()->log_prob(t, x_o);
    const std::vector<double> prior = estimator.prior().log_prob(t);
    double mean_difference = 0;
    for (std::size_t i = 0; i < 100; ++i) {
      truth.push_back(gm::log_ratio(std::span(theta).subspan(2 * i, 2), x_o));
      learned.push_back(potential[i] - prior[i]);
      mean_difference += (learned[i] - truth[i]) / 100;
    }
    double spread = 0;  // RMS of the differences around their mean
    for (std::size_t i = 0; i < 100; ++i)
      spread += std::pow(learned[i] - truth[i] - mean_difference, 2) / 100;
    spread = std::sqrt(spread);
    EXPECT_GT(correlation(truth, learned), 0.94) << name(GetParam()) << ", x_o " << x_o[0];
    EXPECT_LT(spread, 1.0) << name(GetParam()) << ", x_o " << x_o[0];
    // NRE-A and NRE-C estimate log r itself: no free constant.
    if (GetParam() != Method::nre_b) {
      EXPECT_NEAR(mean_difference, 0.0, 0.6) << name(GetParam()) << ", x_o " << x_o[0];
    }
  }
}

TEST_P(Nre, McmcPosteriorMatchesTheAnalyticPosteriorForSeveralObservations) {
  const auto posterior = trained(GetParam()).posterior();
  EXPECT_FALSE(posterior->normalized());
  for (const std::vector<double>& x_o : gm::observations()) {
    const Tensor samples = posterior->sample(2000, x_o, /*seed=*/5);
    const gm::Moments m = gm::moments(samples);
    for (std::size_t d = 0; d < 2; ++d) {
      // Classifiers fitted to 2000 simulations: means within 0.2 (0.45 posterior std), stds
      // within 30 % of the analytic posterior's 0.447.
      EXPECT_NEAR(m.mean[d], gm::posterior_mean(x_o[d]), 0.2)
          << name(GetParam()) << ", x_o " << x_o[0] << ", " << x_o[1];
      EXPECT_NEAR(m.std[d], gm::posterior_std(), 0.3 * gm::posterior_std())
          << name(GetParam()) << ", x_o " << x_o[0] << ", " << x_o[1];
    }
  }
}

TEST_P(Nre, PotentialGradientMatchesFiniteDifferences) {
  const auto posterior =
      std::dynamic_pointer_cast<PotentialPosterior>(trained(GetParam()).posterior());
  ASSERT_TRUE(posterior);
  const std::vector<double> x_o = {1.0, -0.5};
  const auto target = posterior->potential(x_o);
  const std::vector<double> points = {0.8, -0.4, 0.5, -0.1, 1.3, -0.7, 0.3, -0.9};
  const Tensor theta = Tensor::from(points, {4, 2}, DType::f64);
  std::vector<double> value(4);
  Tensor grad = Tensor::empty({4, 2}, DType::f64);
  target->evaluate_with_gradient(theta, value, grad);
  const std::vector<double> g = grad.to_vector();
  // A ReLU network is piecewise linear and ~200 units each put a kink somewhere in θ: a step of
  // 1e-3 crosses one in ~1 check out of 5, a step of 2e-5 rarely. Float32 rounding of the
  // logit (~5e-7) over 2h = 4e-5 stays near 1e-2.
  constexpr double h = 2e-5;
  for (std::size_t i = 0; i < 4; ++i)
    for (std::size_t d = 0; d < 2; ++d) {
      std::vector<double> up(points.begin() + 2 * i, points.begin() + 2 * i + 2), down = up;
      up[d] += h;
      down[d] -= h;
      std::vector<double> lu(1), ld(1);
      target->evaluate(Tensor::from(up, {1, 2}, DType::f64), lu);
      target->evaluate(Tensor::from(down, {1, 2}, DType::f64), ld);
      const double numeric = (lu[0] - ld[0]) / (2 * h);
      EXPECT_NEAR(g[2 * i + d], numeric, 2e-2 * (1 + std::abs(numeric)))
          << name(GetParam()) << ", row " << i << ", dim " << d;
    }
}

TEST_P(Nre, SaveAndLoadGiveIdenticalLogProbAndSamples) {
  const Estimator& estimator = trained(GetParam());
  const std::filesystem::path path =
      std::filesystem::temp_directory_path() /
      (std::string("asbi_") + name(GetParam()) + "_" + std::to_string(::getpid()) + ".asbi");
  estimator.save(path);
  const auto loaded = load_posterior(path, estimator.shared_prior());
  EXPECT_EQ(load_estimator_options(path).method, GetParam());
  std::filesystem::remove(path);
  const auto posterior = estimator.posterior();
  const std::vector<double> x_o = {-1.8, 1.2};
  const gm::Data points = gm::simulate(64, /*seed=*/12);
  EXPECT_EQ(loaded->log_prob(points.theta, x_o), posterior->log_prob(points.theta, x_o));
  EXPECT_EQ(loaded->sample(200, x_o, 3).to_vector(), posterior->sample(200, x_o, 3).to_vector());
}

// The classifier with the same weights on each device: the potential and its θ-gradient agree to
// float32 rounding; and a few epochs of training from the same start follow each other.
TEST_P(Nre, CudaPotentialAndTrainingMatchTheCpu) {
  if (!core::device_available(core::Device::cuda)) GTEST_SKIP() << "no CUDA device";
  const Estimator& estimator = trained(GetParam());
  const std::filesystem::path path =
      std::filesystem::temp_directory_path() /
      (std::string("asbi_cuda_") + name(GetParam()) + "_" + std::to_string(::getpid()) + ".asbi");
  estimator.save(path);
  const auto cpu = std::dynamic_pointer_cast<PotentialPosterior>(
      load_posterior(path, estimator.shared_prior(), core::Device::cpu));
  const auto gpu = std::dynamic_pointer_cast<PotentialPosterior>(
      load_posterior(path, estimator.shared_prior(), core::Device::cuda));
  std::filesystem::remove(path);
  ASSERT_TRUE(cpu && gpu);
  const std::vector<double> x_o = {-1.8, 1.2};
  const Tensor theta = gm::simulate(50, /*seed=*/13).theta.to(DType::f64);
  std::vector<double> v_cpu(50), v_gpu(50);
  Tensor g_cpu = Tensor::empty({50, 2}, DType::f64), g_gpu = Tensor::empty({50, 2}, DType::f64);
  cpu->potential(x_o)->evaluate_with_gradient(theta, v_cpu, g_cpu);
  gpu->potential(x_o)->evaluate_with_gradient(theta, v_gpu, g_gpu);
  const std::vector<double> gc = g_cpu.to_vector(), gg = g_gpu.to_vector();
  for (std::size_t i = 0; i < 50; ++i) {
    ASSERT_NEAR(v_gpu[i], v_cpu[i], 1e-3 * (1 + std::abs(v_cpu[i]))) << "row " << i;
    for (std::size_t d = 0; d < 2; ++d)
      ASSERT_NEAR(gg[2 * i + d], gc[2 * i + d], 1e-3 * (1 + std::abs(gc[2 * i + d])))
          << "row " << i << ", dim " << d;
  }

  const gm::Data data = gm::simulate(1000, /*seed=*/8);
  std::vector<nn::TrainResult> runs;
  for (core::Device device : {core::Device::cpu, core::Device::cuda}) {
    EstimatorOptions o = nre_options(GetParam());
    o.train.max_epochs = 3;
    o.device = device;
    auto e = make_estimator(gm::prior(), gm::kDim, o);
    e->append_simulations(data.theta, data.x);
    runs.push_back(e->train());
  }
  for (std::size_t e = 0; e < runs[0].train_loss.size(); ++e)
    EXPECT_NEAR(runs[1].validation_loss[e], runs[0].validation_loss[e],
                1e-3 * (1 + std::abs(runs[0].validation_loss[e])))
        << "epoch " << e + 1;
}

INSTANTIATE_TEST_SUITE_P(Nre, Nre,
                         ::testing::Values(Method::nre_a, Method::nre_b, Method::nre_c),
                         [](const ::testing::TestParamInfo<Method>& info) {
                           return std::string(name(info.param));
                         });

TEST(NreErrors, AnAbsentDeviceIsRefusedAtConstruction) {
  if (core::device_available(core::Device::cuda)) GTEST_SKIP() << "a CUDA device is present";
  EstimatorOptions o = nre_options(Method::nre_c);
  o.device = core::Device::cuda;
  expect_error_naming<core::DeviceError>([&] { make_estimator(gm::prior(), gm::kDim, o); },
                                         {"EstimatorOptions::device", "cuda"});
}

TEST(NreErrors, PosteriorBeforeTrainingBadObservationsAndOptions) {
  auto estimator = make_estimator(gm::prior(), gm::kDim, nre_options(Method::nre_b));
  expect_error_naming<core::StateError>([&] { estimator->posterior(); }, {"nre_b", "train"});
  expect_error_naming<core::StateError>([&] { estimator->train(); }, {"append_simulations"});
  auto bad = nre_options(Method::nre_b);
  bad.num_atoms = 1;
  expect_error_naming<core::ValueError>([&] { make_estimator(gm::prior(), gm::kDim, bad); },
                                        {"num_atoms >= 2", "got 1"});
  bad = nre_options(Method::nre_c);
  bad.nre_c_gamma = 0;
  expect_error_naming<core::ValueError>([&] { make_estimator(gm::prior(), gm::kDim, bad); },
                                        {"nre_c_gamma > 0", "got 5 and 0"});

  auto options = nre_options(Method::nre_a);
  options.train.max_epochs = 1;
  auto trained = make_estimator(gm::prior(), gm::kDim, options);
  const gm::Data data = gm::simulate(100, 2);
  trained->append_simulations(data.theta, data.x);
  trained->train();
  const auto posterior = trained->posterior();
  expect_error_naming<core::ValueError>([&] { posterior->sample(10, std::vector{1.0}, 0); },
                                        {"2 values", "got 1"});
  expect_error_naming<core::ValueError>(
      [&] { posterior->sample(10, std::vector{std::nan(""), 1.0}, 0); },
      {"observation value 1", "finite"});
}

// Same seeds, same weights, bit for bit: the contrasting atoms come from Philox streams keyed by
// the seed and the step. Another training seed draws other atoms (and another split).
TEST(NreReproducibility, SameSeedsGiveIdenticalClassifiers) {
  const gm::Data data = gm::simulate(300, 8);
  const std::vector<double> x_o = {0.3, 0.1};
  for (Method method : {Method::nre_a, Method::nre_b, Method::nre_c}) {
    auto options = nre_options(method);
    options.train.max_epochs = 3;
    std::vector<double> lp[3];
    for (int run = 0; run < 3; ++run) {
      if (run == 2) options.train.seed += 1;
      auto estimator = make_estimator(gm::prior(), gm::kDim, options);
      estimator->append_simulations(data.theta, data.x);
      estimator->train();
      lp[run] = estimator->posterior()->log_prob(data.theta.rows(0, 20), x_o);
    }
    EXPECT_EQ(lp[0], lp[1]) << name(method);
    EXPECT_NE(lp[0], lp[2]) << name(method);
  }
}

// The embedding option: an MLP on z-scored x inside the classifier, saved and loaded with it.
TEST(NreEmbedding, EmbeddedClassifierTrainsSavesAndLoads) {
  auto options = nre_options(Method::nre_b);
  options.embedding = {.hidden = {16}, .features = 3};
  options.train.max_epochs = 5;
  auto estimator = make_estimator(gm::prior(), gm::kDim, options);
  const gm::Data data = gm::simulate(400, 21);
  estimator->append_simulations(data.theta, data.x);
  const nn::TrainResult r = estimator->train();
  EXPECT_LT(r.validation_loss.back(), r.validation_loss.front() + 1e-9);
  const std::filesystem::path path = std::filesystem::temp_directory_path() /
                                     ("asbi_nre_embed_" + std::to_string(::getpid()) + ".asbi");
  estimator->save(path);
  const auto loaded = load_posterior(path, estimator->shared_prior());
  std::filesystem::remove(path);
  const std::vector<double> x_o = {0.5, 0.5};
  EXPECT_EQ(loaded->log_prob(data.theta.rows(0, 10), x_o),
            estimator->posterior()->log_prob(data.theta.rows(0, 10), x_o));
}

}  // namespace
}  // namespace asbi::sbi
