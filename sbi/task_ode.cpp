// The two ODE tasks of sbibm, sir and lotka_volterra (TASKS.md): a deterministic trajectory
// from sbi/ode.hpp, read at 10 time points, then independent observation noise. Given the
// trajectory the noise is tractable, so both tasks have exact likelihoods (one ODE solve per
// evaluation).
//
// Tolerances: sbibm solved both with Tsit5 at reltol = abstol = 1e-8; we integrate with
// Dormand–Prince 5(4) at rtol = 1e-8 (measured against solves at rtol = 1e-13 over 2000 prior
// draws each):
//  * sir keeps atol = 1e-8 (on counts up to N = 1e6): I/N is within 1e-8 of the exact value,
//    far below the binomial noise (sd ≥ 0.03 counts of 1000 unless I/N < 1e-6).
//  * lotka_volterra uses atol = 1e-14. The noise acts on log X and log Y, so relative accuracy
//    is what matters, and some prior draws send a population through a trough of 1e-8 or less,
//    where atol = 1e-8 leaves its relative error uncontrolled; the time the population takes to
//    recover depends on the trough depth, so the error reaches the later observed values too.
//    With atol = 1e-8, 6 of 2000 draws had an observed log-state off by more than 0.01 (worst
//    2.1, i.e. 21 noise sds); with 1e-14 one draw exceeds 0.01 (by 0.012), for 11% more steps.
//    Near the observations' θ* both settings agree with the exact solution to ~1e-7 in log.
#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <memory>
#include <numbers>

#include "core/error.hpp"
#include "sbi/ode.hpp"
#include "sbi/task.hpp"

namespace asbi::sbi {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kNegInf = -std::numeric_limits<double>::infinity();
// max_steps: over 10000 prior draws the most attempted steps were 459 (sir) and 1303
// (lotka_volterra); the guard only stops pathological θ (the row becomes NaN) within a few ms.
constexpr OdeOptions kSirOdeOptions{.rtol = 1e-8, .atol = 1e-8, .max_steps = 20000};
constexpr OdeOptions kLvOdeOptions{.rtol = 1e-8, .atol = 1e-14, .max_steps = 20000};

// ---- SIR ---------------------------------------------------------------------------------------

constexpr double kPopulation = 1e6;
constexpr int kSirCount = 1000;  // binomial trials per observation
constexpr std::size_t kSirTimes = 10;

// log k! for k = 0..1000, built once (thread-safe static initialisation); std::lgamma is
// avoided because glibc's writes the global signgam, a data race in parallel simulators.
double log_factorial(int k) {
  static const std::array<double, kSirCount + 1> table = [] {
    std::array<double, kSirCount + 1> t{};
    for (std::size_t i = 1; i < t.size(); ++i) t[i] = t[i - 1] + std::log(static_cast<double>(i));
    return t;
  }();
  return table[static_cast<std::size_t>(k)];
}

// Binomial(n, p) for n <= 1000. With p folded to ≤ ½: inversion (sequential search of the CDF)
// when n·p < 10, otherwise Hörmann's BTRS, transformed rejection with squeeze (W. Hörmann, "The
// generation of binomial random variates", J. Stat. Comput. Simul. 46, 1993), whose acceptance
// rate is above 85% for every n·p ≥ 10; the exact test compares against log f(k)/f(mode).
int sample_binomial(int n, double p, core::Rng& rng) {
  if (p <= 0) return 0;
  if (p >= 1) return n;
  if (p > 0.5) return n - sample_binomial(n, 1 - p, rng);
  const double q = 1 - p, mean = n * p;
  if (mean < 10) {
    const double q_n = std::exp(n * std::log(q));
    const double bound = std::min<double>(n, mean + 10 * std::sqrt(mean * q + 1));
    while (true) {
      int k = 0;
      double pk = q_n, u = rng.uniform();
      while (u > pk) {
        u -= pk;
        ++k;
        if (k > bound) break;  // rounding left u beyond the tail: draw again
        pk *= (n - k + 1) * p / (k * q);
      }
      if (k <= bound) return k;
    }
  }
  const double spq = std::sqrt(mean * q);
  const double b = 1.15 + 2.53 * spq, a = -0.0873 + 0.0248 * b + 0.01 * p, c = mean + 0.5;
  const double v_r = 0.92 - 4.2 / b, alpha = (2.83 + 5.1 / b) * spq, lpq = std::log(p / q);
  const int m = static_cast<int>(std::floor((n + 1) * p));
  const double log_f_m = -log_factorial(m) - log_factorial(n - m);
  while (true) {
    const double u = rng.uniform() - 0.5, v = rng.uniform();
    const double us = 0.5 - std::abs(u);
    const double kf = std::floor((2 * a / us + b) * u + c);
    if (kf < 0 || kf > n) continue;
    const int k = static_cast<int>(kf);
    if (us >= 0.07 && v <= v_r) return k;
    const double lhs = std::log(v * alpha / (a / (us * us) + b));
    if (lhs <= -log_factorial(k) - log_factorial(n - k) - log_f_m + (k - m) * lpq) return k;
  }
}

// dS/dt = -β S I / N, dI/dt = β S I / N - γ I, dR/dt = γ I from (N - 1, 1, 0); I/N at
// t = 0, 17, ..., 153 (every 17th of sbibm's daily points). Throws OdeError on failure.
std::array<double, kSirTimes> sir_infected_fraction(std::span<const double> theta) {
  const double beta = theta[0], gamma = theta[1];
  auto rhs = [beta, gamma](double, std::span<const double> y, std::span<double> dydt) {
    const double infection = beta * y[0] * y[1] / kPopulation, recovery = gamma * y[1];
    dydt[0] = -infection;
    dydt[1] = infection - recovery;
    dydt[2] = recovery;
  };
  std::array<double, kSirTimes> t_eval{};
  for (std::size_t k = 0; k < kSirTimes; ++k) t_eval[k] = 17.0 * static_cast<double>(k);
  const std::array<double, 3> y0 = {kPopulation - 1, 1, 0};
  std::array<double, 3 * kSirTimes> y{};
  solve_ode(rhs, y0, 0.0, t_eval, y, kSirOdeOptions);
  std::array<double, kSirTimes> p{};
  for (std::size_t k = 0; k < kSirTimes; ++k)
    p[k] = std::clamp(y[3 * k + 1] / kPopulation, 0.0, 1.0);
  return p;
}

class SirSimulator : public RowSimulator {
 public:
  std::int64_t theta_dim() const override { return 2; }
  std::int64_t x_dim() const override { return kSirTimes; }
  void simulate_row(std::span<const double> theta, std::span<double> x,
                    core::Rng& rng) const override {
    std::array<double, kSirTimes> p{};
    try {
      p = sir_infected_fraction(theta);
    } catch (const OdeError&) {
      std::fill(x.begin(), x.end(), kNaN);  // sbibm: a failed solve makes the whole x NaN
      return;
    }
    for (std::size_t k = 0; k < kSirTimes; ++k) x[k] = sample_binomial(kSirCount, p[k], rng);
  }
};

// log Π_k Binomial(x_k; 1000, p_k); -inf for counts that are not integers in [0, 1000].
double sir_log_likelihood(std::span<const double> theta, std::span<const double> x) {
  std::array<double, kSirTimes> p{};
  try {
    p = sir_infected_fraction(theta);
  } catch (const OdeError&) {
    return kNegInf;
  }
  double ll = 0;
  for (std::size_t k = 0; k < kSirTimes; ++k) {
    if (!(x[k] >= 0 && x[k] <= kSirCount) || x[k] != std::floor(x[k])) return kNegInf;
    const int count = static_cast<int>(x[k]);
    ll += log_factorial(kSirCount) - log_factorial(count) - log_factorial(kSirCount - count);
    // 0·log 0 = 0: p = 0 (or 1) is possible for the clamped fraction.
    if (count > 0) ll += p[k] > 0 ? count * std::log(p[k]) : kNegInf;
    if (count < kSirCount) ll += p[k] < 1 ? (kSirCount - count) * std::log1p(-p[k]) : kNegInf;
  }
  return ll;
}

// ---- Lotka–Volterra ----------------------------------------------------------------------------

constexpr std::size_t kLvTimes = 10;
constexpr double kLvNoise = 0.1;  // std of log x

// dX/dt = αX - βXY, dY/dt = -γY + δXY from (30, 1); (X, Y) at t = 0, 2.1, ..., 18.9 (every 21st
// of sbibm's points spaced 0.1), clamped to [1e-10, 1e4] as sbibm does before taking the log.
// Returned as the 10 prey values, then the 10 predator values.
std::array<double, 2 * kLvTimes> lotka_volterra_log_state(std::span<const double> theta) {
  const double alpha = theta[0], beta = theta[1], gamma = theta[2], delta = theta[3];
  auto rhs = [=](double, std::span<const double> y, std::span<double> dydt) {
    dydt[0] = alpha * y[0] - beta * y[0] * y[1];
    dydt[1] = -gamma * y[1] + delta * y[0] * y[1];
  };
  std::array<double, kLvTimes> t_eval{};
  for (std::size_t k = 0; k < kLvTimes; ++k) t_eval[k] = 2.1 * static_cast<double>(k);
  const std::array<double, 2> y0 = {30, 1};
  std::array<double, 2 * kLvTimes> y{};
  solve_ode(rhs, y0, 0.0, t_eval, y, kLvOdeOptions);
  std::array<double, 2 * kLvTimes> log_u{};
  for (std::size_t k = 0; k < kLvTimes; ++k)
    for (std::size_t s = 0; s < 2; ++s)
      log_u[s * kLvTimes + k] = std::log(std::clamp(y[2 * k + s], 1e-10, 1e4));
  return log_u;
}

class LotkaVolterraSimulator : public RowSimulator {
 public:
  std::int64_t theta_dim() const override { return 4; }
  std::int64_t x_dim() const override { return 2 * kLvTimes; }
  void simulate_row(std::span<const double> theta, std::span<double> x,
                    core::Rng& rng) const override {
    std::array<double, 2 * kLvTimes> log_u{};
    try {
      log_u = lotka_volterra_log_state(theta);
    } catch (const OdeError&) {
      std::fill(x.begin(), x.end(), kNaN);
      return;
    }
    for (std::size_t j = 0; j < x.size(); ++j) x[j] = std::exp(log_u[j] + kLvNoise * rng.normal());
  }
};

// Σ_j log LogNormal(x_j; log u_j, 0.1²) = Σ_j log N(log x_j; log u_j, 0.1²) - log x_j.
double lotka_volterra_log_likelihood(std::span<const double> theta, std::span<const double> x) {
  std::array<double, 2 * kLvTimes> log_u{};
  try {
    log_u = lotka_volterra_log_state(theta);
  } catch (const OdeError&) {
    return kNegInf;
  }
  const double log_norm = -std::log(kLvNoise) - 0.5 * std::log(2 * std::numbers::pi);
  double ll = 0;
  for (std::size_t j = 0; j < log_u.size(); ++j) {
    if (!(x[j] > 0)) return kNegInf;
    const double log_x = std::log(x[j]), z = (log_x - log_u[j]) / kLvNoise;
    ll += log_norm - 0.5 * z * z - log_x;
  }
  return ll;
}

}  // namespace

// Declared and registered in task.cpp.
std::unique_ptr<Task> make_sir_task() {
  // β ~ LogNormal(log 0.4, 0.5), γ ~ LogNormal(log 0.125, 0.2).
  auto prior = std::make_shared<LogNormal>(std::vector<double>{std::log(0.4), std::log(0.125)},
                                           std::vector<double>{0.5, 0.2});
  return std::make_unique<Task>("sir", std::move(prior), std::make_shared<SirSimulator>(),
                                sir_log_likelihood);
}

std::unique_ptr<Task> make_lotka_volterra_task() {
  // α, γ ~ LogNormal(-0.125, 0.5); β, δ ~ LogNormal(-3, 0.5).
  auto prior = std::make_shared<LogNormal>(std::vector<double>{-0.125, -3, -0.125, -3},
                                           std::vector<double>{0.5, 0.5, 0.5, 0.5});
  return std::make_unique<Task>("lotka_volterra", std::move(prior),
                                std::make_shared<LotkaVolterraSimulator>(),
                                lotka_volterra_log_likelihood);
}

}  // namespace asbi::sbi
