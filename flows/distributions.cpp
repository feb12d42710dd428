#include "flows/distributions.hpp"

#include <cmath>
#include <limits>
#include <numbers>

#include "autodiff/ops.hpp"
#include "autodiff/tape.hpp"

namespace asbi::flows {
namespace {

using core::Device;
using core::Shape;
using core::ShapeError;
using core::str;

const double kLog2Pi = std::log(2.0 * std::numbers::pi);

void check_input(const char* who, const Var& x, std::int64_t features, DType dtype) {
  if (x.shape().rank() != 2 || x.dim(1) != features)
    throw ShapeError(str(who, ": expected x of shape [B, ", features, "], got ", x.shape()));
  if (x.dtype() != dtype)
    throw core::DtypeError(str(who, ": expected x of dtype ", dtype, ", got ", x.dtype()));
}

// The device a sample for `context` lives on: the context's, or the CPU without one.
Device device_for(const Tensor& context) {
  return context.defined() ? context.device() : Device::cpu;
}

// Standard normals drawn directly on `device`: the numbers draw_normal gives on the CPU.
Tensor draw_normal_on(const Shape& shape, DType dtype, Device device, core::Rng& rng) {
  Tensor t = Tensor::empty(shape, dtype, device);
  core::fill_normal(rng, t);
  return t;
}

// Moves a host tensor to the device of the context it was drawn for.
Tensor to_context_device(const Tensor& t, const Tensor& context) {
  return t.to(device_for(context));
}

}  // namespace

Tensor draw_normal(const Shape& shape, DType dtype, core::Rng& rng) {
  return draw_normal_on(shape, dtype, Device::cpu, rng);
}

Tensor draw_uniform(const Shape& shape, DType dtype, core::Rng& rng) {
  Tensor t = Tensor::empty(shape, dtype);
  core::fill_uniform(rng, t);
  return t;
}

std::int64_t check_sample_context(const char* who, std::int64_t n, const Tensor& context) {
  if (n < 1) throw core::ValueError(str(who, ": expected n >= 1 samples, got ", n));
  if (context.defined() && (context.rank() != 2 || (context.dim(0) != 1 && context.dim(0) != n)))
    throw ShapeError(str(who, ": expected a context of shape [1, C] or [", n, ", C] for ", n,
                         " samples, got ", context.shape()));
  return n;
}

// --- StandardNormal ------------------------------------------------------------------------------

StandardNormal::StandardNormal(std::int64_t features, DType dtype)
    : features_(features), dtype_(dtype) {
  if (features < 1)
    throw core::ValueError(str("StandardNormal: expected features >= 1, got ", features));
}

// log N(x; 0, I) = -½ Σ_d x_d² - (D/2) log 2π
Var StandardNormal::log_prob(const Var& x, const Var&) const {
  check_input("StandardNormal::log_prob", x, features_, dtype_);
  return ad::shift(ad::scale(ad::sum(ad::square(x), 1), -0.5),
                   -0.5 * static_cast<double>(features_) * kLog2Pi);
}

Tensor StandardNormal::sample(std::int64_t n, const Tensor& context, core::Rng& rng) const {
  check_sample_context("StandardNormal::sample", n, context);
  return draw_normal_on({n, features_}, dtype_, device_for(context), rng);
}

// --- DiagonalGaussian ----------------------------------------------------------------------------

DiagonalGaussian::DiagonalGaussian(std::int64_t features, DType dtype)
    : features_(features), dtype_(dtype) {
  if (features < 1)
    throw core::ValueError(str("DiagonalGaussian: expected features >= 1, got ", features));
  mean_ = &param("mean", Tensor::zeros({features}, dtype));
  log_std_ = &param("log_std", Tensor::zeros({features}, dtype));
}

DiagonalGaussian::DiagonalGaussian(std::int64_t features,
                                   std::unique_ptr<nn::Layer> context_encoder, DType dtype)
    : features_(features), dtype_(dtype) {
  if (features < 1)
    throw core::ValueError(str("DiagonalGaussian: expected features >= 1, got ", features));
  if (!context_encoder)
    throw core::ValueError("DiagonalGaussian: expected a context encoder, got none");
  encoder_ = &child("context_encoder", std::move(context_encoder));
}

DiagonalGaussian::Moments DiagonalGaussian::moments(const Var& context) const {
  if (!encoder_)
    return {ad::reshape(*mean_, {1, features_}), ad::reshape(*log_std_, {1, features_})};
  if (!context.defined())
    throw core::ValueError("DiagonalGaussian: conditional on a context, got none");
  Var out = encoder_->forward(context);
  if (out.shape().rank() != 2 || out.dim(1) != 2 * features_)
    throw ShapeError(str("DiagonalGaussian: expected the context encoder to return [B, ",
                         2 * features_, "] (mean, log std), got ", out.shape()));
  return {ad::slice(out, 1, 0, features_), ad::slice(out, 1, features_, 2 * features_)};
}

// z = (x - μ) e^{-log σ};  log p = -½ Σ z² - Σ log σ - (D/2) log 2π
Var DiagonalGaussian::log_prob(const Var& x, const Var& context) const {
  check_input("DiagonalGaussian::log_prob", x, features_, dtype_);
  const Moments m = moments(context);
  if (encoder_ && m.mean.dim(0) != x.dim(0))
    throw ShapeError(str("DiagonalGaussian::log_prob: expected one context row per row of x ",
                         x.shape(), ", got ", context.shape()));
  const Var z = ad::mul(ad::sub(x, m.mean), ad::exp(ad::neg(m.log_std)));
  const Var quad = ad::scale(ad::sum(ad::square(z), 1), -0.5);
  return ad::shift(ad::sub(quad, ad::sum(m.log_std, 1)),
                   -0.5 * static_cast<double>(features_) * kLog2Pi);
}

// a = μ + σ ε,  ε ~ N(0, I)
Tensor DiagonalGaussian::sample(std::int64_t n, const Tensor& context, core::Rng& rng) const {
  check_sample_context("DiagonalGaussian::sample", n, context);
  const Tensor eps = draw_normal_on({n, features_}, dtype_, device_for(context), rng);
  ad::NoGrad no_grad;
  core::ArenaScope scope;
  const Moments m = moments(context.defined() ? Var(context) : Var());
  return ad::add(m.mean, ad::mul(ad::exp(m.log_std), eps)).value().clone();
}

// --- BoxUniform ----------------------------------------------------------------------------------

BoxUniform::BoxUniform(const Tensor& low, const Tensor& high) : dtype_(low.dtype()) {
  if (low.rank() != 1 || high.shape() != low.shape())
    throw ShapeError(str("BoxUniform: expected low and high of one shape [D], got ", low.shape(),
                         " and ", high.shape()));
  low_ = low.to_vector();
  high_ = high.to_vector();
  for (std::size_t d = 0; d < low_.size(); ++d) {
    if (!(low_[d] < high_[d]) || !std::isfinite(high_[d] - low_[d]))
      throw core::ValueError(str("BoxUniform: expected finite low < high in every dimension, got [",
                                 low_[d], ", ", high_[d], ") in dimension ", d));
    log_volume_ += std::log(high_[d] - low_[d]);
  }
}

// log p(x) = -Σ log(high - low) when low ≤ x < high in every dimension, else -∞
Var BoxUniform::log_prob(const Var& x, const Var&) const {
  check_input("BoxUniform::log_prob", x, features(), dtype_);
  const std::vector<double> v = x.value().to_vector();
  const std::int64_t rows = x.dim(0), cols = features();
  std::vector<double> out(static_cast<std::size_t>(rows), -log_volume_);
  for (std::int64_t b = 0; b < rows; ++b)
    for (std::int64_t d = 0; d < cols; ++d) {
      const double xd = v[static_cast<std::size_t>(b * cols + d)];
      const auto k = static_cast<std::size_t>(d);
      if (!(xd >= low_[k] && xd < high_[k])) out[static_cast<std::size_t>(b)] =
                                                 -std::numeric_limits<double>::infinity();
    }
  Tensor lp = Tensor::scratch({rows}, dtype_, core::Device::cpu);
  if (dtype_ == DType::f32) {
    float* p = lp.data<float>();
    for (std::size_t i = 0; i < out.size(); ++i) p[i] = static_cast<float>(out[i]);
  } else {
    double* p = lp.data<double>();
    for (std::size_t i = 0; i < out.size(); ++i) p[i] = out[i];
  }
  return Var(lp.to(x.device()));
}

// a = low + (high - low) u,  u ~ U(0, 1)
Tensor BoxUniform::sample(std::int64_t n, const Tensor& context, core::Rng& rng) const {
  check_sample_context("BoxUniform::sample", n, context);
  const std::int64_t cols = features();
  Tensor u = draw_uniform({n, cols}, DType::f64, rng);
  const double* pu = u.data<double>();
  std::vector<double> a(static_cast<std::size_t>(n * cols));
  for (std::size_t i = 0; i < a.size(); ++i) {
    const std::size_t d = i % static_cast<std::size_t>(cols);
    a[i] = low_[d] + (high_[d] - low_[d]) * pu[i];
    if (a[i] >= high_[d]) a[i] = std::nextafter(high_[d], low_[d]);  // rounding up to high
  }
  Tensor out = Tensor::from(a, {n, cols}, dtype_);
  if (dtype_ == DType::f32) {  // rounding to float32 may land on high itself
    float* p = out.data<float>();
    for (std::size_t i = 0; i < a.size(); ++i) {
      const std::size_t d = i % static_cast<std::size_t>(cols);
      if (p[i] >= static_cast<float>(high_[d]))
        p[i] = std::nextafter(static_cast<float>(high_[d]), static_cast<float>(low_[d]));
    }
  }
  return to_context_device(out, context);
}

}  // namespace asbi::flows
