#include "sbi/calibration.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/rng.hpp"

namespace asbi::sbi {
namespace {

using core::str;

// Philox streams under options.seed, one per purpose so that no two share random words. The
// datasets themselves come from simulate_dataset(seed), which uses stream 0 and a derived
// simulator seed.
constexpr std::uint64_t kPosteriorSeedStream = 1;  // block i → the posterior seed of dataset i
constexpr std::uint64_t kTieStream = 2;            // tie-breaking, datasets in order
constexpr std::uint64_t kJitterStream = 3;         // KS jitter, + d for dimension d

std::uint64_t posterior_seed(std::uint64_t seed, std::int64_t dataset) {
  return core::Rng(seed, kPosteriorSeedStream, static_cast<std::uint64_t>(dataset)).next_u64();
}

// Number of values below `pivot`, plus a uniform share of those equal to it, so that ties (an
// MCMC chain that never moved, a log_prob of -inf on both sides) do not pile ranks up at one end.
std::int64_t rank_with_ties(std::span<const double> values, double pivot, core::Rng& tie_rng) {
  std::int64_t below = 0, equal = 0;
  for (const double v : values) {
    below += v < pivot;
    equal += v == pivot;
  }
  return equal > 0 ? below + tie_rng.uniform_int(equal + 1) : below;
}

int default_bins(std::int64_t n, std::int64_t L) {
  const std::int64_t b = std::clamp<std::int64_t>(n / 20, 2, 50);
  return static_cast<int>(std::min(b, L + 1));
}

double ks_statistic_uniform(std::vector<double> u) {
  std::sort(u.begin(), u.end());
  const auto n = static_cast<double>(u.size());
  double d = 0;
  for (std::size_t i = 0; i < u.size(); ++i) {
    const double k = static_cast<double>(i);
    d = std::max({d, (k + 1) / n - u[i], u[i] - k / n});
  }
  return d;
}

// Pearson's chi-square of ranks 0…L in `bins` bins against the discrete uniform.
double chi2_statistic_ranks(std::span<const std::int64_t> ranks, std::int64_t L, int bins) {
  const auto bin_of = [&](std::int64_t r) { return static_cast<std::size_t>(r * bins / (L + 1)); };
  std::vector<double> observed(static_cast<std::size_t>(bins), 0.0);
  std::vector<double> values_per_bin(static_cast<std::size_t>(bins), 0.0);
  for (const std::int64_t r : ranks) observed[bin_of(r)] += 1;
  for (std::int64_t r = 0; r <= L; ++r) values_per_bin[bin_of(r)] += 1;
  const auto n = static_cast<double>(ranks.size());
  double chi2 = 0;
  for (std::size_t b = 0; b < observed.size(); ++b) {
    const double expected = n * values_per_bin[b] / static_cast<double>(L + 1);
    chi2 += (observed[b] - expected) * (observed[b] - expected) / expected;
  }
  return chi2;
}

// e^{−x} x^a / Γ(a), evaluated in logs to avoid overflow: the prefactor of both expansions below.
double gamma_prefactor(double a, double x) { return std::exp(a * std::log(x) - x - std::lgamma(a)); }

// P(a, x) by its series e^{−x} x^a / Γ(a) · Σ_n x^n / (a (a+1) … (a+n)), converges fast for
// x < a + 1 (NR3 Eq. 6.2.5).
double gamma_p_series(double a, double x) {
  double term = 1.0 / a, sum = term;
  for (int n = 1; n < 10000; ++n) {
    term *= x / (a + n);
    sum += term;
    if (std::abs(term) < std::abs(sum) * 1e-16) break;
  }
  return sum * gamma_prefactor(a, x);
}

// Q(a, x) by the continued fraction e^{−x} x^a / Γ(a) · 1/(x+1−a− 1·(1−a)/(x+3−a− 2(2−a)/(x+5−a− …)))
// evaluated with the modified Lentz method (NR3 Eq. 6.2.7), for x ≥ a + 1.
double gamma_q_continued_fraction(double a, double x) {
  constexpr double tiny = 1e-300;
  double b = x + 1 - a, c = 1 / tiny, d = 1 / b, h = d;
  for (int i = 1; i < 10000; ++i) {
    const double an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (std::abs(d) < tiny) d = tiny;
    c = b + an / c;
    if (std::abs(c) < tiny) c = tiny;
    d = 1 / d;
    const double delta = d * c;
    h *= delta;
    if (std::abs(delta - 1) < 1e-16) break;
  }
  return h * gamma_prefactor(a, x);
}

void check_dims(const Posterior& posterior, const Prior& prior, const Simulator& simulator) {
  if (prior.dim() != simulator.theta_dim() || posterior.theta_dim() != prior.dim() ||
      posterior.x_dim() != simulator.x_dim())
    throw core::ShapeError(str("sbc: expected matching dimensions, got prior θ ", prior.dim(),
                               ", simulator θ ", simulator.theta_dim(), " → x ",
                               simulator.x_dim(), ", posterior θ ", posterior.theta_dim(),
                               " | x ", posterior.x_dim()));
}

void check_options(const SbcOptions& o) {
  if (o.num_datasets < 1 || o.posterior_samples < 1)
    throw core::ValueError(str("sbc: expected num_datasets ≥ 1 and posterior_samples ≥ 1, got ",
                               o.num_datasets, " and ", o.posterior_samples));
  if (o.bins < 0) throw core::ValueError(str("sbc: expected bins ≥ 0 (0: auto), got ", o.bins));
  if (o.expected_coverage && o.coverage_levels < 2)
    throw core::ValueError(
        str("sbc: expected coverage_levels ≥ 2 (the grid holds 0 and 1), got ", o.coverage_levels));
}

}  // namespace

double kolmogorov_survival(double lambda) {
  if (!(lambda > 0)) return 1.0;
  if (lambda < 1.18) {
    // Jacobi-theta form of the CDF; the alternating series converges too slowly for small λ.
    const double y = std::numbers::pi * std::numbers::pi / (8 * lambda * lambda);
    double sum = 0;
    for (int k = 1; k < 40; k += 2) sum += std::exp(-static_cast<double>(k * k) * y);
    const double cdf = std::sqrt(2 * std::numbers::pi) / lambda * sum;
    return std::clamp(1.0 - cdf, 0.0, 1.0);
  }
  double sum = 0, sign = 1;
  for (int k = 1; k <= 100; ++k) {
    const double term = std::exp(-2.0 * k * k * lambda * lambda);
    sum += sign * term;
    if (term < 1e-17) break;
    sign = -sign;
  }
  return std::clamp(2 * sum, 0.0, 1.0);
}

double kolmogorov_pvalue(std::int64_t n, double d) {
  if (n < 1) throw core::ValueError(str("kolmogorov_pvalue: expected n ≥ 1 points, got ", n));
  const double sn = std::sqrt(static_cast<double>(n));
  return kolmogorov_survival((sn + 0.12 + 0.11 / sn) * d);
}

double regularized_gamma_q(double a, double x) {
  if (!(a > 0) || !(x >= 0))
    throw core::ValueError(
        str("regularized_gamma_q: expected a > 0 and x ≥ 0, got a = ", a, ", x = ", x));
  if (x == 0) return 1.0;
  if (std::isinf(x)) return 0.0;
  return x < a + 1 ? 1.0 - gamma_p_series(a, x) : gamma_q_continued_fraction(a, x);
}

double chi2_survival(double x, double df) {
  if (!(df > 0)) throw core::ValueError(str("chi2_survival: expected df > 0, got ", df));
  return x <= 0 ? 1.0 : regularized_gamma_q(df / 2, x / 2);
}

RankUniformity rank_uniformity(std::span<const std::int64_t> ranks, std::int64_t L, int bins,
                               std::uint64_t jitter_seed, std::uint64_t jitter_stream) {
  if (ranks.empty()) throw core::ValueError("rank_uniformity: expected at least one rank, got none");
  if (L < 1) throw core::ValueError(str("rank_uniformity: expected L ≥ 1 draws, got ", L));
  if (bins < 0) throw core::ValueError(str("rank_uniformity: expected bins ≥ 0, got ", bins));
  for (const std::int64_t r : ranks)
    if (r < 0 || r > L)
      throw core::ValueError(str("rank_uniformity: expected ranks in 0…", L, ", got ", r));
  const auto n = static_cast<std::int64_t>(ranks.size());
  RankUniformity out;

  core::Rng jitter(jitter_seed, jitter_stream);
  std::vector<double> u(ranks.size());
  for (std::size_t i = 0; i < ranks.size(); ++i)
    u[i] = (static_cast<double>(ranks[i]) + jitter.uniform()) / static_cast<double>(L + 1);
  out.ks_statistic = ks_statistic_uniform(std::move(u));
  out.ks_pvalue = kolmogorov_pvalue(n, out.ks_statistic);

  out.chi2_bins = bins > 0 ? static_cast<int>(std::min<std::int64_t>(bins, L + 1))
                           : default_bins(n, L);
  out.chi2_statistic = chi2_statistic_ranks(ranks, L, out.chi2_bins);
  out.chi2_pvalue = out.chi2_bins > 1 ? chi2_survival(out.chi2_statistic, out.chi2_bins - 1) : 1.0;
  return out;
}

std::vector<double> expected_coverage_curve(std::span<const double> credibility, int levels) {
  if (levels < 2)
    throw core::ValueError(str("expected_coverage_curve: expected levels ≥ 2, got ", levels));
  std::vector<double> sorted(credibility.begin(), credibility.end());
  std::sort(sorted.begin(), sorted.end());
  std::vector<double> curve(static_cast<std::size_t>(levels));
  for (int k = 0; k < levels; ++k) {
    const double alpha = static_cast<double>(k) / (levels - 1);
    const auto inside = std::upper_bound(sorted.begin(), sorted.end(), alpha) - sorted.begin();
    curve[static_cast<std::size_t>(k)] =
        sorted.empty() ? 0.0 : static_cast<double>(inside) / static_cast<double>(sorted.size());
  }
  return curve;
}

SbcResult sbc(const Posterior& posterior, const Prior& prior, const Simulator& simulator,
              const SbcOptions& options) {
  check_dims(posterior, prior, simulator);
  check_options(options);
  const std::int64_t D = prior.dim(), X = simulator.x_dim(), L = options.posterior_samples;
  const Dataset data =
      simulate_dataset(prior, simulator, options.num_datasets, options.seed, DType::f64);
  const std::int64_t N = data.theta.dim(0);
  const std::vector<double> theta_star = data.theta.to_vector(), x = data.x.to_vector();

  SbcResult r;
  r.datasets = N;
  r.invalid_simulations = data.invalid_count;
  r.posterior_samples = L;
  r.theta_dim = D;
  r.theta = data.theta;
  r.ranks.resize(static_cast<std::size_t>(N * D));
  core::Rng tie_rng(options.seed, kTieStream);
  std::vector<double> column(static_cast<std::size_t>(L));
  for (std::int64_t i = 0; i < N; ++i) {
    const std::span<const double> x_i(x.data() + i * X, static_cast<std::size_t>(X));
    const std::span<const double> star(theta_star.data() + i * D, static_cast<std::size_t>(D));
    const Tensor draws = posterior.sample(L, x_i, posterior_seed(options.seed, i));
    if (draws.rank() != 2 || draws.dim(0) != L || draws.dim(1) != D)
      throw core::ShapeError(str("sbc: expected the posterior to return [", L, ", ", D,
                                 "] draws, got ", draws.shape()));
    const std::vector<double> v = draws.to_vector();
    for (std::int64_t d = 0; d < D; ++d) {
      for (std::int64_t j = 0; j < L; ++j) column[static_cast<std::size_t>(j)] = v[j * D + d];
      r.ranks[static_cast<std::size_t>(i * D + d)] =
          rank_with_ties(column, star[static_cast<std::size_t>(d)], tie_rng);
    }
    if (options.expected_coverage) {
      // Score the draws and θ* in one call: rows 0…L−1 the draws, row L θ*.
      std::vector<double> all(v);
      all.insert(all.end(), star.begin(), star.end());
      const std::vector<double> lp =
          posterior.log_prob(Tensor::from(all, {L + 1, D}, DType::f64), x_i);
      const std::int64_t rank =
          rank_with_ties(std::span<const double>(lp.data(), static_cast<std::size_t>(L)),
                         lp[static_cast<std::size_t>(L)], tie_rng);
      r.hpd_ranks.push_back(rank);
      // (L − rank) draws are denser than θ*: θ* enters the HPD region once α covers them; the
      // half step centres the L + 1 possible values in (0, 1).
      r.credibility.push_back((static_cast<double>(L - rank) + 0.5) / static_cast<double>(L + 1));
    }
  }

  std::vector<std::int64_t> dim_ranks(static_cast<std::size_t>(N));
  for (std::int64_t d = 0; d < D; ++d) {
    for (std::int64_t i = 0; i < N; ++i)
      dim_ranks[static_cast<std::size_t>(i)] = r.ranks[static_cast<std::size_t>(i * D + d)];
    r.uniformity.push_back(rank_uniformity(dim_ranks, L, options.bins, options.seed,
                                           kJitterStream + static_cast<std::uint64_t>(d)));
  }

  if (options.expected_coverage) {
    r.expected_coverage = expected_coverage_curve(r.credibility, options.coverage_levels);
    double max_gap = 0, sum_gap = 0;
    for (int k = 0; k < options.coverage_levels; ++k) {
      const double alpha = static_cast<double>(k) / (options.coverage_levels - 1);
      const double gap = r.expected_coverage[static_cast<std::size_t>(k)] - alpha;
      r.coverage_levels.push_back(alpha);
      max_gap = std::max(max_gap, std::abs(gap));
      sum_gap += gap;
    }
    r.max_coverage_gap = max_gap;
    r.mean_coverage_gap = sum_gap / options.coverage_levels;
  }
  return r;
}

SbcReport sbc_report(const SbcResult& result) {
  SbcReport rep;
  rep.datasets = result.datasets;
  rep.invalid_simulations = result.invalid_simulations;
  rep.posterior_samples = result.posterior_samples;
  for (const RankUniformity& u : result.uniformity) {
    rep.ks_pvalue.push_back(u.ks_pvalue);
    rep.chi2_pvalue.push_back(u.chi2_pvalue);
    rep.min_ks_pvalue = std::min(rep.min_ks_pvalue, u.ks_pvalue);
    rep.min_chi2_pvalue = std::min(rep.min_chi2_pvalue, u.chi2_pvalue);
  }
  rep.has_coverage = !result.expected_coverage.empty();
  rep.max_coverage_gap = result.max_coverage_gap;
  rep.mean_coverage_gap = result.mean_coverage_gap;
  return rep;
}

std::string to_json(const SbcReport& report) {
  nlohmann::json j;
  j["datasets"] = report.datasets;
  j["invalid_simulations"] = report.invalid_simulations;
  j["posterior_samples"] = report.posterior_samples;
  j["ks_pvalue"] = report.ks_pvalue;
  j["chi2_pvalue"] = report.chi2_pvalue;
  j["min_ks_pvalue"] = report.min_ks_pvalue;
  j["min_chi2_pvalue"] = report.min_chi2_pvalue;
  j["max_coverage_gap"] =
      report.has_coverage ? nlohmann::json(report.max_coverage_gap) : nlohmann::json(nullptr);
  j["mean_coverage_gap"] =
      report.has_coverage ? nlohmann::json(report.mean_coverage_gap) : nlohmann::json(nullptr);
  return j.dump(2);
}

}  // namespace asbi::sbi
