// Set tasks against independent answers: simulated sets against the model's moments (the GP's
// sample covariance against its kernel), priors against closed-form probabilities and numerical
// normalisation, likelihoods against direct evaluations (a dense multivariate normal for the GP),
// reference posteriors against the analytic Student-t (gaussian_nuisance) and against grid
// quadrature (mixture_nuisance, gp_replicates); chunk and thread invariance of the simulators;
// the observation convention; errors.
#include <gtest/gtest.h>
#include <omp.h>

#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numbers>
#include <string>
#include <tuple>
#include <vector>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "sbi/set_task.hpp"
#include "sbi/task_kernels.hpp"
#include "test_util.hpp"

namespace asbi::sbi {
namespace {

using core::DType;
using Theta = std::vector<double>;
constexpr double kNegInf = -std::numeric_limits<double>::infinity();
const double kLog2Pi = std::log(2.0 * std::numbers::pi);

std::vector<float> floats(const Tensor& t) {
  const float* p = t.data<float>();
  return {p, p + t.numel()};
}

double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (const double x : v) s += x;
  return s / static_cast<double>(v.size());
}

double sd_of(const std::vector<double>& v) {
  const double m = mean_of(v);
  double s = 0;
  for (const double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size() - 1));
}

std::vector<double> column(const Tensor& t, std::int64_t j) {
  std::vector<double> c(static_cast<std::size_t>(t.dim(0)));
  for (std::int64_t i = 0; i < t.dim(0); ++i)
    c[static_cast<std::size_t>(i)] = t.at(i * t.dim(1) + j);
  return c;
}

double log_sum_exp(const std::vector<double>& v) {
  const double m = *std::max_element(v.begin(), v.end());
  double s = 0;
  for (const double x : v) s += std::exp(x - m);
  return m + std::log(s);
}

// A 1-D distribution known on the cells of a uniform grid (midpoint rule): its moments and its
// CDF, linear within a cell.
struct GridDistribution {
  double lo = 0, width = 0;
  std::vector<double> mass;        // per cell, summing to 1
  std::vector<double> cumulative;  // mass of the cells before cell i; cumulative[n] = 1

  static GridDistribution from_log_density(double lo, double hi, const std::vector<double>& lp) {
    GridDistribution g;
    g.lo = lo;
    g.width = (hi - lo) / static_cast<double>(lp.size());
    const double z = log_sum_exp(lp);
    g.cumulative.push_back(0.0);
    for (const double v : lp) {
      g.mass.push_back(std::exp(v - z));
      g.cumulative.push_back(g.cumulative.back() + g.mass.back());
    }
    return g;
  }
  double centre(std::size_t i) const { return lo + (static_cast<double>(i) + 0.5) * width; }
  double moment(int order, double about) const {
    double s = 0;
    for (std::size_t i = 0; i < mass.size(); ++i) s += mass[i] * std::pow(centre(i) - about, order);
    return s;
  }
  double mean() const { return moment(1, 0.0); }
  double sd() const { return std::sqrt(moment(2, mean())); }
  double kurtosis() const { return moment(4, mean()) / std::pow(moment(2, mean()), 2); }
  double cdf(double x) const {
    const double cells = (x - lo) / width;
    if (cells <= 0) return 0;
    if (cells >= static_cast<double>(mass.size())) return 1;
    const auto i = static_cast<std::size_t>(cells);
    return cumulative[i] + mass[i] * (cells - static_cast<double>(i));
  }
};

// The Kolmogorov–Smirnov distance between samples and a CDF.
template <typename Cdf>
double ks_distance(std::vector<double> samples, const Cdf& cdf) {
  std::sort(samples.begin(), samples.end());
  const auto n = static_cast<double>(samples.size());
  double d = 0;
  for (std::size_t i = 0; i < samples.size(); ++i) {
    const double f = cdf(samples[i]);
    d = std::max({d, std::abs(f - static_cast<double>(i) / n),
                  std::abs(f - static_cast<double>(i + 1) / n)});
  }
  return d;
}

// The KS critical value at level ≈ 0.001 for n independent draws (MCMC: n = ESS).
double ks_critical(double n) { return 1.95 / std::sqrt(n); }

// Checks draws of a 1-D posterior (effective sample size `ess`) against its grid version: mean
// and sd within 4.5 Monte Carlo standard errors (that of the sd from the kurtosis,
// Var(s) ≈ σ² (κ − 1) / (4 n)), and the KS distance.
void expect_matches(const std::vector<double>& draws, double ess, const GridDistribution& exact) {
  const double mean = exact.mean(), sd = exact.sd();
  EXPECT_NEAR(mean_of(draws), mean, 4.5 * sd / std::sqrt(ess)) << "sd " << sd << ", ESS " << ess;
  EXPECT_NEAR(sd_of(draws), sd, 4.5 * sd * std::sqrt((exact.kurtosis() - 1) / (4 * ess)))
      << "ESS " << ess;
  EXPECT_LT(ks_distance(draws, [&](double x) { return exact.cdf(x); }), ks_critical(ess));
}

// The marginal of parameter 0 of a 2-D posterior density by quadrature on a grid of cells,
// twice: over the box, then over mean ± 10 sd of both marginals (clipped to the box), so that a
// narrow posterior is resolved by the second grid.
GridDistribution grid_marginal(const LogDensity& density, std::array<double, 2> lo,
                               std::array<double, 2> hi, int cells) {
  for (int pass = 0;; ++pass) {
    const auto n = static_cast<std::size_t>(cells);
    std::vector<double> rows(2 * n * n), lp(n * n);
    const double w0 = (hi[0] - lo[0]) / cells, w1 = (hi[1] - lo[1]) / cells;
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < n; ++j) {
        rows[2 * (i * n + j)] = lo[0] + (static_cast<double>(i) + 0.5) * w0;
        rows[2 * (i * n + j) + 1] = lo[1] + (static_cast<double>(j) + 0.5) * w1;
      }
    density.evaluate(Tensor::from(rows, {cells * cells, 2}, DType::f64), lp);
    std::vector<double> marginal0(n), marginal1(n), slice(n);
    for (std::size_t i = 0; i < n; ++i) {
      for (std::size_t j = 0; j < n; ++j) slice[j] = lp[i * n + j];
      marginal0[i] = log_sum_exp(slice);
    }
    for (std::size_t j = 0; j < n; ++j) {
      for (std::size_t i = 0; i < n; ++i) slice[i] = lp[i * n + j];
      marginal1[j] = log_sum_exp(slice);
    }
    const GridDistribution g0 = GridDistribution::from_log_density(lo[0], hi[0], marginal0);
    if (pass == 1) return g0;
    const GridDistribution g1 = GridDistribution::from_log_density(lo[1], hi[1], marginal1);
    for (const auto& [g, d] : {std::pair{&g0, 0}, std::pair{&g1, 1}}) {
      lo[static_cast<std::size_t>(d)] =
          std::max(lo[static_cast<std::size_t>(d)], g->mean() - 10 * g->sd());
      hi[static_cast<std::size_t>(d)] =
          std::min(hi[static_cast<std::size_t>(d)], g->mean() + 10 * g->sd());
    }
  }
}

// ---- simulators -------------------------------------------------------------------------------

TEST(SetTaskSimulator, ElementsDoNotDependOnTheRanges) {
  for (const std::string& name : set_task_names()) {
    SCOPED_TRACE(name);
    const auto task = make_set_task(name);
    const SetObservation obs = set_observation(*task, 1, 1);
    const std::int64_t n = name == "gp_replicates" ? 100 : 1000, x = task->element_dim();
    const auto sampler = task->sampler(obs.theta, /*seed=*/11, /*set_id=*/5);
    std::vector<float> whole(static_cast<std::size_t>(n * x)), pieces(whole.size());
    sampler->elements(0, n, whole);
    const std::vector<std::int64_t> cuts = {0, 1, 9, 10, 37, 64, n};
    for (std::size_t c = 0; c + 1 < cuts.size(); ++c)
      sampler->elements(
          cuts[c], cuts[c + 1],
          std::span(pieces).subspan(static_cast<std::size_t>(cuts[c] * x),
                                    static_cast<std::size_t>((cuts[c + 1] - cuts[c]) * x)));
    EXPECT_EQ(whole, pieces);
    EXPECT_EQ(floats(task->simulate_set(obs.theta, n, 11, 5)), whole);
    // Another set id or seed gives other elements.
    EXPECT_NE(floats(task->simulate_set(obs.theta, n, 11, 6)), whole);
    EXPECT_NE(floats(task->simulate_set(obs.theta, n, 12, 5)), whole);
  }
}

TEST(SetTaskSimulator, SetsDoNotDependOnTheThreadCount) {
  const int threads = omp_get_max_threads();
  const auto task = make_set_task("gp_replicates");
  const std::vector<double> theta = {0.3, 1.2};
  omp_set_num_threads(1);
  const Tensor serial = task->simulate_set(theta, 300, 3, 9);  // 5 ranges of 64 fields
  omp_set_num_threads(2);
  const Tensor parallel = task->simulate_set(theta, 300, 3, 9);
  omp_set_num_threads(threads);
  EXPECT_EQ(floats(serial), floats(parallel));
}

TEST(SetTaskSimulator, BatchedSetsAreTheSetsOneByOne) {
  for (const std::string& name : set_task_names()) {
    SCOPED_TRACE(name);
    const auto task = make_set_task(name);
    const std::int64_t sets = 5, n = name == "gp_replicates" ? 20 : 300, x = task->element_dim();
    core::Rng rng(8, 0);
    const Tensor theta = task->prior().sample(sets, rng);
    const Tensor batch = task->simulate_sets(theta, n, 13, 40);
    ASSERT_EQ(batch.shape(), (core::Shape{sets, n, x}));
    for (std::int64_t b = 0; b < sets; ++b) {
      const std::vector<double> row = theta.rows(b, b + 1).to_vector();
      const std::vector<float> one = floats(task->simulate_set(row, n, 13, 40 + b));
      const float* p = batch.data<float>() + b * n * x;
      EXPECT_EQ(std::vector<float>(p, p + n * x), one) << "set " << b;
    }
  }
}

// What a GPU thread computes for element i of a scalar set (sbi/task_kernels.hpp: the element
// formula on normal_at / uniform_at of the set's streams) is the CPU sampler's element, to the
// rounding of a float (the CPU may fuse μ + σz into one FMA before the cast, the GPU does).
TEST(SetTaskSimulator, ScalarElementKernelsMatchTheSamplers) {
  const auto close = [](float got, float want) {
    return std::abs(got - want) <= 0x1p-23f * std::max(1.0f, std::abs(want));
  };
  const std::uint64_t seed = 21, set_id = 9;
  const std::uint64_t noise = kernels::set_stream_of(kernels::kSetNoisePurpose, set_id);
  const std::uint64_t component = kernels::set_stream_of(kernels::kSetComponentPurpose, set_id);
  ASSERT_EQ(noise, set_stream(SetStream::noise, set_id));
  ASSERT_EQ(component, set_stream(SetStream::component, set_id));
  const Theta gaussian = {0.4, 1.7}, mixture = {1.3, 0.3};
  const std::vector<float> g =
      floats(make_set_task("gaussian_nuisance")->simulate_set(gaussian, 999, seed, set_id));
  const std::vector<float> m =
      floats(make_set_task("mixture_nuisance")->simulate_set(mixture, 999, seed, set_id));
  for (std::uint64_t i = 0; i < 999; ++i) {
    const double z = kernels::normal_at(seed, noise, i), u = kernels::uniform_at(seed, component, i);
    ASSERT_PRED2(close, kernels::gaussian_nuisance_element(0.4, std::sqrt(1.7), z), g[i]);
    ASSERT_PRED2(close, kernels::mixture_nuisance_element(1.3, 0.3, z, u), m[i]);
  }
}

TEST(SetTaskSimulator, BatchedSetErrorsAreNamed) {
  const auto task = make_set_task("gaussian_nuisance");
  test_util::expect_error_naming<core::ShapeError>(
      [&] { task->simulate_sets(Tensor::zeros({3, 3}, DType::f64), 10, 1, 0); },
      {"gaussian_nuisance", "parameter_dim = 2"});
  test_util::expect_error_naming<core::ValueError>(
      [&] { task->simulate_sets(Tensor::from({0.0, -1.0}, {1, 2}, DType::f64), 10, 1, 0); },
      {"sigma2 > 0"});
  test_util::expect_error_naming<core::ValueError>(
      [&] { task->simulate_sets(Tensor::from({0.0, 1.0}, {1, 2}, DType::f64), 0, 1, 0); },
      {"n ≥ 1"});
}

TEST(SetTaskSimulator, ObservationsArePrefixesWithOneTheta) {
  for (const std::string& name : set_task_names()) {
    SCOPED_TRACE(name);
    const auto task = make_set_task(name);
    const SetObservation small = set_observation(*task, 3, 20),
                         large = set_observation(*task, 3, 70);
    EXPECT_EQ(small.theta, large.theta);
    const std::vector<float> prefix = floats(large.set.rows(0, 20));
    EXPECT_EQ(floats(small.set), prefix);
    EXPECT_NE(set_observation(*task, 4, 20).theta, small.theta);
    EXPECT_TRUE(std::isfinite(task->prior().log_prob_row(small.theta)));
  }
}

TEST(SetTaskSimulator, GaussianMoments) {
  const auto task = make_set_task("gaussian_nuisance");
  const double mu = -0.7, sigma2 = 2.5;
  const std::int64_t n = 100'000;
  const std::vector<double> x =
      column(task->simulate_set(Theta{mu, sigma2}, n, 1, 1).to(DType::f64), 0);
  const double sd = std::sqrt(sigma2);
  EXPECT_NEAR(mean_of(x), mu, 4.5 * sd / std::sqrt(n));
  EXPECT_NEAR(sd_of(x), sd, 4.5 * sd / std::sqrt(2.0 * n));  // Gaussian: Var(s) ≈ σ²/(2n)
}

TEST(SetTaskSimulator, MixtureMoments) {
  const auto task = make_set_task("mixture_nuisance");
  const std::int64_t n = 200'000;
  for (const auto& [theta, w] : {std::pair{1.5, 0.3}, std::pair{0.4, 0.85}}) {
    const std::vector<double> x =
        column(task->simulate_set(Theta{theta, w}, n, 2, 1).to(DType::f64), 0);
    // Mean (2w − 1)θ; variance 1 + θ² − (2w − 1)²θ²; P(x > 0) = w Φ(θ) + (1 − w) Φ(−θ).
    const double mean = (2 * w - 1) * theta;
    const double var = 1 + theta * theta - mean * mean;
    EXPECT_NEAR(mean_of(x), mean, 4.5 * std::sqrt(var / n));
    EXPECT_NEAR(sd_of(x) * sd_of(x), var, 4.5 * var * std::sqrt(3.0 / n));  // κ ≤ 4 here
    const double phi = 0.5 * std::erfc(-theta / std::numbers::sqrt2);
    const double positive = w * phi + (1 - w) * (1 - phi);
    const double fraction =
        static_cast<double>(std::count_if(x.begin(), x.end(), [](double v) { return v > 0; })) / n;
    EXPECT_NEAR(fraction, positive, 4.5 * std::sqrt(positive * (1 - positive) / n));
  }
}

// Grid point p = 16 i + j at (i/15, j/15).
double grid_distance(int p, int q) {
  return std::hypot((p / 16 - q / 16) / 15.0, (p % 16 - q % 16) / 15.0);
}

TEST(SetTaskSimulator, GpCovarianceMatchesTheKernel) {
  const auto task = make_set_task("gp_replicates");
  const double lengthscale = 0.3, sigma2 = 1.5;
  const std::int64_t n = 4000;
  const Tensor fields = task->simulate_set(Theta{lengthscale, sigma2}, n, 4, 2);
  ASSERT_EQ(fields.shape(), core::Shape({n, 256}));
  const float* x = fields.data<float>();
  // Pairs: a point with itself, neighbours along j and i, a diagonal step, opposite corners.
  for (const auto& [p, q] : {std::pair{0, 0}, std::pair{120, 121}, std::pair{120, 136},
                             std::pair{37, 54}, std::pair{0, 255}, std::pair{200, 90}}) {
    double c = 0;
    for (std::int64_t i = 0; i < n; ++i) c += static_cast<double>(x[i * 256 + p]) * x[i * 256 + q];
    c /= static_cast<double>(n);  // the mean is known to be 0
    const double kpq = sigma2 * std::exp(-grid_distance(p, q) / lengthscale);
    // Var(x_p x_q) = K_pp K_qq + K_pq² for a zero-mean Gaussian pair.
    EXPECT_NEAR(c, kpq, 4.5 * std::sqrt((sigma2 * sigma2 + kpq * kpq) / n)) << p << ", " << q;
  }
}

// ---- priors -----------------------------------------------------------------------------------

// P(Inv-Gamma(α, β) ≤ x) = Q(α, β/x) = e^{−y} Σ_{j<α} y^j / j!, y = β/x, for integer α.
double inverse_gamma_cdf(int shape, double scale, double x) {
  const double y = scale / x;
  double term = 1, sum = 0;
  for (int j = 0; j < shape; ++j) {
    sum += term;
    term *= y / (j + 1);
  }
  return std::exp(-y) * sum;
}

TEST(SetTaskPrior, NormalInverseGammaProbabilities) {
  const auto task = make_set_task("gaussian_nuisance");
  ASSERT_EQ(task->parameter_names(), (std::vector<std::string>{"mu", "sigma2"}));
  // The task's prior NIG(0, 1, 3, 2) and one with κ ≠ 1.
  const NormalInverseGamma other(0.5, 2.0, 4.0, 3.0);
  for (const auto& [prior, m, kappa, shape, scale] :
       {std::tuple{&task->prior(), 0.0, 1.0, 3, 2.0},
        std::tuple{static_cast<const Prior*>(&other), 0.5, 2.0, 4, 3.0}}) {
    SCOPED_TRACE("shape " + std::to_string(shape));
    core::Rng rng(7, 0);
    const std::int64_t n = 200'000;
    const Tensor draws = prior->sample(n, rng);
    const std::vector<double> mu = column(draws, 0), sigma2 = column(draws, 1);
    for (const double x : {0.5, 1.0, 3.0}) {
      const double p = inverse_gamma_cdf(shape, scale, x);
      const double f = static_cast<double>(std::count_if(sigma2.begin(), sigma2.end(),
                                                         [x](double v) { return v <= x; })) /
                       n;
      EXPECT_NEAR(f, p, 4.5 * std::sqrt(p * (1 - p) / n)) << "x = " << x;
    }
    // μ | σ² ~ N(m, σ²/κ): (μ − m) √κ / σ is standard normal and independent of σ².
    std::vector<double> z(mu.size());
    for (std::size_t i = 0; i < z.size(); ++i) z[i] = (mu[i] - m) * std::sqrt(kappa / sigma2[i]);
    EXPECT_LT(ks_distance(z, [](double v) { return 0.5 * std::erfc(-v / std::numbers::sqrt2); }),
              ks_critical(n));
  }
}

// ∫∫ p(μ, σ²) dμ dσ² by the midpoint rule in (t = μ/σ, v = log σ²): dμ dσ² = σ³ dt dv.
TEST(SetTaskPrior, NormalInverseGammaNormalises) {
  const NormalInverseGamma nig(0.5, 2.0, 3.0, 2.0);
  const int nt = 400, nv = 1400;
  const double t_lo = -12, t_hi = 12, v_lo = -7, v_hi = 9;  // σ² ∈ (e⁻⁷, e⁹): tails < 1e-9
  const double dt = (t_hi - t_lo) / nt, dv = (v_hi - v_lo) / nv;
  double total = 0;
  for (int a = 0; a < nv; ++a) {
    const double sigma2 = std::exp(v_lo + (a + 0.5) * dv), sigma = std::sqrt(sigma2);
    for (int b = 0; b < nt; ++b) {
      // μ = m + t σ / √κ, so dμ = σ/√κ dt.
      const double mu = 0.5 + (t_lo + (b + 0.5) * dt) * sigma / std::sqrt(2.0);
      const double row[2] = {mu, sigma2};
      total += std::exp(nig.log_prob_row(row)) * sigma / std::sqrt(2.0) * sigma2 * dt * dv;
    }
  }
  EXPECT_NEAR(total, 1.0, 1e-6);
  const double outside[2] = {0.0, -1.0};
  EXPECT_EQ(nig.log_prob_row(outside), kNegInf);
}

TEST(SetTaskPrior, StudentTIsTheMarginalOfMu) {
  const auto task = make_set_task("gaussian_nuisance");
  const Prior& target = *task->target_prior();
  ASSERT_EQ(target.dim(), 1);
  // t_6(0, √(2/3)) at 0: Γ(7/2) / (Γ(3) √(6π) √(2/3)) = 15/32 exactly.
  const double zero[1] = {0.0};
  EXPECT_NEAR(target.log_prob_row(zero), std::log(15.0 / 32.0), 1e-14);
  // The marginal against ∫ p(μ, σ²) dσ² by the midpoint rule in log σ².
  for (const double mu : {-2.5, -0.3, 0.0, 1.1, 4.0}) {
    double integral = 0;
    const int nv = 4000;
    const double v_lo = -12, v_hi = 12, dv = (v_hi - v_lo) / nv;
    for (int a = 0; a < nv; ++a) {
      const double sigma2 = std::exp(v_lo + (a + 0.5) * dv);
      const double row[2] = {mu, sigma2};
      integral += std::exp(task->prior().log_prob_row(row)) * sigma2 * dv;
    }
    const double at[1] = {mu};
    EXPECT_NEAR(target.log_prob_row(at), std::log(integral), 1e-8) << "mu = " << mu;
  }
  // Draws against the density integrated into a CDF.
  std::vector<double> lp;
  const double lo = -60, hi = 60;
  for (int i = 0; i < 120'000; ++i) {
    const double at[1] = {lo + (i + 0.5) * 1e-3};
    lp.push_back(target.log_prob_row(at));
  }
  const GridDistribution grid = GridDistribution::from_log_density(lo, hi, lp);
  EXPECT_NEAR(std::exp(log_sum_exp(lp)) * 1e-3, 1.0, 1e-6);  // normalised
  EXPECT_NEAR(grid.sd(), 1.0, 1e-4);                         // ν s² / (ν − 2) = 1
  core::Rng rng(8, 0);
  const std::int64_t n = 50'000;
  EXPECT_LT(ks_distance(column(target.sample(n, rng), 0), [&](double x) { return grid.cdf(x); }),
            ks_critical(n));
}

TEST(SetTaskPrior, GradientsMatchFiniteDifferences) {
  const StudentT t(5.0, 0.3, 1.7);
  const NormalInverseGamma nig(0.5, 2.0, 3.0, 2.0);
  const std::vector<std::vector<double>> points = {{-1.3, 0.7}, {0.9, 2.5}, {0.5, 0.1}};
  for (const auto& point : points) {
    for (const Prior* prior : {static_cast<const Prior*>(&t), static_cast<const Prior*>(&nig)}) {
      const auto d = static_cast<std::size_t>(prior->dim());
      std::vector<double> x(point.begin(), point.begin() + static_cast<std::ptrdiff_t>(d)), g(d);
      prior->log_prob_gradient_row(x, g);
      for (std::size_t j = 0; j < d; ++j) {
        const double h = 1e-6;
        std::vector<double> up = x, down = x;
        up[j] += h;
        down[j] -= h;
        const double fd = (prior->log_prob_row(up) - prior->log_prob_row(down)) / (2 * h);
        EXPECT_NEAR(g[j], fd, 1e-5 * (1 + std::abs(fd))) << "dim " << d << ", coordinate " << j;
      }
    }
  }
}

// ---- likelihoods ------------------------------------------------------------------------------

double density_at(const LogDensity& density, std::vector<double> theta) {
  double out = 0;
  density.evaluate(Tensor::from(theta, {1, static_cast<std::int64_t>(theta.size())}, DType::f64),
                   std::span(&out, 1));
  return out;
}

TEST(SetTaskLikelihood, GaussianMatchesTheSumOverElements) {
  const auto task = make_set_task("gaussian_nuisance");
  const SetObservation obs = set_observation(*task, 2, 50);
  const auto density = task->posterior_density(obs.set);
  EXPECT_EQ(density->set_size(), 50);
  const std::vector<double> x = column(obs.set.to(DType::f64), 0);
  for (const std::vector<double>& theta : {std::vector<double>{0.2, 0.8}, {-1.0, 3.0}}) {
    double expected = task->prior().log_prob_row(theta);
    for (const double v : x)
      expected +=
          -0.5 * (kLog2Pi + std::log(theta[1])) - (v - theta[0]) * (v - theta[0]) / (2 * theta[1]);
    EXPECT_NEAR(density_at(*density, theta), expected, 1e-10 * std::abs(expected));
  }
  EXPECT_EQ(density_at(*density, {0.0, -1.0}), kNegInf);
}

TEST(SetTaskLikelihood, MixtureMatchesAHandWrittenLoop) {
  const auto task = make_set_task("mixture_nuisance");
  const SetObservation obs = set_observation(*task, 1, 300);
  const auto density = task->posterior_density(obs.set);
  const std::vector<double> x = column(obs.set.to(DType::f64), 0);
  for (const std::vector<double>& theta :
       {std::vector<double>{0.3, 0.2}, {1.7, 0.5}, {2.9, 0.85}, {obs.theta[0], obs.theta[1]}}) {
    double expected = -std::log(3.0 * 0.8);
    for (const double v : x) {
      const double a = std::exp(-0.5 * (v - theta[0]) * (v - theta[0]));
      const double b = std::exp(-0.5 * (v + theta[0]) * (v + theta[0]));
      expected += std::log((theta[1] * a + (1 - theta[1]) * b) / std::sqrt(2 * std::numbers::pi));
    }
    EXPECT_NEAR(density_at(*density, theta), expected, 1e-10 * std::abs(expected));
  }
  EXPECT_EQ(density_at(*density, {1.0, 0.95}), kNegInf);
  EXPECT_EQ(density_at(*density, {-0.5, 0.5}), kNegInf);
  EXPECT_EQ(density->likelihood_evaluations(), 4);  // never outside the support
}

// Σ_i log N(x_i; 0, K), K = σ² exp(−d/ℓ) built from the coordinates, by a dense Cholesky of K.
double dense_gp_log_likelihood(const Tensor& set, double lengthscale, double sigma2) {
  Eigen::MatrixXd k(256, 256);
  for (int p = 0; p < 256; ++p)
    for (int q = 0; q < 256; ++q) k(p, q) = sigma2 * std::exp(-grid_distance(p, q) / lengthscale);
  const Eigen::LLT<Eigen::MatrixXd> llt(k);
  const double log_det = 2 * llt.matrixL().toDenseMatrix().diagonal().array().log().sum();
  double total = 0;
  for (std::int64_t i = 0; i < set.dim(0); ++i) {
    Eigen::VectorXd x(256);
    for (int p = 0; p < 256; ++p) x(p) = set.at(i * 256 + p);
    const Eigen::VectorXd y = llt.matrixL().solve(x);
    total += -0.5 * (256 * kLog2Pi + log_det + y.squaredNorm());
  }
  return total;
}

TEST(SetTaskLikelihood, GpMatchesADenseMultivariateNormal) {
  const auto task = make_set_task("gp_replicates");
  // N = 3 factors the scatter matrix through the fields themselves, N = 300 through chol(S).
  for (const std::int64_t n : {3, 300}) {
    const SetObservation obs = set_observation(*task, 2, n);
    const auto density = task->posterior_density(obs.set);
    for (const std::vector<double>& theta :
         {std::vector<double>{0.07, 0.6}, {0.33, 1.9}, {0.59, 1.0}, obs.theta}) {
      const double expected =
          -std::log(0.55 * 1.5) + dense_gp_log_likelihood(obs.set, theta[0], theta[1]);
      EXPECT_NEAR(density_at(*density, theta), expected, 1e-9 * std::abs(expected))
          << "N = " << n << ", lengthscale " << theta[0];
    }
    EXPECT_EQ(density_at(*density, {0.7, 1.0}), kNegInf);
  }
}

TEST(SetTaskLikelihood, GpDensityCachesPerLengthscale) {
  const auto task = make_set_task("gp_replicates");
  const SetObservation obs = set_observation(*task, 1, 20);
  const auto cached = task->posterior_density(obs.set);
  // 30 rows: three lengthscales, ten variances each.
  std::vector<double> rows;
  for (const double l : {0.1, 0.25, 0.4})
    for (int j = 0; j < 10; ++j) {
      rows.push_back(l);
      rows.push_back(0.55 + 0.14 * j);
    }
  std::vector<double> batch(30), again(30);
  cached->evaluate(Tensor::from(rows, {30, 2}, DType::f64), batch);
  EXPECT_EQ(cached->likelihood_evaluations(), 3);
  cached->evaluate(Tensor::from(rows, {30, 2}, DType::f64), again);
  EXPECT_EQ(cached->likelihood_evaluations(), 3);
  // Served from the cache or computed afresh, one row at a time: the same bits.
  for (std::size_t i = 0; i < 30; ++i) {
    const auto fresh = task->posterior_density(obs.set);
    EXPECT_EQ(again[i], batch[i]);
    EXPECT_EQ(density_at(*fresh, {rows[2 * i], rows[2 * i + 1]}), batch[i]) << "row " << i;
  }
}

// ---- reference posteriors ---------------------------------------------------------------------

// The analytic marginal posterior of μ on a grid over ±40 posterior scales.
GridDistribution gaussian_posterior_grid(const Tensor& set) {
  std::vector<double> x = column(set.to(DType::f64), 0);
  const double centre = mean_of(x),
               scale = (sd_of(x) + 1) / std::sqrt(static_cast<double>(x.size()));
  const int cells = 20'000;
  const double lo = centre - 40 * scale, hi = centre + 40 * scale;
  std::vector<double> lp(cells);
  for (int i = 0; i < cells; ++i)
    lp[static_cast<std::size_t>(i)] =
        gaussian_nuisance_log_posterior(lo + (i + 0.5) * (hi - lo) / cells, set);
  return GridDistribution::from_log_density(lo, hi, lp);
}

TEST(SetTaskReference, GaussianAnalyticPosteriorIsNormalisedAndExact) {
  const auto task = make_set_task("gaussian_nuisance");
  const SetObservation obs = set_observation(*task, 1, 10);
  const GridDistribution grid = gaussian_posterior_grid(obs.set);
  std::vector<double> lp;
  for (std::size_t i = 0; i < grid.mass.size(); ++i)
    lp.push_back(gaussian_nuisance_log_posterior(grid.centre(i), obs.set));
  EXPECT_NEAR(std::exp(log_sum_exp(lp)) * grid.width, 1.0, 1e-6);
  // Exact draws: independent, so the plain KS bound applies.
  const SetReference ref = set_reference_posterior(*task, obs.set, 20'000, 3);
  EXPECT_TRUE(ref.exact);
  EXPECT_EQ(ref.samples.shape(), core::Shape({20'000, 1}));
  expect_matches(column(ref.samples, 0), 20'000, grid);
  EXPECT_EQ(set_reference_posterior(*task, obs.set, 100, 3).samples.to_vector(),
            ref.samples.rows(0, 100).to_vector());
}

// The closed form against prior × likelihood (posterior_density, which shares no code with it)
// integrated over σ² numerically: midpoint rules in μ and log σ², spectrally accurate for these
// smooth, fast-decaying integrands.
TEST(SetTaskReference, GaussianAnalyticPosteriorMatchesQuadrature) {
  const auto task = make_set_task("gaussian_nuisance");
  for (const int k : {1, 2, 3}) {
    const SetObservation obs = set_observation(*task, k, 10);
    const GridDistribution analytic = gaussian_posterior_grid(obs.set);
    const double centre = analytic.mean(), sd = analytic.sd();
    const auto density = task->posterior_density(obs.set);
    const int cells_mu = 300, cells_v = 3000;
    const double mu_lo = centre - 15 * sd, dmu = 30 * sd / cells_mu;
    const double v_lo = -10, dv = 20.0 / cells_v;
    std::vector<double> rows, lp(static_cast<std::size_t>(cells_v)), marginal;
    for (int i = 0; i < cells_mu; ++i) {
      rows.clear();
      for (int a = 0; a < cells_v; ++a) {
        rows.push_back(mu_lo + (i + 0.5) * dmu);
        rows.push_back(std::exp(v_lo + (a + 0.5) * dv));
      }
      density->evaluate(Tensor::from(rows, {cells_v, 2}, DType::f64), lp);
      for (int a = 0; a < cells_v; ++a) lp[static_cast<std::size_t>(a)] += v_lo + (a + 0.5) * dv;
      marginal.push_back(log_sum_exp(lp) + std::log(dv));  // dσ² = σ² dv
    }
    const double log_z = log_sum_exp(marginal) + std::log(dmu);
    for (int i = 0; i < cells_mu; ++i) {
      const double mu = mu_lo + (i + 0.5) * dmu;
      if (std::abs(mu - centre) > 5 * sd) continue;
      EXPECT_NEAR(gaussian_nuisance_log_posterior(mu, obs.set),
                  marginal[static_cast<std::size_t>(i)] - log_z, 1e-7)
          << "k = " << k << ", mu = " << mu;
    }
  }
}

TEST(SetTaskReference, GaussianMcmcMatchesTheStudentT) {
  ASBI_SKIP_STATISTICAL_FIT_IF_FAST();
  const auto task = make_set_task("gaussian_nuisance");
  McmcOptions options = task->reference_mcmc_options(5);
  options.chains = 20;
  options.warmup = 100;
  for (const int k : {1, 2, 3})
    for (const std::int64_t n : {10, 1000}) {
      SCOPED_TRACE("k = " + std::to_string(k) + ", N = " + std::to_string(n));
      const SetObservation obs = set_observation(*task, k, n);
      const SetReference ref = set_mcmc_posterior(*task, obs.set, 3000, options);
      EXPECT_FALSE(ref.exact);
      EXPECT_LT(ref.r_hat[0], 1.05);
      expect_matches(column(ref.samples, 0), ref.ess[0], gaussian_posterior_grid(obs.set));
    }
}

TEST(SetTaskReference, MixtureMcmcMatchesGridQuadrature) {
  ASBI_SKIP_STATISTICAL_FIT_IF_FAST();
  const auto task = make_set_task("mixture_nuisance");
  for (const auto& [k, n] : {std::pair{1, 100}, std::pair{2, 1000}}) {
    SCOPED_TRACE("k = " + std::to_string(k) + ", N = " + std::to_string(n));
    const SetObservation obs = set_observation(*task, k, n);
    const SetReference ref = set_reference_posterior(*task, obs.set, 3000, 6);
    EXPECT_LT(ref.r_hat[0], 1.05);
    const auto density = task->posterior_density(obs.set);
    const GridDistribution grid = grid_marginal(*density, {0.0, 0.1}, {3.0, 0.9}, 200);
    std::printf(
        "mixture k %d N %lld: theta* %.3f, posterior %.4f ± %.4f, ESS %.0f, R-hat %.3f, %.2f s\n",
        k, static_cast<long long>(n), obs.theta[0], grid.mean(), grid.sd(), ref.ess[0],
        ref.r_hat[0], ref.seconds);
    expect_matches(column(ref.samples, 0), ref.ess[0], grid);
  }
}

TEST(SetTaskReference, GpMcmcMatchesGridQuadrature) {
  ASBI_SKIP_STATISTICAL_FIT_IF_FAST();
  const auto task = make_set_task("gp_replicates");
  const SetObservation obs = set_observation(*task, 3, 5);
  const SetReference ref = set_reference_posterior(*task, obs.set, 2000, 7);
  EXPECT_LT(ref.r_hat[0], 1.05);
  // σ² updates come from the cache: far fewer factorisations than density rows.
  EXPECT_LT(ref.likelihood_evaluations, ref.density_rows * 6 / 10);
  const auto density = task->posterior_density(obs.set);
  const GridDistribution grid = grid_marginal(*density, {0.05, 0.5}, {0.6, 2.0}, 200);
  std::printf(
      "gp k 3 N 5: lengthscale* %.3f, posterior %.4f ± %.4f, ESS %.0f, R-hat %.3f, "
      "%lld factorisations for %lld rows, %.2f s\n",
      obs.theta[0], grid.mean(), grid.sd(), ref.ess[0], ref.r_hat[0],
      static_cast<long long>(ref.likelihood_evaluations), static_cast<long long>(ref.density_rows),
      ref.seconds);
  expect_matches(column(ref.samples, 0), ref.ess[0], grid);
}

// ---- errors -----------------------------------------------------------------------------------

TEST(SetTaskErrors, UnknownNameListsTheKnownOnes) {
  test_util::expect_error_naming<core::ValueError>(
      [] { make_set_task("gaussian"); },
      {"gaussian", "gaussian_nuisance", "mixture_nuisance", "gp_replicates"});
}

TEST(SetTaskErrors, BadSetsAndParametersAreNamed) {
  const auto task = make_set_task("gaussian_nuisance");
  test_util::expect_error_naming<core::ShapeError>(
      [&] {
        task->posterior_density(Tensor::zeros({5, 2}));
      },
      {"gaussian_nuisance", "width 2", "element_dim = 1"});
  test_util::expect_error_naming<core::ShapeError>(
      [&] { task->posterior_density(Tensor::zeros({5})); }, {"[N, element_dim = 1]", "[5]"});
  test_util::expect_error_naming<core::ValueError>(
      [&] {
        task->posterior_density(Tensor::zeros({0, 1}));
      },
      {"empty", "N ≥ 1"});
  test_util::expect_error_naming<core::ValueError>(
      [&] {
        task->posterior_density(Tensor::from({1.0, NAN, 2.0}, {3, 1}));
      },
      {"nan", "element 1", "finite"});
  test_util::expect_error_naming<core::ShapeError>(
      [&] {
        set_reference_posterior(*task, Tensor::zeros({4, 3}), 10, 1);
      },
      {"set_reference_posterior", "element_dim = 1"});
  test_util::expect_error_naming<core::ValueError>(
      [&] {
        task->sampler(Theta{0.0, 1.0, 2.0}, 1, 1);
      },
      {"theta has 3 values", "parameter_dim = 2"});
  test_util::expect_error_naming<core::ValueError>(
      [&] {
        task->sampler(Theta{0.0, -1.0}, 1, 1);
      },
      {"sigma2 > 0", "-1"});
  test_util::expect_error_naming<core::ValueError>(
      [&] {
        task->sampler(Theta{0.0, 1.0}, 1, std::uint64_t{1} << 32);
      },
      {"set_id < 2^32"});
  test_util::expect_error_naming<core::ValueError>(
      [&] {
        task->simulate_set(Theta{0.0, 1.0}, 0, 1, 1);
      },
      {"n ≥ 1", "got 0"});
  test_util::expect_error_naming<core::ValueError>([&] { set_observation(*task, 0, 10); },
                                                   {"k ≥ 1", "got 0"});
  const auto sampler = task->sampler(Theta{0.0, 1.0}, 1, 1);
  std::vector<float> out(3);
  test_util::expect_error_naming<core::ShapeError>([&] { sampler->elements(0, 4, out); },
                                                   {"3 values for 4 elements"});
  test_util::expect_error_naming<core::ValueError>([&] { sampler->elements(4, 1, out); },
                                                   {"begin ≤ end", "[4, 1)"});
  const auto gp = make_set_task("gp_replicates");
  test_util::expect_error_naming<core::ShapeError>(
      [&] {
        gp->posterior_density(Tensor::zeros({2, 255}));
      },
      {"gp_replicates", "element_dim = 256"});
  test_util::expect_error_naming<core::ValueError>(
      [&] {
        gp->sampler(Theta{0.0, 1.0}, 1, 1);
      },
      {"lengthscale > 0"});
}

// The cost of simulation (10⁴ sets of 10 and 100 sets of 1000, θ from the prior) and of the
// references at the benchmark's size (10⁴ samples, N = 10 and 1000, observation 1); not part of
// the suite (minutes). Run with
//   asbi_sbi_tests --gtest_also_run_disabled_tests --gtest_filter='*SetTaskCost*'
TEST(SetTaskReference, DISABLED_SetTaskCost) {
  using Clock = std::chrono::steady_clock;
  for (const std::string& name : set_task_names()) {
    const auto task = make_set_task(name);
    for (const auto& [sets, n] : {std::pair{10'000, 10}, std::pair{100, 1000}}) {
      core::Rng rng(1, 0);
      const Tensor theta = task->prior().sample(sets, rng);
      const auto start = Clock::now();
      for (int s = 0; s < sets; ++s) {
        const std::vector<double> row = {theta.at(2 * s), theta.at(2 * s + 1)};
        task->simulate_set(row, n, 1, static_cast<std::uint64_t>(s));
      }
      std::printf("%s: %d sets of %d simulated in %.3f s\n", name.c_str(), sets, n,
                  std::chrono::duration<double>(Clock::now() - start).count());
    }
    for (const std::int64_t n : {10, 1000}) {
      const SetObservation obs = set_observation(*task, 1, n);
      const SetReference ref = set_reference_posterior(*task, obs.set, 10'000, 1);
      std::printf(
          "%s N = %lld: reference in %.2f s, exact %d, R-hat %.3f, ESS %.0f, %lld rows, "
          "%lld likelihoods\n",
          name.c_str(), static_cast<long long>(n), ref.seconds, ref.exact,
          ref.r_hat.empty() ? 0.0 : ref.r_hat[0], ref.ess.empty() ? 0.0 : ref.ess[0],
          static_cast<long long>(ref.density_rows),
          static_cast<long long>(ref.likelihood_evaluations));
    }
  }
}

}  // namespace
}  // namespace asbi::sbi
