#pragma once
// Set tasks: the observation is a set of N exchangeable elements x_1…x_N, i.i.d. given all
// parameters — the targets that inference is about, then nuisance factors shared by the whole
// set — with the exact likelihood and reference posteriors of the targets. Definitions, costs and
// the observation convention: docs/set_tasks.md.
//
//   std::unique_ptr<sbi::SetTask> task = sbi::make_set_task("mixture_nuisance");
//   core::Rng rng(seed, /*stream=*/0);
//   std::vector<double> theta(2);
//   task->prior().sample_row(rng, theta);                        // (θ, w): target, then nuisance
//   Tensor set = task->simulate_set(theta, /*n=*/1000, seed, /*set_id=*/7);  // [1000, 1] float32
//
//   sbi::SetObservation obs = sbi::set_observation(*task, /*k=*/101, /*n=*/1000);
//   sbi::SetReference ref = sbi::set_reference_posterior(*task, obs.set, 10000, /*seed=*/1);
//   // ref.samples [10000, 1] float64: posterior draws of θ with w integrated out
//
// Reproducibility: element i of a set depends only on (seed, set_id, i) (Philox streams keyed by
// set_id, counters by i), so a set simulated in pieces, on any number of threads, equals the
// set simulated at once, bit for bit, and the first n elements of a larger set are the set of
// size n.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/rng.hpp"
#include "core/tensor.hpp"
#include "sbi/mcmc.hpp"
#include "sbi/prior.hpp"

namespace asbi::sbi {

// Student's t with ν degrees of freedom, location m and scale s, in one dimension:
//   log p(θ) = log Γ((ν+1)/2) − log Γ(ν/2) − ½ log(νπ) − log s − (ν+1)/2 · log(1 + z²/ν),
//   z = (θ − m)/s; drawn as m + s · Z / √(2G/ν), Z ~ N(0, 1), G ~ Gamma(ν/2, 1).
class StudentT : public Prior {
 public:
  StudentT(double dof, double loc, double scale);  // ValueError unless dof, scale > 0, all finite
  std::int64_t dim() const override { return 1; }
  void sample_row(core::Rng& rng, std::span<double> out) const override;
  double log_prob_row(std::span<const double> theta) const override;
  bool has_log_prob_gradient() const override { return true; }
  // ∂ log p / ∂θ = −(ν+1) z / (s (ν + z²))
  void log_prob_gradient_row(std::span<const double> theta, std::span<double> grad) const override;
  double dof() const { return dof_; }
  double loc() const { return loc_; }
  double scale() const { return scale_; }

 private:
  double dof_, loc_, scale_;
  double log_norm_;  // log Γ((ν+1)/2) − log Γ(ν/2) − ½ log(νπ) − log s
};

// Normal–inverse-gamma over (μ, σ²): σ² ~ Inv-Gamma(α, β) (shape α, scale β, density
// β^α / Γ(α) · (σ²)^{−α−1} e^{−β/σ²}), μ | σ² ~ N(m, σ²/κ). Support σ² > 0. The conjugate prior
// of a normal with unknown mean and variance: see posterior().
class NormalInverseGamma : public Prior {
 public:
  // ValueError unless kappa, shape, scale > 0, all finite.
  NormalInverseGamma(double mean, double kappa, double shape, double scale);
  std::int64_t dim() const override { return 2; }
  void sample_row(core::Rng& rng, std::span<double> out) const override;  // σ² first, then μ | σ²
  double log_prob_row(std::span<const double> theta) const override;      // θ = (μ, σ²)
  bool has_log_prob_gradient() const override { return true; }
  // ∂/∂μ = −κ(μ − m)/σ², ∂/∂σ² = −(α + 3/2)/σ² + (β + κ(μ − m)²/2)/σ⁴.
  void log_prob_gradient_row(std::span<const double> theta, std::span<double> grad) const override;
  // The marginal of μ: ∫ N(μ; m, σ²/κ) IG(σ²; α, β) dσ² = t_{2α}(m, √(β / (α κ))).
  StudentT marginal_mean() const;
  // The posterior after x_1…x_N ~ N(μ, σ²) i.i.d., from N, x̄ and Σ(x_i − x̄)² (derivation in
  // set_task.cpp). ValueError unless n ≥ 1 and the sum of squares is finite and ≥ 0.
  NormalInverseGamma posterior(std::int64_t n, double sample_mean,
                               double centred_sum_of_squares) const;
  double mean() const { return mean_; }
  double kappa() const { return kappa_; }
  double shape() const { return shape_; }
  double scale() const { return scale_; }

 private:
  double mean_, kappa_, shape_, scale_;
  double log_norm_;  // α log β − log Γ(α) − ½ log 2π + ½ log κ
};

// log p(θ) + log p(x_1…x_N | θ) over all parameters for one observed set, its sufficient
// statistics (or the set itself) computed once at construction; -inf outside the prior's support,
// where the likelihood is never evaluated. Deterministic: the same θ rows give the same values
// whatever the thread count or the rows evaluated before.
class SetPosteriorDensity : public LogDensity {
 public:
  std::int64_t dim() const override { return prior_->dim(); }
  // theta [k, parameter_dim] float64 (float32 is converted) → out[k].
  void evaluate(const Tensor& theta, std::span<double> out) const override;
  std::int64_t set_size() const { return set_size_; }
  // Likelihood computations so far: rows inside the support, less those a task served from a
  // cache (gp_replicates computes its factorisation once per distinct lengthscale).
  std::int64_t likelihood_evaluations() const { return likelihood_evaluations_; }

 protected:
  SetPosteriorDensity(std::shared_ptr<const Prior> prior, std::string task_name,
                      std::int64_t set_size);
  // Adds log p(x_1…x_N | θ_i) to out[i] for every row i of theta [k, P] whose out[i] (the log
  // prior) is finite; returns the number of likelihood computations done.
  virtual std::int64_t add_log_likelihood(const double* theta, std::int64_t k,
                                          std::span<double> out) const = 0;

 private:
  std::shared_ptr<const Prior> prior_;
  std::string task_name_;
  std::int64_t set_size_;
  mutable std::int64_t likelihood_evaluations_ = 0;  // evaluate runs on one thread at a time
};

class SetTask {
 public:
  // The elements of one set with all parameters fixed. Element i depends only on
  // (seed, set_id, i), so any split of [0, N) into ranges gives the same elements bit for bit.
  // Construction does the per-set work (gp_replicates' Cholesky factor); elements() is const and
  // safe to call from several threads at once.
  class ElementSampler {
   public:
    explicit ElementSampler(std::int64_t element_dim) : element_dim_(element_dim) {}
    virtual ~ElementSampler() = default;
    // Elements [begin, end) into out, (end − begin) × element_dim values, row-major. ValueError
    // unless 0 ≤ begin ≤ end, ShapeError for a wrong-sized out.
    void elements(std::int64_t begin, std::int64_t end, std::span<float> out) const;
    std::int64_t element_dim() const { return element_dim_; }

   protected:
    virtual void fill(std::int64_t begin, std::int64_t end, std::span<float> out) const = 0;

   private:
    std::int64_t element_dim_;
  };

  virtual ~SetTask() = default;

  const std::string& name() const { return name_; }
  // All parameters, targets first, then nuisances.
  const Prior& prior() const { return *prior_; }
  std::shared_ptr<const Prior> shared_prior() const { return prior_; }
  // The marginal prior of the target columns (what NPE trains over).
  std::shared_ptr<const Prior> target_prior() const { return target_prior_; }
  std::int64_t parameter_dim() const { return prior_->dim(); }
  std::int64_t target_dim() const { return target_prior_->dim(); }
  std::int64_t element_dim() const { return element_dim_; }
  const std::vector<std::string>& parameter_names() const { return parameter_names_; }

  // ValueError for a θ of the wrong length, set_id ≥ 2³², or a θ where the model is undefined
  // (a variance or lengthscale ≤ 0, a weight outside [0, 1]); θ outside the prior's support but
  // inside the model's domain is simulated.
  std::unique_ptr<const ElementSampler> sampler(std::span<const double> theta, std::uint64_t seed,
                                                std::uint64_t set_id) const;
  // n ≥ 1 elements [n, element_dim] float32, ranges of elements simulated in parallel (OpenMP).
  Tensor simulate_set(std::span<const double> theta, std::int64_t n, std::uint64_t seed,
                      std::uint64_t set_id) const;
  // B sets of n ≥ 1 elements at once, [B, n, element_dim] float32 on θ's device: set b is
  // simulate_set(θ row b, n, seed, first_set_id + b). theta [B, parameter_dim], float32 or
  // float64. On a CUDA device one GPU thread per element draws the same numbers from the same
  // counters as the CPU (gaussian_nuisance and mixture_nuisance; DeviceError for the others).
  Tensor simulate_sets(const Tensor& theta, std::int64_t n, std::uint64_t seed,
                       std::uint64_t first_set_id) const;
  // The posterior density of all parameters given a set [N ≥ 1, element_dim] (float32 or
  // float64, finite). ShapeError naming element_dim for a wrong width, ValueError for an empty
  // set or a non-finite value.
  std::unique_ptr<SetPosteriorDensity> posterior_density(const Tensor& set) const;

  // The MCMC settings of set_reference_posterior for this task (docs/set_tasks.md).
  virtual McmcOptions reference_mcmc_options(std::uint64_t seed) const;
  // The coordinates u the reference MCMC runs in. Slice sampling moves one coordinate at a time
  // and crawls along a ridge that a change of coordinates can straighten: gp_replicates samples
  // u = (ℓ, σ²/ℓ), whose posterior correlation is about −0.3 where (ℓ, σ²) reach 0.97
  // (set_task_gp.cpp). Default: u = θ.
  virtual void mcmc_coordinates(std::span<const double> theta, std::span<double> u) const;
  // θ from u; returns log |det ∂θ/∂u|, which the density of u adds to that of θ.
  virtual double parameters_from_mcmc_coordinates(std::span<const double> u,
                                                  std::span<double> theta) const;
  // Exact draws of the target columns given a checked set, for tasks whose posterior has a
  // closed form ([n, target_dim] float64); an undefined Tensor for the others.
  virtual Tensor exact_target_posterior(const Tensor& set, std::int64_t n, core::Rng& rng) const;

 protected:
  SetTask(std::string name, std::vector<std::string> parameter_names, std::int64_t element_dim,
          std::shared_ptr<const Prior> prior, std::shared_ptr<const Prior> target_prior);
  // θ has parameter_dim values; ValueError where the model is undefined.
  virtual std::unique_ptr<const ElementSampler> make_sampler(std::span<const double> theta,
                                                             std::uint64_t seed,
                                                             std::uint64_t set_id) const = 0;
  // set: checked, [N ≥ 1, element_dim] float64 on the CPU.
  virtual std::unique_ptr<SetPosteriorDensity> make_posterior_density(const Tensor& set) const = 0;
  // simulate_sets for θ on a CUDA device (checked: shapes, set ids and θ values); out
  // [B, n, element_dim] float32 there. The default throws DeviceError: no GPU kernel.
  virtual void simulate_sets_on_device(const Tensor& theta, std::int64_t n, std::uint64_t seed,
                                       std::uint64_t first_set_id, Tensor& out) const;

 private:
  std::string name_;
  std::vector<std::string> parameter_names_;
  std::int64_t element_dim_;
  std::shared_ptr<const Prior> prior_, target_prior_;
};

// The Philox stream of one purpose for one set: "SET" in ASCII (bits 40–63), the purpose byte
// (bits 32–39), set_id (bits 0–31), far from the small ids of priors, simulators and MCMC chains.
// Purposes: 1 element noise, 2 mixture components, 3 observation parameters, 4 exact reference
// draws. ValueError when set_id ≥ 2³².
enum class SetStream : std::uint64_t { noise = 1, component = 2, observation = 3, reference = 4 };
std::uint64_t set_stream(SetStream purpose, std::uint64_t set_id);

// gaussian_nuisance, mixture_nuisance, gp_replicates.
std::vector<std::string> set_task_names();
// ValueError listing the known names when `name` is not one of them.
std::unique_ptr<SetTask> make_set_task(const std::string& name);

// Observation k ≥ 1 of a task at size n ≥ 1: θ* drawn from the prior on a Philox stream keyed by
// (task, k), then the set simulated with set_id k. θ* does not depend on n, and the set at size n
// is the first n elements of the set at any larger size. Observations 1–100 are for development
// and tests; benchmarks evaluate k = 101…110, used nowhere in development.
struct SetObservation {
  std::vector<double> theta;  // all parameters, targets first
  Tensor set;                 // [n, element_dim] float32
};
SetObservation set_observation(const SetTask& task, int k, std::int64_t n);

struct SetReference {
  Tensor samples;      // [num_samples, target_dim] float64
  bool exact = false;  // true: independent draws from the closed-form posterior
  // MCMC only (empty / 0 for exact draws), one value per MCMC coordinate:
  std::vector<double> r_hat;                // split R-hat
  std::vector<double> ess;                  // bulk effective sample size of all chains
  std::int64_t density_rows = 0;            // rows handed to the posterior density
  std::int64_t likelihood_evaluations = 0;  // of which computed (not served from a cache)
  double seconds = 0;
};

// Reference draws of the targets given an observed set [N, element_dim]: exact draws where the
// task has a closed form (gaussian_nuisance), otherwise set_mcmc_posterior with
// task.reference_mcmc_options(seed).
SetReference set_reference_posterior(const SetTask& task, const Tensor& set,
                                     std::int64_t num_samples, std::uint64_t seed);
// MCMC on task.posterior_density(set) (all parameters), in the task's mcmc_coordinates, chains
// initialised from the prior as options.init says, keeping the target columns. r_hat and ess
// are those of the MCMC coordinates (the parameters themselves unless the task changes them).
SetReference set_mcmc_posterior(const SetTask& task, const Tensor& set, std::int64_t num_samples,
                                const McmcOptions& options);

// gaussian_nuisance: the analytic marginal log posterior density of μ given a set [N, 1]
// (Student-t, see NormalInverseGamma::posterior).
double gaussian_nuisance_log_posterior(double mu, const Tensor& set);

}  // namespace asbi::sbi
