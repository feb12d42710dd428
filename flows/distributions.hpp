#pragma once
// Base distributions of a flow, with log_prob and sample, optionally conditioned on a context.
//
//   flows::StandardNormal base(2);                         // N(0, I₂)
//   core::Rng rng(seed, /*stream=*/7);
//   Tensor z = base.sample(1000, {}, rng);                 // [1000, 2]; rng moves past its draws
//   Var lp = base.log_prob(z, {});                         // [1000]
//
// Sampling reads whole Philox blocks from the caller's Rng through the bulk fills
// (core::fill_normal / fill_uniform at the Rng's current block), then moves the Rng past them:
// the same Rng state gives the same samples, with any thread count, and two successive calls give
// independent samples. Samples are owned CPU tensors of the distribution's dtype (moved to the
// context's device when a context on another device is given).
//
// Shapes: x [B, D]; context [B, C] for log_prob; [1, C] (n draws for one context) or [n, C] (one
// draw per context row) for sample.
#include <cstdint>
#include <memory>

#include "flows/bijector.hpp"
#include "nn/module.hpp"

namespace asbi::flows {

using core::DType;

// N(0, I_D); the context, if any, is ignored (nflows StandardNormal).
class StandardNormal : public Distribution {
 public:
  explicit StandardNormal(std::int64_t features, DType dtype = DType::f32);
  // log N(x; 0, I) = -½ Σ x² - (D/2) log 2π
  Var log_prob(const Var& x, const Var& context) const override;
  Tensor sample(std::int64_t n, const Tensor& context, core::Rng& rng) const override;
  std::int64_t features() const override { return features_; }
  DType dtype() const { return dtype_; }

 private:
  std::int64_t features_;
  DType dtype_;
};

// N(μ, diag σ²). Unconditional: μ ("mean") and log σ ("log_std") are trainable parameters
// starting at 0 (nflows DiagonalNormal). Conditional: an encoder maps the context [B, C] to
// [B, 2D] = (μ, log σ) per row (nflows ConditionalDiagonalNormal).
class DiagonalGaussian : public Distribution {
 public:
  DiagonalGaussian(std::int64_t features, DType dtype = DType::f32);
  DiagonalGaussian(std::int64_t features, std::unique_ptr<nn::Layer> context_encoder,
                   DType dtype = DType::f32);
  // log N(x; μ, σ²) = -½ Σ ((x - μ)/σ)² - Σ log σ - (D/2) log 2π
  Var log_prob(const Var& x, const Var& context) const override;
  Tensor sample(std::int64_t n, const Tensor& context, core::Rng& rng) const override;
  std::int64_t features() const override { return features_; }
  bool conditional() const { return encoder_ != nullptr; }

  struct Moments {
    Var mean;     // [1, D] unconditional, [B, D] conditional
    Var log_std;  // same shape
  };
  Moments moments(const Var& context) const;

 private:
  std::int64_t features_;
  DType dtype_;
  ad::Parameter* mean_ = nullptr;
  ad::Parameter* log_std_ = nullptr;
  nn::Layer* encoder_ = nullptr;
};

// Uniform on the box [low, high) (sbi's BoxUniform prior); no parameters, context ignored.
class BoxUniform : public Distribution {
 public:
  // low, high [D] with low < high elementwise; the dtype is theirs.
  BoxUniform(const Tensor& low, const Tensor& high);
  // -Σ log(high - low) inside the box, -∞ outside; no gradient flows to x.
  Var log_prob(const Var& x, const Var& context) const override;
  Tensor sample(std::int64_t n, const Tensor& context, core::Rng& rng) const override;
  std::int64_t features() const override { return static_cast<std::int64_t>(low_.size()); }

 private:
  std::vector<double> low_, high_;
  double log_volume_ = 0;
  DType dtype_;
};

// Draw helpers shared by the distributions and flows: standard normals / uniforms on (0, 1) of
// the given shape and dtype from rng's current block on, then rng moved past the blocks read.
Tensor draw_normal(const core::Shape& shape, DType dtype, core::Rng& rng);
Tensor draw_uniform(const core::Shape& shape, DType dtype, core::Rng& rng);

// The number of draws a sample call makes: n, after checking that the context has 1 or n rows
// (or is undefined). Throws ShapeError naming `who` otherwise.
std::int64_t check_sample_context(const char* who, std::int64_t n, const Tensor& context);

}  // namespace asbi::flows
