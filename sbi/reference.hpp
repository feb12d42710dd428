#pragma once
// Reference posteriors from a task's exact likelihood: log p(θ) + log p(x_o | θ) sampled by MCMC
// (what `asbi reference` runs, and how sbibm made its reference samples for most tasks).
//
//   auto task = sbi::make_task("slcp");
//   sbi::TaskPosteriorDensity target(*task, x_o);
//   sbi::McmcResult r = sbi::reference_posterior(*task, x_o, 10000, {.seed = 1});
#include <cstdint>
#include <span>
#include <vector>

#include "sbi/mcmc.hpp"
#include "sbi/task.hpp"

namespace asbi::sbi {

// log p(θ) + log p(x_o | θ) of a task with a likelihood; -inf outside the prior's support. Throws
// StateError naming the task when it has no likelihood, ValueError for a wrong-sized x_o.
class TaskPosteriorDensity : public LogDensity {
 public:
  TaskPosteriorDensity(const Task& task, std::span<const double> x_o);
  std::int64_t dim() const override { return task_.theta_dim(); }
  void evaluate(const Tensor& theta, std::span<double> out) const override;

 private:
  const Task& task_;
  std::vector<double> x_o_;
};

// n posterior draws for observation x_o by MCMC (options.sampler, chains initialised by SIR from
// the prior), with the chains' diagnostics.
McmcResult reference_posterior(const Task& task, std::span<const double> x_o, std::int64_t n,
                               const McmcOptions& options = {});

}  // namespace asbi::sbi
