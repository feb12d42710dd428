#pragma once
// What every trained estimator hands back: a posterior p(θ | x) that can be sampled and scored for
// any observation x_o, with no retraining (amortisation).
//
//   std::shared_ptr<sbi::Posterior> post = estimator->posterior();
//   Tensor theta = post->sample(10000, x_o, /*seed=*/1);     // [10000, D] float64
//   std::vector<double> lp = post->log_prob(theta, x_o);     // per row
//
// NPE's posterior is a flow evaluated directly (normalised, with leakage outside a bounded prior's
// support removed by rejection); NLE's and NRE's are potentials log p(x_o | θ) + log p(θ) (up to
// a constant) sampled by MCMC.
#include <cstdint>
#include <span>
#include <vector>

#include "core/tensor.hpp"
#include "sbi/mcmc.hpp"

namespace asbi::sbi {

class Posterior {
 public:
  virtual ~Posterior() = default;
  virtual std::int64_t theta_dim() const = 0;
  virtual std::int64_t x_dim() const = 0;

  // n draws [n, theta_dim] float64 from p(θ | x_o), x_o of x_dim values. Same seed and thread
  // count, same draws. Throws ValueError for a wrong-sized or non-finite x_o.
  virtual Tensor sample(std::int64_t n, std::span<const double> x_o, std::uint64_t seed) const = 0;
  // log p(θ | x_o) of each row of theta [n, theta_dim]: normalised when normalized() (NPE), else
  // up to an additive constant (NLE, NRE). -inf outside the prior's support.
  virtual std::vector<double> log_prob(const Tensor& theta, std::span<const double> x_o) const = 0;
  virtual bool normalized() const = 0;

  // The sampler's report of the last sample() call: MCMC diagnostics for NLE/NRE, acceptance of
  // the support rejection for NPE (r_hat/ess empty then).
  virtual McmcResult last_sampling() const { return {}; }
};

// Throws ValueError naming `who` unless x_o has x_dim finite values.
void check_observation(const char* who, std::span<const double> x_o, std::int64_t x_dim);

}  // namespace asbi::sbi
