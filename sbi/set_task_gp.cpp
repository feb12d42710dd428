// gp_replicates: each element is a zero-mean Gaussian-process field on a 16×16 grid over [0, 1]²,
// covariance K = σ² R(ℓ), R(ℓ)_pq = exp(−‖s_p − s_q‖ / ℓ); target ℓ ~ U(0.05, 0.6), nuisance
// σ² ~ U(0.5, 2). See sbi/set_task.hpp and docs/set_tasks.md.
#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <exception>
#include <limits>
#include <numbers>
#include <unordered_map>

#include "core/error.hpp"
#include "sbi/set_task.hpp"

namespace asbi::sbi {
namespace {

using core::str;
using Eigen::MatrixXd;

constexpr int kSide = 16;               // grid points per axis: s = (i/15, j/15), p = 16 i + j
constexpr int kPoints = kSide * kSide;  // the element width
constexpr double kNegInf = -std::numeric_limits<double>::infinity();
const double kLog2Pi = std::log(2.0 * std::numbers::pi);

// R(ℓ), column-major. On a regular grid R_pq depends only on the offset (|Δi|, |Δj|) between
// p and q: 256 distinct exponentials fill all 65 536 entries, and R is block-Toeplitz: block
// (P, Q) of 16×16 is the Toeplitz block T_{|P−Q|}, T_d[a, b] = exp(−√(d² + (a − b)²)/15/ℓ).
void correlation_matrix(double lengthscale, MatrixXd& r) {
  using Block = Eigen::Matrix<double, kSide, kSide>;
  std::array<Block, kSide> toeplitz;
  for (int d = 0; d < kSide; ++d) {
    std::array<double, kSide> row{};
    for (int j = 0; j < kSide; ++j)
      row[static_cast<std::size_t>(j)] =
          std::exp(-std::sqrt(static_cast<double>(d * d + j * j)) / (kSide - 1) / lengthscale);
    for (int a = 0; a < kSide; ++a)
      for (int b = 0; b < kSide; ++b)
        toeplitz[static_cast<std::size_t>(d)](a, b) =
            row[static_cast<std::size_t>(std::abs(a - b))];
  }
  r.resize(kPoints, kPoints);
  for (int bp = 0; bp < kSide; ++bp)
    for (int bq = 0; bq < kSide; ++bq)
      r.block<kSide, kSide>(bq * kSide, bp * kSide) =
          toeplitz[static_cast<std::size_t>(std::abs(bp - bq))];
}

// The lower Cholesky factor of R(ℓ) into l (upper part zero). Eigen's LLT and triangular solves
// run on one thread with fixed blocking (unlike its GEMM, whose blocking follows the OpenMP
// thread count), so the factor is the same bits whatever the thread count. The caller provides
// the matrix: a fresh 512 kB matrix per call costs more than the factorisation (glibc returns
// freed blocks of that size to the system, and every new one page-faults back in).
void correlation_factor(double lengthscale, MatrixXd& l) {
  correlation_matrix(lengthscale, l);
  Eigen::LLT<Eigen::Ref<MatrixXd>, Eigen::Lower> llt(l);
  if (llt.info() != Eigen::Success)
    throw core::ValueError(str("gp_replicates: the correlation matrix R(lengthscale = ",
                               lengthscale, ") is not numerically positive definite"));
  l.triangularView<Eigen::StrictlyUpper>().setZero();
}

// x_e = L z_e for a group of kGroup elements (z, x column-major [256, kGroup], L lower
// triangular, column-major). Written out rather than an Eigen product: Eigen picks its GEMM
// blocking and kernels by thread count and by the number of columns (a single column goes
// through GEMV, a remainder of columns through another kernel), which can change the last bits of
// an element with the range it was simulated in; here every element takes the same instructions
// (x_e[r] accumulates L_rk z_ek over k in order), so the elements of [0, N) equal the
// concatenation of any sub-ranges bit for bit. Rows r start at a multiple of 8 (AVX-512 width):
// the entries of L above the diagonal are zero, and full vectors keep the loop free of scalar
// remainders. Cost: ~256²/2 multiply-adds per element.
constexpr std::int64_t kGroup = 8;

void lower_times(const MatrixXd& l, const MatrixXd& z, MatrixXd& x) {
  x.setZero();
  for (int k = 0; k < kPoints; ++k) {
    const double* column = l.data() + static_cast<std::ptrdiff_t>(k) * kPoints;
    const int first_row = k & ~7;
    for (std::int64_t e = 0; e < kGroup; ++e) {
      const double zk = z(k, e);
      double* xe = x.data() + e * kPoints;
      for (int r = first_row; r < kPoints; ++r) xe[r] += zk * column[r];
    }
  }
}

class GpElements : public SetTask::ElementSampler {
 public:
  GpElements(double lengthscale, double sigma2, std::uint64_t seed, std::uint64_t set_id)
      : ElementSampler(kPoints), seed_(seed), noise_stream_(set_stream(SetStream::noise, set_id)) {
    correlation_factor(lengthscale, factor_);
    factor_ *= std::sqrt(sigma2);
  }

 protected:
  // Element i: x_i = σ L z_i, z_i the 256 normals at counter positions [256 i, 256 i + 256) of
  // the set's noise stream. Groups past the end are padded with zeros and dropped.
  void fill(std::int64_t begin, std::int64_t end, std::span<float> out) const override {
    MatrixXd z(kPoints, kGroup), x(kPoints, kGroup);
    for (std::int64_t first = begin; first < end; first += kGroup) {
      const std::int64_t count = std::min(kGroup, end - first);
      core::fill_normal(seed_, noise_stream_, static_cast<std::uint64_t>(first) * kPoints,
                        std::span<double>(z.data(), static_cast<std::size_t>(count * kPoints)));
      z.rightCols(kGroup - count).setZero();
      lower_times(factor_, z, x);
      float* o = out.data() + (first - begin) * kPoints;
      for (std::int64_t i = 0; i < count * kPoints; ++i) o[i] = static_cast<float>(x.data()[i]);
    }
  }

 private:
  MatrixXd factor_;  // σ L, L the Cholesky factor of R(ℓ)
  std::uint64_t seed_, noise_stream_;
};

// log p(x_1…x_N | ℓ, σ²) = −(N/2)(256 log 2π + 256 log σ² + log det R) − tr(R⁻¹ S) / (2σ²),
// S = Σ x_i x_iᵀ. With a factor S = F Fᵀ and R = L Lᵀ, tr(R⁻¹ S) = ‖L⁻¹ F‖²_F: one 256×256
// Cholesky and one triangular solve per ℓ, whatever N. F = Xᵀ [256, N] when N < 256; for
// N ≥ 256, F = chol(S), lower triangular, so that L⁻¹ F is lower triangular too and its block
// of columns [c, c + 32) solves with the trailing block L[c:, c:] only: about 256³/6
// multiply-adds, as many as the Cholesky, instead of 256³/2.
//
// Memoisation: σ² enters in closed form once (log det R(ℓ), tr(R⁻¹S)) are known, so these two
// numbers are cached per ℓ (its exact bits; the values do not depend on the cache). Slice
// sampling updates one coordinate at a time: every evaluation of the second coordinate's update
// (σ², or τ = σ²/ℓ in the reference's coordinates) shares the chain's current ℓ and costs no
// factorisation, which leaves the ℓ updates and the initialisation as the whole cost: about half
// the density rows of a reference (docs/set_tasks.md). Tested by GpDensityCachesPerLengthscale
// and GpMcmcMatchesGridQuadrature in tests/sbi/test_set_task.cpp.
class GpPosteriorDensity : public SetPosteriorDensity {
 public:
  GpPosteriorDensity(std::shared_ptr<const Prior> prior, const std::string& task, const Tensor& set)
      : SetPosteriorDensity(std::move(prior), task, set.dim(0)) {
    const std::int64_t n = set.dim(0);
    const Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, kPoints, Eigen::RowMajor>> x(
        set.data<double>(), n, kPoints);
    if (n >= kPoints) {
      // S by a symmetric rank-N update (single-threaded, fixed blocking: thread-independent).
      MatrixXd s = MatrixXd::Zero(kPoints, kPoints);
      s.selfadjointView<Eigen::Lower>().rankUpdate(x.transpose());
      Eigen::LLT<Eigen::Ref<MatrixXd>, Eigen::Lower> llt(s);
      if (llt.info() == Eigen::Success) {
        s.triangularView<Eigen::StrictlyUpper>().setZero();
        scatter_factor_ = std::move(s);
        triangular_ = true;
        return;
      }
      // A degenerate set (e.g. repeated fields) has a singular S: keep Xᵀ instead.
    }
    scatter_factor_ = x.transpose();
  }

 protected:
  std::int64_t add_log_likelihood(const double* theta, std::int64_t k,
                                  std::span<double> out) const override {
    // The lengthscales not in the cache, each once, in order of first appearance.
    std::vector<double> missing;
    for (std::int64_t i = 0; i < k; ++i) {
      if (out[static_cast<std::size_t>(i)] == kNegInf) continue;
      const double l = theta[2 * i];
      if (!cache_.contains(key(l)) && std::find(missing.begin(), missing.end(), l) == missing.end())
        missing.push_back(l);
    }
    std::vector<LengthscaleTerms> computed(missing.size());
    std::exception_ptr error;
    const auto m = static_cast<std::int64_t>(missing.size());
#pragma omp parallel for schedule(dynamic, 1) if (m > 1)
    for (std::int64_t j = 0; j < m; ++j) {
      try {
        computed[static_cast<std::size_t>(j)] = terms(missing[static_cast<std::size_t>(j)]);
      } catch (...) {
#pragma omp critical(asbi_sbi_gp_error)
        if (!error) error = std::current_exception();
      }
    }
    if (error) std::rethrow_exception(error);
    // Bounded memory: a full cache (a few MB) starts over; values do not depend on it.
    constexpr std::size_t kCacheEntries = 1 << 16;
    if (cache_.size() + missing.size() > kCacheEntries) cache_.clear();
    for (std::size_t j = 0; j < missing.size(); ++j) cache_[key(missing[j])] = computed[j];

    const auto n = static_cast<double>(set_size());
    for (std::int64_t i = 0; i < k; ++i) {
      double& o = out[static_cast<std::size_t>(i)];
      if (o == kNegInf) continue;
      const LengthscaleTerms& t = cache_.at(key(theta[2 * i]));
      const double sigma2 = theta[2 * i + 1];
      o += -0.5 * n * (kPoints * (kLog2Pi + std::log(sigma2)) + t.log_det) - t.trace / (2 * sigma2);
    }
    return m;
  }

 private:
  struct LengthscaleTerms {
    double log_det = 0;  // log det R(ℓ)
    double trace = 0;    // tr(R(ℓ)⁻¹ S)
  };

  static std::uint64_t key(double lengthscale) { return std::bit_cast<std::uint64_t>(lengthscale); }

  LengthscaleTerms terms(double lengthscale) const {
    // Per-thread workspaces, reused: see correlation_factor.
    thread_local MatrixXd l, y;
    correlation_factor(lengthscale, l);
    LengthscaleTerms t;
    t.log_det = 2 * l.diagonal().array().log().sum();
    y = scatter_factor_;
    if (triangular_) {
      constexpr int kBlock = 32;
      for (int c = 0; c < kPoints; c += kBlock) {
        auto block = y.block(c, c, kPoints - c, kBlock);
        l.bottomRightCorner(kPoints - c, kPoints - c)
            .triangularView<Eigen::Lower>()
            .solveInPlace(block);
        t.trace += block.squaredNorm();
      }
    } else {
      l.triangularView<Eigen::Lower>().solveInPlace(y);
      t.trace = y.squaredNorm();
    }
    return t;
  }

  MatrixXd scatter_factor_;  // F with S = F Fᵀ
  bool triangular_ = false;  // F = chol(S) rather than Xᵀ
  mutable std::unordered_map<std::uint64_t, LengthscaleTerms> cache_;
};

class GpReplicatesTask : public SetTask {
 public:
  GpReplicatesTask()
      : SetTask("gp_replicates", {"lengthscale", "sigma2"}, kPoints,
                std::make_shared<BoxUniform>(std::vector<double>{0.05, 0.5},
                                             std::vector<double>{0.6, 2.0}),
                std::make_shared<BoxUniform>(std::vector<double>{0.05}, std::vector<double>{0.6})) {
  }

  // u = (ℓ, τ = σ²/ℓ), θ = (ℓ, τ ℓ), |det ∂θ/∂u| = ℓ. For an exponential covariance the
  // likelihood pins σ²/ℓ (the "microergodic" parameter, identifiable from a single field on a
  // bounded domain, Zhang 2004) far more tightly than ℓ or σ² alone: the posterior of (ℓ, σ²)
  // is a thin ridge along σ² ∝ ℓ (correlation 0.95–0.99 measured on observations 3–6 at N = 10),
  // along which coordinate-wise slice sampling gave an ESS of 21–97 in 2000 draws (split R-hat
  // up to 1.4); in (ℓ, τ) the correlation is about −0.3 (docs/set_tasks.md). ℓ itself, the
  // target, is unchanged, and τ updates keep ℓ and so cost no factorisation.
  void mcmc_coordinates(std::span<const double> theta, std::span<double> u) const override {
    u[0] = theta[0];
    u[1] = theta[1] / theta[0];
  }
  double parameters_from_mcmc_coordinates(std::span<const double> u,
                                          std::span<double> theta) const override {
    theta[0] = u[0];
    theta[1] = u[1] * u[0];
    return u[0] > 0 ? std::log(u[0]) : 0.0;  // ℓ ≤ 0 lies outside the prior anyway
  }

  McmcOptions reference_mcmc_options(std::uint64_t seed) const override {
    McmcOptions o = SetTask::reference_mcmc_options(seed);
    o.chains = 10;
    o.warmup = 100;
    o.thin = 1;
    o.init_candidates = 50;
    return o;
  }

 protected:
  std::unique_ptr<const ElementSampler> make_sampler(std::span<const double> theta,
                                                     std::uint64_t seed,
                                                     std::uint64_t set_id) const override {
    if (!(std::isfinite(theta[0]) && theta[0] > 0) || !(std::isfinite(theta[1]) && theta[1] > 0))
      throw core::ValueError(str("gp_replicates: expected lengthscale > 0 and sigma2 > 0, got (",
                                 theta[0], ", ", theta[1], ")"));
    return std::make_unique<GpElements>(theta[0], theta[1], seed, set_id);
  }

  std::unique_ptr<SetPosteriorDensity> make_posterior_density(const Tensor& set) const override {
    return std::make_unique<GpPosteriorDensity>(shared_prior(), name(), set);
  }
};

}  // namespace

std::unique_ptr<SetTask> make_gp_replicates_task() { return std::make_unique<GpReplicatesTask>(); }

}  // namespace asbi::sbi
