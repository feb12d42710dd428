// Samplers against distributions with a known answer: a correlated Gaussian (mean and covariance
// within Monte Carlo error, the error taken from the measured ESS), a truncated Gaussian on a box
// (support respected, analytic moments), a bimodal mixture (weights; R-hat flags chains stuck in
// separate modes), ESS of AR(1) chains against the analytic value, rejection and SIR against a
// Gaussian, reproducibility (seeds, thread counts), errors. Reference posteriors: the analytic
// gaussian_linear posterior and a C2ST against sbibm's shipped two_moons samples.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <numbers>
#include <string>
#include <vector>

#include "core/backend.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "sbi/csv.hpp"
#include "sbi/diagnostics.hpp"
#include "sbi/mcmc.hpp"
#include "sbi/reference.hpp"
#include "sbi/task.hpp"
#include "test_util.hpp"

namespace asbi::sbi {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// N(mean, cov) in 2-D, unnormalised, with its gradient.
struct Gaussian2d {
  double m0, m1, s00, s01, s11;
  double log_p(const double* x, double* g) const {
    const double det = s00 * s11 - s01 * s01;
    const double p00 = s11 / det, p01 = -s01 / det, p11 = s00 / det;  // precision
    const double a = x[0] - m0, b = x[1] - m1;
    if (g) {
      g[0] = -(p00 * a + p01 * b);
      g[1] = -(p01 * a + p11 * b);
    }
    return -0.5 * (p00 * a * a + 2 * p01 * a * b + p11 * b * b);
  }
  CallableLogDensity density(bool with_gradient = true) const {
    auto fn = [g = *this](const Tensor& theta, std::span<double> out) {
      const double* p = theta.data<double>();
      for (std::int64_t i = 0; i < theta.dim(0); ++i) out[static_cast<std::size_t>(i)] =
          g.log_p(p + 2 * i, nullptr);
    };
    auto grad = [g = *this](const Tensor& theta, std::span<double> out, Tensor& grad_out) {
      const double* p = theta.data<double>();
      double* gr = grad_out.data<double>();
      for (std::int64_t i = 0; i < theta.dim(0); ++i) out[static_cast<std::size_t>(i)] =
          g.log_p(p + 2 * i, gr + 2 * i);
    };
    return with_gradient ? CallableLogDensity(2, fn, grad) : CallableLogDensity(2, fn);
  }
};

const Gaussian2d kCorrelated{1.0, -2.0, 1.0, 1.6, 4.0};  // σ = (1, 2), ρ = 0.8

// Wide Gaussian initialisation proposal N(0, 3² I) in `d` dimensions.
sbi::Gaussian wide_prior(std::int64_t d, double sd = 3.0) {
  std::vector<double> cov(static_cast<std::size_t>(d * d), 0.0);
  for (std::int64_t i = 0; i < d; ++i) cov[static_cast<std::size_t>(i * d + i)] = sd * sd;
  return sbi::Gaussian(std::vector<double>(static_cast<std::size_t>(d), 0.0), cov);
}

std::vector<double> column_means(const Tensor& s) {
  const std::int64_t n = s.dim(0), d = s.dim(1);
  std::vector<double> m(static_cast<std::size_t>(d), 0.0);
  const double* p = s.data<double>();
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < d; ++j) m[static_cast<std::size_t>(j)] += p[i * d + j];
  for (double& v : m) v /= static_cast<double>(n);
  return m;
}

double covariance(const Tensor& s, std::int64_t a, std::int64_t b) {
  const std::int64_t n = s.dim(0), d = s.dim(1);
  const std::vector<double> m = column_means(s);
  const double* p = s.data<double>();
  double c = 0;
  for (std::int64_t i = 0; i < n; ++i)
    c += (p[i * d + a] - m[static_cast<std::size_t>(a)]) * (p[i * d + b] - m[static_cast<std::size_t>(b)]);
  return c / static_cast<double>(n - 1);
}

double min_of(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }
double max_of(const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); }

// ESS of the products (θ_a − m_a)(θ_b − m_b) along the chains: the effective sample size of a
// (co)variance estimate, which differs from the ESS of the mean (HMC's nearly antithetic
// draws give a huge ESS for the mean and a modest one for the variance).
double product_ess(const Tensor& chains, std::int64_t a, std::int64_t b) {
  const std::int64_t C = chains.dim(0), T = chains.dim(1), D = chains.dim(2);
  const Tensor flat = chains.reshape({C * T, D});
  const std::vector<double> m = column_means(flat);
  Tensor products = Tensor::empty({C, T, 1}, core::DType::f64);
  const double* p = chains.data<double>();
  double* q = products.data<double>();
  for (std::int64_t i = 0; i < C * T; ++i)
    q[i] = (p[i * D + a] - m[static_cast<std::size_t>(a)]) * (p[i * D + b] - m[static_cast<std::size_t>(b)]);
  return effective_sample_size(products)[0];
}

// Mean and covariance of the samples within 4.5 Monte Carlo standard errors, each error from
// the measured ESS of its own estimate (so a sampler that mixes badly gets wider, but honest,
// tolerances; ESS is computed on all kept states, which here are exactly the samples).
void expect_gaussian_moments(const McmcResult& r, const Gaussian2d& g) {
  ASSERT_EQ(r.chains.dim(0) * r.chains.dim(1), r.samples.dim(0));
  const double ess = min_of(r.ess);
  ASSERT_GT(ess, 200) << "too few effective samples to test the moments";
  const std::vector<double> m = column_means(r.samples);
  const double z = 4.5;
  EXPECT_NEAR(m[0], g.m0, z * std::sqrt(g.s00 / r.ess[0]));
  EXPECT_NEAR(m[1], g.m1, z * std::sqrt(g.s11 / r.ess[1]));
  // Var of a sample (co)variance: (σ_aa σ_bb + σ_ab²) / ESS for Gaussian draws.
  const double ess00 = product_ess(r.chains, 0, 0), ess11 = product_ess(r.chains, 1, 1);
  const double ess01 = product_ess(r.chains, 0, 1);
  ASSERT_GT(std::min({ess00, ess11, ess01}), 100);
  EXPECT_NEAR(covariance(r.samples, 0, 0), g.s00, z * std::sqrt(2 * g.s00 * g.s00 / ess00));
  EXPECT_NEAR(covariance(r.samples, 1, 1), g.s11, z * std::sqrt(2 * g.s11 * g.s11 / ess11));
  EXPECT_NEAR(covariance(r.samples, 0, 1), g.s01,
              z * std::sqrt((g.s00 * g.s11 + g.s01 * g.s01) / ess01));
  EXPECT_LT(max_of(r.r_hat), 1.05);
  ::testing::Test::RecordProperty("ess", testing::PrintToString(std::vector<double>{r.ess[0], r.ess[1], ess00, ess11, ess01}));
  std::printf("ess mean %.0f %.0f, products %.0f %.0f %.0f\n", r.ess[0], r.ess[1], ess00, ess11, ess01);
}

McmcResult run_gaussian(SamplerKind kind, std::uint64_t seed = 3, std::int64_t n = 4000) {
  const sbi::Gaussian init = wide_prior(2);
  const CallableLogDensity target = kCorrelated.density();
  McmcOptions o;
  o.sampler = kind;
  o.chains = 20;
  o.warmup = 300;
  o.seed = seed;
  return sample_mcmc(target, Proposal::from_prior(init), n, o);
}

TEST(McmcSlice, CorrelatedGaussianMoments) {
  const McmcResult r = run_gaussian(SamplerKind::slice);
  ASSERT_EQ(r.samples.shape(), core::Shape({4000, 2}));
  ASSERT_EQ(r.chains.shape(), core::Shape({20, 200, 2}));
  EXPECT_EQ(r.acceptance_rate, 1.0);
  EXPECT_GT(r.evaluations, 20 * 500 * 2 * 2);  // ≥ 2 evaluations per coordinate update
  expect_gaussian_moments(r, kCorrelated);
  RecordProperty("ess", std::to_string(min_of(r.ess)));
}

TEST(McmcMh, CorrelatedGaussianMoments) {
  const McmcResult r = run_gaussian(SamplerKind::mh, 3, 8000);
  expect_gaussian_moments(r, kCorrelated);
  // Adapted towards 0.234; the optimum for a 2-D Gaussian is nearer 0.35, anything sane counts.
  EXPECT_GT(r.acceptance_rate, 0.15);
  EXPECT_LT(r.acceptance_rate, 0.4);
}

TEST(McmcHmc, CorrelatedGaussianMoments) {
  const McmcResult r = run_gaussian(SamplerKind::hmc);
  expect_gaussian_moments(r, kCorrelated);
  EXPECT_GT(r.acceptance_rate, 0.6);  // dual averaging aims at 0.8
  EXPECT_GT(min_of(r.ess), 1000);     // HMC on a Gaussian is far better than a random walk
}

TEST(McmcHmc, NeedsGradient) {
  const sbi::Gaussian init = wide_prior(2);
  const CallableLogDensity target = kCorrelated.density(/*with_gradient=*/false);
  McmcOptions o;
  o.sampler = SamplerKind::hmc;
  test_util::expect_error_naming<core::StateError>(
      [&] { sample_mcmc(target, Proposal::from_prior(init), 100, o); }, {"HMC", "gradient"});
}

// N(0, I) truncated to [0, ∞) × [−1, 1]: half-normal and two-sided truncated normal moments.
CallableLogDensity truncated_gaussian() {
  auto log_p = [](const double* x, double* g) {
    if (x[0] < 0 || x[1] < -1 || x[1] > 1) return kNegInf;
    if (g) {
      g[0] = -x[0];
      g[1] = -x[1];
    }
    return -0.5 * (x[0] * x[0] + x[1] * x[1]);
  };
  return CallableLogDensity(
      2,
      [log_p](const Tensor& theta, std::span<double> out) {
        const double* p = theta.data<double>();
        for (std::int64_t i = 0; i < theta.dim(0); ++i)
          out[static_cast<std::size_t>(i)] = log_p(p + 2 * i, nullptr);
      },
      [log_p](const Tensor& theta, std::span<double> out, Tensor& grad) {
        const double* p = theta.data<double>();
        double* g = grad.data<double>();
        for (std::int64_t i = 0; i < theta.dim(0); ++i) {
          g[2 * i] = g[2 * i + 1] = 0;
          out[static_cast<std::size_t>(i)] = log_p(p + 2 * i, g + 2 * i);
        }
      });
}

class McmcBounded : public ::testing::TestWithParam<SamplerKind> {};

TEST_P(McmcBounded, TruncatedGaussianStaysInSupport) {
  const sbi::Gaussian init = wide_prior(2, 2.0);
  const CallableLogDensity target = truncated_gaussian();
  McmcOptions o;
  o.sampler = GetParam();
  o.chains = 20;
  o.warmup = 300;
  o.seed = 11;
  const McmcResult r = sample_mcmc(target, Proposal::from_prior(init), 6000, o);
  const double* p = r.samples.data<double>();
  for (std::int64_t i = 0; i < r.samples.dim(0); ++i) {
    ASSERT_GE(p[2 * i], 0.0);
    ASSERT_GE(p[2 * i + 1], -1.0);
    ASSERT_LE(p[2 * i + 1], 1.0);
  }
  const double ess = min_of(r.ess);
  ASSERT_GT(ess, 100);  // HMC loses trajectories at the walls: its ESS is the lowest
  const double half_mean = std::sqrt(2 / std::numbers::pi), half_var = 1 - 2 / std::numbers::pi;
  const double phi1 = std::exp(-0.5) / std::sqrt(2 * std::numbers::pi);
  const double trunc_var = 1 - 2 * phi1 / std::erf(1 / std::numbers::sqrt2);
  const std::vector<double> m = column_means(r.samples);
  EXPECT_NEAR(m[0], half_mean, 4.5 * std::sqrt(half_var / ess));
  EXPECT_NEAR(m[1], 0.0, 4.5 * std::sqrt(trunc_var / ess));
  EXPECT_NEAR(covariance(r.samples, 0, 0), half_var, 4.5 * half_var * std::sqrt(3.0 / ess));
  EXPECT_NEAR(covariance(r.samples, 1, 1), trunc_var, 4.5 * trunc_var * std::sqrt(2.0 / ess));
}

INSTANTIATE_TEST_SUITE_P(AllSamplers, McmcBounded,
                         ::testing::Values(SamplerKind::slice, SamplerKind::mh, SamplerKind::hmc),
                         [](const auto& info) { return std::string(name(info.param)); });

// 1-D mixture w·N(−a, s²) + (1 − w)·N(a, s²).
CallableLogDensity mixture_1d(double w, double a, double s) {
  return CallableLogDensity(1, [=](const Tensor& theta, std::span<double> out) {
    const double* p = theta.data<double>();
    for (std::int64_t i = 0; i < theta.dim(0); ++i) {
      const double l = std::log(w) - 0.5 * std::pow((p[i] + a) / s, 2);
      const double r = std::log(1 - w) - 0.5 * std::pow((p[i] - a) / s, 2);
      const double hi = std::max(l, r);
      out[static_cast<std::size_t>(i)] = hi + std::log(std::exp(l - hi) + std::exp(r - hi));
    }
  });
}

double fraction_positive(const Tensor& samples) {
  const double* p = samples.data<double>();
  std::int64_t k = 0;
  for (std::int64_t i = 0; i < samples.dim(0); ++i) k += p[i] > 0;
  return static_cast<double>(k) / static_cast<double>(samples.dim(0));
}

TEST(McmcSlice, MixtureWeights) {
  // Modes 3 s apart from the trough: slices at low heights span both, so chains cross between
  // modes and the weights come out right whatever the starts. Starts from one mode only
  // (ChainInit::proposal from a proposal far on the left) make the test depend on that mixing.
  const CallableLogDensity target = mixture_1d(0.3, 1.5, 0.5);
  const sbi::Gaussian init({-1.5}, {0.01});
  McmcOptions o;
  o.chains = 20;
  o.warmup = 200;
  o.seed = 5;
  o.init = ChainInit::proposal;
  const McmcResult r = sample_mcmc(target, Proposal::from_prior(init), 20000, o);
  EXPECT_NEAR(fraction_positive(r.samples), 0.7, 0.03);
  EXPECT_LT(max_of(r.r_hat), 1.05);
}

TEST(McmcSir, InitialisationBalancesSeparatedModes) {
  // Modes 40 s apart: no chain ever crosses, so the weights are those of the SIR starts, and
  // R-hat must see the chains disagree.
  const CallableLogDensity target = mixture_1d(0.5, 10.0, 0.5);
  const sbi::Gaussian init = wide_prior(1, 15.0);
  McmcOptions o;
  o.sampler = SamplerKind::mh;
  o.chains = 16;
  o.warmup = 100;
  o.seed = 9;
  const McmcResult r = sample_mcmc(target, Proposal::from_prior(init), 1600, o);
  const double* c = r.chains.data<double>();
  int right = 0;
  for (int chain = 0; chain < 16; ++chain) {
    const double first = c[chain * 100];
    for (int t = 0; t < 100; ++t) ASSERT_EQ(c[chain * 100 + t] > 0, first > 0) << "chain crossed";
    right += first > 0;
  }
  EXPECT_GT(right, 0);
  EXPECT_LT(right, 16);
  EXPECT_GT(r.r_hat[0], 1.1);
}

// C chains of T AR(1) states x_t = φ x_{t−1} + √(1 − φ²) ε_t, stationary N(0, 1) starts, shifted
// by shift[c].
Tensor ar1_chains(int chains, int length, double phi, std::uint64_t seed,
                  const std::vector<double>& shift = {}) {
  Tensor t = Tensor::empty({chains, length, 1}, core::DType::f64);
  double* p = t.data<double>();
  for (int c = 0; c < chains; ++c) {
    core::Rng rng(seed, static_cast<std::uint64_t>(c));
    double x = rng.normal();
    for (int i = 0; i < length; ++i) {
      p[c * length + i] = x + (shift.empty() ? 0.0 : shift[static_cast<std::size_t>(c)]);
      x = phi * x + std::sqrt(1 - phi * phi) * rng.normal();
    }
  }
  return t;
}

TEST(McmcDiagnostics, Ar1EssMatchesAnalytic) {
  // ESS of an AR(1) chain: N (1 − φ) / (1 + φ).
  for (double phi : {0.5, 0.9}) {
    const Tensor chains = ar1_chains(8, 5000, phi, 21);
    const double analytic = 8 * 5000 * (1 - phi) / (1 + phi);
    const double ess = effective_sample_size(chains)[0];
    EXPECT_NEAR(ess / analytic, 1.0, 0.15) << "phi " << phi << ": ess " << ess;
  }
}

TEST(McmcDiagnostics, IidChainsHaveRhatOneAndFullEss) {
  const Tensor chains = ar1_chains(4, 2000, 0.0, 22);
  EXPECT_NEAR(split_r_hat(chains)[0], 1.0, 0.01);
  EXPECT_NEAR(effective_sample_size(chains)[0] / 8000, 1.0, 0.1);
}

TEST(McmcDiagnostics, RhatFlagsDisagreeingChains) {
  // One chain off by one sd: the bulk R-hat sees it.
  EXPECT_GT(split_r_hat(ar1_chains(4, 1000, 0.0, 23, {0, 0, 0, 1.0}))[0], 1.1);
  // A trend within each chain: the split halves disagree.
  Tensor trend = ar1_chains(2, 1000, 0.0, 24);
  double* p = trend.data<double>();
  for (int i = 0; i < 2000; ++i) p[i] += 0.004 * (i % 1000);
  EXPECT_GT(split_r_hat(trend)[0], 1.1);
  // Too short: NaN.
  EXPECT_TRUE(std::isnan(split_r_hat(ar1_chains(2, 3, 0.0, 25))[0]));
  test_util::expect_error_naming<core::ShapeError>(
      [] { split_r_hat(Tensor::zeros({4, 2}, core::DType::f64)); }, {"[C, T, D]"});
}

// N(1, 0.5²) unnormalised, and the proposal N(0, 2²).
CallableLogDensity narrow_gaussian_1d() {
  return CallableLogDensity(1, [](const Tensor& theta, std::span<double> out) {
    const double* p = theta.data<double>();
    for (std::int64_t i = 0; i < theta.dim(0); ++i)
      out[static_cast<std::size_t>(i)] = -2 * (p[i] - 1) * (p[i] - 1);
  });
}

void expect_narrow_gaussian(const Tensor& s, double tol_scale) {
  const std::int64_t n = s.dim(0);
  const double m = column_means(s)[0], v = covariance(s, 0, 0);
  EXPECT_NEAR(m, 1.0, tol_scale * 4.5 * 0.5 / std::sqrt(static_cast<double>(n)));
  EXPECT_NEAR(v, 0.25, tol_scale * 4.5 * 0.25 * std::sqrt(2.0 / static_cast<double>(n)));
}

TEST(McmcRejection, MatchesGaussian) {
  const CallableLogDensity target = narrow_gaussian_1d();
  const sbi::Gaussian q({0.0}, {4.0});
  // max over x of log π − log q: at x = 16/15 (d/dx = 0), plus a margin.
  const double x = 16.0 / 15.0;
  const double log_bound = -2 * (x - 1) * (x - 1) + x * x / 8 + std::log(2 * std::sqrt(2 * std::numbers::pi)) + 1e-6;
  core::Rng rng(4, 0);
  const Tensor s = rejection_sample(target, Proposal::from_prior(q), log_bound, 5000, rng);
  ASSERT_EQ(s.shape(), core::Shape({5000, 1}));
  expect_narrow_gaussian(s, 1.0);
  // A bound that is too low is caught rather than silently giving wrong samples.
  core::Rng rng2(4, 0);
  test_util::expect_error_naming<core::ValueError>(
      [&] { rejection_sample(target, Proposal::from_prior(q), log_bound - 1, 100, rng2); },
      {"exceeds log_bound"});
  // A hopeless proposal stops with the acceptance rate.
  const CallableLogDensity far(1, [](const Tensor& theta, std::span<double> out) {
    const double* p = theta.data<double>();
    for (std::int64_t i = 0; i < theta.dim(0); ++i)
      out[static_cast<std::size_t>(i)] = p[i] > 8 ? 0.0 : kNegInf;
  });
  test_util::expect_error_naming<core::ValueError>(
      [&] { rejection_sample(far, Proposal::from_prior(q), 50, 100, rng2, 20000); },
      {"acceptance rate", "max_draws"});
}

TEST(McmcSir, ImportanceResampleMatchesGaussian) {
  const CallableLogDensity target = narrow_gaussian_1d();
  const sbi::Gaussian q({0.0}, {4.0});
  core::Rng rng(6, 0);
  const Tensor s = importance_resample(target, Proposal::from_prior(q), 5000, rng, 64);
  // SIR with a finite number of candidates is slightly biased towards q; 64 keep it small.
  expect_narrow_gaussian(s, 1.5);
}

TEST(McmcReproducibility, SameSeedSameSamples) {
  for (SamplerKind kind : {SamplerKind::slice, SamplerKind::mh, SamplerKind::hmc}) {
    const McmcResult a = run_gaussian(kind, 7, 400), b = run_gaussian(kind, 7, 400);
    const McmcResult c = run_gaussian(kind, 8, 400);
    EXPECT_EQ(a.samples.to_vector(), b.samples.to_vector()) << name(kind);
    EXPECT_NE(a.samples.to_vector(), c.samples.to_vector()) << name(kind);
  }
}

TEST(McmcReproducibility, SameSamplesForAnyThreadCount) {
  // two_moons' likelihood made costly (≈ 20 µs a row), so that TaskPosteriorDensity runs its
  // rows on several threads.
  const std::shared_ptr<const Task> two_moons = make_task("two_moons");
  std::atomic<int> max_thread{0};
  const Task costly("costly_two_moons", two_moons->shared_prior(),
                    std::shared_ptr<const Simulator>(two_moons, &two_moons->simulator()),
                    [&](std::span<const double> t, std::span<const double> x) {
                      double busy = 0;
                      for (int i = 0; i < 2000; ++i) busy += std::sin(t[0] * i);
                      int seen = max_thread.load();
                      const int me = omp_get_thread_num();
                      while (me > seen && !max_thread.compare_exchange_weak(seen, me)) {
                      }
                      return two_moons->log_likelihood(t, x) + 1e-12 * busy;
                    });
  const std::vector<double> x_o = {0.1, -0.05};
  McmcOptions o = reference_mcmc_options(3);
  o.chains = 64;
  o.warmup = 5;
  o.thin = 1;
  o.init_candidates = 20;
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const McmcResult one = reference_posterior(costly, x_o, 128, o);
  omp_set_num_threads(2);
  const McmcResult two = reference_posterior(costly, x_o, 128, o);
  omp_set_num_threads(threads);
  EXPECT_EQ(max_thread.load(), 1) << "the second thread never ran a row";
  EXPECT_EQ(one.samples.to_vector(), two.samples.to_vector());
  EXPECT_EQ(one.evaluations, two.evaluations);
}

TEST(McmcOptions, BadOptionsAreNamed) {
  const sbi::Gaussian init = wide_prior(2);
  const CallableLogDensity target = kCorrelated.density();
  const Proposal p = Proposal::from_prior(init);
  auto expect_bad = [&](auto edit, const char* field) {
    McmcOptions o;
    edit(o);
    test_util::expect_error_naming<core::ValueError>([&] { sample_mcmc(target, p, 10, o); },
                                                     {field});
  };
  expect_bad([](McmcOptions& o) { o.chains = 0; }, "options.chains");
  expect_bad([](McmcOptions& o) { o.warmup = -1; }, "options.warmup");
  expect_bad([](McmcOptions& o) { o.thin = 0; }, "options.thin");
  expect_bad([](McmcOptions& o) { o.init_candidates = 0; }, "options.init_candidates");
  expect_bad([](McmcOptions& o) { o.slice_width = 0; }, "options.slice_width");
  expect_bad([](McmcOptions& o) { o.mh_target_acceptance = 1.5; }, "options.mh_target_acceptance");
  expect_bad([](McmcOptions& o) { o.hmc_leapfrog_steps = 0; }, "options.hmc_leapfrog_steps");
  test_util::expect_error_naming<core::ValueError>([&] { sample_mcmc(target, p, 0, {}); },
                                                   {"n must be"});
  // No finite start.
  const CallableLogDensity nowhere(2, [](const Tensor&, std::span<double> out) {
    for (double& v : out) v = kNegInf;
  });
  for (ChainInit init_kind : {ChainInit::sir, ChainInit::proposal}) {
    McmcOptions o;
    o.init = init_kind;
    o.init_candidates = 10;
    test_util::expect_error_naming<core::ValueError>([&] { sample_mcmc(nowhere, p, 10, o); },
                                                     {"finite log density"});
  }
  EXPECT_EQ(sampler_from_name("mh"), SamplerKind::mh);
  test_util::expect_error_naming<core::ValueError>([] { sampler_from_name("nuts"); },
                                                   {"nuts", "slice, mh, hmc"});
}

TEST(McmcResultLayout, InterleavedExactCount) {
  // 7 chains, n = 30: 5 states per chain, the last round cut to 2 chains.
  const sbi::Gaussian init = wide_prior(2);
  const CallableLogDensity target = kCorrelated.density();
  McmcOptions o;
  o.chains = 7;
  o.warmup = 5;
  o.thin = 3;
  const McmcResult r = sample_mcmc(target, Proposal::from_prior(init), 30, o);
  ASSERT_EQ(r.samples.shape(), core::Shape({30, 2}));
  ASSERT_EQ(r.chains.shape(), core::Shape({7, 5, 2}));
  for (std::int64_t i = 0; i < 30; ++i)
    for (std::int64_t j = 0; j < 2; ++j)
      EXPECT_EQ(r.samples.at(i * 2 + j), r.chains.at(((i % 7) * 5 + i / 7) * 2 + j));
}

TEST(ReferencePosterior, TaskDensitySkipsLikelihoodOutsidePrior) {
  int calls_outside = 0;
  auto prior = std::make_shared<BoxUniform>(std::vector<double>{-1}, std::vector<double>{1});
  auto sim = std::make_shared<CallableSimulator>(CallableSimulator::per_row(
      1, 1, [](std::span<const double> t, std::span<double> x, core::Rng&) { x[0] = t[0]; }));
  const Task task("box", prior, sim, [&](std::span<const double> t, std::span<const double>) {
    if (std::abs(t[0]) >= 1) ++calls_outside;
    return -t[0] * t[0];
  });
  const std::vector<double> x_o = {0.0};
  const TaskPosteriorDensity density(task, x_o);
  std::vector<double> out(3);
  density.evaluate(Tensor::from({0.5, 2.0, -3.0}, {3, 1}, core::DType::f64), out);
  EXPECT_DOUBLE_EQ(out[0], std::log(0.5) - 0.25);
  EXPECT_EQ(out[1], kNegInf);
  EXPECT_EQ(out[2], kNegInf);
  EXPECT_EQ(calls_outside, 0);
  test_util::expect_error_naming<core::ValueError>(
      [&] { TaskPosteriorDensity(task, std::vector<double>{1, 2}); }, {"x_dim", "box"});
  const Task no_likelihood("nolik", prior, sim);
  test_util::expect_error_naming<core::StateError>(
      [&] { TaskPosteriorDensity(no_likelihood, x_o); }, {"nolik", "likelihood"});
}

TEST(ReferencePosterior, GaussianLinearMatchesAnalytic) {
  // Posterior N(x_o / 2, 0.05 I) (TASKS.md: prior and noise variances 0.1).
  const std::unique_ptr<Task> task = make_task("gaussian_linear");
  const std::vector<double> x_o = reference_observation("gaussian_linear", 1);
  McmcOptions o = reference_mcmc_options(1);
  o.chains = 100;  // 30 states per chain, enough for the ESS that sets the tolerances
  o.init_candidates = 200;
  const McmcResult r = reference_posterior(*task, x_o, 3000, o);
  const double ess = min_of(r.ess);
  ASSERT_GT(ess, 500);
  EXPECT_LT(max_of(r.r_hat), 1.05);
  const std::vector<double> m = column_means(r.samples);
  for (std::int64_t j = 0; j < 10; ++j) {
    EXPECT_NEAR(m[static_cast<std::size_t>(j)], x_o[static_cast<std::size_t>(j)] / 2,
                4.5 * std::sqrt(0.05 / ess));
    EXPECT_NEAR(covariance(r.samples, j, j), 0.05, 4.5 * 0.05 * std::sqrt(2 / ess));
  }
  EXPECT_NEAR(covariance(r.samples, 0, 1), 0.0, 4.5 * 0.05 / std::sqrt(ess));
}

std::filesystem::path reference_samples_path(const std::string& task, int k) {
  return sbibm_reference_dir() / task / ("num_observation_" + std::to_string(k)) /
         "reference_posterior_samples.csv";
}

TEST(ReferencePosterior, TwoMoonsC2stAgainstShippedSamples) {
  const std::unique_ptr<Task> task = make_task("two_moons");
  const std::vector<double> x_o = reference_observation("two_moons", 1);
  const McmcResult r = reference_posterior(*task, x_o, 1000, reference_mcmc_options(2));
  const Tensor reference = read_csv(reference_samples_path("two_moons", 1).string()).rows(0, 1000);
  const double acc = c2st(reference, r.samples);
  RecordProperty("c2st", std::to_string(acc));
  // Chance is 0.5 ± 0.016 (sd) at 1000 + 1000 rows; one moon only scores ≈ 0.75.
  EXPECT_LT(acc, 0.56);
}

// The acceptance measurement (not part of the suite; the C2STs of the 10-D task take minutes):
// reference_posterior for observations 1–5 of two_moons, gaussian_linear and slcp, 10 000
// samples each, against sbibm's shipped samples. Run with
//   ASBI_REFERENCE_DIR=... asbi_sbi_tests --gtest_also_run_disabled_tests
//     --gtest_filter='*ReferenceAcceptance*'
// Optional environment: ASBI_REFERENCE_TASKS=two_moons,slcp (a subset), ASBI_REFERENCE_OUT=folder
// (writes each sample set as <task>_<k>.csv), ASBI_MCMC_CHAINS / _WARMUP / _THIN (override the
// defaults of reference_mcmc_options, to compare settings).
TEST(ReferencePosterior, DISABLED_ReferenceAcceptance) {
  const char* out_dir = std::getenv("ASBI_REFERENCE_OUT");
  const char* tasks_env = std::getenv("ASBI_REFERENCE_TASKS");
  const std::string tasks = tasks_env ? tasks_env : "two_moons,gaussian_linear,slcp";
  auto env_int = [](const char* key, int fallback) {
    const char* v = std::getenv(key);
    return v ? std::atoi(v) : fallback;
  };
  std::printf("%-16s %3s %7s %8s %9s %7s %9s %12s\n", "task", "obs", "c2st", "seconds",
              "samples/s", "r_hat", "min ess", "evaluations");
  for (const std::string name : {"two_moons", "gaussian_linear", "slcp"}) {
    if (tasks.find(name) == std::string::npos) continue;
    const std::unique_ptr<Task> task = make_task(name);
    for (int k = 1; k <= 5; ++k) {
      const std::vector<double> x_o = reference_observation(name, k);
      McmcOptions o = reference_mcmc_options(static_cast<std::uint64_t>(k));
      o.chains = env_int("ASBI_MCMC_CHAINS", o.chains);
      o.warmup = env_int("ASBI_MCMC_WARMUP", o.warmup);
      o.thin = env_int("ASBI_MCMC_THIN", o.thin);
      const McmcResult r = reference_posterior(*task, x_o, 10000, o);
      const Tensor reference = read_csv(reference_samples_path(name, k).string());
      const double acc = c2st(reference, r.samples);
      std::printf("%-16s %3d %7.4f %8.2f %9.0f %7.3f %9.0f %12lld\n", name.c_str(), k, acc,
                  r.seconds, 10000 / r.seconds, max_of(r.r_hat), min_of(r.ess),
                  static_cast<long long>(r.evaluations));
      std::fflush(stdout);
      if (out_dir) {
        std::vector<std::string> header;
        for (std::int64_t j = 0; j < r.samples.dim(1); ++j)
          header.push_back("theta_" + std::to_string(j + 1));
        write_csv((std::filesystem::path(out_dir) / (name + "_" + std::to_string(k) + ".csv"))
                      .string(),
                  r.samples, header);
      }
      EXPECT_LT(acc, 0.53) << name << " " << k;
    }
  }
}

// ---- sample_task_posterior: chains one at a time (the GPU's per-chain kernels, on the CPU) ----

// An observation of a kernel task simulated from a prior draw, so these tests need no data.
std::vector<double> simulated_observation(const Task& task, std::uint64_t seed) {
  core::Rng rng(seed, 0);
  const Tensor theta = task.prior().sample(1, rng);
  return task.simulator().simulate(theta, seed).to_vector();
}

struct ChainCase {
  const char* task;
  SamplerKind sampler;
  ChainInit init;
};

// The per-chain transitions of sbi/chain_kernels.hpp, run on the host, are sample_mcmc's
// lock-step samplers: the same samples, bit for bit, the same evaluation count and acceptance,
// for both samplers, both initialisations, and tasks with Gaussian and box priors.
TEST(McmcTaskChains, HostChainsEqualSampleMcmc) {
  const ChainCase cases[] = {{"two_moons", SamplerKind::slice, ChainInit::sir},
                             {"slcp", SamplerKind::mh, ChainInit::sir},
                             {"gaussian_linear", SamplerKind::mh, ChainInit::proposal},
                             {"gaussian_linear", SamplerKind::slice, ChainInit::sir},
                             {"gaussian_mixture", SamplerKind::slice, ChainInit::proposal}};
  for (const ChainCase& c : cases) {
    SCOPED_TRACE(std::string(c.task) + " " + name(c.sampler));
    const std::unique_ptr<Task> task = make_task(c.task);
    const std::vector<double> x_o = simulated_observation(*task, 4);
    McmcOptions o;
    o.sampler = c.sampler;
    o.init = c.init;
    o.chains = 16;
    o.warmup = 40;
    o.thin = 2;
    o.init_candidates = 50;
    o.seed = 9;
    const TaskPosteriorDensity density(*task, x_o);
    const McmcResult lockstep =
        sample_mcmc(density, Proposal::from_prior(task->prior()), 330, o);
    const McmcResult chains = sample_task_posterior(*task, x_o, 330, o);
    ASSERT_EQ(chains.samples.shape(), lockstep.samples.shape());
    ASSERT_EQ(chains.chains.shape(), lockstep.chains.shape());
    EXPECT_EQ(chains.samples.to_vector(), lockstep.samples.to_vector());
    EXPECT_EQ(chains.evaluations, lockstep.evaluations);
    EXPECT_EQ(chains.acceptance_rate, lockstep.acceptance_rate);
    if (c.sampler == SamplerKind::mh) {
      EXPECT_GT(chains.acceptance_rate, 0.05);
    }
  }
}

TEST(McmcTaskChains, SameSamplesForAnyThreadCount) {
  const int threads = omp_get_max_threads();
  const std::unique_ptr<Task> task = make_task("slcp");
  const std::vector<double> x_o = simulated_observation(*task, 2);
  McmcOptions o;
  o.chains = 64;
  o.warmup = 20;
  o.seed = 5;
  omp_set_num_threads(1);
  const McmcResult serial = sample_task_posterior(*task, x_o, 640, o);
  omp_set_num_threads(std::max(2, threads));
  const McmcResult parallel = sample_task_posterior(*task, x_o, 640, o);
  omp_set_num_threads(threads);
  EXPECT_EQ(serial.samples.to_vector(), parallel.samples.to_vector());
  o.seed = 6;
  EXPECT_NE(sample_task_posterior(*task, x_o, 640, o).samples.to_vector(),
            serial.samples.to_vector());
}

// Many short chains (the GPU's regime) against the analytic gaussian_linear posterior
// N(x_o / 2, 0.05 I), tolerances from the measured ESS. R-hat is not asserted: over 8 states per
// chain it measures the chains' autocorrelation rather than their convergence.
TEST(McmcTaskChains, ManyChainsMatchTheAnalyticGaussianLinearPosterior) {
  const std::unique_ptr<Task> task = make_task("gaussian_linear");
  const std::vector<double> x_o = simulated_observation(*task, 1);
  for (const SamplerKind kind : {SamplerKind::slice, SamplerKind::mh}) {
    SCOPED_TRACE(name(kind));
    McmcOptions o;
    o.sampler = kind;
    o.chains = 1000;
    o.warmup = kind == SamplerKind::mh ? 300 : 50;
    o.thin = kind == SamplerKind::mh ? 5 : 1;
    o.init_candidates = 100;
    o.seed = 12;
    const McmcResult r = sample_task_posterior(*task, x_o, 8000, o);
    // The ESS of a mean can exceed the draws (antithetic slice moves); the variance's cannot
    // gain that way, so its tolerance takes the ESS of the squared deviations.
    const double ess = std::min(min_of(r.ess), 8000.0);
    ASSERT_GT(ess, 1000);
    const std::vector<double> m = column_means(r.samples);
    for (std::int64_t j = 0; j < 10; ++j) {
      EXPECT_NEAR(m[static_cast<std::size_t>(j)], x_o[static_cast<std::size_t>(j)] / 2,
                  4.5 * std::sqrt(0.05 / ess));
      const double variance_ess = product_ess(r.chains, j, j);
      ASSERT_GT(variance_ess, 500);
      EXPECT_NEAR(covariance(r.samples, j, j), 0.05, 4.5 * 0.05 * std::sqrt(2 / variance_ess));
    }
    EXPECT_NEAR(covariance(r.samples, 0, 1), 0.0, 4.5 * 0.05 / std::sqrt(product_ess(r.chains, 0, 1)));
  }
}

TEST(McmcTaskChains, ErrorsAreNamed) {
  const std::unique_ptr<Task> task = make_task("two_moons");
  const std::vector<double> x_o = {0.1, 0.2};
  McmcOptions o;
  o.sampler = SamplerKind::hmc;
  test_util::expect_error_naming<core::ValueError>(
      [&] { sample_task_posterior(*task, x_o, 10, o); }, {"hmc", "slice or mh"});
  o.sampler = SamplerKind::slice;
  test_util::expect_error_naming<core::ValueError>(
      [&] { sample_task_posterior(*task, std::vector<double>{1, 2, 3}, 10, o); },
      {"x_o has 3", "x_dim 2"});
  test_util::expect_error_naming<core::ValueError>(
      [&] {
        sample_task_posterior(*make_task("bernoulli_glm"), std::vector<double>(10, 0.0), 10, o);
      },
      {"bernoulli_glm", "no kernel"});
  o.chains = 0;
  test_util::expect_error_naming<core::ValueError>(
      [&] { sample_task_posterior(*task, x_o, 10, o); }, {"options.chains"});
  o.chains = 4;
  o.init = ChainInit::proposal;
  o.init_candidates = 3;
  // x₁ = -50 lies left of every moon a θ in the prior's box can place: log density -inf.
  test_util::expect_error_naming<core::ValueError>(
      [&] { sample_task_posterior(*task, std::vector<double>{-50, 0}, 10, o); },
      {"chain 0", "init_candidates = 3"});
  if (!core::device_available(core::Device::cuda)) {
    o.init = ChainInit::sir;
    EXPECT_THROW(sample_task_posterior(*task, x_o, 10, o, core::Device::cuda), core::DeviceError);
  }
}

}  // namespace
}  // namespace asbi::sbi
