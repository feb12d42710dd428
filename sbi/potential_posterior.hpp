#pragma once
// The posterior of NLE and NRE: an unnormalised potential
//
//   log p(θ | x_o) = t(θ, x_o) + log p(θ) + const,
//
// with t the network term, log q(x_o | θ) of a likelihood flow (NLE; Papamakarios et al. 2019)
// or the classifier's logit log r(θ, x_o) (NRE; Hermans et al. 2020, Durkan et al. 2020, Miller
// et al. 2022), sampled by MCMC (sbi/mcmc.hpp) with chains started from the prior.
//
//   auto posterior = estimator->posterior();                 // a PotentialPosterior
//   Tensor theta = posterior->sample(10000, x_o, /*seed=*/1);
//   McmcResult r = posterior->last_sampling();              // R-hat, ESS, acceptance
//   // PotentialPosterior::potential(x_o): the same target as a LogDensity, for other samplers
//
// Evaluation: the network sees whole batches of chains in float32, under ad::NoGrad, inside an
// arena scope, with its input buffers kept between calls (the steady state of a chain step
// allocates nothing beyond the arena). Rows outside the prior's support get -inf without the
// network being evaluated there. The gradient (for HMC) comes from the tape: θ enters as a
// parameter, the summed network term is differentiated, and the prior's analytic gradient is
// added (Prior::log_prob_gradient_row).
//
// Devices: the chains stay on the host (sbi/mcmc.hpp); the network sits on its module's device
// (EstimatorOptions::device) and is sent each evaluation's batch of chains: θ in and the values
// (and gradients) out, one transfer each per call.
//
// Thread safety: one sample() / log_prob() at a time per posterior (the evaluation buffers, the
// network's parameter gradients and last_sampling() are shared state).
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "autodiff/var.hpp"
#include "nn/module.hpp"
#include "sbi/mcmc.hpp"
#include "sbi/posterior.hpp"
#include "sbi/prior.hpp"

namespace asbi::sbi {

// The network term t(θ, x) of a potential. Implemented by NLE's flow and NRE's classifier.
class PotentialNetwork {
 public:
  virtual ~PotentialNetwork() = default;
  virtual std::int64_t theta_dim() const = 0;
  virtual std::int64_t x_dim() const = 0;
  // t for the rows of theta [B, D] and x [B, X] (float32; theta may need a gradient) → [B].
  virtual ad::Var term(const ad::Var& theta, const ad::Var& x) const = 0;
  // The module owning the parameters (its gradients are cleared after a gradient evaluation).
  virtual nn::Module& module() = 0;
};

class PotentialPosterior : public Posterior {
 public:
  // `method` names the estimator in error messages ("nle", "nre_b", …).
  PotentialPosterior(std::shared_ptr<const Prior> prior, std::shared_ptr<PotentialNetwork> network,
                     McmcOptions mcmc, std::string method);

  std::int64_t theta_dim() const override { return prior_->dim(); }
  std::int64_t x_dim() const override { return network_->x_dim(); }
  // sample_mcmc over potential_density(x_o), options.mcmc with options.mcmc.seed = seed, chains
  // initialised from the prior (Proposal::from_prior, by SIR by default).
  Tensor sample(std::int64_t n, std::span<const double> x_o, std::uint64_t seed) const override;
  std::vector<double> log_prob(const Tensor& theta, std::span<const double> x_o) const override;
  bool normalized() const override { return false; }
  McmcResult last_sampling() const override { return last_; }

  // The potential at x_o as a LogDensity (any sampler); it shares this posterior's network.
  std::unique_ptr<LogDensity> potential(std::span<const double> x_o) const;
  const McmcOptions& mcmc_options() const { return mcmc_; }

 private:
  std::shared_ptr<const Prior> prior_;
  std::shared_ptr<PotentialNetwork> network_;
  McmcOptions mcmc_;
  std::string method_;
  mutable McmcResult last_;
};

}  // namespace asbi::sbi
