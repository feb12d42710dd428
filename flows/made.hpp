#pragma once
// MADE (Germain et al. 2015): a network whose output i depends only on inputs before i in a fixed
// order, which is what makes an autoregressive flow's Jacobian triangular. asbi follows nflows'
// made.py exactly: degrees, mask rule, layer order and initialisation.
//
// Degrees (sequential, nflows' default):
//   inputs              d = 1, …, D
//   hidden unit k       d = k mod max(1, D - 1) + min(1, D - 1)
//   output j            d = ⌊j / M⌋ + 1, M = outputs per feature (interleaved: [B, D, M] view)
// Masks: hidden weight (k ← i) kept when d_k ≥ d_i; output weight (j ← k) kept when d_j > d_k.
// With D = 1 every hidden degree is 0, so the inputs are masked out and the outputs depend on the
// context only.
//
//   MadeOptions o{.hidden = 50, .residual = false, .activation = nn::Activation::tanh};
//   Made made(/*features=*/3, /*context=*/4, /*multiplier=*/2, o, rng);
//   Var params = made.forward(a, context);            // a [B, 3], context [B, 4] → [B, 3 · 2]
#include <cstdint>
#include <vector>

#include "nn/layers.hpp"
#include "nn/module.hpp"

namespace asbi::flows {

using ad::Var;
using core::DType;
using core::Tensor;

// y = x (W ⊙ M)ᵀ + b: a linear layer whose weight is multiplied by a fixed 0/1 mask [out, in].
class MaskedLinear : public nn::Layer {
 public:
  // Kaiming-uniform init over the full fan-in (as torch.nn.Linear, which nflows' layer extends).
  MaskedLinear(std::vector<std::int64_t> in_degrees, std::vector<std::int64_t> out_degrees,
               bool is_output, core::Rng& rng, DType dtype = DType::f32);
  Var forward(const Var& x) const override;
  const std::vector<std::int64_t>& out_degrees() const { return out_degrees_; }
  const Tensor& mask() const { return mask_; }
  ad::Parameter& weight() const { return weight_; }
  ad::Parameter& bias() const { return bias_; }

 private:
  std::vector<std::int64_t> out_degrees_;
  Tensor mask_;  // [out, in], constant
  ad::Parameter& weight_;
  ad::Parameter& bias_;
};

struct MadeOptions {
  std::int64_t hidden = 50;
  int blocks = 2;
  // Residual blocks (nflows' default) or plain feed-forward blocks (sbi's MAF: false).
  bool residual = true;
  nn::Activation activation = nn::Activation::relu;
  DType dtype = DType::f32;
};

class Made : public nn::Module {
 public:
  // features D ≥ 1, context C ≥ 0 (0: unconditional), multiplier M ≥ 1 outputs per feature.
  Made(std::int64_t features, std::int64_t context, std::int64_t multiplier,
       const MadeOptions& options, core::Rng& rng);
  // x [B, D], context [B, C] (undefined when C = 0) → [B, D · M], output j for feature ⌊j / M⌋.
  Var forward(const Var& x, const Var& context) const;

  std::int64_t features() const { return features_; }
  std::int64_t context_features() const { return context_; }
  std::int64_t multiplier() const { return multiplier_; }
  // The hidden degrees 1..D-1 of the sequential assignment (exposed for tests).
  static std::vector<std::int64_t> hidden_degrees(std::int64_t hidden, std::int64_t features);

 private:
  struct Block {
    MaskedLinear* linear0 = nullptr;
    MaskedLinear* linear1 = nullptr;       // residual blocks only
    nn::Linear* context_layer = nullptr;   // residual blocks with a context only
  };

  std::int64_t features_, context_, multiplier_;
  MadeOptions options_;
  MaskedLinear* initial_ = nullptr;
  nn::Linear* context_layer_ = nullptr;
  std::vector<Block> blocks_;
  MaskedLinear* final_ = nullptr;
};

}  // namespace asbi::flows
