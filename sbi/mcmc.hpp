#pragma once
// Samplers for an unnormalised log density over θ ∈ R^D: many-chain MCMC (vectorised slice
// sampling, adaptive random-walk Metropolis–Hastings, HMC), rejection sampling and
// sampling-importance-resampling, with the convergence diagnostics that come with them.
//
//   sbi::CallableLogDensity target(2, [](const Tensor& theta, std::span<double> out) { … });
//   sbi::McmcOptions options{.sampler = sbi::SamplerKind::slice, .chains = 20, .seed = 1};
//   sbi::McmcResult r = sbi::sample_mcmc(target, sbi::Proposal::from_prior(prior), 10000, options);
//   // r.samples [10000, 2]; r.r_hat and r.ess per dimension
//
// Reproducibility: chain c draws all its randomness from core::Rng(seed, stream c), and the
// target is evaluated on whole batches of chains, so the same seed gives the same samples
// whatever the thread count (the target itself must be deterministic).
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "core/rng.hpp"
#include "core/tensor.hpp"
#include "sbi/prior.hpp"

namespace asbi::sbi {

// An unnormalised log density log π(θ) evaluated for a batch of points.
class LogDensity {
 public:
  virtual ~LogDensity() = default;
  virtual std::int64_t dim() const = 0;
  // log π of each row of theta [n, dim] (float64) into out[n]; -inf outside the support. Must be
  // deterministic and safe to call from one thread at a time (it may use OpenMP inside).
  virtual void evaluate(const Tensor& theta, std::span<double> out) const = 0;
  virtual bool has_gradient() const { return false; }
  // log π and ∂ log π / ∂θ (grad [n, dim] float64, allocated by the caller). The default throws
  // core::StateError naming the sampler that needed it.
  virtual void evaluate_with_gradient(const Tensor& theta, std::span<double> out,
                                      Tensor& grad) const;
};

// A LogDensity from callables (the gradient one optional).
class CallableLogDensity : public LogDensity {
 public:
  using Fn = std::function<void(const Tensor& theta, std::span<double> out)>;
  using GradFn = std::function<void(const Tensor& theta, std::span<double> out, Tensor& grad)>;
  CallableLogDensity(std::int64_t dim, Fn fn, GradFn grad = nullptr);
  std::int64_t dim() const override { return dim_; }
  void evaluate(const Tensor& theta, std::span<double> out) const override;
  bool has_gradient() const override { return static_cast<bool>(grad_); }
  void evaluate_with_gradient(const Tensor& theta, std::span<double> out,
                              Tensor& grad) const override;

 private:
  std::int64_t dim_;
  Fn fn_;
  GradFn grad_;
};

// A distribution to draw from and score: chain initialisation, rejection and SIR proposals.
struct Proposal {
  std::function<Tensor(std::int64_t n, core::Rng& rng)> sample;        // [n, D] float64
  std::function<std::vector<double>(const Tensor& theta)> log_prob;  // per row
  static Proposal from_prior(const Prior& prior);  // keeps a reference: the prior must outlive it
};

enum class SamplerKind { slice, mh, hmc };
const char* name(SamplerKind kind);
SamplerKind sampler_from_name(const std::string& name);  // ValueError listing the known names

enum class ChainInit {
  sir,       // sbi's "resample": per chain, SIR from init_candidates proposal draws
  proposal,  // one proposal draw per chain
};

struct McmcOptions {
  SamplerKind sampler = SamplerKind::slice;
  int chains = 20;   // run together; the target sees [chains, D] batches
  int warmup = 200;  // per chain, discarded; step sizes / proposal scales adapt only here
  int thin = 1;      // keep every thin-th state after warm-up
  std::uint64_t seed = 0;
  ChainInit init = ChainInit::sir;
  int init_candidates = 1000;
  // slice: initial bracket width per dimension, tuned during warm-up (stepping out + shrinkage).
  double slice_width = 0.5;
  int slice_max_steps_out = 50;
  // mh: Gaussian proposal, covariance adapted from the warm-up states (Haario et al.), scale
  // adapted towards the target acceptance rate.
  double mh_target_acceptance = 0.234;
  // hmc: leapfrog; step size adapted by dual averaging during warm-up; identity mass matrix
  // scaled by the warm-up variance.
  int hmc_leapfrog_steps = 10;
  double hmc_initial_step = 0.1;
  double hmc_target_acceptance = 0.8;
  bool progress = false;  // a line per 10 % on stderr
};

struct McmcResult {
  Tensor samples;                 // [n, D] float64, states of all chains, chain-major
  Tensor chains;                  // [chains, kept states per chain, D] float64 (≥ n / chains)
  std::vector<double> r_hat;      // split R-hat per dimension (Vehtari et al. 2021, rank-normal)
  std::vector<double> ess;        // bulk effective sample size per dimension, all chains
  double acceptance_rate = 0;     // mh/hmc: accepted / proposed after warm-up; slice: 1
  std::int64_t evaluations = 0;   // rows passed to the target in total, warm-up included
  double seconds = 0;
};

// n states from `target`, chains initialised from `init` (see ChainInit). Throws ValueError when
// options are out of range or no initial point has a finite log density, StateError when the
// sampler needs a gradient the target lacks.
McmcResult sample_mcmc(const LogDensity& target, const Proposal& init, std::int64_t n,
                       const McmcOptions& options = {});

// Rejection sampling with envelope M·q: accept θ ~ q with probability π(θ) / (M q(θ)),
// log M = log_bound (π normalised or not; log π − log q ≤ log_bound must hold). Stops with
// ValueError naming the acceptance rate after max_draws proposals.
Tensor rejection_sample(const LogDensity& target, const Proposal& proposal, double log_bound,
                        std::int64_t n, core::Rng& rng, std::int64_t max_draws = 100'000'000);

// Sampling-importance-resampling: for each of the n draws, `oversampling` proposals weighted by
// π / q and one picked by its weight.
Tensor importance_resample(const LogDensity& target, const Proposal& proposal, std::int64_t n,
                           core::Rng& rng, int oversampling = 32);

// Diagnostics of chains [C, T, D] (float64): split R-hat with rank normalisation, and bulk
// effective sample size (Geyer's initial monotone sequence over the combined autocorrelation).
std::vector<double> split_r_hat(const Tensor& chains);
std::vector<double> effective_sample_size(const Tensor& chains);

}  // namespace asbi::sbi
