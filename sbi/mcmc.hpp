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
// Reproducibility: chain c draws all its randomness (its initialisation included) from
// core::Rng(seed, stream c), and the target is evaluated on whole batches of chains, so the same
// seed gives the same samples whatever the thread count (the target itself must be
// deterministic). Adapted quantities (slice widths, MH covariance and scale, HMC step size and
// mass matrix) are shared by all chains and computed from all of them in a fixed order.
//
// Cost: every sampler hands the target one [k, D] batch per step, k ≤ 2·chains, so a neural
// target runs one batched forward pass per step rather than one per chain.
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "core/rng.hpp"
#include "core/tensor.hpp"
#include "core/types.hpp"
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
  // core::StateError saying that the target has no gradient (HMC needs one); sample_mcmc checks
  // has_gradient() first and names the sampler.
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
  // log q per row; optional for chain initialisation (then SIR weights are π alone), required
  // by rejection_sample and importance_resample.
  std::function<std::vector<double>(const Tensor& theta)> log_prob;
  static Proposal from_prior(const Prior& prior);  // keeps a reference: the prior must outlive it
};

enum class SamplerKind { slice, mh, hmc };
const char* name(SamplerKind kind);
SamplerKind sampler_from_name(const std::string& name);  // ValueError listing the known names

enum class ChainInit {
  // sbi's "resample": per chain, init_candidates proposal draws weighted by π/q (by π alone when
  // the proposal has no log_prob; sbi weights by π, the same for a uniform prior) and one of them
  // picked by its weight, so that chains start close to draws from π, each mode in proportion.
  sir,
  // one proposal draw per chain, redrawn (up to init_candidates times) while log π is -inf.
  proposal,
};

struct McmcOptions {
  SamplerKind sampler = SamplerKind::slice;
  int chains = 20;   // run together; the target sees [chains, D] batches
  int warmup = 200;  // per chain, discarded; step sizes / proposal scales adapt only here
  int thin = 1;      // keep every thin-th state after warm-up
  std::uint64_t seed = 0;
  ChainInit init = ChainInit::sir;
  int init_candidates = 1000;
  // slice: initial bracket width per dimension (stepping out + shrinkage, Neal 2003); during
  // warm-up each width becomes a running mean (the last ~10 sweeps) of the final bracket sizes
  // of all chains, which settles near the typical slice size.
  double slice_width = 0.5;
  int slice_max_steps_out = 50;  // m in Neal's stepping-out procedure (fig. 3)
  // mh: Gaussian proposal, covariance adapted from the warm-up states (Haario et al.), scale
  // adapted towards the target acceptance rate.
  double mh_target_acceptance = 0.234;
  // hmc: leapfrog with a fixed number of steps and a step size jittered by ±10 % per chain and
  // iteration; the step size adapted by dual averaging (Hoffman & Gelman 2014) during warm-up;
  // a diagonal mass matrix, the inverse of the variance of the states in the middle of warm-up
  // (identity when warmup < 20).
  int hmc_leapfrog_steps = 10;
  double hmc_initial_step = 0.1;
  double hmc_target_acceptance = 0.8;
  bool progress = false;  // a line per 10 % on stderr
};

struct McmcResult {
  // [n, D] float64, interleaved: row i is kept state i / chains of chain i % chains, so any
  // prefix mixes all chains. Each chain keeps ceil(n / chains) states (every thin-th after
  // warm-up); the last round of states is cut to make exactly n rows.
  Tensor samples;
  Tensor chains;                  // [chains, ceil(n / chains), D] float64, every kept state
  std::vector<double> r_hat;      // split R-hat per dimension (Vehtari et al. 2021, rank-normal)
  std::vector<double> ess;        // bulk effective sample size per dimension, all chains
  // (both computed on `chains`; NaN when chains hold fewer than 4 states)
  double acceptance_rate = 0;     // mh/hmc: accepted / proposed after warm-up; slice: 1
  std::int64_t evaluations = 0;   // rows passed to the target in total, warm-up included
  double seconds = 0;
};

// n states from `target`, chains initialised from `init` (see ChainInit). Throws ValueError when
// options are out of range or no initial point has a finite log density, StateError when the
// sampler needs a gradient the target lacks.
McmcResult sample_mcmc(const LogDensity& target, const Proposal& init, std::int64_t n,
                       const McmcOptions& options = {});

class Task;

// sample_mcmc on the posterior log p(θ) + log p(x_o | θ) of a task built from a kernel
// (Task::kernel(): gaussian_linear(_uniform), two_moons, slcp, gaussian_mixture), with the
// chains advanced one at a time rather than in lock-step: in parallel on the CPU (OpenMP, one
// chain per iteration of the loop) or on a CUDA device, one GPU thread per chain, which makes
// thousands of chains cheap. Slice and mh only (ValueError for hmc); options and result as
// sample_mcmc's, initialised from the task's prior as options.init says.
//
// On the CPU the result equals, bit for bit, sample_mcmc on the same posterior with
// Proposal::from_prior(task.prior()) — the same transitions, draws and adaptation — for any
// thread count. On the GPU the same, to the rounding of CUDA's libm (chains whose accept
// decision a last-bit difference flips then go their own way, from the same distribution).
// ValueError for a task without a kernel or an x_o of the wrong length; DeviceError for cuda in
// a build without CUDA or without a device.
McmcResult sample_task_posterior(const Task& task, std::span<const double> x_o, std::int64_t n,
                                 const McmcOptions& options = {},
                                 core::Device device = core::Device::cpu);

// Rejection sampling with envelope M·q: accept θ ~ q with probability π(θ) / (M q(θ)),
// log M = log_bound (π normalised or not; log π − log q ≤ log_bound must hold: a draw above the
// bound is a ValueError naming both values, since the samples would be wrong). Stops with
// ValueError naming the acceptance rate after max_draws proposals.
Tensor rejection_sample(const LogDensity& target, const Proposal& proposal, double log_bound,
                        std::int64_t n, core::Rng& rng, std::int64_t max_draws = 100'000'000);

// Sampling-importance-resampling: for each of the n draws, `oversampling` proposals weighted by
// π / q and one picked by its weight (ValueError when all of them have zero weight).
Tensor importance_resample(const LogDensity& target, const Proposal& proposal, std::int64_t n,
                           core::Rng& rng, int oversampling = 32);

// Diagnostics of chains [C, T, D] (float64), one value per dimension, NaN when T < 4 or a
// dimension is constant. split_r_hat: each chain split in halves, values rank-normalised over
// all chains, R-hat the larger of the bulk and the folded (tail) one (Vehtari, Gelman, Simpson,
// Carpenter & Bürkner 2021, eq. 4 and §4.2). effective_sample_size: bulk ESS of the same
// rank-normalised split chains, the autocorrelation combined over chains (ibid. eq. 10) and
// truncated by Geyer's (1992) initial monotone sequence, at most S·log10(S) for S draws.
std::vector<double> split_r_hat(const Tensor& chains);
std::vector<double> effective_sample_size(const Tensor& chains);

}  // namespace asbi::sbi
