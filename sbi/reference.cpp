// Reference posteriors from a task's exact likelihood. See sbi/reference.hpp.
#include "sbi/reference.hpp"

#include <chrono>
#include <cmath>
#include <exception>
#include <limits>

#include "core/error.hpp"

namespace asbi::sbi {

TaskPosteriorDensity::TaskPosteriorDensity(const Task& task, std::span<const double> x_o)
    : task_(task), x_o_(x_o.begin(), x_o.end()) {
  if (!task.has_likelihood())
    throw core::StateError(core::str("TaskPosteriorDensity: task ", task.name(),
                                     " has no likelihood; a reference posterior by MCMC needs one"));
  if (static_cast<std::int64_t>(x_o.size()) != task.x_dim())
    throw core::ValueError(core::str("TaskPosteriorDensity: x_o of task ", task.name(), " has ",
                                     x_o.size(), " values; expected x_dim = ", task.x_dim()));
}

void TaskPosteriorDensity::evaluate(const Tensor& theta, std::span<double> out) const {
  const std::int64_t d = dim();
  if (theta.rank() != 2 || theta.dim(1) != d)
    throw core::ShapeError(core::str("TaskPosteriorDensity(", task_.name(),
                                     ")::evaluate: expected theta [n, ", d, "], got ",
                                     theta.shape()));
  const std::int64_t n = theta.dim(0);
  if (static_cast<std::int64_t>(out.size()) != n)
    throw core::ShapeError(core::str("TaskPosteriorDensity(", task_.name(),
                                     ")::evaluate: out has ", out.size(), " values for ", n,
                                     " rows"));
  const Tensor values = theta.dtype() == DType::f64 ? theta : theta.to(DType::f64);
  const double* p = values.data<double>();
  const Prior& prior = task_.prior();
  const std::span<const double> x_o(x_o_);
  std::exception_ptr error;
  // Rows are independent, so the values are the same whether the loop runs on one thread or
  // many. Threads pay off only for costly likelihoods (ODE tasks: milliseconds per row): for a
  // closed-form one (tens of ns per row) a parallel region per batch costs more than the batch,
  // and far more on a loaded machine, where a descheduled thread stalls the barrier. So a batch
  // runs in parallel only when its cost, from the cheapest time per likelihood call measured on
  // serial batches (the minimum ignores batches slowed by preemption), exceeds kParallelSeconds.
  constexpr double kParallelSeconds = 1e-3;
  const bool parallel =
      n > 1 && min_seconds_per_row_ * static_cast<double>(n) > kParallelSeconds;
  const auto start = std::chrono::steady_clock::now();
  std::int64_t likelihood_calls = 0;
#pragma omp parallel for schedule(dynamic, 4) if (parallel) reduction(+ : likelihood_calls)
  for (std::int64_t i = 0; i < n; ++i) {
    try {
      const std::span<const double> row(p + i * d, static_cast<std::size_t>(d));
      const double log_prior = prior.log_prob_row(row);
      // Outside the prior's support the likelihood is never called (it may be undefined there).
      if (std::isfinite(log_prior)) {
        out[static_cast<std::size_t>(i)] = log_prior + task_.log_likelihood(row, x_o);
        ++likelihood_calls;
      } else {
        out[static_cast<std::size_t>(i)] = -std::numeric_limits<double>::infinity();
      }
    } catch (...) {
#pragma omp critical(asbi_sbi_reference_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
  if (!parallel && likelihood_calls > 0) {
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double per_row = seconds / static_cast<double>(likelihood_calls);
    if (!measured_ || per_row < min_seconds_per_row_) min_seconds_per_row_ = per_row;
    measured_ = true;
  }
}

McmcOptions reference_mcmc_options(std::uint64_t seed) {
  McmcOptions o;
  o.sampler = SamplerKind::slice;
  o.chains = 1000;
  o.warmup = 100;
  o.thin = 5;
  o.seed = seed;
  o.init = ChainInit::sir;
  o.init_candidates = 1000;
  return o;
}

McmcResult reference_posterior(const Task& task, std::span<const double> x_o, std::int64_t n,
                               const McmcOptions& options) {
  const TaskPosteriorDensity target(task, x_o);
  return sample_mcmc(target, Proposal::from_prior(task.prior()), n, options);
}

}  // namespace asbi::sbi
