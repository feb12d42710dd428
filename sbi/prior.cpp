#include "sbi/prior.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>

#include "core/error.hpp"

namespace asbi::sbi {

namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();
const double kLog2Pi = std::log(2.0 * std::numbers::pi);

void check_theta(const char* who, const Tensor& theta, std::int64_t d) {
  if (!theta.defined() || theta.rank() != 2 || theta.dim(1) != d)
    throw core::ShapeError(core::str(who, ": expected theta of shape [n, ", d, "], got ",
                                     theta.defined() ? theta.shape() : core::Shape{}));
}

}  // namespace

std::vector<double> cholesky(const std::vector<double>& a, std::int64_t d, const char* what) {
  const auto n = static_cast<std::size_t>(d);
  if (a.size() != n * n)
    throw core::ValueError(
        core::str(what, ": expected ", d, "x", d, " = ", n * n, " values, got ", a.size()));
  std::vector<double> l(n * n, 0.0);
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = 0; j <= i; ++j) {
      if (std::abs(a[i * n + j] - a[j * n + i]) > 1e-9 * (1 + std::abs(a[i * n + j])))
        throw core::ValueError(core::str(what, ": expected a symmetric matrix, entries (", i, ",",
                                         j, ") and (", j, ",", i, ") differ"));
      double s = a[i * n + j];
      for (std::size_t k = 0; k < j; ++k) s -= l[i * n + k] * l[j * n + k];
      if (i == j) {
        if (!(s > 0))
          throw core::ValueError(
              core::str(what, ": expected a positive-definite matrix, pivot ", i, " is ", s));
        l[i * n + i] = std::sqrt(s);
      } else {
        l[i * n + j] = s / l[j * n + j];
      }
    }
  }
  return l;
}

Tensor Prior::sample(std::int64_t n, core::Rng& rng, DType dtype) const {
  if (n < 0) throw core::ValueError(core::str("Prior::sample: expected n >= 0, got ", n));
  const std::int64_t d = dim();
  std::vector<double> values(static_cast<std::size_t>(n * d));
  for (std::int64_t i = 0; i < n; ++i)
    sample_row(rng, std::span<double>(values).subspan(static_cast<std::size_t>(i * d),
                                                      static_cast<std::size_t>(d)));
  return Tensor::from(values, {n, d}, dtype);
}

std::vector<double> Prior::log_prob(const Tensor& theta) const {
  const std::int64_t d = dim();
  check_theta("Prior::log_prob", theta, d);
  const std::vector<double> values = theta.to_vector();
  const std::int64_t n = theta.dim(0);
  std::vector<double> out(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i)
    out[static_cast<std::size_t>(i)] = log_prob_row(std::span<const double>(values).subspan(
        static_cast<std::size_t>(i * d), static_cast<std::size_t>(d)));
  return out;
}

void Prior::log_prob_gradient_row(std::span<const double>, std::span<double>) const {
  throw core::StateError(
      "Prior::log_prob_gradient_row: this prior has no gradient (has_log_prob_gradient() is "
      "false); use a sampler that needs none (slice, mh)");
}

Tensor Prior::log_prob_gradient(const Tensor& theta) const {
  const std::int64_t d = dim();
  check_theta("Prior::log_prob_gradient", theta, d);
  const std::vector<double> values = theta.to_vector();
  const std::int64_t n = theta.dim(0);
  Tensor grad = Tensor::empty({n, d}, DType::f64);
  double* g = grad.data<double>();
  const auto width = static_cast<std::size_t>(d);
  for (std::int64_t i = 0; i < n; ++i) {
    const auto at = static_cast<std::size_t>(i) * width;
    log_prob_gradient_row(std::span<const double>(values).subspan(at, width),
                          std::span<double>(g + at, width));
  }
  return grad;
}

std::vector<bool> Prior::in_support(const Tensor& theta) const {
  const std::vector<double> lp = log_prob(theta);
  std::vector<bool> out(lp.size());
  for (std::size_t i = 0; i < lp.size(); ++i) out[i] = lp[i] > kNegInf;
  return out;
}

BoxUniform::BoxUniform(std::vector<double> low, std::vector<double> high)
    : low_(std::move(low)), high_(std::move(high)) {
  if (low_.empty() || low_.size() != high_.size())
    throw core::ValueError(
        core::str("BoxUniform: expected low and high of the same non-zero "
                  "length, got ",
                  low_.size(), " and ", high_.size()));
  for (std::size_t i = 0; i < low_.size(); ++i) {
    if (!(std::isfinite(low_[i]) && std::isfinite(high_[i]) && low_[i] < high_[i]))
      throw core::ValueError(core::str("BoxUniform: expected finite low[", i, "] < high[", i,
                                       "], got low ", low_[i], ", high ", high_[i]));
    log_volume_ += std::log(high_[i] - low_[i]);
  }
}

void BoxUniform::sample_row(core::Rng& rng, std::span<double> out) const {
  for (std::size_t i = 0; i < low_.size(); ++i)
    out[i] = low_[i] + (high_[i] - low_[i]) * rng.uniform();
}

double BoxUniform::log_prob_row(std::span<const double> theta) const {
  for (std::size_t i = 0; i < low_.size(); ++i)
    if (!(theta[i] >= low_[i] && theta[i] < high_[i])) return kNegInf;
  return -log_volume_;
}

void BoxUniform::log_prob_gradient_row(std::span<const double>, std::span<double> grad) const {
  std::fill(grad.begin(), grad.end(), 0.0);  // flat inside, -inf outside: no slope anywhere
}

Gaussian::Gaussian(std::vector<double> mean, std::vector<double> covariance)
    : mean_(std::move(mean)), covariance_(std::move(covariance)) {
  if (mean_.empty()) throw core::ValueError("Gaussian: expected a non-empty mean");
  const auto d = static_cast<std::int64_t>(mean_.size());
  chol_ = cholesky(covariance_, d, "Gaussian covariance");
  log_norm_ = -0.5 * static_cast<double>(d) * kLog2Pi;
  for (std::size_t i = 0; i < mean_.size(); ++i) log_norm_ -= std::log(chol_[i * mean_.size() + i]);
}

Gaussian Gaussian::from_precision(std::vector<double> mean, const std::vector<double>& precision) {
  const std::size_t n = mean.size();
  const std::vector<double> l =
      cholesky(precision, static_cast<std::int64_t>(n), "Gaussian precision");
  // Column j of the covariance solves P c = e_j, i.e. L y = e_j then Lᵀ c = y.
  std::vector<double> cov(n * n);
  std::vector<double> y(n);
  for (std::size_t j = 0; j < n; ++j) {
    for (std::size_t i = 0; i < n; ++i) {
      double s = i == j ? 1.0 : 0.0;
      for (std::size_t k = 0; k < i; ++k) s -= l[i * n + k] * y[k];
      y[i] = s / l[i * n + i];
    }
    for (std::size_t ii = n; ii-- > 0;) {
      double s = y[ii];
      for (std::size_t k = ii + 1; k < n; ++k) s -= l[k * n + ii] * cov[k * n + j];
      cov[ii * n + j] = s / l[ii * n + ii];
    }
  }
  // Rounding leaves the solve slightly asymmetric; symmetrise so the covariance check passes.
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < i; ++j)
      cov[i * n + j] = cov[j * n + i] = 0.5 * (cov[i * n + j] + cov[j * n + i]);
  return Gaussian(std::move(mean), std::move(cov));
}

void Gaussian::sample_row(core::Rng& rng, std::span<double> out) const {
  const std::size_t n = mean_.size();
  std::vector<double> z(n);
  for (double& v : z) v = rng.normal();
  for (std::size_t i = 0; i < n; ++i) {
    double s = mean_[i];
    for (std::size_t k = 0; k <= i; ++k) s += chol_[i * n + k] * z[k];
    out[i] = s;
  }
}

double Gaussian::log_prob_row(std::span<const double> theta) const {
  const std::size_t n = mean_.size();
  // Solve L y = θ - mean; the quadratic form is |y|².
  std::vector<double> y(n);
  double q = 0;
  for (std::size_t i = 0; i < n; ++i) {
    double s = theta[i] - mean_[i];
    for (std::size_t k = 0; k < i; ++k) s -= chol_[i * n + k] * y[k];
    y[i] = s / chol_[i * n + i];
    q += y[i] * y[i];
  }
  return log_norm_ - 0.5 * q;
}

void Gaussian::log_prob_gradient_row(std::span<const double> theta,
                                     std::span<double> grad) const {
  // log p = c - ½ (θ - μ)ᵀ Σ⁻¹ (θ - μ), so ∇ = -Σ⁻¹ (θ - μ) = -L⁻ᵀ L⁻¹ (θ - μ): solve L y = θ - μ
  // forwards, then Lᵀ g = y backwards (into grad), and negate.
  const std::size_t n = mean_.size();
  std::vector<double> y(n);
  for (std::size_t i = 0; i < n; ++i) {
    double s = theta[i] - mean_[i];
    for (std::size_t k = 0; k < i; ++k) s -= chol_[i * n + k] * y[k];
    y[i] = s / chol_[i * n + i];
  }
  for (std::size_t i = n; i-- > 0;) {
    double s = y[i];
    for (std::size_t k = i + 1; k < n; ++k) s -= chol_[k * n + i] * grad[k];
    grad[i] = s / chol_[i * n + i];
  }
  for (std::size_t i = 0; i < n; ++i) grad[i] = -grad[i];
}

LogNormal::LogNormal(std::vector<double> mu, std::vector<double> sigma)
    : mu_(std::move(mu)), sigma_(std::move(sigma)) {
  if (mu_.empty() || mu_.size() != sigma_.size())
    throw core::ValueError(
        core::str("LogNormal: expected mu and sigma of the same non-zero "
                  "length, got ",
                  mu_.size(), " and ", sigma_.size()));
  for (std::size_t i = 0; i < mu_.size(); ++i)
    if (!(std::isfinite(mu_[i]) && std::isfinite(sigma_[i]) && sigma_[i] > 0))
      throw core::ValueError(core::str("LogNormal: expected finite mu[", i, "] and sigma[", i,
                                       "] > 0, got mu ", mu_[i], ", sigma ", sigma_[i]));
}

void LogNormal::sample_row(core::Rng& rng, std::span<double> out) const {
  for (std::size_t i = 0; i < mu_.size(); ++i) out[i] = std::exp(mu_[i] + sigma_[i] * rng.normal());
}

double LogNormal::log_prob_row(std::span<const double> theta) const {
  double lp = 0;
  for (std::size_t i = 0; i < mu_.size(); ++i) {
    if (!(theta[i] > 0)) return kNegInf;
    const double l = std::log(theta[i]);
    const double z = (l - mu_[i]) / sigma_[i];
    lp += -0.5 * z * z - std::log(sigma_[i]) - l - 0.5 * kLog2Pi;
  }
  return lp;
}

void LogNormal::log_prob_gradient_row(std::span<const double> theta,
                                      std::span<double> grad) const {
  // log p_i = -½ z² - log σ_i - log θ_i + c with z = (log θ_i - μ_i) / σ_i, so
  // ∂/∂θ_i = (-z / σ_i - 1) / θ_i.
  for (std::size_t i = 0; i < mu_.size(); ++i) {
    if (!(theta[i] > 0)) {
      std::fill(grad.begin(), grad.end(), 0.0);
      return;
    }
  }
  for (std::size_t i = 0; i < mu_.size(); ++i) {
    const double z = (std::log(theta[i]) - mu_[i]) / sigma_[i];
    grad[i] = (-z / sigma_[i] - 1.0) / theta[i];
  }
}

Product::Product(std::vector<std::shared_ptr<const Prior>> parts) : parts_(std::move(parts)) {
  if (parts_.empty()) throw core::ValueError("Product: expected at least one prior, got none");
  for (std::size_t i = 0; i < parts_.size(); ++i) {
    if (!parts_[i]) throw core::ValueError(core::str("Product: prior ", i, " is null"));
    dim_ += parts_[i]->dim();
  }
}

void Product::sample_row(core::Rng& rng, std::span<double> out) const {
  std::size_t at = 0;
  for (const auto& p : parts_) {
    const auto d = static_cast<std::size_t>(p->dim());
    p->sample_row(rng, out.subspan(at, d));
    at += d;
  }
}

double Product::log_prob_row(std::span<const double> theta) const {
  double lp = 0;
  std::size_t at = 0;
  for (const auto& p : parts_) {
    const auto d = static_cast<std::size_t>(p->dim());
    lp += p->log_prob_row(theta.subspan(at, d));
    at += d;
  }
  return lp;
}

bool Product::has_log_prob_gradient() const {
  for (const auto& p : parts_)
    if (!p->has_log_prob_gradient()) return false;
  return true;
}

void Product::log_prob_gradient_row(std::span<const double> theta,
                                    std::span<double> grad) const {
  if (!(log_prob_row(theta) > kNegInf)) {
    std::fill(grad.begin(), grad.end(), 0.0);
    return;
  }
  std::size_t at = 0;
  for (const auto& p : parts_) {
    const auto d = static_cast<std::size_t>(p->dim());
    p->log_prob_gradient_row(theta.subspan(at, d), grad.subspan(at, d));
    at += d;
  }
}

}  // namespace asbi::sbi
