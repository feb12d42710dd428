#pragma once
// A conditional normalizing flow q(a | b): a base distribution, a chain of bijectors and an
// optional embedding of the context b (nflows' Flow, which sbi's density estimators are).
//
//   core::Rng init(seed, /*stream=*/0);
//   auto flow = flows::nsf(/*features=*/2, /*context=*/3, init);     // sbi's build_nsf defaults
//   ad::Var lp = flow->log_prob(a, b);                   // a [B, 2], b [B, 3] → [B], one pass
//   core::Rng draws(seed, /*stream=*/1);
//   Tensor s = flow->sample(1000, b_obs, draws);        // b_obs [1, 3] → [1000, 2]
//
// Direction: bijector k maps z_{k-1} → z_k with z_0 = a (data → noise), so
//   log q(a | b) = log p(z_T | e) + Σ_k log|det ∂z_k/∂z_{k-1}|,  e = embed(b);
// sampling draws z_T ~ p(· | e) and runs the inverses from the last bijector to the first.
//
// Builders, with the defaults of sbi's build_nsf / build_maf (sbi/neural_nets/flow.py):
//   nsf: [SplineCoupling (alternating masks, ResidualNet conditioner: 50 hidden, 2 blocks, relu,
//        10 bins, linear tails at ±3) → LULinear (identity init)] × 5; for D = 1 a coupling
//        whose spline parameters depend on the context only (sbi's ContextSplineMap), no LU.
//   maf: [AffineAutoregressive (MADE: 50 hidden, 2 feed-forward blocks, tanh) →
//        RandomPermutation] × 5.
//   Both: StandardNormal base; optional z-scoring of the target (a fixed first transform, sbi's
//   z_score_x) and of the context (before the embedding net, sbi's z_score_y).
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "flows/distributions.hpp"
#include "flows/transforms.hpp"
#include "nn/layers.hpp"
#include "nn/standardize.hpp"

namespace asbi::flows {

struct FlowSamples {
  Var value;     // a [n, D]
  Var log_prob;  // log q(a | b) [n]
};

class ConditionalFlow : public Distribution {
 public:
  // context_features C ≥ 0 (0: unconditional). The embedding, if any, maps the (standardized)
  // context [B, C] to [B, E]; the bijectors and the base see the embedded context.
  ConditionalFlow(std::unique_ptr<Distribution> base,
                  std::vector<std::unique_ptr<Bijector>> transforms,
                  std::int64_t context_features = 0,
                  std::unique_ptr<nn::Layer> embedding = nullptr,
                  std::optional<nn::Standardizer> context_standardizer = std::nullopt);

  // log q(a | b) for a [B, D] and b [B, C] (or [1, C], shared by every row; undefined when
  // unconditional) → [B]. One forward pass through every bijector; differentiable.
  Var log_prob(const Var& a, const Var& context) const override;
  // n draws [n, D] for one context row [1, C], or one per row of [n, C]; under NoGrad, owned.
  Tensor sample(std::int64_t n, const Tensor& context, core::Rng& rng) const override;
  // Draws and their log-density together (one inverse pass), differentiable w.r.t. the
  // parameters (nflows' sample_and_log_prob): what variational objectives train.
  FlowSamples sample_and_log_prob(std::int64_t n, const Var& context, core::Rng& rng) const;
  // z-score (if any) then the embedding net (if any): [B, C] → [B, E]. Undefined in, out.
  Var embed(const Var& context) const;

  std::int64_t features() const override { return base_->features(); }
  std::int64_t context_features() const { return context_features_; }
  std::int64_t embedded_features() const { return embedded_features_; }
  const Distribution& base() const { return *base_; }
  const std::vector<Bijector*>& transforms() const { return transforms_; }
  // Named tensors besides the parameters, for checkpoints: the standardization statistics,
  // "target/mean", "target/std" (when the first bijector is a Standardize) and "context/mean",
  // "context/std" (when the context is standardized).
  std::vector<std::pair<std::string, Tensor*>> buffers();

 private:
  Var check_context(const char* who, const Var& context, std::int64_t rows) const;
  FlowSamples draw(std::int64_t n, const Var& context, core::Rng& rng, bool with_log_prob) const;

  Distribution* base_;
  std::vector<Bijector*> transforms_;
  std::int64_t context_features_;
  std::int64_t embedded_features_;
  nn::Layer* embedding_ = nullptr;
  std::optional<nn::Standardizer> context_standardizer_;
};

// What sbi's builders take besides sizes: z-scoring statistics and an embedding net.
struct FlowInputs {
  std::optional<nn::Standardizer> target;   // z_score_x: z = (a - μ) / σ as the first bijector
  std::optional<nn::Standardizer> context;  // z_score_y: applied to b before the embedding
  std::unique_ptr<nn::Layer> embedding;     // b → embedded context; its width found by one pass
};

struct NsfOptions {
  int transforms = 5;
  std::int64_t hidden = 50;  // conditioner width
  int blocks = 2;            // residual blocks of each conditioner
  int bins = 10;
  double tail_bound = 3.0;
  int context_hidden_layers = 1;  // D = 1 only: sbi's hidden_layers_spline_context
  double dropout = 0.0;
  nn::Activation activation = nn::Activation::relu;
  DType dtype = DType::f32;
};

struct MafOptions {
  int transforms = 5;
  std::int64_t hidden = 50;
  int blocks = 2;
  bool residual = false;  // sbi: use_residual_blocks=False
  nn::Activation activation = nn::Activation::tanh;
  DType dtype = DType::f32;
};

// features D ≥ 1, context_features C ≥ 0. Parameters are drawn from rng in construction order.
std::unique_ptr<ConditionalFlow> nsf(std::int64_t features, std::int64_t context_features,
                                     core::Rng& rng, const NsfOptions& options = {},
                                     FlowInputs inputs = {});
std::unique_ptr<ConditionalFlow> maf(std::int64_t features, std::int64_t context_features,
                                     core::Rng& rng, const MafOptions& options = {},
                                     FlowInputs inputs = {});

}  // namespace asbi::flows
