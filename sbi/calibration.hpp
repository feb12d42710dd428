#pragma once
// Calibration checks of an amortised posterior over many simulated observations:
// simulation-based calibration (SBC) and the expected coverage of highest-posterior-density
// regions.
//
//   sbi::SbcResult r = sbi::sbc(*posterior, prior, simulator, {.num_datasets = 500});
//   sbi::SbcReport rep = sbi::sbc_report(r);   // per-dimension p-values, coverage gap
//   std::puts(sbi::to_json(rep).c_str());
//
// SBC (Talts et al. 2018, "Validating Bayesian inference algorithms with simulation-based
// calibration", Algorithm 1): draw θ* ~ p(θ), x ~ p(x | θ*), then L draws θ_1…θ_L ~ q(θ | x); the
// rank of θ*_d among the θ_{j,d} is uniform on {0, …, L} for every d when q is the true posterior.
// Too narrow posteriors give U-shaped rank histograms, too wide ones ∩-shaped, biased ones skewed.
//
// Expected coverage (Hermans et al. 2022, "A trust crisis in simulation-based inference?", Eq. 4):
// the fraction of datasets whose θ* lies inside q's α-highest-density region should be α for
// every α. Below the diagonal the posterior is overconfident, above it conservative. It uses the
// rank of log q(θ* | x) among the log q(θ_j | x), so only the order of log_prob matters and an
// unnormalised posterior (NLE, NRE) works as well as a normalised one.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/tensor.hpp"
#include "sbi/posterior.hpp"
#include "sbi/prior.hpp"
#include "sbi/simulator.hpp"

namespace asbi::sbi {

struct SbcOptions {
  std::int64_t num_datasets = 1000;       // (θ*, x) pairs; sbi's tutorials use 1000
  std::int64_t posterior_samples = 1000;  // L per dataset, sbi's run_sbc default
  std::uint64_t seed = 1;                 // datasets, posterior seeds, tie-breaking, KS jitter
  int bins = 0;                           // chi-square bins; 0: num_datasets / 20 in [2, 50]
  bool expected_coverage = true;          // also score θ* and the draws with log_prob
  int coverage_levels = 101;              // α grid 0, 1/(k − 1), …, 1
};

// Uniformity of one dimension's ranks (values 0…L) over the datasets.
struct RankUniformity {
  double ks_statistic = 0;  // sup |F_n − F| of the jittered ranks (rank + U(0,1)) / (L + 1)
  double ks_pvalue = 1;
  double chi2_statistic = 0;  // Pearson's statistic of the binned ranks
  int chi2_bins = 0;          // degrees of freedom: bins − 1
  double chi2_pvalue = 1;
};

struct SbcResult {
  std::int64_t datasets = 0;           // N: simulations with a finite x (the others are dropped)
  std::int64_t invalid_simulations = 0;
  std::int64_t posterior_samples = 0;  // L
  std::int64_t theta_dim = 0;          // D
  Tensor theta;                        // θ* [N, D] float64
  // Rank of θ*_d among the d-th coordinates of the L draws, ties with θ*_d broken at random:
  // [N × D] row-major, each in 0…L.
  std::vector<std::int64_t> ranks;
  std::vector<RankUniformity> uniformity;  // per dimension

  // Expected coverage (empty when not requested). hpd_ranks[i]: the number of draws scored below
  // θ* by log_prob (ties broken at random), 0…L. credibility[i] = (L − hpd_ranks[i] + ½)/(L + 1):
  // the smallest HPD level whose region contains θ*, uniform in (0, 1) for a calibrated q.
  std::vector<std::int64_t> hpd_ranks;
  std::vector<double> credibility;
  std::vector<double> coverage_levels;    // α grid
  std::vector<double> expected_coverage;  // fraction of datasets with credibility ≤ α
  double max_coverage_gap = 0;            // max_α |coverage(α) − α|
  double mean_coverage_gap = 0;  // mean_α (coverage(α) − α): < 0 overconfident, > 0 conservative
};

// Runs SBC: N = options.num_datasets pairs (θ*, x) from simulate_dataset(prior, simulator, N,
// options.seed, float64), then for dataset i the posterior's draws with a seed derived from
// (options.seed, i). Datasets are processed one after another (the posterior's sampler may use
// threads itself). Throws ShapeError when the dimensions of prior, simulator and posterior
// disagree, ValueError for non-positive counts or fewer than 2 coverage levels.
SbcResult sbc(const Posterior& posterior, const Prior& prior, const Simulator& simulator,
              const SbcOptions& options = {});

// Uniformity tests of ranks in 0…L (one dimension, N ranks).
//  * KS: the ranks are discrete, so a plain KS test against U(0, L) would be conservative; each
//    rank r becomes u = (r + v)/(L + 1) with v ~ U(0, 1) from Rng(jitter_seed, jitter_stream),
//    which is exactly U(0, 1) under uniform ranks (a randomised probability integral transform),
//    and u is tested against U(0, 1) with kolmogorov_pvalue.
//  * Chi-square: bin b holds the ranks ⌊r·B/(L + 1)⌋ = b; its expected count is N times the
//    number of rank values it covers over L + 1 (exact even when B does not divide L + 1).
// bins = 0 picks N / 20 clamped to [2, 50] and to at most L + 1. Throws ValueError for a rank
// outside 0…L, no ranks, or bins < 0.
RankUniformity rank_uniformity(std::span<const std::int64_t> ranks, std::int64_t L, int bins,
                               std::uint64_t jitter_seed, std::uint64_t jitter_stream = 0);

// P(D_n ≥ d) for the one-sample Kolmogorov–Smirnov statistic of n points, by the asymptotic
// distribution with Stephens' (1970) small-sample correction: Q_KS((√n + 0.12 + 0.11/√n)·d).
double kolmogorov_pvalue(std::int64_t n, double d);
// The Kolmogorov distribution's survival function Q_KS(λ) = 2 Σ_{k≥1} (−1)^{k−1} exp(−2k²λ²)
// (for small λ via the Jacobi-theta form 1 − √(2π)/λ Σ exp(−(2k−1)²π²/(8λ²))).
double kolmogorov_survival(double lambda);
// Q(a, x) = Γ(a, x)/Γ(a), the regularised upper incomplete gamma function (a > 0, x ≥ 0): series
// for x < a + 1, Lentz's continued fraction otherwise (Numerical Recipes, 3rd ed., §6.2).
double regularized_gamma_q(double a, double x);
// P(χ²_df ≥ x) = Q(df/2, x/2).
double chi2_survival(double x, double df);

// The expected-coverage curve of credibility levels (each in [0, 1]) on `levels` equally spaced
// α in [0, 1]: fraction of credibility ≤ α. Throws ValueError for levels < 2.
std::vector<double> expected_coverage_curve(std::span<const double> credibility, int levels);

// What a command-line tool prints: per-dimension p-values and the coverage gap.
struct SbcReport {
  std::int64_t datasets = 0, invalid_simulations = 0, posterior_samples = 0;
  std::vector<double> ks_pvalue, chi2_pvalue;  // per dimension
  double min_ks_pvalue = 1, min_chi2_pvalue = 1;
  bool has_coverage = false;
  double max_coverage_gap = 0, mean_coverage_gap = 0;
};
SbcReport sbc_report(const SbcResult& result);
// One JSON object with the fields above (coverage gaps null without coverage).
std::string to_json(const SbcReport& report);

}  // namespace asbi::sbi
