#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <numbers>
#include <vector>

#include "core/error.hpp"
#include "sbi/ode.hpp"
#include "sbi/task.hpp"
#include "test_util.hpp"

namespace asbi::sbi {
namespace {

using Span = std::span<const double>;
using MutSpan = std::span<double>;

std::vector<double> linspace(double a, double b, std::size_t n) {
  std::vector<double> v(n);
  for (std::size_t i = 0; i < n; ++i)
    v[i] = a + (b - a) * static_cast<double>(i) / static_cast<double>(n - 1);
  return v;
}

// y'' = -ω² y as (y, y'), from (1, 0): y = cos ωt.
constexpr double kOmega = 2.0;
void oscillator(double, Span y, MutSpan dydt) {
  dydt[0] = y[1];
  dydt[1] = -kOmega * kOmega * y[0];
}

// The largest |y_0(t_i) - cos ωt_i| for the oscillator solved at rtol (atol = rtol / 100).
double oscillator_error(double rtol, const std::vector<double>& t_eval, OdeStats* stats = nullptr) {
  std::vector<double> out(2 * t_eval.size());
  solve_ode(oscillator, std::vector<double>{1, 0}, 0, t_eval, out,
            {.rtol = rtol, .atol = rtol / 100}, stats);
  double worst = 0;
  for (std::size_t i = 0; i < t_eval.size(); ++i)
    worst = std::max(worst, std::abs(out[2 * i] - std::cos(kOmega * t_eval[i])));
  return worst;
}

TEST(OdeSolver, ExponentialDecayMatchesAnalytic) {
  // Two decoupled rates, one 40x faster, so the step is set by the fast one early on.
  auto rhs = [](double, Span y, MutSpan dydt) {
    dydt[0] = -0.5 * y[0];
    dydt[1] = -20.0 * y[1];
  };
  const std::vector<double> t_eval = {0, 0.03, 0.3, 1, 2.5, 5, 10};
  std::vector<double> out(2 * t_eval.size());
  OdeStats stats;
  solve_ode(rhs, std::vector<double>{1.0, 3.0}, 0, t_eval, out, {.rtol = 1e-9, .atol = 1e-12},
            &stats);
  EXPECT_EQ(out[0], 1.0);  // t_eval[0] == t0 returns y0 itself
  EXPECT_EQ(out[1], 3.0);
  for (std::size_t i = 0; i < t_eval.size(); ++i) {
    const double slow = std::exp(-0.5 * t_eval[i]), fast = 3 * std::exp(-20.0 * t_eval[i]);
    EXPECT_NEAR(out[2 * i], slow, 1e-8 * slow) << "t = " << t_eval[i];
    EXPECT_NEAR(out[2 * i + 1], fast, 1e-8 * fast + 1e-11) << "t = " << t_eval[i];
  }
  // FSAL: 6 evaluations per attempted step, plus the first f(t0, y0) and the starting-step probe.
  EXPECT_EQ(stats.evaluations, 6 * (stats.steps + stats.rejected) + 2);
  EXPECT_GT(stats.steps, 10);
}

TEST(OdeSolver, HarmonicOscillatorDenseOutputMatchesCosine) {
  // 400 output times over 10 periods: most fall inside steps, so this checks the interpolant.
  const std::vector<double> t_eval = linspace(0, 10 * std::numbers::pi, 400);
  OdeStats stats, end_only;
  EXPECT_LT(oscillator_error(1e-10, t_eval, &stats), 2e-8);
  oscillator_error(1e-10, {t_eval.back()}, &end_only);
  EXPECT_EQ(stats.steps, end_only.steps);  // the outputs did not shorten any step
  // Loose tolerance, long steps: the 4th-order interpolant still tracks cos to about the tolerance.
  EXPECT_LT(oscillator_error(1e-5, t_eval), 1e-3);
}

TEST(OdeSolver, LogisticGrowthMatchesAnalytic) {
  constexpr double r = 1.5, capacity = 10, y0 = 0.1;
  auto rhs = [](double, Span y, MutSpan dydt) { dydt[0] = r * y[0] * (1 - y[0] / capacity); };
  const std::vector<double> t_eval = linspace(0, 12, 25);
  std::vector<double> out(t_eval.size());
  solve_ode(rhs, std::vector<double>{y0}, 0, t_eval, out, {.rtol = 1e-10, .atol = 1e-12});
  for (std::size_t i = 0; i < t_eval.size(); ++i) {
    const double exact = capacity / (1 + (capacity / y0 - 1) * std::exp(-r * t_eval[i]));
    EXPECT_NEAR(out[i], exact, 1e-8 * exact) << "t = " << t_eval[i];
  }
}

TEST(OdeSolver, ErrorShrinksAsRtolTightens) {
  const std::vector<double> t_eval = linspace(0, 20, 41);
  double previous = std::numeric_limits<double>::infinity();
  std::int64_t previous_steps = 0;
  for (double rtol : {1e-4, 1e-6, 1e-8, 1e-10, 1e-12}) {
    SCOPED_TRACE(rtol);
    OdeStats stats;
    const double err = oscillator_error(rtol, t_eval, &stats);
    // Global error stays within a modest multiple of the tolerance (10 periods of drift) and
    // falls by at least 10x per 100x tightening; the step count grows about as rtol^-1/5.
    EXPECT_LT(err, 200 * rtol);
    EXPECT_LT(err, previous / 10);
    EXPECT_GT(stats.steps, previous_steps);
    previous = err;
    previous_steps = stats.steps;
  }
}

TEST(OdeSolver, OutputTimesDoNotChangeTheSteps) {
  // Dense output: y(1.234) is bit-identical whether 2 or 102 times are requested (same t_end).
  std::vector<double> sparse = {1.234, 5.0};
  std::vector<double> dense = linspace(0, 5, 101);
  dense.insert(std::upper_bound(dense.begin(), dense.end(), 1.234), 1.234);
  std::vector<double> out_sparse(4), out_dense(2 * dense.size());
  solve_ode(oscillator, std::vector<double>{1, 0}, 0, sparse, out_sparse, {.rtol = 1e-7});
  solve_ode(oscillator, std::vector<double>{1, 0}, 0, dense, out_dense, {.rtol = 1e-7});
  const auto at =
      static_cast<std::size_t>(std::find(dense.begin(), dense.end(), 1.234) - dense.begin());
  EXPECT_EQ(out_sparse[0], out_dense[2 * at]);
  EXPECT_EQ(out_sparse[2], out_dense[2 * (dense.size() - 1)]);
  // Repeated times and a start after t0 are allowed.
  std::vector<double> repeated = {0.5, 0.5, 2.0};
  std::vector<double> out(6);
  solve_ode(oscillator, std::vector<double>{1, 0}, 0, repeated, out, {.rtol = 1e-9, .atol = 1e-12});
  EXPECT_EQ(out[0], out[2]);
  EXPECT_NEAR(out[0], std::cos(kOmega * 0.5), 1e-8);
  EXPECT_NEAR(out[4], std::cos(kOmega * 2.0), 1e-8);
  // Only t0 requested: y0 back, the right-hand side never called.
  OdeStats stats;
  std::vector<double> start(2);
  solve_ode(oscillator, std::vector<double>{0.25, -1}, 3.0, std::vector<double>{3.0}, start, {},
            &stats);
  EXPECT_EQ(start, (std::vector<double>{0.25, -1}));
  EXPECT_EQ(stats.evaluations, 0);
  // An interval near the step-size floor at large t (a few ulps of 1e6) is still integrated.
  std::vector<double> tiny(1);
  solve_ode([](double, Span y, MutSpan dydt) { dydt[0] = -0.5 * y[0]; }, std::vector<double>{1.0},
            1e6, std::vector<double>{1e6 + 1e-9}, tiny);
  EXPECT_NEAR(tiny[0], 1.0, 1e-9);
  // A given initial step and a step cap are honoured and keep the accuracy.
  OdeStats capped;
  solve_ode(oscillator, std::vector<double>{1, 0}, 0, std::vector<double>{5.0},
            std::span<double>(out_sparse).first(2),
            {.rtol = 1e-9, .atol = 1e-12, .initial_step = 1e-4, .max_step = 0.01}, &capped);
  EXPECT_NEAR(out_sparse[0], std::cos(kOmega * 5.0), 1e-8);
  EXPECT_GE(capped.steps, 500);
}

TEST(OdeSolver, StiffProblemHitsMaxStepsWithClearError) {
  // y' = -1e6 (y - cos t): explicit methods are held to h ≈ 3.3e-6 by stability, so 10 time
  // units need ~3e6 steps; the guard stops it after 2000.
  auto stiff = [](double t, Span y, MutSpan dydt) { dydt[0] = -1e6 * (y[0] - std::cos(t)); };
  std::vector<double> out(1);
  test_util::expect_error_naming<OdeError>(
      [&] {
        solve_ode(stiff, std::vector<double>{0.0}, 0, std::vector<double>{10.0}, out,
                  {.max_steps = 2000});
      },
      {"max_steps = 2000", "at t = ", "stiff"});
}

TEST(OdeSolver, BlowUpAndNonFiniteRightHandSideThrow) {
  // y' = y², y(0) = 1 has y = 1/(1 - t): infinite at t = 1.
  auto blow_up = [](double, Span y, MutSpan dydt) { dydt[0] = y[0] * y[0]; };
  std::vector<double> out(1);
  EXPECT_THROW(solve_ode(blow_up, std::vector<double>{1.0}, 0, std::vector<double>{2.0}, out),
               OdeError);
  // A right-hand side undefined beyond t = 0.5 (NaN): the step shrinks to nothing there.
  auto undefined = [](double t, Span y, MutSpan dydt) {
    dydt[0] = t > 0.5 ? std::numeric_limits<double>::quiet_NaN() : -y[0];
  };
  test_util::expect_error_naming<OdeError>(
      [&] { solve_ode(undefined, std::vector<double>{1.0}, 0, std::vector<double>{1.0}, out); },
      {"non-finite", "at t = 0.5"});
  auto nan_at_start = [](double, Span, MutSpan dydt) { dydt[0] = std::nan(""); };
  test_util::expect_error_naming<OdeError>(
      [&] { solve_ode(nan_at_start, std::vector<double>{1.0}, 0, std::vector<double>{1.0}, out); },
      {"not finite at t0"});
}

TEST(OdeSolver, BadArgumentsNameTheField) {
  const std::vector<double> y0 = {1, 0};
  std::vector<double> out(4);
  const auto solve = [&](std::vector<double> t_eval, OdeOptions o = {}) {
    return [=, &out] { solve_ode(oscillator, y0, 0, t_eval, out, o); };
  };
  test_util::expect_error_naming<core::ValueError>(solve({2.0, 1.0}),
                                                   {"t_eval", "non-decreasing", "t_eval[1] = 1"});
  test_util::expect_error_naming<core::ValueError>(solve({-1.0, 1.0}), {"t_eval[0] = -1", "t0"});
  test_util::expect_error_naming<core::ValueError>(solve({0.0, std::nan("")}), {"t_eval[1]"});
  test_util::expect_error_naming<core::ShapeError>(solve({1.0, 2.0, 3.0}), {"out", "6", "got 4"});
  test_util::expect_error_naming<core::ValueError>(solve({1.0, 2.0}, {.atol = 0}), {"atol", "> 0"});
  test_util::expect_error_naming<core::ValueError>(solve({1.0, 2.0}, {.rtol = -1}), {"rtol"});
  test_util::expect_error_naming<core::ValueError>(solve({1.0, 2.0}, {.max_steps = 0}),
                                                   {"max_steps"});
  test_util::expect_error_naming<core::ValueError>(solve({1.0, 2.0}, {.initial_step = -1}),
                                                   {"initial_step"});
  test_util::expect_error_naming<core::ValueError>(
      [&] {
        solve_ode(oscillator, std::vector<double>{1, INFINITY}, 0, std::vector<double>{1.0, 2.0},
                  out);
      },
      {"y0[1]"});
  test_util::expect_error_naming<core::ShapeError>(
      [&] { solve_ode(oscillator, std::vector<double>{}, 0, std::vector<double>{}, out); }, {"y0"});
}

// ---- the sir and lotka_volterra tasks ----------------------------------------------------------

bool have_reference() {
  const char* env = std::getenv("ASBI_REFERENCE_DIR");
  return env != nullptr && std::filesystem::is_directory(std::filesystem::path(env) / "sbibm");
}

Tensor repeat_row(const std::vector<double>& theta, std::int64_t n) {
  std::vector<double> rep;
  for (std::int64_t i = 0; i < n; ++i) rep.insert(rep.end(), theta.begin(), theta.end());
  return Tensor::from(rep, {n, static_cast<std::int64_t>(theta.size())}, DType::f64);
}

std::vector<double> row(const std::vector<double>& v, std::int64_t i, std::int64_t d) {
  return {v.begin() + i * d, v.begin() + (i + 1) * d};
}

TEST(OdeTasks, SirAndLotkaVolterraShapesAndPriors) {
  struct Expect {
    const char* name;
    std::int64_t d, x;
    std::vector<double> mu, sigma;
  };
  const std::vector<Expect> tasks = {
      {"sir", 2, 10, {std::log(0.4), std::log(0.125)}, {0.5, 0.2}},
      {"lotka_volterra", 4, 20, {-0.125, -3, -0.125, -3}, {0.5, 0.5, 0.5, 0.5}}};
  for (const Expect& e : tasks) {
    SCOPED_TRACE(e.name);
    const auto task = make_task(e.name);
    EXPECT_EQ(task->name(), e.name);
    EXPECT_EQ(task->theta_dim(), e.d);
    EXPECT_EQ(task->x_dim(), e.x);
    EXPECT_TRUE(task->has_likelihood());
    // The prior density is Π LogNormal(θ_j; mu_j, sigma_j) at a point, and draws have log-means
    // mu_j (±5 SE over 4000 draws); no draw leaves (0, ∞).
    std::vector<double> theta(static_cast<std::size_t>(e.d));
    double expected = 0;
    for (std::size_t j = 0; j < theta.size(); ++j) {
      theta[j] = std::exp(e.mu[j] + 0.3);
      const double z = 0.3 / e.sigma[j];
      expected += -0.5 * z * z - std::log(e.sigma[j] * theta[j] * std::sqrt(2 * std::numbers::pi));
    }
    EXPECT_NEAR(task->prior().log_prob_row(theta), expected, 1e-10);
    EXPECT_EQ(task->prior().log_prob_row(std::vector<double>(theta.size(), -0.1)),
              -std::numeric_limits<double>::infinity());
    core::Rng rng(5, 0);
    const std::vector<double> draws = task->prior().sample(4000, rng).to_vector();
    for (std::size_t j = 0; j < theta.size(); ++j) {
      double mean_log = 0;
      for (std::size_t i = 0; i < 4000; ++i) {
        ASSERT_GT(draws[i * theta.size() + j], 0);
        mean_log += std::log(draws[i * theta.size() + j]) / 4000;
      }
      EXPECT_NEAR(mean_log, e.mu[j], 5 * e.sigma[j] / std::sqrt(4000.0));
    }
  }
}

TEST(OdeTasks, SimulationsFromPriorDrawsAreValid) {
  for (const char* name : {"sir", "lotka_volterra"}) {
    SCOPED_TRACE(name);
    const auto task = make_task(name);
    const Dataset data = simulate_dataset(task->prior(), task->simulator(), 2000, 11, DType::f64);
    // sbibm's own prior predictive has no failed solves for either task; neither should ours.
    EXPECT_EQ(data.invalid_count, 0);
    const std::vector<double> x = data.x.to_vector();
    for (double v : x) {
      ASSERT_TRUE(std::isfinite(v));
      if (std::string(name) == "sir") {
        ASSERT_EQ(v, std::floor(v));  // binomial counts out of 1000
        ASSERT_TRUE(v >= 0 && v <= 1000);
      } else {
        ASSERT_GT(v, 0);  // log-normal noise
      }
    }
  }
}

// The counts are Binomial(1000, I(t_k)/N): per time point, the mean and variance over 4000
// simulations match 1000p and 1000p(1-p), with p from an independent solve at tight tolerance.
// θ* of observation 1 puts t = 68 in the inversion sampler's range (1000p ≈ 3) and t = 34 in
// the rejection sampler's (1000p ≈ 350).
TEST(OdeTasks, SirCountsAreBinomialAroundTheOdeSolution) {
  const std::vector<double> theta = {0.61479264, 0.19172086};
  const auto task = make_task("sir");
  constexpr std::int64_t n = 4000;
  const std::vector<double> xs = task->simulator().simulate(repeat_row(theta, n), 3).to_vector();
  const double beta = theta[0], gamma = theta[1];
  auto rhs = [&](double, Span y, MutSpan dydt) {
    dydt[0] = -beta * y[0] * y[1];
    dydt[1] = beta * y[0] * y[1] - gamma * y[1];
  };
  std::vector<double> t_eval(10), fractions(20);
  for (std::size_t k = 0; k < 10; ++k) t_eval[k] = 17.0 * static_cast<double>(k);
  solve_ode(rhs, std::vector<double>{1 - 1e-6, 1e-6}, 0, t_eval, fractions,
            {.rtol = 1e-12, .atol = 1e-18});
  int checked_small = 0, checked_large = 0;
  for (std::size_t k = 0; k < 10; ++k) {
    SCOPED_TRACE(k);
    const double p = fractions[2 * k + 1], mean = 1000 * p, var = mean * (1 - p);
    double m = 0, s = 0;
    for (std::int64_t i = 0; i < n; ++i) m += xs[static_cast<std::size_t>(i) * 10 + k] / n;
    for (std::int64_t i = 0; i < n; ++i) {
      const double d = xs[static_cast<std::size_t>(i) * 10 + k] - mean;
      s += d * d / n;
    }
    // + 3/n: at t = 153 the mean is ~3e-6, where a single count (probability ~1%) is no error.
    EXPECT_NEAR(m, mean, 5 * std::sqrt(var / n) + 3.0 / n);
    if (mean > 0.5) {
      EXPECT_NEAR(s, var, 6 * var * std::sqrt(2.0 / n) + 0.05 * mean);
      (mean < 10 ? checked_small : checked_large) += 1;
    }
  }
  EXPECT_GE(checked_small, 1);
  EXPECT_GE(checked_large, 2);
}

// sbibm's observations 1-5 under our simulator and likelihood: x_o is typical of simulations at
// θ* (its log-likelihood above the 1% quantile of theirs), and θ* explains x_o better than 95%
// of prior draws do.
TEST(OdeTasks, ReferenceObservationsArePlausible) {
  if (!have_reference())
    GTEST_SKIP() << "ASBI_REFERENCE_DIR/sbibm not found; reference checks skipped";
  for (const char* name : {"sir", "lotka_volterra"}) {
    const auto task = make_task(name);
    core::Rng rng(23, 0);
    const Tensor prior_draws = task->prior().sample(200, rng);
    for (int k = 1; k <= 5; ++k) {
      SCOPED_TRACE(std::string(name) + " observation " + std::to_string(k));
      const std::vector<double> theta = reference_true_parameters(name, k);
      const std::vector<double> x_o = reference_observation(name, k);
      ASSERT_EQ(static_cast<std::int64_t>(theta.size()), task->theta_dim());
      ASSERT_EQ(static_cast<std::int64_t>(x_o.size()), task->x_dim());
      const double ll_o = task->log_likelihood(theta, x_o);
      ASSERT_TRUE(std::isfinite(ll_o));
      constexpr std::int64_t sims = 300;
      const std::vector<double> xs =
          task->simulator().simulate(repeat_row(theta, sims), 100 + k).to_vector();
      std::vector<double> ll_sim;
      for (std::int64_t i = 0; i < sims; ++i)
        ll_sim.push_back(task->log_likelihood(theta, row(xs, i, task->x_dim())));
      std::sort(ll_sim.begin(), ll_sim.end());
      EXPECT_GT(ll_o, ll_sim[sims / 100]);
      const std::vector<double> ll_prior = task->log_likelihood(prior_draws, x_o);
      const auto beaten =
          std::count_if(ll_prior.begin(), ll_prior.end(), [&](double ll) { return ll < ll_o; });
      EXPECT_GE(beaten, 190);
    }
  }
}

// Data simulated at θ* are far more likely under θ* than under θ* with every rate doubled.
TEST(OdeTasks, LikelihoodPrefersTheGeneratingParameters) {
  if (!have_reference()) GTEST_SKIP() << "ASBI_REFERENCE_DIR/sbibm not found";
  for (const char* name : {"sir", "lotka_volterra"}) {
    SCOPED_TRACE(name);
    const auto task = make_task(name);
    const std::vector<double> theta = reference_true_parameters(name, 2);
    std::vector<double> distant = theta;
    for (double& v : distant) v *= 2;
    const std::vector<double> xs = task->simulator().simulate(repeat_row(theta, 50), 8).to_vector();
    for (std::int64_t i = 0; i < 50; ++i) {
      const std::vector<double> x = row(xs, i, task->x_dim());
      EXPECT_GT(task->log_likelihood(theta, x), task->log_likelihood(distant, x) + 10);
    }
  }
}

TEST(OdeTasks, SimulationsAreReproducibleAcrossThreadCounts) {
  for (const char* name : {"sir", "lotka_volterra"}) {
    SCOPED_TRACE(name);
    const auto task = make_task(name);
    core::Rng rng(4, 0);
    const Tensor theta = task->prior().sample(300, rng);
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    const std::vector<double> one = task->simulator().simulate(theta, 77).to_vector();
    omp_set_num_threads(2);
    const std::vector<double> two = task->simulator().simulate(theta, 77).to_vector();
    const std::vector<double> again = task->simulator().simulate(theta, 77).to_vector();
    const std::vector<double> other = task->simulator().simulate(theta, 78).to_vector();
    omp_set_num_threads(saved);
    EXPECT_EQ(one, two);
    EXPECT_EQ(two, again);
    EXPECT_NE(two, other);
  }
}

}  // namespace
}  // namespace asbi::sbi
