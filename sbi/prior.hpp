#pragma once
// Priors over simulator parameters θ: draws [n, D] and log densities, one row per θ.
//
//   sbi::BoxUniform prior({-1, -1}, {1, 1});
//   core::Rng rng(seed, /*stream=*/0);
//   core::Tensor theta = prior.sample(1000, rng);          // [1000, 2] float64
//   std::vector<double> lp = prior.log_prob(theta);         // -inf outside the support
//
// Draws are sequential from the caller's Rng (same Rng state, same draws); log_prob accepts
// float32 or float64 tensors. The gradient ∂ log p / ∂θ (log_prob_gradient) is what gradient
// samplers (HMC over an NLE/NRE potential) add to the network's gradient.
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "core/rng.hpp"
#include "core/tensor.hpp"

namespace asbi::sbi {

using core::DType;
using core::Tensor;

class Prior {
 public:
  virtual ~Prior() = default;
  virtual std::int64_t dim() const = 0;
  // One draw written to out (dim() values).
  virtual void sample_row(core::Rng& rng, std::span<double> out) const = 0;
  // log density of one θ (dim() values); -inf outside the support.
  virtual double log_prob_row(std::span<const double> theta) const = 0;
  // ∂ log p / ∂θ at one θ into grad (dim() values); 0 where log p is -inf (outside the support
  // there is no slope to follow) and inside a flat density. Priors without a gradient say so
  // through has_log_prob_gradient(); the default throws core::StateError.
  virtual bool has_log_prob_gradient() const { return false; }
  virtual void log_prob_gradient_row(std::span<const double> theta, std::span<double> grad) const;

  Tensor sample(std::int64_t n, core::Rng& rng, DType dtype = DType::f64) const;
  std::vector<double> log_prob(const Tensor& theta) const;  // theta [n, D]
  std::vector<bool> in_support(const Tensor& theta) const;
  // ∂ log p / ∂θ of each row of theta [n, D] (float32 or float64) → [n, D] float64.
  Tensor log_prob_gradient(const Tensor& theta) const;
};

// Uniform on the box [low, high) per dimension.
class BoxUniform : public Prior {
 public:
  BoxUniform(std::vector<double> low, std::vector<double> high);
  std::int64_t dim() const override { return static_cast<std::int64_t>(low_.size()); }
  void sample_row(core::Rng& rng, std::span<double> out) const override;
  double log_prob_row(std::span<const double> theta) const override;
  bool has_log_prob_gradient() const override { return true; }
  void log_prob_gradient_row(std::span<const double> theta, std::span<double> grad) const override;

 private:
  std::vector<double> low_, high_;
  double log_volume_ = 0;
};

// N(mean, covariance) with a full covariance (row-major D×D), sampled as mean + L z with the
// Cholesky factor L.
class Gaussian : public Prior {
 public:
  Gaussian(std::vector<double> mean, std::vector<double> covariance);
  // The same distribution given by its precision matrix (the inverse covariance).
  static Gaussian from_precision(std::vector<double> mean, const std::vector<double>& precision);
  std::int64_t dim() const override { return static_cast<std::int64_t>(mean_.size()); }
  void sample_row(core::Rng& rng, std::span<double> out) const override;
  double log_prob_row(std::span<const double> theta) const override;
  bool has_log_prob_gradient() const override { return true; }
  // -Σ⁻¹ (θ - mean), by two triangular solves with the Cholesky factor.
  void log_prob_gradient_row(std::span<const double> theta, std::span<double> grad) const override;
  const std::vector<double>& covariance() const { return covariance_; }

 private:
  std::vector<double> mean_, covariance_, chol_;
  double log_norm_ = 0;  // -Σ log L_ii - (D/2) log 2π
};

// Independent exp(N(mu_i, sigma_i²)) per dimension.
class LogNormal : public Prior {
 public:
  LogNormal(std::vector<double> mu, std::vector<double> sigma);
  std::int64_t dim() const override { return static_cast<std::int64_t>(mu_.size()); }
  void sample_row(core::Rng& rng, std::span<double> out) const override;
  double log_prob_row(std::span<const double> theta) const override;
  bool has_log_prob_gradient() const override { return true; }
  // -(1 + (log θ_i - mu_i) / sigma_i²) / θ_i per dimension.
  void log_prob_gradient_row(std::span<const double> theta, std::span<double> grad) const override;

 private:
  std::vector<double> mu_, sigma_;
};

// Independent priors side by side: θ = (θ_1, θ_2, ...), columns concatenated in order.
class Product : public Prior {
 public:
  explicit Product(std::vector<std::shared_ptr<const Prior>> parts);
  std::int64_t dim() const override { return dim_; }
  void sample_row(core::Rng& rng, std::span<double> out) const override;
  double log_prob_row(std::span<const double> theta) const override;
  bool has_log_prob_gradient() const override;  // when every part has one
  // The parts' gradients side by side; all 0 when any part is outside its support.
  void log_prob_gradient_row(std::span<const double> theta, std::span<double> grad) const override;

 private:
  std::vector<std::shared_ptr<const Prior>> parts_;
  std::int64_t dim_ = 0;
};

// Lower Cholesky factor (row-major) of a symmetric positive-definite D×D matrix. Throws
// ValueError naming `what` when the matrix is not positive definite or not D×D.
std::vector<double> cholesky(const std::vector<double>& a, std::int64_t d, const char* what);

}  // namespace asbi::sbi
