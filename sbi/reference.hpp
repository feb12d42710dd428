#pragma once
// Reference posteriors from a task's exact likelihood: log p(θ) + log p(x_o | θ) sampled by MCMC
// (what `asbi reference` runs, and how sbibm made its reference samples for most tasks).
//
//   auto task = sbi::make_task("slcp");
//   sbi::TaskPosteriorDensity target(*task, x_o);
//   sbi::McmcResult r = sbi::reference_posterior(*task, x_o, 10000);  // reference_mcmc_options()
//
// Accuracy of the defaults (slice, SIR starts): C2ST against sbibm's shipped reference samples,
// measured by the DISABLED_ test ReferenceAcceptance in tests/sbi/test_mcmc.cpp.
#include <cstdint>
#include <span>
#include <vector>

#include "sbi/mcmc.hpp"
#include "sbi/task.hpp"

namespace asbi::sbi {

// log p(θ) + log p(x_o | θ) of a task with a likelihood; -inf outside the prior's support (the
// likelihood is not called there). Rows run in parallel (OpenMP) once a batch costs enough to
// be worth it. Throws StateError naming the task when it has no likelihood, ValueError for a
// wrong-sized x_o.
class TaskPosteriorDensity : public LogDensity {
 public:
  TaskPosteriorDensity(const Task& task, std::span<const double> x_o);
  std::int64_t dim() const override { return task_.theta_dim(); }
  void evaluate(const Tensor& theta, std::span<double> out) const override;

 private:
  const Task& task_;
  std::vector<double> x_o_;
  // Cheapest measured cost of one row on a serial batch, deciding whether a batch is worth
  // OpenMP threads (never changes the values). Written by evaluate, which the LogDensity
  // contract calls from one thread at a time.
  mutable double min_seconds_per_row_ = 0;
  mutable bool measured_ = false;
};

// The defaults for reference posteriors: slice sampling, 1000 chains started by SIR from 1000
// prior draws each, 100 warm-up sweeps, thin 5 (10 000 samples: 10 kept states per chain).
// Why so many chains: chains of a multimodal posterior (two_moons' two crescents, slcp's four
// mirror modes) never cross between modes, so the mode weights are those of the SIR starts, in
// steps of 1/chains; with 100 chains that error alone gave C2ST 0.535 on two_moons observation 2,
// with 1000 all 15 acceptance cases stay ≤ 0.515. Split R-hat is then well above 1.1 by design
// (the chains disagree about the mode) and says nothing about the samples' quality there.
McmcOptions reference_mcmc_options(std::uint64_t seed = 0);

// n posterior draws for observation x_o by MCMC (options.sampler, chains initialised from the
// prior as options.init says), with the chains' diagnostics.
McmcResult reference_posterior(const Task& task, std::span<const double> x_o, std::int64_t n,
                               const McmcOptions& options = reference_mcmc_options());

}  // namespace asbi::sbi
