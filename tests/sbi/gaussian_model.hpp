#pragma once
// The conjugate Gaussian model the NLE and NRE tests are checked against:
//
//   θ ~ N(0, I_D),  x | θ ~ N(θ, σ² I_D)  ⇒  θ | x ~ N(x / (1 + σ²), σ² / (1 + σ²) I_D),
//   p(x) = N(0, (1 + σ²) I_D),  log r(θ, x) = log N(x; θ, σ²) − log N(x; 0, 1 + σ²).
#include <cmath>
#include <memory>
#include <numbers>
#include <span>
#include <vector>

#include "core/rng.hpp"
#include "core/tensor.hpp"
#include "sbi/prior.hpp"

namespace asbi::sbi::gaussian_model {

inline constexpr std::int64_t kDim = 2;
inline constexpr double kSigma = 0.5;

inline std::shared_ptr<const Prior> prior() {
  return std::make_shared<Gaussian>(std::vector<double>(kDim, 0.0),
                                    std::vector<double>{1.0, 0.0, 0.0, 1.0});
}

struct Data {
  Tensor theta, x;  // [n, D] float32
};

// n pairs (θ_i, x_i) from the joint, all from Rng(seed, stream 0).
inline Data simulate(std::int64_t n, std::uint64_t seed) {
  core::Rng rng(seed, 0);
  std::vector<double> theta(static_cast<std::size_t>(n * kDim)), x(theta.size());
  for (std::size_t i = 0; i < theta.size(); ++i) {
    theta[i] = rng.normal();
    x[i] = theta[i] + kSigma * rng.normal();
  }
  return {Tensor::from(theta, {n, kDim}), Tensor::from(x, {n, kDim})};
}

// Σ_d log N(b_d; a_d, variance).
inline double log_normal(std::span<const double> b, std::span<const double> a, double variance) {
  double lp = 0;
  for (std::size_t d = 0; d < b.size(); ++d)
    lp += -0.5 * (b[d] - a[d]) * (b[d] - a[d]) / variance -
          0.5 * std::log(2 * std::numbers::pi * variance);
  return lp;
}

inline double log_likelihood(std::span<const double> theta, std::span<const double> x) {
  return log_normal(x, theta, kSigma * kSigma);
}

inline double log_ratio(std::span<const double> theta, std::span<const double> x) {
  const std::vector<double> zero(x.size(), 0.0);
  return log_likelihood(theta, x) - log_normal(x, zero, 1 + kSigma * kSigma);
}

inline double posterior_mean(double x) { return x / (1 + kSigma * kSigma); }
inline double posterior_std() { return kSigma / std::sqrt(1 + kSigma * kSigma); }

// Column means and standard deviations of samples [n, D].
struct Moments {
  std::vector<double> mean, std;
};
inline Moments moments(const Tensor& samples) {
  const std::vector<double> v = samples.to_vector();
  const auto n = static_cast<std::size_t>(samples.dim(0));
  const auto d = static_cast<std::size_t>(samples.dim(1));
  Moments m{std::vector<double>(d, 0.0), std::vector<double>(d, 0.0)};
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < d; ++j) m.mean[j] += v[i * d + j] / static_cast<double>(n);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < d; ++j)
      m.std[j] += (v[i * d + j] - m.mean[j]) * (v[i * d + j] - m.mean[j]) /
                  static_cast<double>(n - 1);
  for (double& s : m.std) s = std::sqrt(s);
  return m;
}

// Observations the posterior tests condition on: the centre, a typical point and one in the
// tail of p(x) (|x| ≈ 2 standard deviations of the marginal).
inline const std::vector<std::vector<double>>& observations() {
  static const std::vector<std::vector<double>> xs = {{0.0, 0.0}, {1.0, -0.5}, {-1.8, 1.2}};
  return xs;
}

}  // namespace asbi::sbi::gaussian_model
