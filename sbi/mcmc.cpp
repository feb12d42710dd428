// Many-chain MCMC (vectorised slice sampling, adaptive Metropolis–Hastings, HMC), rejection
// sampling, SIR and the split R-hat / bulk ESS diagnostics. See sbi/mcmc.hpp.
//
// Shape letters: C chains, D θ-dimension, T kept states per chain, k rows of one target batch.
//
// All samplers share one pattern: the chains' states x [C, D] and log densities lp [C] live in
// flat buffers; each step every chain draws what it needs from its own Rng (stream c), the
// points still to be scored are packed into one [k, D] batch, the target scores them in one
// call, and the results are scattered back. Nothing in the loops allocates.
#include "sbi/mcmc.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numbers>
#include <numeric>
#include <optional>
#include <utility>

#include "core/backend.hpp"
#include "core/error.hpp"
#include "sbi/chain_kernels.hpp"
#include "sbi/cuda/gpu.hpp"
#include "sbi/task.hpp"

namespace asbi::sbi {

const char* name(SamplerKind kind) {
  return kind == SamplerKind::slice ? "slice" : kind == SamplerKind::mh ? "mh" : "hmc";
}

SamplerKind sampler_from_name(const std::string& name) {
  if (name == "slice") return SamplerKind::slice;
  if (name == "mh") return SamplerKind::mh;
  if (name == "hmc") return SamplerKind::hmc;
  throw core::ValueError("unknown sampler '" + name + "'; expected one of slice, mh, hmc");
}

// ---------------------------------------------------------------------------------------------
// Targets and proposals

void LogDensity::evaluate_with_gradient(const Tensor&, std::span<double>, Tensor&) const {
  throw core::StateError(
      "LogDensity::evaluate_with_gradient: this target has no gradient (HMC needs one; use the "
      "slice or mh sampler)");
}

CallableLogDensity::CallableLogDensity(std::int64_t dim, Fn fn, GradFn grad)
    : dim_(dim), fn_(std::move(fn)), grad_(std::move(grad)) {
  if (dim < 1) throw core::ValueError(core::str("CallableLogDensity: dim must be ≥ 1, got ", dim));
  if (!fn_) throw core::ValueError("CallableLogDensity: the log-density function is empty");
}

void CallableLogDensity::evaluate(const Tensor& theta, std::span<double> out) const {
  fn_(theta, out);
}

void CallableLogDensity::evaluate_with_gradient(const Tensor& theta, std::span<double> out,
                                                Tensor& grad) const {
  if (!grad_) LogDensity::evaluate_with_gradient(theta, out, grad);
  grad_(theta, out, grad);
}

Proposal Proposal::from_prior(const Prior& prior) {
  Proposal p;
  p.sample = [&prior](std::int64_t n, core::Rng& rng) { return prior.sample(n, rng); };
  p.log_prob = [&prior](const Tensor& theta) { return prior.log_prob(theta); };
  return p;
}

namespace {

using core::str;
using Clock = std::chrono::steady_clock;
constexpr double kNegInf = -std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
// Rows per target call when scoring many candidates at once (SIR, rejection): large enough for
// a network to run efficiently, small enough to keep the buffers to a few MB.
constexpr std::int64_t kCandidateBatchRows = 65536;

std::size_t sz(std::int64_t i) { return static_cast<std::size_t>(i); }

// The proposal's draws as a float64 [n, D] tensor, checked.
Tensor draw(const Proposal& proposal, std::int64_t n, std::int64_t d, core::Rng& rng,
            const char* who) {
  Tensor t = proposal.sample(n, rng);
  if (!t.defined() || t.rank() != 2 || t.dim(0) != n || t.dim(1) != d)
    throw core::ShapeError(str(who, ": the proposal returned ",
                               t.defined() ? str(t.shape()) : std::string("no tensor"),
                               " for ", n, " draws; expected [", n, ", ", d, "]"));
  return t.dtype() == DType::f64 ? t : t.to(DType::f64);
}

// Scores rows with the target, counting them; NaN becomes -inf (outside the support).
class Scorer {
 public:
  Scorer(const LogDensity& target, std::int64_t max_rows, bool with_gradient)
      : target_(target),
        d_(target.dim()),
        rows_(sz(max_rows * d_)),
        log_p_(sz(max_rows)),
        grad_(with_gradient ? sz(max_rows * d_) : 0) {}

  std::int64_t dim() const { return d_; }
  double* row(std::int64_t i) { return rows_.data() + i * d_; }
  double log_p(std::int64_t i) const { return log_p_[sz(i)]; }
  const double* grad(std::int64_t i) const { return grad_.data() + i * d_; }
  std::int64_t evaluations() const { return evaluations_; }

  // log π of the first k packed rows.
  void score(std::int64_t k) {
    if (k == 0) return;
    const Tensor theta = Tensor::wrap(rows_.data(), {k, d_});
    target_.evaluate(theta, std::span<double>(log_p_.data(), sz(k)));
    finish(k);
  }
  // log π and its gradient of the first k packed rows; a non-finite gradient marks the row -inf
  // (HMC then rejects the trajectory).
  void score_with_gradient(std::int64_t k) {
    if (k == 0) return;
    const Tensor theta = Tensor::wrap(rows_.data(), {k, d_});
    Tensor grad = Tensor::wrap(grad_.data(), {k, d_});
    target_.evaluate_with_gradient(theta, std::span<double>(log_p_.data(), sz(k)), grad);
    for (std::int64_t i = 0; i < k; ++i)
      for (std::int64_t j = 0; j < d_; ++j)
        if (!std::isfinite(grad_[sz(i * d_ + j)])) log_p_[sz(i)] = kNegInf;
    finish(k);
  }
  // Scores a tensor of any length (candidates) into out.
  void score_tensor(const Tensor& theta, std::span<double> out) {
    target_.evaluate(theta, out);
    for (double& v : out)
      if (std::isnan(v)) v = kNegInf;
    evaluations_ += static_cast<std::int64_t>(out.size());
  }

 private:
  void finish(std::int64_t k) {
    for (std::int64_t i = 0; i < k; ++i)
      if (std::isnan(log_p_[sz(i)])) log_p_[sz(i)] = kNegInf;
    evaluations_ += k;
  }

  const LogDensity& target_;
  std::int64_t d_;
  std::vector<double> rows_, log_p_, grad_;
  std::int64_t evaluations_ = 0;
};

// The chains' current states.
struct ChainState {
  std::int64_t chains = 0, d = 0;
  std::vector<double> x;   // [C, D]
  std::vector<double> lp;  // [C]
  double* row(std::int64_t c) { return x.data() + c * d; }
};

// Chain starts, each from its own Rng (ChainInit::sir or ::proposal, see the header).
ChainState initialise(Scorer& scorer, const Proposal& init, std::vector<core::Rng>& rngs,
                      const McmcOptions& o) {
  const std::int64_t C = o.chains, D = scorer.dim();
  ChainState s{C, D, std::vector<double>(sz(C * D)), std::vector<double>(sz(C), kNegInf)};
  if (o.init == ChainInit::proposal) {
    for (int attempt = 0; attempt < o.init_candidates; ++attempt) {
      std::int64_t k = 0;
      std::vector<std::int64_t> which;
      for (std::int64_t c = 0; c < C; ++c) {
        if (s.lp[sz(c)] > kNegInf) continue;
        const Tensor t = draw(init, 1, D, rngs[sz(c)], "sample_mcmc (chain init)");
        std::copy_n(t.data<double>(), D, scorer.row(k));
        which.push_back(c);
        ++k;
      }
      if (k == 0) break;
      scorer.score(k);
      for (std::int64_t j = 0; j < k; ++j) {
        const std::int64_t c = which[sz(j)];
        if (scorer.log_p(j) > kNegInf) {
          std::copy_n(scorer.row(j), D, s.row(c));
          s.lp[sz(c)] = scorer.log_p(j);
        }
      }
    }
    for (std::int64_t c = 0; c < C; ++c)
      if (!(s.lp[sz(c)] > kNegInf))
        throw core::ValueError(str("sample_mcmc: chain ", c, " found no initial point with a "
                                   "finite log density in init_candidates = ",
                                   o.init_candidates, " proposal draws"));
    return s;
  }
  // SIR: chains in groups whose candidates fit one target batch.
  const std::int64_t m = o.init_candidates;
  const std::int64_t group = std::max<std::int64_t>(1, kCandidateBatchRows / m);
  std::vector<double> log_pi, weight(sz(m));
  for (std::int64_t g0 = 0; g0 < C; g0 += group) {
    const std::int64_t g1 = std::min(C, g0 + group);
    Tensor candidates = Tensor::empty({(g1 - g0) * m, D}, DType::f64);
    double* cand = candidates.data<double>();
    for (std::int64_t c = g0; c < g1; ++c) {
      const Tensor t = draw(init, m, D, rngs[sz(c)], "sample_mcmc (chain init)");
      std::copy_n(t.data<double>(), m * D, cand + (c - g0) * m * D);
    }
    log_pi.assign(sz((g1 - g0) * m), 0.0);
    scorer.score_tensor(candidates, log_pi);
    std::vector<double> log_q;
    if (init.log_prob) log_q = init.log_prob(candidates);
    for (std::int64_t c = g0; c < g1; ++c) {
      const std::int64_t base = (c - g0) * m;
      double max_w = kNegInf;
      for (std::int64_t i = 0; i < m; ++i) {
        double w = log_pi[sz(base + i)];
        if (!log_q.empty()) w = std::isfinite(log_q[sz(base + i)]) ? w - log_q[sz(base + i)] : kNegInf;
        weight[sz(i)] = w;
        max_w = std::max(max_w, w);
      }
      if (!(max_w > kNegInf) || !std::isfinite(max_w))
        throw core::ValueError(str("sample_mcmc: none of the init_candidates = ", m,
                                   " proposal draws of chain ", c,
                                   " has a finite log density (and weight); expected at least one "
                                   "inside the target's support"));
      for (double& w : weight) w = std::exp(w - max_w);
      const auto pick = static_cast<std::int64_t>(rngs[sz(c)].categorical(weight));
      std::copy_n(cand + (base + pick) * D, D, s.row(c));
      s.lp[sz(c)] = log_pi[sz(base + pick)];
    }
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// Slice sampling (Neal 2003, "Slice sampling", Ann. Statist. 31(3)): one coordinate at a time,
// stepping out (fig. 3) then shrinkage (fig. 5), all chains in lock-step so that each round of
// either procedure is one batch of the chains still working on it.

class SliceSampler {
 public:
  SliceSampler(Scorer& scorer, std::vector<core::Rng>& rngs, ChainState& s, const McmcOptions& o)
      : scorer_(scorer),
        rngs_(rngs),
        s_(s),
        max_steps_(o.slice_max_steps_out),
        width_(sz(s.d), o.slice_width),
        tuned_sweeps_(sz(s.d), 0),
        height_(sz(s.chains)),
        lower_(sz(s.chains)),
        upper_(sz(s.chains)),
        trial_(sz(s.chains)),
        steps_lower_(sz(s.chains)),
        steps_upper_(sz(s.chains)),
        pending_(sz(2 * s.chains)) {}

  double acceptance() const { return 1.0; }
  const std::vector<double>& widths() const { return width_; }

  void sweep(bool warming_up) {
    const std::int64_t C = s_.chains, D = s_.d;
    for (std::int64_t d = 0; d < D; ++d) {
      const double w = width_[sz(d)];
      // The slice {θ_d : log π > height}, height = log π(x) + log U, and a bracket of width w
      // placed uniformly around x_d, with Neal's random split of the m step-out budget.
      for (std::int64_t c = 0; c < C; ++c) {
        core::Rng& rng = rngs_[sz(c)];
        height_[sz(c)] = s_.lp[sz(c)] + std::log(rng.uniform());
        lower_[sz(c)] = s_.row(c)[d] - w * rng.uniform();
        upper_[sz(c)] = lower_[sz(c)] + w;
        const int j = std::min(max_steps_ - 1, static_cast<int>(max_steps_ * rng.uniform()));
        steps_lower_[sz(c)] = j;
        steps_upper_[sz(c)] = max_steps_ - 1 - j;
      }
      step_out(d, w);
      const double bracket_sum = shrink(d);
      if (warming_up) {
        // Running mean over the first sweeps, then an average over about the last ten: the
        // width tracks the current slice size as the chains settle.
        const double alpha = std::max(1.0 / static_cast<double>(++tuned_sweeps_[sz(d)]), 0.1);
        const double mean_bracket = bracket_sum / static_cast<double>(C);
        if (mean_bracket > 0 && std::isfinite(mean_bracket))
          width_[sz(d)] += alpha * (mean_bracket - width_[sz(d)]);
      }
    }
  }

 private:
  // Pack chain c's state with coordinate d set to v into batch row k.
  void pack(std::int64_t k, std::int64_t c, std::int64_t d, double v) {
    double* r = scorer_.row(k);
    std::copy_n(s_.row(c), s_.d, r);
    r[d] = v;
  }

  void step_out(std::int64_t d, double w) {
    const std::int64_t C = s_.chains;
    for (;;) {
      std::int64_t k = 0;
      for (std::int64_t c = 0; c < C; ++c) {
        if (steps_lower_[sz(c)] > 0) {
          pending_[sz(k)] = 2 * c;
          pack(k++, c, d, lower_[sz(c)]);
        }
        if (steps_upper_[sz(c)] > 0) {
          pending_[sz(k)] = 2 * c + 1;
          pack(k++, c, d, upper_[sz(c)]);
        }
      }
      if (k == 0) return;
      scorer_.score(k);
      for (std::int64_t i = 0; i < k; ++i) {
        const std::int64_t c = pending_[sz(i)] / 2;
        const bool is_upper = pending_[sz(i)] % 2 == 1;
        int& steps = is_upper ? steps_upper_[sz(c)] : steps_lower_[sz(c)];
        if (scorer_.log_p(i) > height_[sz(c)]) {
          (is_upper ? upper_[sz(c)] += w : lower_[sz(c)] -= w);
          --steps;
        } else {
          steps = 0;  // this end lies outside the slice (or the support): done
        }
      }
    }
  }

  // Shrinkage; returns the sum over chains of the bracket width from which the accepted point
  // was drawn (the width-tuning statistic).
  double shrink(std::int64_t d) {
    const std::int64_t C = s_.chains;
    // The current point is inside the slice, so the bracket shrinks towards it and a point is
    // accepted after a few rounds; the cap only guards against a bracket that rounding has
    // collapsed onto the current point, which then stays (a valid, if lazy, transition).
    constexpr int kMaxRounds = 200;
    double bracket_sum = 0;
    std::int64_t active = C;
    std::vector<std::int64_t>& chain_of = pending_;
    for (std::int64_t c = 0; c < C; ++c) chain_of[sz(c)] = c;
    for (int round = 0; round < kMaxRounds && active > 0; ++round) {
      for (std::int64_t i = 0; i < active; ++i) {
        const std::int64_t c = chain_of[sz(i)];
        const double lo = lower_[sz(c)], hi = upper_[sz(c)];
        trial_[sz(c)] = lo + (hi - lo) * rngs_[sz(c)].uniform();
        pack(i, c, d, trial_[sz(c)]);
      }
      scorer_.score(active);
      std::int64_t still = 0;
      for (std::int64_t i = 0; i < active; ++i) {
        const std::int64_t c = chain_of[sz(i)];
        const double t = trial_[sz(c)];
        if (scorer_.log_p(i) > height_[sz(c)]) {
          bracket_sum += upper_[sz(c)] - lower_[sz(c)];
          s_.row(c)[d] = t;
          s_.lp[sz(c)] = scorer_.log_p(i);
        } else {
          (t < s_.row(c)[d] ? lower_[sz(c)] : upper_[sz(c)]) = t;
          chain_of[sz(still++)] = c;  // compaction keeps chain order: i ≥ still
        }
      }
      active = still;
    }
    return bracket_sum;
  }

  Scorer& scorer_;
  std::vector<core::Rng>& rngs_;
  ChainState& s_;
  int max_steps_;
  std::vector<double> width_;
  std::vector<int> tuned_sweeps_;
  std::vector<double> height_, lower_, upper_, trial_;
  std::vector<int> steps_lower_, steps_upper_;
  std::vector<std::int64_t> pending_;  // 2c (+1 for the upper end) while stepping out; chains
                                       // still shrinking afterwards
};

// ---------------------------------------------------------------------------------------------
// Small dense helpers for the D×D proposal covariance.

// Lower Cholesky factor of a (D×D, row-major) covariance; jitter added on the diagonal until it
// is positive definite.
std::vector<double> cholesky_jittered(std::vector<double> a, std::int64_t d) {
  double jitter = 0;
  double scale = 0;
  for (std::int64_t i = 0; i < d; ++i) scale = std::max(scale, std::abs(a[sz(i * d + i)]));
  if (!(scale > 0) || !std::isfinite(scale)) scale = 1;
  for (int attempt = 0; attempt < 30; ++attempt) {
    std::vector<double> l(sz(d * d), 0.0);
    bool ok = true;
    for (std::int64_t i = 0; i < d && ok; ++i) {
      for (std::int64_t j = 0; j <= i; ++j) {
        double sum = a[sz(i * d + j)] + (i == j ? jitter : 0.0);
        for (std::int64_t k = 0; k < j; ++k) sum -= l[sz(i * d + k)] * l[sz(j * d + k)];
        if (i == j) {
          if (!(sum > 0) || !std::isfinite(sum)) {
            ok = false;
            break;
          }
          l[sz(i * d + i)] = std::sqrt(sum);
        } else {
          l[sz(i * d + j)] = sum / l[sz(j * d + j)];
        }
      }
    }
    if (ok) return l;
    jitter = jitter == 0 ? 1e-10 * scale : jitter * 10;
  }
  std::vector<double> l(sz(d * d), 0.0);  // unreachable in practice: a scaled identity
  for (std::int64_t i = 0; i < d; ++i) l[sz(i * d + i)] = std::sqrt(scale);
  return l;
}

// Pooled running mean and covariance of many chains' states (Welford), in chain order.
class RunningMoments {
 public:
  explicit RunningMoments(std::int64_t d) : d_(d), mean_(sz(d), 0.0), m2_(sz(d * d), 0.0) {}
  void reset() {
    n_ = 0;
    std::fill(mean_.begin(), mean_.end(), 0.0);
    std::fill(m2_.begin(), m2_.end(), 0.0);
  }
  void add(const double* x) {
    ++n_;
    const double inv_n = 1.0 / static_cast<double>(n_);
    for (std::int64_t i = 0; i < d_; ++i) delta_[sz(i)] = x[i] - mean_[sz(i)];
    for (std::int64_t i = 0; i < d_; ++i) mean_[sz(i)] += delta_[sz(i)] * inv_n;
    for (std::int64_t i = 0; i < d_; ++i)
      for (std::int64_t j = 0; j < d_; ++j)
        m2_[sz(i * d_ + j)] += delta_[sz(i)] * (x[j] - mean_[sz(j)]);
  }
  std::int64_t count() const { return n_; }
  // Covariance shrunk towards 1e-3·I by 5 pseudo-observations (as Stan regularises its
  // adapted metric), so that a few states still give a usable proposal.
  std::vector<double> regularised_covariance() const {
    std::vector<double> cov(sz(d_ * d_));
    const double n = static_cast<double>(n_);
    for (std::int64_t k = 0; k < d_ * d_; ++k)
      cov[sz(k)] = n > 1 ? m2_[sz(k)] / (n - 1) * (n / (n + 5)) : 0.0;
    for (std::int64_t i = 0; i < d_; ++i) cov[sz(i * d_ + i)] += 1e-3 * 5 / (n + 5);
    return cov;
  }

 private:
  std::int64_t d_;
  std::int64_t n_ = 0;
  std::vector<double> mean_, m2_;
  std::vector<double> delta_ = std::vector<double>(sz(d_));
};

// ---------------------------------------------------------------------------------------------
// Random-walk Metropolis–Hastings with the adaptive proposal N(x, s²·Σ): Σ the covariance of the
// warm-up states pooled over chains (Haario, Saksman & Tamminen 2001, "An adaptive Metropolis
// algorithm"), log s moved by Robbins–Monro steps (t+1)^-0.6·(acceptance − target) towards the
// target acceptance (Andrieu & Thoms 2008, §5). Both freeze at the end of warm-up, so the kept
// states come from one fixed, valid MH kernel.

class MetropolisSampler {
 public:
  MetropolisSampler(Scorer& scorer, std::vector<core::Rng>& rngs, ChainState& s,
                    const McmcOptions& o)
      : scorer_(scorer),
        rngs_(rngs),
        s_(s),
        target_acceptance_(o.mh_target_acceptance),
        warmup_(o.warmup),
        moments_(s.d),
        z_(sz(s.d)) {
    // Until the warm-up states say more: the spread of the chains' starting points (SIR starts
    // already cover the target), times the optimal random-walk scale 2.38/√D (Roberts,
    // Gelman & Gilks 1997).
    for (std::int64_t c = 0; c < s.chains; ++c) moments_.add(s.row(c));
    chol_ = cholesky_jittered(moments_.regularised_covariance(), s.d);
    moments_.reset();
    log_scale_ = std::log(2.38 / std::sqrt(static_cast<double>(s.d)));
  }

  double acceptance() const {
    return proposed_ > 0 ? static_cast<double>(accepted_) / static_cast<double>(proposed_) : 0;
  }

  void sweep(std::int64_t iteration, bool warming_up) {
    const std::int64_t C = s_.chains, D = s_.d;
    const double scale = std::exp(log_scale_);
    for (std::int64_t c = 0; c < C; ++c) {
      core::Rng& rng = rngs_[sz(c)];
      for (std::int64_t i = 0; i < D; ++i) z_[sz(i)] = rng.normal();
      double* r = scorer_.row(c);
      const double* x = s_.row(c);
      for (std::int64_t i = 0; i < D; ++i) {
        double step = 0;
        for (std::int64_t j = 0; j <= i; ++j) step += chol_[sz(i * D + j)] * z_[sz(j)];
        r[i] = x[i] + scale * step;
      }
    }
    scorer_.score(C);
    std::int64_t accepted = 0;
    for (std::int64_t c = 0; c < C; ++c) {
      const double log_u = std::log(rngs_[sz(c)].uniform());
      if (log_u < scorer_.log_p(c) - s_.lp[sz(c)]) {
        std::copy_n(scorer_.row(c), D, s_.row(c));
        s_.lp[sz(c)] = scorer_.log_p(c);
        ++accepted;
      }
    }
    if (!warming_up) {
      accepted_ += accepted;
      proposed_ += C;
      return;
    }
    const double rate = static_cast<double>(accepted) / static_cast<double>(C);
    log_scale_ += std::pow(static_cast<double>(iteration + 1), -0.6) * (rate - target_acceptance_);
    // Covariance from the states after the first quarter of warm-up (the early ones still carry
    // the initialisation), refreshed every 10 iterations and at the end.
    if (iteration >= warmup_ / 4) {
      for (std::int64_t c = 0; c < C; ++c) moments_.add(s_.row(c));
      if ((iteration + 1) % 10 == 0 || iteration + 1 == warmup_)
        chol_ = cholesky_jittered(moments_.regularised_covariance(), D);
    }
  }

 private:
  Scorer& scorer_;
  std::vector<core::Rng>& rngs_;
  ChainState& s_;
  double target_acceptance_;
  std::int64_t warmup_;
  RunningMoments moments_;
  std::vector<double> chol_, z_;
  double log_scale_ = 0;
  std::int64_t accepted_ = 0, proposed_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Hamiltonian Monte Carlo (Neal 2011, "MCMC using Hamiltonian dynamics") with kinetic energy
// ½ pᵀM⁻¹p, M⁻¹ = diag(inv_mass), and a fixed number L of leapfrog steps. Warm-up (as Stan's,
// simplified to three windows): [0, 15 %) step size only; [15 %, 90 %) also the states' variance,
// which becomes M⁻¹ at 90 %; then the step size again, from a restart. Step size by dual
// averaging (Hoffman & Gelman 2014, "The No-U-Turn sampler", §3.2.1, eq. 6), driven by the mean
// acceptance probability over chains; the averaged step ε̄ is used after warm-up.

class HmcSampler {
 public:
  HmcSampler(Scorer& scorer, std::vector<core::Rng>& rngs, ChainState& s, const McmcOptions& o)
      : scorer_(scorer),
        rngs_(rngs),
        s_(s),
        leapfrog_steps_(o.hmc_leapfrog_steps),
        target_acceptance_(o.hmc_target_acceptance),
        warmup_(o.warmup),
        step_(o.hmc_initial_step),
        inv_mass_(sz(s.d), 1.0),
        grad_(sz(s.chains * s.d)),
        q_(sz(s.chains * s.d)),
        p_(sz(s.chains * s.d)),
        g_(sz(s.chains * s.d)),
        lp_new_(sz(s.chains)),
        h0_(sz(s.chains)),
        eps_(sz(s.chains)),
        alive_(sz(s.chains)),
        variance_(s.d) {
    restart_dual_averaging(step_);
    if (warmup_ >= 20) {
      mass_begin_ = (warmup_ * 15) / 100;
      mass_end_ = (warmup_ * 90) / 100;
    }
    // Gradients at the starting points.
    const std::int64_t C = s.chains, D = s.d;
    for (std::int64_t c = 0; c < C; ++c) std::copy_n(s.row(c), D, scorer.row(c));
    scorer.score_with_gradient(C);
    for (std::int64_t c = 0; c < C; ++c) {
      s.lp[sz(c)] = scorer.log_p(c);
      std::copy_n(scorer.grad(c), D, grad_.data() + c * D);
      if (!(s.lp[sz(c)] > kNegInf))
        throw core::ValueError(str("sample_mcmc (hmc): the gradient at the start of chain ", c,
                                   " is not finite; expected a finite log density and gradient"));
    }
  }

  double acceptance() const {
    return proposed_ > 0 ? static_cast<double>(accepted_) / static_cast<double>(proposed_) : 0;
  }

  void sweep(std::int64_t iteration, bool warming_up) {
    const std::int64_t C = s_.chains, D = s_.d;
    // Momenta p ~ N(0, M), start energies, half a momentum step.
    for (std::int64_t c = 0; c < C; ++c) {
      core::Rng& rng = rngs_[sz(c)];
      // ±10 % jitter keeps a fixed L·ε from resonating with a period of the dynamics.
      eps_[sz(c)] = step_ * (0.9 + 0.2 * rng.uniform());
      double kinetic = 0;
      for (std::int64_t i = 0; i < D; ++i) {
        const double p = rng.normal() / std::sqrt(inv_mass_[sz(i)]);
        p_[sz(c * D + i)] = p;
        kinetic += 0.5 * inv_mass_[sz(i)] * p * p;
        q_[sz(c * D + i)] = s_.row(c)[i];
        g_[sz(c * D + i)] = grad_[sz(c * D + i)];
      }
      h0_[sz(c)] = -s_.lp[sz(c)] + kinetic;
      alive_[sz(c)] = 1;
    }
    // Leapfrog: p += ε/2 g; L × (q += ε M⁻¹ p; g = ∇log π(q); p += ε g, the last one halved).
    // A chain whose trajectory leaves the support (log π = -inf) stops and is rejected.
    for (int l = 0; l < leapfrog_steps_; ++l) {
      std::int64_t k = 0;
      for (std::int64_t c = 0; c < C; ++c) {
        if (!alive_[sz(c)]) continue;
        const double eps = eps_[sz(c)];
        double* r = scorer_.row(k++);
        for (std::int64_t i = 0; i < D; ++i) {
          double& p = p_[sz(c * D + i)];
          p += (l == 0 ? 0.5 : 1.0) * eps * g_[sz(c * D + i)];
          q_[sz(c * D + i)] += eps * inv_mass_[sz(i)] * p;
          r[i] = q_[sz(c * D + i)];
        }
      }
      scorer_.score_with_gradient(k);
      k = 0;
      for (std::int64_t c = 0; c < C; ++c) {
        if (!alive_[sz(c)]) continue;
        const std::int64_t j = k++;
        lp_new_[sz(c)] = scorer_.log_p(j);
        if (!(lp_new_[sz(c)] > kNegInf)) {
          alive_[sz(c)] = 0;
          continue;
        }
        std::copy_n(scorer_.grad(j), D, g_.data() + c * D);
      }
    }
    double sum_alpha = 0;
    std::int64_t accepted = 0;
    for (std::int64_t c = 0; c < C; ++c) {
      const double log_u = std::log(rngs_[sz(c)].uniform());
      if (!alive_[sz(c)]) continue;  // α = 0
      double kinetic = 0;
      for (std::int64_t i = 0; i < D; ++i) {
        double& p = p_[sz(c * D + i)];
        p += 0.5 * eps_[sz(c)] * g_[sz(c * D + i)];
        kinetic += 0.5 * inv_mass_[sz(i)] * p * p;
      }
      const double log_ratio = h0_[sz(c)] - (-lp_new_[sz(c)] + kinetic);
      if (std::isnan(log_ratio)) continue;
      sum_alpha += log_ratio >= 0 ? 1.0 : std::exp(log_ratio);
      if (log_u < log_ratio) {
        std::copy_n(q_.data() + c * D, D, s_.row(c));
        std::copy_n(g_.data() + c * D, D, grad_.data() + c * D);
        s_.lp[sz(c)] = lp_new_[sz(c)];
        ++accepted;
      }
    }
    if (!warming_up) {
      accepted_ += accepted;
      proposed_ += C;
      return;
    }
    adapt_step(sum_alpha / static_cast<double>(C));
    if (iteration >= mass_begin_ && iteration < mass_end_)
      for (std::int64_t c = 0; c < C; ++c) variance_.add(s_.row(c));
    if (iteration + 1 == mass_end_ && variance_.count() > 1) {
      const std::vector<double> cov = variance_.regularised_covariance();
      for (std::int64_t i = 0; i < D; ++i) inv_mass_[sz(i)] = cov[sz(i * D + i)];
      restart_dual_averaging(step_);
    }
    if (iteration + 1 == warmup_) step_ = std::exp(log_step_bar_);
  }

 private:
  void restart_dual_averaging(double step) {
    mu_ = std::log(10 * step);
    h_bar_ = 0;
    log_step_bar_ = std::log(step);
    adapt_count_ = 0;
  }
  // Hoffman & Gelman (2014), eq. 6 with γ = 0.05, t0 = 10, κ = 0.75.
  void adapt_step(double mean_alpha) {
    constexpr double kGamma = 0.05, kT0 = 10, kKappa = 0.75;
    const double m = static_cast<double>(++adapt_count_);
    h_bar_ = (1 - 1 / (m + kT0)) * h_bar_ + (target_acceptance_ - mean_alpha) / (m + kT0);
    const double log_step = mu_ - std::sqrt(m) / kGamma * h_bar_;
    const double eta = std::pow(m, -kKappa);
    log_step_bar_ = eta * log_step + (1 - eta) * log_step_bar_;
    step_ = std::exp(log_step);
  }

  Scorer& scorer_;
  std::vector<core::Rng>& rngs_;
  ChainState& s_;
  int leapfrog_steps_;
  double target_acceptance_;
  std::int64_t warmup_;
  double step_;
  std::vector<double> inv_mass_;
  std::vector<double> grad_;  // ∇log π at the chains' states [C, D]
  std::vector<double> q_, p_, g_, lp_new_, h0_, eps_;
  std::vector<char> alive_;
  RunningMoments variance_;  // only its diagonal is used
  std::int64_t mass_begin_ = 0, mass_end_ = 0;
  double mu_ = 0, h_bar_ = 0, log_step_bar_ = 0;
  std::int64_t adapt_count_ = 0;
  std::int64_t accepted_ = 0, proposed_ = 0;
};

void check_options(const LogDensity& target, const Proposal& init, std::int64_t n,
                   const McmcOptions& o) {
  auto fail = [](const auto&... parts) { throw core::ValueError(str("sample_mcmc: ", parts...)); };
  if (target.dim() < 1) fail("the target's dim() must be ≥ 1, got ", target.dim());
  if (n < 1) fail("n must be ≥ 1, got ", n);
  if (o.chains < 1) fail("options.chains must be ≥ 1, got ", o.chains);
  if (o.warmup < 0) fail("options.warmup must be ≥ 0, got ", o.warmup);
  if (o.thin < 1) fail("options.thin must be ≥ 1, got ", o.thin);
  if (o.init_candidates < 1) fail("options.init_candidates must be ≥ 1, got ", o.init_candidates);
  if (!(o.slice_width > 0) || !std::isfinite(o.slice_width))
    fail("options.slice_width must be finite and > 0, got ", o.slice_width);
  if (o.slice_max_steps_out < 1)
    fail("options.slice_max_steps_out must be ≥ 1, got ", o.slice_max_steps_out);
  if (!(o.mh_target_acceptance > 0 && o.mh_target_acceptance < 1))
    fail("options.mh_target_acceptance must be in (0, 1), got ", o.mh_target_acceptance);
  if (o.hmc_leapfrog_steps < 1)
    fail("options.hmc_leapfrog_steps must be ≥ 1, got ", o.hmc_leapfrog_steps);
  if (!(o.hmc_initial_step > 0) || !std::isfinite(o.hmc_initial_step))
    fail("options.hmc_initial_step must be finite and > 0, got ", o.hmc_initial_step);
  if (!(o.hmc_target_acceptance > 0 && o.hmc_target_acceptance < 1))
    fail("options.hmc_target_acceptance must be in (0, 1), got ", o.hmc_target_acceptance);
  if (!init.sample) fail("the initialisation proposal has no sample function");
  if (o.sampler == SamplerKind::hmc && !target.has_gradient())
    throw core::StateError(
        "sample_mcmc: the HMC sampler needs the gradient of the target, and this target has none "
        "(has_gradient() is false); use the slice or mh sampler");
}

// ---------------------------------------------------------------------------------------------
// Diagnostics

// Φ⁻¹(p) for p in (0, 1): Acklam's rational approximation (relative error 1.2e-9) refined by one
// Halley step on erfc, which brings it to full double precision.
double normal_quantile(double p) {
  static constexpr double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,
                                 -2.759285104469687e+02, 1.383577518672690e+02,
                                 -3.066479806614716e+01, 2.506628277459239e+00};
  static constexpr double b[] = {-5.447609879822406e+01, 1.615858368580409e+02,
                                 -1.556989798598866e+02, 6.680131188771972e+01,
                                 -1.328068155288572e+01};
  static constexpr double c[] = {-7.784894002430293e-03, -3.223964580411365e-01,
                                 -2.400758277161838e+00, -2.549732539343734e+00,
                                 4.374664141464968e+00,  2.938163982698783e+00};
  static constexpr double d[] = {7.784695709041462e-03, 3.224671290700398e-01,
                                 2.445134137142996e+00, 3.754408661907416e+00};
  constexpr double kLow = 0.02425;
  double x;
  if (p < kLow) {
    const double q = std::sqrt(-2 * std::log(p));
    x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  } else if (p <= 1 - kLow) {
    const double q = p - 0.5, r = q * q;
    x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
  } else {
    const double q = std::sqrt(-2 * std::log1p(-p));
    x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  }
  const double e = 0.5 * std::erfc(-x / std::numbers::sqrt2) - p;
  const double u = e * std::sqrt(2 * std::numbers::pi) * std::exp(x * x / 2);
  return x - u / (1 + x * u / 2);
}

// Rank normalisation (Vehtari et al. 2021, eq. 14): z = Φ⁻¹((r − 3/8) / (S + 1/4)) with r the
// rank among all S values, ties given their average rank.
std::vector<double> rank_normalise(const std::vector<double>& v) {
  const std::size_t s = v.size();
  std::vector<std::size_t> order(s);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](std::size_t i, std::size_t j) { return v[i] < v[j]; });
  std::vector<double> z(s);
  for (std::size_t i = 0; i < s;) {
    std::size_t j = i;
    while (j + 1 < s && v[order[j + 1]] == v[order[i]]) ++j;
    const double rank = 0.5 * static_cast<double>(i + j) + 1;  // 1-based average rank
    const double p = (rank - 0.375) / (static_cast<double>(s) + 0.25);
    for (std::size_t k = i; k <= j; ++k) z[order[k]] = normal_quantile(p);
    i = j + 1;
  }
  return z;
}

// R-hat of m chains of length n stored chain after chain (Gelman et al., BDA3 eq. 11.4).
double r_hat_of(const std::vector<double>& v, std::int64_t m, std::int64_t n) {
  double within = 0, mean_of_means = 0;
  std::vector<double> means(sz(m));
  for (std::int64_t c = 0; c < m; ++c) {
    double mean = 0;
    for (std::int64_t t = 0; t < n; ++t) mean += v[sz(c * n + t)];
    mean /= static_cast<double>(n);
    double var = 0;
    for (std::int64_t t = 0; t < n; ++t) var += (v[sz(c * n + t)] - mean) * (v[sz(c * n + t)] - mean);
    within += var / static_cast<double>(n - 1);
    means[sz(c)] = mean;
    mean_of_means += mean;
  }
  within /= static_cast<double>(m);
  mean_of_means /= static_cast<double>(m);
  double between = 0;  // B / n
  for (double mean : means) between += (mean - mean_of_means) * (mean - mean_of_means);
  between /= static_cast<double>(m - 1);
  if (!(within > 0)) return kNaN;
  const double var_plus = static_cast<double>(n - 1) / static_cast<double>(n) * within + between;
  return std::sqrt(var_plus / within);
}

// Dimension `dim` of chains [C, T, D] split into 2C half-chains of length T / 2 (the middle state
// of an odd T dropped), half-chain after half-chain.
std::vector<double> split_chains(const Tensor& chains, std::int64_t dim, std::int64_t& halves,
                                 std::int64_t& length) {
  const std::int64_t C = chains.dim(0), T = chains.dim(1), D = chains.dim(2);
  const double* p = chains.data<double>();
  length = T / 2;
  halves = 2 * C;
  std::vector<double> v(sz(halves * length));
  for (std::int64_t c = 0; c < C; ++c)
    for (std::int64_t t = 0; t < length; ++t) {
      v[sz((2 * c) * length + t)] = p[(c * T + t) * D + dim];
      v[sz((2 * c + 1) * length + t)] = p[(c * T + (T - length + t)) * D + dim];
    }
  return v;
}

void check_chains(const Tensor& chains, const char* who) {
  if (!chains.defined() || chains.rank() != 3)
    throw core::ShapeError(str(who, ": expected chains [C, T, D], got ",
                               chains.defined() ? str(chains.shape()) : std::string("none")));
  if (chains.dtype() != DType::f64)
    throw core::DtypeError(str(who, ": expected float64 chains, got ", core::name(chains.dtype())));
}

// Bulk ESS of m chains of length n (chain after chain): ρ_t = 1 − (W − mean_c acov_c(t)) / var⁺
// (Vehtari et al. 2021, eq. 10), summed in pairs P_k = ρ_2k + ρ_2k+1 while positive, each pair
// at most the previous (Geyer 1992's initial monotone sequence); τ = −1 + 2 Σ P_k, ESS = S / τ.
// Lags are computed one at a time, so well-mixed chains cost only a few passes.
double ess_of(const std::vector<double>& v, std::int64_t m, std::int64_t n) {
  const double dn = static_cast<double>(n);
  std::vector<double> means(sz(m), 0.0);
  for (std::int64_t c = 0; c < m; ++c) {
    for (std::int64_t t = 0; t < n; ++t) means[sz(c)] += v[sz(c * n + t)];
    means[sz(c)] /= dn;
  }
  auto mean_autocov = [&](std::int64_t lag) {  // mean over chains of (1/n) Σ centred products
    double sum = 0;
    for (std::int64_t c = 0; c < m; ++c) {
      const double* x = v.data() + c * n;
      const double mu = means[sz(c)];
      double acc = 0;
      for (std::int64_t t = 0; t + lag < n; ++t) acc += (x[t] - mu) * (x[t + lag] - mu);
      sum += acc / dn;
    }
    return sum / static_cast<double>(m);
  };
  const double acov0 = mean_autocov(0);
  const double within = acov0 * dn / (dn - 1);
  double between = 0;
  if (m > 1) {
    double mm = 0;
    for (double mu : means) mm += mu;
    mm /= static_cast<double>(m);
    for (double mu : means) between += (mu - mm) * (mu - mm);
    between /= static_cast<double>(m - 1);
  }
  const double var_plus = within * (dn - 1) / dn + between;
  if (!(var_plus > 0)) return kNaN;
  auto rho = [&](std::int64_t lag) { return 1 - (within - mean_autocov(lag)) / var_plus; };
  double sum_pairs = 0, previous = std::numeric_limits<double>::infinity();
  for (std::int64_t k = 0; 2 * k + 1 < n; ++k) {
    double pair = (k == 0 ? rho(0) : rho(2 * k)) + rho(2 * k + 1);
    if (!(pair > 0)) break;
    pair = std::min(pair, previous);
    previous = pair;
    sum_pairs += pair;
  }
  const double s = static_cast<double>(m) * dn;
  const double tau = std::max(-1 + 2 * sum_pairs, 1 / std::log10(s));
  return s / tau;
}

}  // namespace

namespace {

// One statistic per dimension of chains [C, T, D] from that dimension's split chains (m halves
// of n draws each); NaN throughout when a chain holds fewer than 4 states.
template <typename Statistic>
std::vector<double> per_dimension(const Tensor& chains, const char* who, Statistic statistic) {
  check_chains(chains, who);
  const std::int64_t D = chains.dim(2);
  std::vector<double> out(sz(D), kNaN);
  if (chains.dim(1) < 4 || chains.dim(0) < 1) return out;
  for (std::int64_t d = 0; d < D; ++d) {
    std::int64_t m = 0, n = 0;
    const std::vector<double> v = split_chains(chains, d, m, n);
    out[sz(d)] = statistic(v, m, n);
  }
  return out;
}

}  // namespace

std::vector<double> split_r_hat(const Tensor& chains) {
  return per_dimension(chains, "split_r_hat",
                       [](const std::vector<double>& v, std::int64_t m, std::int64_t n) {
    const double bulk = r_hat_of(rank_normalise(v), m, n);
    // Folded: |θ − median| catches chains that agree in location but not in scale.
    std::vector<double> sorted = v;
    const std::size_t mid = sorted.size() / 2;
    std::nth_element(sorted.begin(), sorted.begin() + static_cast<std::ptrdiff_t>(mid),
                     sorted.end());
    double median = sorted[mid];
    if (sorted.size() % 2 == 0) {
      median = 0.5 * (median + *std::max_element(sorted.begin(),
                                                 sorted.begin() + static_cast<std::ptrdiff_t>(mid)));
    }
    std::vector<double> folded(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) folded[i] = std::abs(v[i] - median);
    const double tail = r_hat_of(rank_normalise(folded), m, n);
    return std::isnan(bulk) || std::isnan(tail) ? kNaN : std::max(bulk, tail);
  });
}

std::vector<double> effective_sample_size(const Tensor& chains) {
  return per_dimension(chains, "effective_sample_size",
                       [](const std::vector<double>& v, std::int64_t m, std::int64_t n) {
                         return ess_of(rank_normalise(v), m, n);
                       });
}

// ---------------------------------------------------------------------------------------------
// The driver

McmcResult sample_mcmc(const LogDensity& target, const Proposal& init, std::int64_t n,
                       const McmcOptions& options) {
  check_options(target, init, n, options);
  const auto start = Clock::now();
  const std::int64_t C = options.chains, D = target.dim();
  const std::int64_t kept = (n + C - 1) / C;
  const std::int64_t iterations = options.warmup + kept * options.thin;

  std::vector<core::Rng> rngs;
  rngs.reserve(sz(C));
  for (std::int64_t c = 0; c < C; ++c) rngs.emplace_back(options.seed, static_cast<std::uint64_t>(c));

  const bool hmc = options.sampler == SamplerKind::hmc;
  Scorer scorer(target, std::max<std::int64_t>(2 * C, 1), hmc);
  ChainState state = initialise(scorer, init, rngs, options);

  McmcResult result;
  result.chains = Tensor::empty({C, kept, D}, DType::f64);
  double* chains = result.chains.data<double>();

  auto run = [&](auto& sampler, auto&& sweep) {
    std::int64_t next_report = 1;
    for (std::int64_t it = 0; it < iterations; ++it) {
      const bool warming_up = it < options.warmup;
      sweep(sampler, it, warming_up);
      const std::int64_t after = it + 1 - options.warmup;
      if (after > 0 && after % options.thin == 0) {
        const std::int64_t t = after / options.thin - 1;
        for (std::int64_t c = 0; c < C; ++c)
          std::copy_n(state.row(c), D, chains + (c * kept + t) * D);
      }
      if (options.progress && (it + 1) * 10 >= next_report * iterations) {
        while ((it + 1) * 10 >= next_report * iterations) ++next_report;
        std::fprintf(stderr, "sample_mcmc (%s, %lld chains): %3lld%%, iteration %lld of %lld "
                     "(%d warm-up), %.1f s\n",
                     name(options.sampler), static_cast<long long>(C),
                     static_cast<long long>((it + 1) * 100 / iterations),
                     static_cast<long long>(it + 1), static_cast<long long>(iterations),
                     options.warmup,
                     std::chrono::duration<double>(Clock::now() - start).count());
      }
    }
    result.acceptance_rate = sampler.acceptance();
  };
  switch (options.sampler) {
    case SamplerKind::slice: {
      SliceSampler sampler(scorer, rngs, state, options);
      run(sampler, [](SliceSampler& s, std::int64_t, bool w) { s.sweep(w); });
      break;
    }
    case SamplerKind::mh: {
      MetropolisSampler sampler(scorer, rngs, state, options);
      run(sampler, [](MetropolisSampler& s, std::int64_t it, bool w) { s.sweep(it, w); });
      break;
    }
    case SamplerKind::hmc: {
      HmcSampler sampler(scorer, rngs, state, options);
      run(sampler, [](HmcSampler& s, std::int64_t it, bool w) { s.sweep(it, w); });
      break;
    }
  }

  // Interleave: row i = state i / C of chain i % C.
  result.samples = Tensor::empty({n, D}, DType::f64);
  double* out = result.samples.data<double>();
  for (std::int64_t i = 0; i < n; ++i)
    std::copy_n(chains + ((i % C) * kept + i / C) * D, D, out + i * D);
  result.r_hat = split_r_hat(result.chains);
  result.ess = effective_sample_size(result.chains);
  result.evaluations = scorer.evaluations();
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return result;
}

// ---------------------------------------------------------------------------------------------
// Chains one at a time: sample_task_posterior

namespace {

using kernels::ChainSlot;
using kernels::ChainSweep;

// The chains in host memory, advanced by an OpenMP loop over chains. Chains share nothing during
// a launch, so the thread count changes no value.
class HostChains {
 public:
  HostChains(const kernels::ChainTarget& target, std::int64_t chains, std::int64_t kept,
             std::uint64_t seed)
      : target_(target),
        seed_(seed),
        slots_(sz(chains)),
        kept_(sz(chains * kept * kernels::theta_dim(target.task))) {}

  void initialise(bool sir, int candidates) {
    const auto chains = static_cast<std::int64_t>(slots_.size());
#pragma omp parallel for schedule(static)
    for (std::int64_t c = 0; c < chains; ++c)
      kernels::initialise_chain(target_, sir, candidates, seed_, c, slots_[sz(c)]);
  }
  void run(const ChainSweep& sweep) {
    const auto chains = static_cast<std::int64_t>(slots_.size());
#pragma omp parallel for schedule(static)
    for (std::int64_t c = 0; c < chains; ++c)
      kernels::advance_chain(target_, sweep, c, slots_[sz(c)], kept_.data());
  }
  const std::vector<ChainSlot>& slots() const { return slots_; }
  std::vector<double> kept_states() const { return kept_; }

 private:
  kernels::ChainTarget target_;
  std::uint64_t seed_;
  std::vector<ChainSlot> slots_;
  std::vector<double> kept_;
};

// sample_mcmc's loop with the per-chain work in `runner` (HostChains or gpu::DeviceChains) and
// the adaptation here, in the order SliceSampler and MetropolisSampler apply it.
template <typename Runner>
McmcResult run_task_chains(Runner& runner, std::int64_t dim, std::int64_t n,
                           const McmcOptions& o) {
  const auto start = Clock::now();
  const std::int64_t C = o.chains, D = dim;
  const std::int64_t kept = (n + C - 1) / C;
  runner.initialise(o.init == ChainInit::sir, o.init_candidates);
  {
    const std::vector<ChainSlot>& slots = runner.slots();
    for (std::int64_t c = 0; c < C; ++c)
      if (!slots[sz(c)].started)
        throw core::ValueError(
            o.init == ChainInit::sir
                ? str("sample_task_posterior: none of the init_candidates = ", o.init_candidates,
                      " proposal draws of chain ", c,
                      " has a finite log density (and weight); expected at least one inside the "
                      "target's support")
                : str("sample_task_posterior: chain ", c,
                      " found no initial point with a finite log density in init_candidates = ",
                      o.init_candidates, " proposal draws"));
  }
  ChainSweep sweep{};
  sweep.sampler = o.sampler == SamplerKind::slice ? kernels::ChainSampler::slice
                                                  : kernels::ChainSampler::mh;
  sweep.warmup = o.warmup;
  sweep.thin = o.thin;
  sweep.kept = kept;
  sweep.max_steps_out = o.slice_max_steps_out;
  std::fill(std::begin(sweep.width), std::end(sweep.width), o.slice_width);

  // Metropolis: the proposal from the starting points, as MetropolisSampler's constructor.
  RunningMoments moments(D);
  std::vector<double> chol;
  double log_scale = 0;
  auto set_chol = [&] { std::copy(chol.begin(), chol.end(), sweep.chol); };
  if (o.sampler == SamplerKind::mh) {
    for (const ChainSlot& s : runner.slots()) moments.add(s.x);
    chol = cholesky_jittered(moments.regularised_covariance(), D);
    set_chol();
    moments.reset();
    log_scale = std::log(2.38 / std::sqrt(static_cast<double>(D)));
  }
  std::vector<int> tuned_sweeps(sz(D), 0);
  std::vector<std::int64_t> round_count;
  for (std::int64_t it = 0; it < o.warmup; ++it) {
    sweep.first_iteration = it;
    sweep.iterations = 1;
    sweep.scale = std::exp(log_scale);
    runner.run(sweep);
    const std::vector<ChainSlot>& slots = runner.slots();
    if (o.sampler == SamplerKind::slice) {
      // SliceSampler sums the accepted brackets round by round, chains in order within a round.
      for (std::int64_t d = 0; d < D; ++d) {
        int last_round = -1;
        for (const ChainSlot& s : slots) last_round = std::max(last_round, s.accept_round[d]);
        double bracket_sum = 0;
        for (int r = 0; r <= last_round; ++r)
          for (const ChainSlot& s : slots)
            if (s.accept_round[d] == r) bracket_sum += s.accept_bracket[d];
        const double alpha = std::max(1.0 / static_cast<double>(++tuned_sweeps[sz(d)]), 0.1);
        const double mean_bracket = bracket_sum / static_cast<double>(C);
        if (mean_bracket > 0 && std::isfinite(mean_bracket))
          sweep.width[d] += alpha * (mean_bracket - sweep.width[d]);
      }
    } else {
      std::int64_t accepted = 0;
      for (const ChainSlot& s : slots) accepted += s.last_accepted ? 1 : 0;
      const double rate = static_cast<double>(accepted) / static_cast<double>(C);
      log_scale += std::pow(static_cast<double>(it + 1), -0.6) * (rate - o.mh_target_acceptance);
      if (it >= o.warmup / 4) {
        for (const ChainSlot& s : slots) moments.add(s.x);
        if ((it + 1) % 10 == 0 || it + 1 == o.warmup) {
          chol = cholesky_jittered(moments.regularised_covariance(), D);
          set_chol();
        }
      }
    }
  }
  // After warm-up nothing adapts: the kept iterations go in one launch.
  sweep.first_iteration = o.warmup;
  sweep.iterations = kept * o.thin;
  sweep.scale = std::exp(log_scale);
  runner.run(sweep);

  McmcResult result;
  const std::vector<double> states = runner.kept_states();
  result.chains = Tensor::from(states, {C, kept, D}, DType::f64);
  const double* chains = result.chains.data<double>();
  result.samples = Tensor::empty({n, D}, DType::f64);
  double* out = result.samples.data<double>();
  for (std::int64_t i = 0; i < n; ++i)
    std::copy_n(chains + ((i % C) * kept + i / C) * D, D, out + i * D);
  std::int64_t accepted = 0;
  for (const ChainSlot& s : runner.slots()) {
    result.evaluations += s.evaluations;
    accepted += s.accepted;
  }
  result.acceptance_rate =
      o.sampler == SamplerKind::slice
          ? 1.0
          : (kept > 0 ? static_cast<double>(accepted) / static_cast<double>(C * kept * o.thin)
                      : 0.0);
  result.r_hat = split_r_hat(result.chains);
  result.ess = effective_sample_size(result.chains);
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return result;
}

}  // namespace

McmcResult sample_task_posterior(const Task& task, std::span<const double> x_o, std::int64_t n,
                                 const McmcOptions& options, core::Device device) {
  const std::optional<kernels::TaskKernel> kernel = task.kernel();
  if (!kernel)
    throw core::ValueError(str("sample_task_posterior: task ", task.name(),
                               " has no kernel (sbi/task_kernels.hpp); use sample_mcmc with a "
                               "TaskPosteriorDensity"));
  if (static_cast<std::int64_t>(x_o.size()) != task.x_dim())
    throw core::ValueError(str("sample_task_posterior: x_o has ", x_o.size(), " values; task ",
                               task.name(), " has x_dim ", task.x_dim()));
  if (options.sampler == SamplerKind::hmc)
    throw core::ValueError(
        "sample_task_posterior: the hmc sampler has no per-chain kernel; use slice or mh");
  const Proposal prior_proposal = Proposal::from_prior(task.prior());
  check_options(CallableLogDensity(task.theta_dim(), [](const Tensor&, std::span<double>) {}),
                prior_proposal, n, options);
  kernels::ChainTarget target{};
  target.task = *kernel;
  std::copy(x_o.begin(), x_o.end(), target.x_obs);
  const std::int64_t kept = (n + options.chains - 1) / options.chains;
  if (device == core::Device::cuda) {
#if defined(ASBI_SBI_CUDA)
    if (!core::device_available(core::Device::cuda))
      throw core::DeviceError("sample_task_posterior: device cuda asked for, but no CUDA device "
                              "is available");
    gpu::DeviceChains chains(target, options.chains, kept, options.seed);
    return run_task_chains(chains, task.theta_dim(), n, options);
#else
    throw gpu::gpu_unavailable("sample_task_posterior");
#endif
  }
  HostChains chains(target, options.chains, kept, options.seed);
  return run_task_chains(chains, task.theta_dim(), n, options);
}

// ---------------------------------------------------------------------------------------------
// Rejection sampling and SIR

Tensor rejection_sample(const LogDensity& target, const Proposal& proposal, double log_bound,
                        std::int64_t n, core::Rng& rng, std::int64_t max_draws) {
  const std::int64_t D = target.dim();
  if (n < 0) throw core::ValueError(str("rejection_sample: n must be ≥ 0, got ", n));
  if (max_draws < 1)
    throw core::ValueError(str("rejection_sample: max_draws must be ≥ 1, got ", max_draws));
  if (!std::isfinite(log_bound))
    throw core::ValueError(str("rejection_sample: log_bound must be finite, got ", log_bound));
  if (!proposal.sample || !proposal.log_prob)
    throw core::ValueError("rejection_sample: the proposal needs both sample and log_prob");
  Tensor out = Tensor::empty({n, D}, DType::f64);
  double* dst = out.data<double>();
  Scorer scorer(target, 1, false);
  std::int64_t accepted = 0, drawn = 0;
  std::vector<double> log_pi;
  while (accepted < n) {
    if (drawn >= max_draws)
      throw core::ValueError(str("rejection_sample: only ", accepted, " of ", n, " samples after ",
                                 drawn, " proposals (acceptance rate ",
                                 static_cast<double>(accepted) / static_cast<double>(drawn),
                                 "); expected max_draws = ", max_draws,
                                 " to suffice: use a closer proposal or a tighter log_bound"));
    // Batch sized from the acceptance rate so far (at least 1000 draws per target call).
    const double rate = drawn > 0 ? std::max(static_cast<double>(accepted), 1.0) /
                                        static_cast<double>(drawn)
                                  : 1.0;
    const std::int64_t most = std::min(kCandidateBatchRows, max_draws - drawn);
    const std::int64_t batch = std::clamp<std::int64_t>(
        static_cast<std::int64_t>(1.2 * static_cast<double>(n - accepted) / rate),
        std::min<std::int64_t>(1000, most), most);
    const Tensor theta = draw(proposal, batch, D, rng, "rejection_sample");
    log_pi.assign(sz(batch), 0.0);
    scorer.score_tensor(theta, log_pi);
    const std::vector<double> log_q = proposal.log_prob(theta);
    const double* src = theta.data<double>();
    for (std::int64_t i = 0; i < batch; ++i) {
      const double log_u = std::log(rng.uniform());
      if (!(log_pi[sz(i)] > kNegInf)) continue;
      const double excess = log_pi[sz(i)] - log_q[sz(i)] - log_bound;
      if (excess > 1e-9 * std::max(1.0, std::abs(log_bound)))
        throw core::ValueError(str("rejection_sample: log π − log q = ",
                                   log_pi[sz(i)] - log_q[sz(i)], " exceeds log_bound = ",
                                   log_bound, " at a proposal draw; expected log_bound to bound "
                                   "log π − log q everywhere"));
      if (accepted < n && log_u < excess) std::copy_n(src + i * D, D, dst + (accepted++) * D);
    }
    drawn += batch;
  }
  return out;
}

Tensor importance_resample(const LogDensity& target, const Proposal& proposal, std::int64_t n,
                           core::Rng& rng, int oversampling) {
  const std::int64_t D = target.dim();
  if (n < 0) throw core::ValueError(str("importance_resample: n must be ≥ 0, got ", n));
  if (oversampling < 1)
    throw core::ValueError(str("importance_resample: oversampling must be ≥ 1, got ", oversampling));
  if (!proposal.sample || !proposal.log_prob)
    throw core::ValueError("importance_resample: the proposal needs both sample and log_prob");
  Tensor out = Tensor::empty({n, D}, DType::f64);
  double* dst = out.data<double>();
  Scorer scorer(target, 1, false);
  const std::int64_t per_batch = std::max<std::int64_t>(1, kCandidateBatchRows / oversampling);
  std::vector<double> log_pi, weight(sz(oversampling));
  for (std::int64_t i0 = 0; i0 < n; i0 += per_batch) {
    const std::int64_t draws = std::min(per_batch, n - i0);
    const std::int64_t rows = draws * oversampling;
    const Tensor theta = draw(proposal, rows, D, rng, "importance_resample");
    log_pi.assign(sz(rows), 0.0);
    scorer.score_tensor(theta, log_pi);
    const std::vector<double> log_q = proposal.log_prob(theta);
    const double* src = theta.data<double>();
    for (std::int64_t j = 0; j < draws; ++j) {
      const std::int64_t base = j * oversampling;
      double max_w = kNegInf;
      for (int k = 0; k < oversampling; ++k) {
        const double lq = log_q[sz(base + k)];
        const double w = std::isfinite(lq) ? log_pi[sz(base + k)] - lq : kNegInf;
        weight[sz(k)] = w;
        max_w = std::max(max_w, w);
      }
      if (!(max_w > kNegInf) || !std::isfinite(max_w))
        throw core::ValueError(str("importance_resample: all ", oversampling,
                                   " proposals for draw ", i0 + j,
                                   " have zero weight π/q; expected the proposal to cover the "
                                   "target's support"));
      for (double& w : weight) w = std::exp(w - max_w);
      const auto pick = static_cast<std::int64_t>(rng.categorical(weight));
      std::copy_n(src + (base + pick) * D, D, dst + (i0 + j) * D);
    }
  }
  return out;
}

}  // namespace asbi::sbi
