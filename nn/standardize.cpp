#include "nn/standardize.hpp"

#include <algorithm>
#include <cmath>

#include "autodiff/ops.hpp"
#include "core/backend.hpp"

namespace asbi::nn {

Standardizer Standardizer::fit(const Tensor& data, double min_std) {
  if (!data.defined() || data.rank() != 2)
    throw core::ShapeError(core::str("Standardizer::fit: expected data of shape [N, D], got ",
                                     data.defined() ? data.shape().str() : "no tensor"));
  const std::int64_t rows = data.dim(0), cols = data.dim(1);
  if (rows < 2 || cols < 1)
    throw core::ValueError(
        core::str("Standardizer::fit: expected at least 2 rows and 1 column to estimate a "
                  "mean and a standard deviation, got ", data.shape()));
  if (!(min_std > 0 && std::isfinite(min_std)))
    throw core::ValueError(
        core::str("Standardizer::fit: min_std must be finite and > 0, got ", min_std));
  const std::vector<double> x = data.to_vector();
  const auto cols_u = static_cast<std::size_t>(cols);
  for (std::size_t i = 0; i < x.size(); ++i)
    if (!std::isfinite(x[i]))
      throw core::ValueError(core::str("Standardizer::fit: expected finite data, found ", x[i],
                                       " at row ", i / cols_u, ", column ", i % cols_u));
  // Two passes in double: the mean, then the squared deviations from it (no cancellation).
  std::vector<double> mean(cols_u, 0.0), std_dev(cols_u, 0.0);
  for (std::size_t i = 0; i < x.size(); ++i) mean[i % cols_u] += x[i];
  for (double& m : mean) m /= static_cast<double>(rows);
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double d = x[i] - mean[i % cols_u];
    std_dev[i % cols_u] += d * d;
  }
  for (double& s : std_dev) s = std::max(std::sqrt(s / static_cast<double>(rows - 1)), min_std);
  return Standardizer(Tensor::from(mean, {cols}, data.dtype()).to(data.device()),
                      Tensor::from(std_dev, {cols}, data.dtype()).to(data.device()));
}

Standardizer Standardizer::identity(std::int64_t features, DType dtype, Device device) {
  if (features < 1)
    throw core::ValueError(
        core::str("Standardizer::identity: features must be >= 1, got ", features));
  return Standardizer(Tensor::zeros({features}, dtype, device),
                      Tensor::full({features}, 1.0, dtype, device));
}

Standardizer::Standardizer(const Tensor& mean, const Tensor& std_dev) {
  if (!mean.defined() || !std_dev.defined() || mean.rank() != 1 ||
      std_dev.shape() != mean.shape() || mean.numel() < 1)
    throw core::ShapeError(core::str("Standardizer: expected mean and std of one shape [D], got ",
                                     mean.defined() ? mean.shape().str() : "none", " and ",
                                     std_dev.defined() ? std_dev.shape().str() : "none"));
  core::check_compatible("Standardizer", mean, std_dev);
  const std::vector<double> s = std_dev.to_vector(), m = mean.to_vector();
  for (std::size_t d = 0; d < s.size(); ++d) {
    if (!(s[d] > 0 && std::isfinite(s[d])))
      throw core::ValueError(
          core::str("Standardizer: expected std > 0 and finite, got ", s[d], " in column ", d));
    if (!std::isfinite(m[d]))
      throw core::ValueError(
          core::str("Standardizer: expected a finite mean, got ", m[d], " in column ", d));
  }
  mean_ = mean.clone();
  std_ = std_dev.clone();
}

void Standardizer::check_input(const char* who, const Tensor& x) const {
  if (x.rank() == 0 || x.shape().last() != features())
    throw core::ShapeError(core::str(who, ": expected [..., ", features(), "], got ", x.shape()));
}

// z = (x - μ) / σ:  ∂L/∂x = ∂L/∂z / σ
Var Standardizer::apply(const Var& x) const {
  check_input("Standardizer::apply", x.value());
  return ad::div(ad::sub(x, Var(mean_)), Var(std_));
}

// x = σ z + μ, with the broadcasting kernels (μ, σ [D] stretch over the leading dimensions).
Tensor Standardizer::inverse(const Tensor& z) const {
  check_input("Standardizer::inverse", z);
  core::check_compatible("Standardizer::inverse", z, mean_);
  Tensor x = Tensor::empty(z.shape(), z.dtype(), z.device());
  core::Backend& k = core::backend(z.device());
  k.binary(core::Binary::mul, z, std_, x);
  k.binary(core::Binary::add, x, mean_, x);
  return x;
}

double Standardizer::log_abs_det() const {
  double total = 0;
  for (double s : std_.to_vector()) total -= std::log(s);
  return total;
}

}  // namespace asbi::nn
