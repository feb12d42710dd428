// Set tasks: the framework (checks, parallel simulation, observations, references) and the two
// scalar tasks, gaussian_nuisance and mixture_nuisance. gp_replicates is in set_task_gp.cpp.
// See sbi/set_task.hpp and docs/set_tasks.md.
#include "sbi/set_task.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <limits>
#include <numbers>

#include "core/error.hpp"
#include "sbi/cuda/gpu.hpp"
#include "sbi/reference.hpp"
#include "sbi/task_kernels.hpp"

namespace asbi::sbi {

std::unique_ptr<SetTask> make_gp_replicates_task();  // set_task_gp.cpp

namespace {

using core::str;

constexpr double kNegInf = -std::numeric_limits<double>::infinity();
const double kLog2Pi = std::log(2.0 * std::numbers::pi);

bool finite_positive(double v) { return std::isfinite(v) && v > 0; }

// A set as [N, element_dim] float64 on the CPU, after the checks SetTask::posterior_density
// documents; `who` and the task's name start every message.
Tensor checked_set(const char* who, const std::string& task, std::int64_t element_dim,
                   const Tensor& set) {
  if (!set.defined() || set.rank() != 2)
    throw core::ShapeError(str(who, " (", task,
                               "): expected the set as [N, element_dim = ", element_dim, "], got ",
                               set.defined() ? set.shape() : core::Shape{}));
  if (set.dim(1) != element_dim)
    throw core::ShapeError(str(who, " (", task, "): the set has elements of width ", set.dim(1),
                               "; expected element_dim = ", element_dim));
  if (set.dim(0) < 1)
    throw core::ValueError(str(who, " (", task, "): the set is empty; expected N ≥ 1 elements"));
  const Tensor values = set.to(core::Device::cpu).to(DType::f64);
  const double* p = values.data<double>();
  for (std::int64_t i = 0; i < values.numel(); ++i)
    if (!std::isfinite(p[i]))
      throw core::ValueError(str(who, " (", task, "): the set holds ", p[i], " at element ",
                                 i / element_dim, "; expected finite values"));
  return values;
}

// N, x̄ and Σ(x_i − x̄)² of a set [N, 1] (float64, checked), in two passes.
struct ScalarSummary {
  std::int64_t n;
  double mean;
  double centred_sum_of_squares;
};

ScalarSummary summarise(const Tensor& set) {
  const double* x = set.data<double>();
  const std::int64_t n = set.dim(0);
  double sum = 0;
  for (std::int64_t i = 0; i < n; ++i) sum += x[i];
  const double mean = sum / static_cast<double>(n);
  double ss = 0;
  for (std::int64_t i = 0; i < n; ++i) ss += (x[i] - mean) * (x[i] - mean);
  return {n, mean, ss};
}

// FNV-1a (64-bit) of the task's name: the seed of its observations.
std::uint64_t observation_seed(const std::string& task) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (const char c : task) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

// The GPU kernel of a scalar set task, or DeviceError in a build without CUDA.
void simulate_scalar_sets_on_device([[maybe_unused]] gpu::ScalarSetTask task,
                                    [[maybe_unused]] const Tensor& theta,
                                    [[maybe_unused]] std::int64_t n,
                                    [[maybe_unused]] std::uint64_t seed,
                                    [[maybe_unused]] std::uint64_t first_set_id,
                                    [[maybe_unused]] Tensor& out) {
#if defined(ASBI_SBI_CUDA)
  gpu::simulate_scalar_sets(task, theta, n, seed, first_set_id, out);
#else
  throw gpu::gpu_unavailable("SetTask::simulate_sets");
#endif
}

// ---- gaussian_nuisance ------------------------------------------------------------------------
// σ² ~ Inv-Gamma(3, 2), μ | σ² ~ N(0, σ²), x_i ~ N(μ, σ²): the prior is NormalInverseGamma(0, 1,
// 3, 2), (N, x̄, Σ(x − x̄)²) is sufficient, and the posterior is normal–inverse-gamma again.

class GaussianElements : public SetTask::ElementSampler {
 public:
  GaussianElements(double mu, double sigma2, std::uint64_t seed, std::uint64_t set_id)
      : ElementSampler(1),
        mu_(mu),
        sd_(std::sqrt(sigma2)),
        seed_(seed),
        noise_stream_(set_stream(SetStream::noise, set_id)) {}

 protected:
  // x_i = μ + σ z_i, z_i the normal at counter position i of the set's noise stream.
  void fill(std::int64_t begin, std::int64_t end, std::span<float> out) const override {
    std::vector<double> z(static_cast<std::size_t>(end - begin));
    core::fill_normal(seed_, noise_stream_, static_cast<std::uint64_t>(begin), std::span(z));
    for (std::size_t i = 0; i < z.size(); ++i)
      out[i] = kernels::gaussian_nuisance_element(mu_, sd_, z[i]);
  }

 private:
  double mu_, sd_;
  std::uint64_t seed_, noise_stream_;
};

class GaussianPosteriorDensity : public SetPosteriorDensity {
 public:
  GaussianPosteriorDensity(std::shared_ptr<const Prior> prior, const std::string& task,
                           const Tensor& set)
      : SetPosteriorDensity(std::move(prior), task, set.dim(0)), summary_(summarise(set)) {}

 protected:
  // Σ log N(x_i; μ, σ²) = −(N/2) log(2πσ²) − (Σ(x − x̄)² + N (x̄ − μ)²) / (2σ²).
  std::int64_t add_log_likelihood(const double* theta, std::int64_t k,
                                  std::span<double> out) const override {
    const auto n = static_cast<double>(summary_.n);
    std::int64_t computed = 0;
    for (std::int64_t i = 0; i < k; ++i) {
      double& o = out[static_cast<std::size_t>(i)];
      if (o == kNegInf) continue;
      const double mu = theta[2 * i], sigma2 = theta[2 * i + 1];
      const double d = summary_.mean - mu;
      o += -0.5 * n * (kLog2Pi + std::log(sigma2)) -
           (summary_.centred_sum_of_squares + n * d * d) / (2 * sigma2);
      ++computed;
    }
    return computed;
  }

 private:
  ScalarSummary summary_;
};

class GaussianNuisanceTask : public SetTask {
 public:
  GaussianNuisanceTask()
      : SetTask("gaussian_nuisance", {"mu", "sigma2"}, 1, prior_of_model(),
                std::make_shared<StudentT>(prior_of_model()->marginal_mean())) {}

  Tensor exact_target_posterior(const Tensor& set, std::int64_t n, core::Rng& rng) const override {
    const ScalarSummary s = summarise(set);
    return prior_of_model()
        ->posterior(s.n, s.mean, s.centred_sum_of_squares)
        .marginal_mean()
        .sample(n, rng);
  }

  static std::shared_ptr<const NormalInverseGamma> prior_of_model() {
    static const auto prior = std::make_shared<const NormalInverseGamma>(0.0, 1.0, 3.0, 2.0);
    return prior;
  }

 protected:
  std::unique_ptr<const ElementSampler> make_sampler(std::span<const double> theta,
                                                     std::uint64_t seed,
                                                     std::uint64_t set_id) const override {
    if (!std::isfinite(theta[0]) || !finite_positive(theta[1]))
      throw core::ValueError(str("gaussian_nuisance: expected a finite mu and sigma2 > 0, got (",
                                 theta[0], ", ", theta[1], ")"));
    return std::make_unique<GaussianElements>(theta[0], theta[1], seed, set_id);
  }

  void simulate_sets_on_device(const Tensor& theta, std::int64_t n, std::uint64_t seed,
                               std::uint64_t first_set_id, Tensor& out) const override {
    simulate_scalar_sets_on_device(gpu::ScalarSetTask::gaussian_nuisance, theta, n, seed,
                                   first_set_id, out);
  }

  std::unique_ptr<SetPosteriorDensity> make_posterior_density(const Tensor& set) const override {
    return std::make_unique<GaussianPosteriorDensity>(shared_prior(), name(), set);
  }
};

// ---- mixture_nuisance -------------------------------------------------------------------------
// θ ~ U(0, 3), w ~ U(0.1, 0.9), x_i ~ w N(θ, 1) + (1 − w) N(−θ, 1).

class MixtureElements : public SetTask::ElementSampler {
 public:
  MixtureElements(double theta, double w, std::uint64_t seed, std::uint64_t set_id)
      : ElementSampler(1),
        theta_(theta),
        w_(w),
        seed_(seed),
        noise_stream_(set_stream(SetStream::noise, set_id)),
        component_stream_(set_stream(SetStream::component, set_id)) {}

 protected:
  // x_i = ±θ + z_i, +θ when the uniform at position i of the component stream is below w.
  void fill(std::int64_t begin, std::int64_t end, std::span<float> out) const override {
    const auto count = static_cast<std::size_t>(end - begin);
    std::vector<double> z(count), u(count);
    core::fill_normal(seed_, noise_stream_, static_cast<std::uint64_t>(begin), std::span(z));
    core::fill_uniform(seed_, component_stream_, static_cast<std::uint64_t>(begin), std::span(u));
    for (std::size_t i = 0; i < count; ++i)
      out[i] = kernels::mixture_nuisance_element(theta_, w_, z[i], u[i]);
  }

 private:
  double theta_, w_;
  std::uint64_t seed_, noise_stream_, component_stream_;
};

class MixturePosteriorDensity : public SetPosteriorDensity {
 public:
  MixturePosteriorDensity(std::shared_ptr<const Prior> prior, const std::string& task,
                          const Tensor& set)
      : SetPosteriorDensity(std::move(prior), task, set.dim(0)), x_(set.to_vector()) {
    for (const double v : x_) sum_of_squares_ += v * v;
  }

 protected:
  // No finite sufficient statistic: every element enters every evaluation. With φ the standard
  // normal density, w φ(x − θ) + (1 − w) φ(x + θ) = φ(x) e^{−θ²/2} (w e^{xθ} + (1 − w) e^{−xθ}),
  // so log p = −N/2 log 2π − (Σx² + Nθ²)/2 + Σ logaddexp(log w + xθ, log(1 − w) − xθ): one
  // exp and one log1p per element.
  std::int64_t add_log_likelihood(const double* theta, std::int64_t k,
                                  std::span<double> out) const override {
    const auto n = static_cast<std::int64_t>(x_.size());
    // Rows are independent, so threads change no value; they pay off from about a millisecond of
    // work per batch (~10 ns per element and row).
    constexpr std::int64_t kParallelElementRows = 100'000;
    std::int64_t computed = 0;
#pragma omp parallel for schedule(static) if (k > 1 && k * n >= kParallelElementRows) \
    reduction(+ : computed)
    for (std::int64_t i = 0; i < k; ++i) {
      double& o = out[static_cast<std::size_t>(i)];
      if (o == kNegInf) continue;
      const double t = theta[2 * i], w = theta[2 * i + 1];
      const double log_w = std::log(w), log_1mw = std::log1p(-w);
      double mix = 0;
      for (const double x : x_) {
        const double a = log_w + x * t, b = log_1mw - x * t;
        mix += std::max(a, b) + std::log1p(std::exp(-std::abs(a - b)));
      }
      o += -0.5 * static_cast<double>(n) * kLog2Pi -
           0.5 * (sum_of_squares_ + static_cast<double>(n) * t * t) + mix;
      ++computed;
    }
    return computed;
  }

 private:
  std::vector<double> x_;
  double sum_of_squares_ = 0;
};

class MixtureNuisanceTask : public SetTask {
 public:
  MixtureNuisanceTask()
      : SetTask("mixture_nuisance", {"theta", "w"}, 1,
                std::make_shared<BoxUniform>(std::vector<double>{0.0, 0.1},
                                             std::vector<double>{3.0, 0.9}),
                std::make_shared<BoxUniform>(std::vector<double>{0.0}, std::vector<double>{3.0})) {}

 protected:
  std::unique_ptr<const ElementSampler> make_sampler(std::span<const double> theta,
                                                     std::uint64_t seed,
                                                     std::uint64_t set_id) const override {
    if (!std::isfinite(theta[0]) || !(theta[1] >= 0 && theta[1] <= 1))
      throw core::ValueError(str("mixture_nuisance: expected a finite theta and w in [0, 1], got (",
                                 theta[0], ", ", theta[1], ")"));
    return std::make_unique<MixtureElements>(theta[0], theta[1], seed, set_id);
  }

  void simulate_sets_on_device(const Tensor& theta, std::int64_t n, std::uint64_t seed,
                               std::uint64_t first_set_id, Tensor& out) const override {
    simulate_scalar_sets_on_device(gpu::ScalarSetTask::mixture_nuisance, theta, n, seed,
                                   first_set_id, out);
  }

  std::unique_ptr<SetPosteriorDensity> make_posterior_density(const Tensor& set) const override {
    return std::make_unique<MixturePosteriorDensity>(shared_prior(), name(), set);
  }
};

}  // namespace

// ---- distributions ----------------------------------------------------------------------------

StudentT::StudentT(double dof, double loc, double scale) : dof_(dof), loc_(loc), scale_(scale) {
  if (!finite_positive(dof) || !std::isfinite(loc) || !finite_positive(scale))
    throw core::ValueError(str("StudentT: expected finite dof > 0, loc and scale > 0, got dof ",
                               dof, ", loc ", loc, ", scale ", scale));
  // lgamma writes glibc's global signgam: called here, once, never from parallel log_prob calls.
  log_norm_ = std::lgamma(0.5 * (dof + 1)) - std::lgamma(0.5 * dof) -
              0.5 * std::log(dof * std::numbers::pi) - std::log(scale);
}

void StudentT::sample_row(core::Rng& rng, std::span<double> out) const {
  const double z = rng.normal();
  const double chi2 = 2 * rng.gamma(0.5 * dof_);
  out[0] = loc_ + scale_ * z / std::sqrt(chi2 / dof_);
}

double StudentT::log_prob_row(std::span<const double> theta) const {
  const double z = (theta[0] - loc_) / scale_;
  return log_norm_ - 0.5 * (dof_ + 1) * std::log1p(z * z / dof_);
}

void StudentT::log_prob_gradient_row(std::span<const double> theta, std::span<double> grad) const {
  const double z = (theta[0] - loc_) / scale_;
  grad[0] = -(dof_ + 1) * z / (scale_ * (dof_ + z * z));
}

NormalInverseGamma::NormalInverseGamma(double mean, double kappa, double shape, double scale)
    : mean_(mean), kappa_(kappa), shape_(shape), scale_(scale) {
  if (!std::isfinite(mean) || !finite_positive(kappa) || !finite_positive(shape) ||
      !finite_positive(scale))
    throw core::ValueError(str("NormalInverseGamma: expected a finite mean and kappa, shape, ",
                               "scale > 0, got mean ", mean, ", kappa ", kappa, ", shape ", shape,
                               ", scale ", scale));
  log_norm_ = shape * std::log(scale) - std::lgamma(shape) - 0.5 * kLog2Pi + 0.5 * std::log(kappa);
}

void NormalInverseGamma::sample_row(core::Rng& rng, std::span<double> out) const {
  // β / G with G ~ Gamma(α, 1) is Inv-Gamma(α, β).
  const double sigma2 = scale_ / rng.gamma(shape_);
  out[0] = mean_ + std::sqrt(sigma2 / kappa_) * rng.normal();
  out[1] = sigma2;
}

// log p(μ, σ²) = α log β − log Γ(α) − (α + 1) log σ² − β/σ²  (the inverse gamma)
//              − ½ log(2π σ²/κ) − κ (μ − m)² / (2σ²)         (μ given σ²)
double NormalInverseGamma::log_prob_row(std::span<const double> theta) const {
  const double mu = theta[0], sigma2 = theta[1];
  if (!(sigma2 > 0)) return kNegInf;
  const double d = mu - mean_;
  return log_norm_ - (shape_ + 1.5) * std::log(sigma2) - (scale_ + 0.5 * kappa_ * d * d) / sigma2;
}

void NormalInverseGamma::log_prob_gradient_row(std::span<const double> theta,
                                               std::span<double> grad) const {
  const double mu = theta[0], sigma2 = theta[1];
  if (!(sigma2 > 0)) {
    grad[0] = grad[1] = 0;
    return;
  }
  const double d = mu - mean_;
  grad[0] = -kappa_ * d / sigma2;
  grad[1] = -(shape_ + 1.5) / sigma2 + (scale_ + 0.5 * kappa_ * d * d) / (sigma2 * sigma2);
}

StudentT NormalInverseGamma::marginal_mean() const {
  return StudentT(2 * shape_, mean_, std::sqrt(scale_ / (shape_ * kappa_)));
}

// Conjugacy. With SS = Σ(x_i − x̄)², the likelihood is
//   (σ²)^{−N/2} exp(−[SS + N (x̄ − μ)²] / (2σ²)),
// and completing the square in μ,
//   κ (μ − m)² + N (x̄ − μ)² = κ_N (μ − m_N)² + κ N (x̄ − m)² / κ_N,
// so prior × likelihood is NIG(m_N, κ_N, α_N, β_N) with
//   κ_N = κ + N,  m_N = (κ m + N x̄) / κ_N,  α_N = α + N/2,
//   β_N = β + SS/2 + κ N (x̄ − m)² / (2 κ_N),
// and μ | x ~ t_{2α_N}(m_N, √(β_N / (α_N κ_N))) (marginal_mean).
NormalInverseGamma NormalInverseGamma::posterior(std::int64_t n, double sample_mean,
                                                 double centred_sum_of_squares) const {
  if (n < 1 || !std::isfinite(sample_mean) || !std::isfinite(centred_sum_of_squares) ||
      centred_sum_of_squares < 0)
    throw core::ValueError(str("NormalInverseGamma::posterior: expected n ≥ 1, a finite mean and ",
                               "a finite sum of squares ≥ 0, got n ", n, ", mean ", sample_mean,
                               ", sum of squares ", centred_sum_of_squares));
  const auto nd = static_cast<double>(n);
  const double kappa_n = kappa_ + nd;
  const double d = sample_mean - mean_;
  return NormalInverseGamma(
      (kappa_ * mean_ + nd * sample_mean) / kappa_n, kappa_n, shape_ + 0.5 * nd,
      scale_ + 0.5 * centred_sum_of_squares + kappa_ * nd * d * d / (2 * kappa_n));
}

// ---- the framework ----------------------------------------------------------------------------

SetPosteriorDensity::SetPosteriorDensity(std::shared_ptr<const Prior> prior, std::string task_name,
                                         std::int64_t set_size)
    : prior_(std::move(prior)), task_name_(std::move(task_name)), set_size_(set_size) {}

void SetPosteriorDensity::evaluate(const Tensor& theta, std::span<double> out) const {
  const std::int64_t d = dim();
  if (!theta.defined() || theta.rank() != 2 || theta.dim(1) != d)
    throw core::ShapeError(str("SetPosteriorDensity(", task_name_,
                               ")::evaluate: expected theta [k, ", d, "], got ",
                               theta.defined() ? theta.shape() : core::Shape{}));
  const std::int64_t k = theta.dim(0);
  if (static_cast<std::int64_t>(out.size()) != k)
    throw core::ShapeError(str("SetPosteriorDensity(", task_name_, ")::evaluate: out has ",
                               out.size(), " values for ", k, " rows"));
  const Tensor values = theta.dtype() == DType::f64 ? theta : theta.to(DType::f64);
  const double* p = values.data<double>();
  for (std::int64_t i = 0; i < k; ++i)
    out[static_cast<std::size_t>(i)] =
        prior_->log_prob_row(std::span<const double>(p + i * d, static_cast<std::size_t>(d)));
  likelihood_evaluations_ += add_log_likelihood(p, k, out);
}

void SetTask::ElementSampler::elements(std::int64_t begin, std::int64_t end,
                                       std::span<float> out) const {
  if (begin < 0 || end < begin)
    throw core::ValueError(
        str("ElementSampler::elements: expected 0 ≤ begin ≤ end, got [", begin, ", ", end, ")"));
  if (static_cast<std::int64_t>(out.size()) != (end - begin) * element_dim_)
    throw core::ShapeError(str("ElementSampler::elements: out has ", out.size(), " values for ",
                               end - begin, " elements of element_dim ", element_dim_));
  if (end > begin) fill(begin, end, out);
}

SetTask::SetTask(std::string name, std::vector<std::string> parameter_names,
                 std::int64_t element_dim, std::shared_ptr<const Prior> prior,
                 std::shared_ptr<const Prior> target_prior)
    : name_(std::move(name)),
      parameter_names_(std::move(parameter_names)),
      element_dim_(element_dim),
      prior_(std::move(prior)),
      target_prior_(std::move(target_prior)) {}

std::unique_ptr<const SetTask::ElementSampler> SetTask::sampler(std::span<const double> theta,
                                                                std::uint64_t seed,
                                                                std::uint64_t set_id) const {
  if (static_cast<std::int64_t>(theta.size()) != parameter_dim())
    throw core::ValueError(str(name_, ": theta has ", theta.size(),
                               " values; expected parameter_dim = ", parameter_dim()));
  set_stream(SetStream::noise, set_id);  // the set_id check
  return make_sampler(theta, seed, set_id);
}

Tensor SetTask::simulate_set(std::span<const double> theta, std::int64_t n, std::uint64_t seed,
                             std::uint64_t set_id) const {
  if (n < 1) throw core::ValueError(str(name_, "::simulate_set: expected n ≥ 1, got ", n));
  const std::unique_ptr<const ElementSampler> elements = sampler(theta, seed, set_id);
  Tensor set = Tensor::empty({n, element_dim_}, DType::f32);
  float* p = set.data<float>();
  // Ranges of about 16k values: one range for the scalar tasks up to N = 16384, 64 fields of
  // gp_replicates. Elements depend on their index only, so the split changes no value.
  const std::int64_t range = std::max<std::int64_t>(1, 16384 / element_dim_);
  const std::int64_t ranges = (n + range - 1) / range;
  std::exception_ptr error;
#pragma omp parallel for schedule(dynamic, 1) if (ranges > 1)
  for (std::int64_t r = 0; r < ranges; ++r) {
    try {
      const std::int64_t begin = r * range, end = std::min(n, begin + range);
      elements->elements(begin, end,
                         std::span<float>(p + begin * element_dim_,
                                          static_cast<std::size_t>((end - begin) * element_dim_)));
    } catch (...) {
#pragma omp critical(asbi_sbi_set_task_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
  return set;
}

Tensor SetTask::simulate_sets(const Tensor& theta, std::int64_t n, std::uint64_t seed,
                              std::uint64_t first_set_id) const {
  if (!theta.defined() || theta.rank() != 2 || theta.dim(1) != parameter_dim())
    throw core::ShapeError(str(name_, "::simulate_sets: expected theta [B, parameter_dim = ",
                               parameter_dim(), "], got ",
                               theta.defined() ? theta.shape() : core::Shape{}));
  if (n < 1) throw core::ValueError(str(name_, "::simulate_sets: expected n ≥ 1, got ", n));
  const std::int64_t sets = theta.dim(0);
  Tensor out = Tensor::empty({sets, n, element_dim_}, DType::f32, theta.device());
  if (sets == 0) return out;
  // Every set's parameters and id are checked on the host, where sampler() can name the set.
  const Tensor host = theta.to(core::Device::cpu).to(DType::f64);
  const double* p = host.data<double>();
  const auto row = [&](std::int64_t b) {
    return std::span<const double>(p + b * parameter_dim(), static_cast<std::size_t>(parameter_dim()));
  };
  if (theta.device() == core::Device::cuda) {
    set_stream(SetStream::noise, first_set_id + static_cast<std::uint64_t>(sets - 1));
    for (std::int64_t b = 0; b < sets; ++b)
      sampler(row(b), seed, first_set_id + static_cast<std::uint64_t>(b));
    simulate_sets_on_device(theta, n, seed, first_set_id, out);
    return out;
  }
  float* data = out.data<float>();
  std::exception_ptr error;
#pragma omp parallel for schedule(dynamic, 1) if (sets > 1)
  for (std::int64_t b = 0; b < sets; ++b) {
    try {
      sampler(row(b), seed, first_set_id + static_cast<std::uint64_t>(b))
          ->elements(0, n, {data + b * n * element_dim_, static_cast<std::size_t>(n * element_dim_)});
    } catch (...) {
#pragma omp critical(asbi_sbi_simulate_sets_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
  return out;
}

void SetTask::simulate_sets_on_device(const Tensor&, std::int64_t, std::uint64_t, std::uint64_t,
                                      Tensor&) const {
  throw core::DeviceError(str(name_, "::simulate_sets: no GPU kernel for this task; simulate it "
                                     "with theta on the CPU"));
}

std::unique_ptr<SetPosteriorDensity> SetTask::posterior_density(const Tensor& set) const {
  return make_posterior_density(
      checked_set("SetTask::posterior_density", name_, element_dim_, set));
}

// The sbibm reference settings (slice, SIR starts, 100 warm-up sweeps) with 100 chains rather
// than 1000, which guard the mode weights of multimodal posteriors (sbi/reference.hpp): θ > 0
// removes the mixture's mirror mode (θ, w) ↔ (−θ, 1 − w), leaving one.
McmcOptions SetTask::reference_mcmc_options(std::uint64_t seed) const {
  McmcOptions o = sbi::reference_mcmc_options(seed);
  o.chains = 100;
  o.thin = 2;
  o.init_candidates = 100;
  return o;
}

void SetTask::mcmc_coordinates(std::span<const double> theta, std::span<double> u) const {
  std::copy(theta.begin(), theta.end(), u.begin());
}

double SetTask::parameters_from_mcmc_coordinates(std::span<const double> u,
                                                 std::span<double> theta) const {
  std::copy(u.begin(), u.end(), theta.begin());
  return 0;
}

Tensor SetTask::exact_target_posterior(const Tensor&, std::int64_t, core::Rng&) const { return {}; }

static_assert(static_cast<std::uint64_t>(SetStream::noise) == kernels::kSetNoisePurpose &&
              static_cast<std::uint64_t>(SetStream::component) == kernels::kSetComponentPurpose);

std::uint64_t set_stream(SetStream purpose, std::uint64_t set_id) {
  if (set_id >> 32 != 0)
    throw core::ValueError(str("set_stream: expected set_id < 2^32, got ", set_id));
  return kernels::set_stream_of(static_cast<std::uint64_t>(purpose), set_id);
}

std::vector<std::string> set_task_names() {
  return {"gaussian_nuisance", "mixture_nuisance", "gp_replicates"};
}

std::unique_ptr<SetTask> make_set_task(const std::string& name) {
  if (name == "gaussian_nuisance") return std::make_unique<GaussianNuisanceTask>();
  if (name == "mixture_nuisance") return std::make_unique<MixtureNuisanceTask>();
  if (name == "gp_replicates") return make_gp_replicates_task();
  std::string known;
  for (const std::string& n : set_task_names()) known += (known.empty() ? "" : ", ") + n;
  throw core::ValueError(
      str("make_set_task: unknown set task '", name, "'; expected one of ", known));
}

SetObservation set_observation(const SetTask& task, int k, std::int64_t n) {
  if (k < 1) throw core::ValueError(str("set_observation: expected k ≥ 1, got ", k));
  const std::uint64_t seed = observation_seed(task.name());
  const auto set_id = static_cast<std::uint64_t>(k);
  core::Rng rng(seed, set_stream(SetStream::observation, set_id));
  std::vector<double> theta(static_cast<std::size_t>(task.parameter_dim()));
  task.prior().sample_row(rng, theta);
  Tensor set = task.simulate_set(theta, n, seed, set_id);
  return {std::move(theta), std::move(set)};
}

namespace {

// θ [k, P] from MCMC coordinates u [k, P] (float64), and log |det ∂θ/∂u| per row.
Tensor parameters_of(const SetTask& task, const Tensor& u, std::span<double> log_jacobian) {
  const std::int64_t k = u.dim(0), p = task.parameter_dim();
  Tensor theta = Tensor::empty({k, p}, DType::f64);
  const double* from = u.data<double>();
  double* to = theta.data<double>();
  const auto width = static_cast<std::size_t>(p);
  for (std::int64_t i = 0; i < k; ++i)
    log_jacobian[static_cast<std::size_t>(i)] = task.parameters_from_mcmc_coordinates(
        std::span<const double>(from + i * p, width), std::span<double>(to + i * p, width));
  return theta;
}

}  // namespace

SetReference set_mcmc_posterior(const SetTask& task, const Tensor& set, std::int64_t num_samples,
                                const McmcOptions& options) {
  const std::unique_ptr<SetPosteriorDensity> density = task.posterior_density(set);
  const std::int64_t p = task.parameter_dim(), t = task.target_dim();
  const auto width = static_cast<std::size_t>(p);
  // π_u(u) = π(θ(u)) |det ∂θ/∂u|, and the prior likewise for the initial draws.
  const CallableLogDensity target(p, [&](const Tensor& u, std::span<double> out) {
    std::vector<double> log_jacobian(out.size());
    density->evaluate(parameters_of(task, u, log_jacobian), out);
    for (std::size_t i = 0; i < out.size(); ++i) out[i] += log_jacobian[i];
  });
  Proposal init;
  init.sample = [&](std::int64_t n, core::Rng& rng) {
    const Tensor theta = task.prior().sample(n, rng);
    Tensor u = Tensor::empty({n, p}, DType::f64);
    for (std::int64_t i = 0; i < n; ++i)
      task.mcmc_coordinates(std::span<const double>(theta.data<double>() + i * p, width),
                            std::span<double>(u.data<double>() + i * p, width));
    return u;
  };
  init.log_prob = [&](const Tensor& u) {
    std::vector<double> log_jacobian(static_cast<std::size_t>(u.dim(0)));
    std::vector<double> lp = task.prior().log_prob(parameters_of(task, u, log_jacobian));
    for (std::size_t i = 0; i < lp.size(); ++i) lp[i] += log_jacobian[i];
    return lp;
  };
  const McmcResult r = sample_mcmc(target, init, num_samples, options);
  std::vector<double> log_jacobian(static_cast<std::size_t>(num_samples));
  const Tensor theta = parameters_of(task, r.samples, log_jacobian);
  Tensor targets = Tensor::empty({num_samples, t}, DType::f64);
  for (std::int64_t i = 0; i < num_samples; ++i)
    std::copy_n(theta.data<double>() + i * p, t, targets.data<double>() + i * t);
  return {targets,  false, r.r_hat, r.ess, r.evaluations, density->likelihood_evaluations(),
          r.seconds};
}

SetReference set_reference_posterior(const SetTask& task, const Tensor& set,
                                     std::int64_t num_samples, std::uint64_t seed) {
  if (num_samples < 1)
    throw core::ValueError(
        str("set_reference_posterior: expected num_samples ≥ 1, got ", num_samples));
  const Tensor values =
      checked_set("set_reference_posterior", task.name(), task.element_dim(), set);
  const auto start = std::chrono::steady_clock::now();
  core::Rng rng(seed, set_stream(SetStream::reference, 0));
  Tensor exact = task.exact_target_posterior(values, num_samples, rng);
  if (!exact.defined())
    return set_mcmc_posterior(task, values, num_samples, task.reference_mcmc_options(seed));
  SetReference ref;
  ref.samples = std::move(exact);
  ref.exact = true;
  ref.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return ref;
}

double gaussian_nuisance_log_posterior(double mu, const Tensor& set) {
  const ScalarSummary s =
      summarise(checked_set("gaussian_nuisance_log_posterior", "gaussian_nuisance", 1, set));
  const double row[1] = {mu};
  return GaussianNuisanceTask::prior_of_model()
      ->posterior(s.n, s.mean, s.centred_sum_of_squares)
      .marginal_mean()
      .log_prob_row(row);
}

}  // namespace asbi::sbi
