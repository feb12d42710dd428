// NLE on the conjugate Gaussian model (gaussian_model.hpp): the learned likelihood against the
// true one, MCMC posteriors against the analytic posterior, the potential's gradient, saving and
// loading, errors and reproducibility.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <memory>

#include "core/backend.hpp"
#include "core/error.hpp"
#include "core/memory.hpp"
#include "gaussian_model.hpp"
#include "sbi/estimator.hpp"
#include "sbi/potential_posterior.hpp"
#include "sbi/simulator.hpp"
#include "test_util.hpp"

namespace asbi::sbi {
namespace {

namespace gm = gaussian_model;
using test_util::expect_error_naming;

constexpr std::int64_t kSimulations = 2000;

EstimatorOptions nle_options() {
  EstimatorOptions o{.method = Method::nle, .seed = 3};
  o.train.seed = 4;
  o.train.progress = nn::ProgressMode::silent;
  return o;
}

// One estimator trained once for the whole suite (training dominates the suite's time).
class Nle : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    estimator_ = make_estimator(gm::prior(), gm::kDim, nle_options()).release();
    const gm::Data data = gm::simulate(kSimulations, /*seed=*/7);
    estimator_->append_simulations(data.theta, data.x);
    estimator_->train();
  }
  static void TearDownTestSuite() {
    delete estimator_;
    estimator_ = nullptr;
  }
  static Estimator* estimator_;
};
Estimator* Nle::estimator_ = nullptr;

// log q(x | θ) = posterior potential − log p(θ): the potential adds nothing else.
double learned_log_likelihood(const Posterior& posterior, const Prior& prior,
                              std::span<const double> theta, std::span<const double> x) {
  const Tensor t = Tensor::from(theta, {1, gm::kDim}, DType::f64);
  return posterior.log_prob(t, x)[0] - prior.log_prob(t)[0];
}

TEST_F(Nle, LearnedLikelihoodMatchesTheTrueOneOnHeldOutPairs) {
  const nn::TrainResult& r = estimator_->history().back();
  EXPECT_EQ(r.stop_reason, nn::StopReason::converged);
  // The true mean negative log-likelihood is D (½ log 2πσ² + ½) = 1.45 nats; the validation set
  // (200 rows) scatters it by ~0.07.
  EXPECT_NEAR(r.best_validation_loss, 1.4516, 0.2);
  const auto posterior = estimator_->posterior();
  EXPECT_FALSE(posterior->normalized());
  const gm::Data held_out = gm::simulate(200, /*seed=*/99);
  const std::vector<double> theta = held_out.theta.to_vector(), x = held_out.x.to_vector();
  // Mean absolute error of the learned log-likelihood, and of a model whose noise standard
  // deviation is 15 % too large (what a visibly wrong fit looks like).
  double abs_error = 0, wrong_abs_error = 0;
  const double wrong_sigma = 1.15 * gm::kSigma;
  for (std::size_t i = 0; i < 200; ++i) {
    const std::span<const double> t(theta.data() + 2 * i, 2), xi(x.data() + 2 * i, 2);
    const double truth = gm::log_likelihood(t, xi);
    abs_error += std::abs(learned_log_likelihood(*posterior, estimator_->prior(), t, xi) - truth);
    wrong_abs_error += std::abs(gm::log_normal(xi, t, wrong_sigma * wrong_sigma) - truth);
  }
  abs_error /= 200;
  wrong_abs_error /= 200;
  // Measured: 0.14 nats against ~0.19 for the 15 % wrong model (the log-likelihood itself spreads
  // over ~1.4 nats across these pairs).
  EXPECT_LT(abs_error, 0.2);
  EXPECT_LT(abs_error, wrong_abs_error);
}

TEST_F(Nle, McmcPosteriorMatchesTheAnalyticPosteriorForSeveralObservations) {
  ASBI_SKIP_STATISTICAL_FIT_IF_FAST();
  const auto posterior = estimator_->posterior();
  for (const std::vector<double>& x_o : gm::observations()) {
    const Tensor samples = posterior->sample(2000, x_o, /*seed=*/5);
    ASSERT_EQ(samples.shape(), (core::Shape{2000, gm::kDim}));
    const gm::Moments m = gm::moments(samples);
    const McmcResult& r = posterior->last_sampling();
    for (std::size_t d = 0; d < 2; ++d) {
      // MCMC noise (ESS ≳ 300: ±0.03) plus the flow's error at 2000 simulations.
      EXPECT_NEAR(m.mean[d], gm::posterior_mean(x_o[d]), 0.12) << "x_o " << x_o[0] << ", " << x_o[1];
      EXPECT_NEAR(m.std[d], gm::posterior_std(), 0.2 * gm::posterior_std());
      if (!r.r_hat.empty()) {
        EXPECT_LT(r.r_hat[d], 1.1);
      }
    }
  }
}

TEST_F(Nle, PotentialGradientMatchesFiniteDifferences) {
  const auto posterior = std::dynamic_pointer_cast<PotentialPosterior>(estimator_->posterior());
  ASSERT_TRUE(posterior);
  const std::vector<double> x_o = {1.0, -0.5};
  const auto target = posterior->potential(x_o);
  ASSERT_TRUE(target->has_gradient());
  // Points within ~1.5 posterior standard deviations of the mode (the flow's tails, far from the
  // training pairs, need not have the right slope).
  const std::vector<double> points = {0.8, -0.4, 0.5, -0.1, 1.3, -0.7, 0.3, -0.9};
  const Tensor theta = Tensor::from(points, {4, 2}, DType::f64);
  std::vector<double> value(4), value_only(4);
  Tensor grad = Tensor::empty({4, 2}, DType::f64);
  target->evaluate_with_gradient(theta, value, grad);
  target->evaluate(theta, value_only);
  const std::vector<double> g = grad.to_vector();
  // Central differences of the float32 network: h = 1e-2 keeps rounding (~1e-6 / h) and the
  // truncation error (h² f‴, f smooth: tanh MADE) both near 1e-4.
  constexpr double h = 1e-2;
  for (std::size_t i = 0; i < 4; ++i) {
    EXPECT_NEAR(value[i], value_only[i], 1e-5 * (1 + std::abs(value[i])));
    for (std::size_t d = 0; d < 2; ++d) {
      std::vector<double> up(points.begin() + 2 * i, points.begin() + 2 * i + 2), down = up;
      up[d] += h;
      down[d] -= h;
      std::vector<double> lu(1), ld(1);
      target->evaluate(Tensor::from(up, {1, 2}, DType::f64), lu);
      target->evaluate(Tensor::from(down, {1, 2}, DType::f64), ld);
      const double numeric = (lu[0] - ld[0]) / (2 * h);
      EXPECT_NEAR(g[2 * i + d], numeric, 2e-2 * (1 + std::abs(numeric))) << "row " << i
                                                                           << ", dim " << d;
    }
  }
  // The analytic posterior's gradient is -(θ - μ) / s²; the learned one should be close.
  for (std::size_t i = 0; i < 4; ++i)
    for (std::size_t d = 0; d < 2; ++d) {
      const double truth = -(points[2 * i + d] - gm::posterior_mean(x_o[d])) /
                           (gm::posterior_std() * gm::posterior_std());
      EXPECT_NEAR(g[2 * i + d], truth, 0.5 + 0.2 * std::abs(truth));
    }
}

// What a chain step costs in memory: after the first call has sized the buffers and grown the
// arena, evaluating a batch of chains allocates no tensor storage.
TEST_F(Nle, RepeatedPotentialEvaluationsAllocateNoTensorMemory) {
  const auto posterior = std::dynamic_pointer_cast<PotentialPosterior>(estimator_->posterior());
  const auto target = posterior->potential(std::vector{0.5, 0.5});
  const gm::Data points = gm::simulate(20, 3);
  const Tensor theta = points.theta.to(DType::f64);
  std::vector<double> out(20);
  target->evaluate(theta, out);
  const std::int64_t before = core::memory_stats().allocations;
  for (int i = 0; i < 10; ++i) target->evaluate(theta, out);
  EXPECT_EQ(core::memory_stats().allocations, before);
}

TEST_F(Nle, HmcOverThePotentialRecoversThePosterior) {
  const auto posterior = std::dynamic_pointer_cast<PotentialPosterior>(estimator_->posterior());
  const std::vector<double> x_o = {-1.8, 1.2};
  const auto target = posterior->potential(x_o);
  McmcOptions options{.sampler = SamplerKind::hmc, .chains = 10, .warmup = 200, .seed = 9};
  const McmcResult r =
      sample_mcmc(*target, Proposal::from_prior(estimator_->prior()), 1000, options);
  const gm::Moments m = gm::moments(r.samples);
  for (std::size_t d = 0; d < 2; ++d) {
    EXPECT_NEAR(m.mean[d], gm::posterior_mean(x_o[d]), 0.15);
    EXPECT_NEAR(m.std[d], gm::posterior_std(), 0.25 * gm::posterior_std());
  }
  EXPECT_GT(r.acceptance_rate, 0.5);
}

TEST_F(Nle, SaveAndLoadGiveIdenticalLogProbAndSamples) {
  const std::filesystem::path path =
      std::filesystem::temp_directory_path() / ("asbi_nle_" + std::to_string(::getpid()) + ".asbi");
  estimator_->save(path);
  const auto loaded = load_posterior(path, estimator_->shared_prior());
  std::filesystem::remove(path);
  const auto posterior = estimator_->posterior();
  const std::vector<double> x_o = {1.0, -0.5};
  const gm::Data points = gm::simulate(64, /*seed=*/12);
  EXPECT_EQ(loaded->log_prob(points.theta, x_o), posterior->log_prob(points.theta, x_o));
  EXPECT_EQ(loaded->sample(200, x_o, 3).to_vector(), posterior->sample(200, x_o, 3).to_vector());
}

// --- devices ----------------------------------------------------------------------------------

// The potential with the same weights on each device: values and θ-gradients agree to float32
// rounding; MCMC (chains on the host, the network on the GPU) recovers the analytic posterior.
TEST_F(Nle, CudaPotentialMatchesTheCpuForTheSameWeights) {
  if (!core::device_available(core::Device::cuda)) GTEST_SKIP() << "no CUDA device";
  const std::filesystem::path path = std::filesystem::temp_directory_path() /
                                     ("asbi_nle_cuda_" + std::to_string(::getpid()) + ".asbi");
  estimator_->save(path);
  const auto cpu = std::dynamic_pointer_cast<PotentialPosterior>(
      load_posterior(path, estimator_->shared_prior(), core::Device::cpu));
  const auto gpu = std::dynamic_pointer_cast<PotentialPosterior>(
      load_posterior(path, estimator_->shared_prior(), core::Device::cuda));
  std::filesystem::remove(path);
  ASSERT_TRUE(cpu && gpu);
  const std::vector<double> x_o = {1.0, -0.5};
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
  const gm::Moments m = gm::moments(gpu->sample(1000, x_o, 4));
  for (std::size_t d = 0; d < 2; ++d) {
    EXPECT_NEAR(m.mean[d], gm::posterior_mean(x_o[d]), 0.15);
    EXPECT_NEAR(m.std[d], gm::posterior_std(), 0.25 * gm::posterior_std());
  }
}

// A few epochs from the same weights and data on each device: the losses follow each other.
TEST(NleDevices, TrainingOnCudaFollowsTheCpu) {
  if (!core::device_available(core::Device::cuda)) GTEST_SKIP() << "no CUDA device";
  const gm::Data data = gm::simulate(1000, /*seed=*/8);
  std::vector<nn::TrainResult> runs;
  for (core::Device device : {core::Device::cpu, core::Device::cuda}) {
    EstimatorOptions o = nle_options();
    o.train.max_epochs = 4;
    o.device = device;
    auto e = make_estimator(gm::prior(), gm::kDim, o);
    e->append_simulations(data.theta, data.x);
    runs.push_back(e->train());
  }
  ASSERT_EQ(runs[0].train_loss.size(), runs[1].train_loss.size());
  for (std::size_t e = 0; e < runs[0].train_loss.size(); ++e) {
    EXPECT_NEAR(runs[1].train_loss[e], runs[0].train_loss[e],
                1e-3 * (1 + std::abs(runs[0].train_loss[e])));
    EXPECT_NEAR(runs[1].validation_loss[e], runs[0].validation_loss[e],
                1e-3 * (1 + std::abs(runs[0].validation_loss[e])));
  }
}

TEST(NleDevices, AnAbsentDeviceIsRefusedAtConstruction) {
  if (core::device_available(core::Device::cuda)) GTEST_SKIP() << "a CUDA device is present";
  EstimatorOptions o = nle_options();
  o.device = core::Device::cuda;
  expect_error_naming<core::DeviceError>([&] { make_estimator(gm::prior(), gm::kDim, o); },
                                         {"EstimatorOptions::device", "cuda"});
}

TEST(NleSupport, LogProbIsMinusInfinityOutsideThePriorSupportOnly) {
  // A box prior: the network is not evaluated outside it.
  auto box = std::make_shared<BoxUniform>(std::vector<double>{-1, -1}, std::vector<double>{1, 1});
  const gm::Data data = gm::simulate(400, 1);
  // A few epochs only: the support logic does not need a good fit.
  auto options = nle_options();
  options.train.max_epochs = 2;
  auto short_run = make_estimator(box, gm::kDim, options);
  short_run->append_simulations(data.theta, data.x);
  short_run->train();
  const std::vector<double> lp = short_run->posterior()->log_prob(
      Tensor::from({0.0, 0.5, 1.5, 0.0, -0.2, -3.0}, {3, 2}, DType::f64), std::vector{0.1, 0.2});
  EXPECT_TRUE(std::isfinite(lp[0]));
  EXPECT_EQ(lp[1], -std::numeric_limits<double>::infinity());
  EXPECT_EQ(lp[2], -std::numeric_limits<double>::infinity());
}

TEST(NleErrors, PosteriorBeforeTrainingBadObservationsAndOptions) {
  auto estimator = make_estimator(gm::prior(), gm::kDim, nle_options());
  expect_error_naming<core::StateError>([&] { estimator->posterior(); }, {"nle", "train"});
  expect_error_naming<core::StateError>([&] { estimator->train(); }, {"append_simulations"});
  EstimatorOptions embedded = nle_options();
  embedded.embedding.features = 4;
  expect_error_naming<core::ValueError>(
      [&] { make_estimator(gm::prior(), gm::kDim, embedded); }, {"embedding.features", "4"});

  auto options = nle_options();
  options.train.max_epochs = 1;
  auto trained = make_estimator(gm::prior(), gm::kDim, options);
  const gm::Data data = gm::simulate(100, 2);
  trained->append_simulations(data.theta, data.x);
  trained->train();
  const auto posterior = trained->posterior();
  const Tensor theta = Tensor::from({0.0, 0.0}, {1, 2}, DType::f64);
  expect_error_naming<core::ValueError>([&] { posterior->sample(10, std::vector{1.0}, 0); },
                                        {"2 values", "got 1"});
  expect_error_naming<core::ValueError>(
      [&] { posterior->log_prob(theta, std::vector{1.0, std::nan("")}); },
      {"observation value 2", "finite"});
  expect_error_naming<core::ShapeError>(
      [&] { posterior->log_prob(Tensor::from({0.0, 0.0, 0.0}, {1, 3}, DType::f64),
                                std::vector{1.0, 2.0}); },
      {"[n, 2]", "[1, 3]"});
}

TEST(NleReproducibility, SameSeedsGiveIdenticalWeightsAndSamples) {
  auto options = nle_options();
  options.train.max_epochs = 3;
  const gm::Data data = gm::simulate(300, 8);
  const std::vector<double> x_o = {0.3, 0.1};
  std::vector<double> lp[2];
  for (auto& out : lp) {
    auto estimator = make_estimator(gm::prior(), gm::kDim, options);
    estimator->append_simulations(data.theta, data.x);
    estimator->train();
    out = estimator->posterior()->log_prob(data.theta.rows(0, 20), x_o);
  }
  EXPECT_EQ(lp[0], lp[1]);
  options.seed += 1;  // other initial weights
  auto other = make_estimator(gm::prior(), gm::kDim, options);
  other->append_simulations(data.theta, data.x);
  other->train();
  EXPECT_NE(other->posterior()->log_prob(data.theta.rows(0, 20), x_o), lp[0]);
}

// SNLE: round 1 simulates at θ drawn from the round-0 posterior and trains on all rows.
TEST(NleSequential, TwoRoundsConcentrateOnTheObservation) {
  ASBI_SKIP_STATISTICAL_FIT_IF_FAST();
  const auto simulator = CallableSimulator::per_row(
      gm::kDim, gm::kDim, [](std::span<const double> theta, std::span<double> x, core::Rng& rng) {
        for (std::size_t d = 0; d < theta.size(); ++d) x[d] = theta[d] + gm::kSigma * rng.normal();
      });
  auto options = nle_options();
  options.mcmc.warmup = 100;
  auto estimator = make_estimator(gm::prior(), gm::kDim, options);
  const std::vector<double> x_o = {1.5, -1.0};
  std::vector<std::int64_t> rows;
  const auto posterior = train_sequential(
      *estimator, simulator, x_o,
      {.rounds = 2, .simulations_per_round = 600, .seed = 17,
       .on_round = [&](int, std::int64_t n, const nn::TrainResult&) { rows.push_back(n); }});
  EXPECT_EQ(rows, (std::vector<std::int64_t>{600, 600}));
  EXPECT_EQ(estimator->simulations(), 1200);
  EXPECT_EQ(estimator->history().size(), 2u);
  const gm::Moments m = gm::moments(posterior->sample(2000, x_o, 1));
  for (std::size_t d = 0; d < 2; ++d) {
    EXPECT_NEAR(m.mean[d], gm::posterior_mean(x_o[d]), 0.15);
    EXPECT_NEAR(m.std[d], gm::posterior_std(), 0.3 * gm::posterior_std());
  }
}

// The NSF option, and statistics that must survive a save: without z-scoring there are no
// buffers, with it both x's and θ's are stored.
TEST(NleFlows, NsfAndUnstandardizedFlowsSaveAndLoad) {
  const gm::Data data = gm::simulate(300, 15);
  const std::vector<double> x_o = {0.4, -0.2};
  for (bool z_score : {true, false}) {
    auto options = nle_options();
    options.flow = flows::FlowKind::nsf;
    options.z_score_theta = options.z_score_x = z_score;
    options.train.max_epochs = 2;
    auto estimator = make_estimator(gm::prior(), gm::kDim, options);
    estimator->append_simulations(data.theta, data.x);
    estimator->train();
    const std::filesystem::path path =
        std::filesystem::temp_directory_path() /
        ("asbi_nle_nsf_" + std::to_string(::getpid()) + (z_score ? "_z" : "") + ".asbi");
    estimator->save(path);
    EXPECT_EQ(load_estimator_options(path).flow, flows::FlowKind::nsf);
    const auto loaded = load_posterior(path, estimator->shared_prior());
    std::filesystem::remove(path);
    EXPECT_EQ(loaded->log_prob(data.theta.rows(0, 16), x_o),
              estimator->posterior()->log_prob(data.theta.rows(0, 16), x_o));
  }
}

}  // namespace
}  // namespace asbi::sbi
