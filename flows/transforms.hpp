#pragma once
// The bijectors of asbi's flows, each with forward (data a → noise z), inverse and log|det J|,
// conditioned on a context (flows/bijector.hpp has the direction convention). They follow nflows
// (bayesiains/nflows, the library under sbi) layer for layer:
//
//   bijector              nflows class                                  parameters of the map
//   AffineCoupling        AffineCouplingTransform (RealNVP)             s = σ(u + 2) + 1e-3, t
//   SplineCoupling        PiecewiseRationalQuadraticCouplingTransform   RQ spline, linear tails
//   AffineAutoregressive  MaskedAffineAutoregressiveTransform (MAF)     s = softplus(u) + 1e-3, t
//   SplineAutoregressive  MaskedPiecewiseRationalQuadraticAutoregressiveTransform
//   Permutation           Permutation / ReversePermutation / RandomPermutation
//   LULinear              LULinear                                      W = L U, bias
//   Standardize           sbi's standardizing_transform (fixed z-score of the target)
//
// Coupling: the mask splits the D features into identity features (mask false), which pass
// through unchanged, and transform features (mask true), transformed elementwise with parameters
// that a conditioner computes from the identity features and the context. The conditioner's
// output [B, D_t · M] is read as nflows reads it: the affine coupling as blocks [t | u], the
// spline coupling as [B, D_t, M] (feature-major).
//
// Autoregressive: a MADE computes every feature's parameters from the features before it, so
// forward is one pass; inverse is D passes (feature d is exact after pass d), as nflows does.
//
// Cost per forward: one conditioner pass plus O(B·D) elementwise work; LULinear O(B·D²).
// Everything is recorded with ad ops (one node for the fused spline), so log_prob is
// differentiable w.r.t. every parameter, the inputs and the context. Inverses are differentiable
// too (LULinear's through a triangular-solve op), so sample_and_log_prob can be trained.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "flows/bijector.hpp"
#include "flows/made.hpp"
#include "flows/spline.hpp"
#include "nn/layers.hpp"
#include "nn/standardize.hpp"

namespace asbi::flows {

// --- conditioners ----------------------------------------------------------------------------

// A network from the identity features x [B, I] (undefined when I = 0) and the context [B, C]
// (undefined when unconditional) to transform parameters [B, O]. It may return a single row
// [1, O] when its output does not depend on the batch (ContextMap without a context): the
// coupling then repeats it for every row.
class Conditioner : public nn::Module {
 public:
  virtual Var forward(const Var& x, const Var& context) const = 0;
  // nflows divides the spline's raw widths and heights by √hidden_features when the conditioner
  // has that attribute; 0 means it has none (no scaling).
  virtual std::int64_t hidden_features() const { return 0; }
};

// Makes the conditioner of one coupling from its input and output widths (nflows'
// transform_net_create_fn).
using ConditionerFactory =
    std::function<std::unique_ptr<Conditioner>(std::int64_t in, std::int64_t out)>;

// nflows' ResidualNet on (x, context): sbi's NSF conditioner.
class ResidualConditioner : public Conditioner {
 public:
  ResidualConditioner(std::int64_t in, std::int64_t out, std::int64_t hidden,
                      std::int64_t context, int blocks, nn::Activation activation, double dropout,
                      core::Rng& rng, DType dtype = DType::f32);
  Var forward(const Var& x, const Var& context) const override;
  std::int64_t hidden_features() const override { return hidden_; }

 private:
  std::int64_t hidden_;
  nn::ResidualNet* net_;
};

// A plain MLP on [x | context] (relu by default); no √hidden scaling.
class MlpConditioner : public Conditioner {
 public:
  MlpConditioner(std::int64_t in, std::int64_t out, const std::vector<std::int64_t>& hidden,
                 std::int64_t context, core::Rng& rng,
                 nn::Activation activation = nn::Activation::relu, DType dtype = DType::f32);
  Var forward(const Var& x, const Var& context) const override;

 private:
  std::int64_t in_, context_;
  nn::Mlp* net_;
};

// sbi's ContextSplineMap, for one-dimensional targets (no identity features to condition on):
// the parameters as a function of the context only,
//   context → Linear(C, H) → relu → [Linear(H, H) → relu] × hidden_layers → Linear(H, out),
// or, without a context (C = 0), a trainable constant row [1, out] starting at 0 (equal bins).
// Distinct hidden layers (sbi repeats one Linear module when hidden_layers > 1, sharing its
// weights; with its default of 1 the two agree). Reports hidden_features() = H with a context.
class ContextMap : public Conditioner {
 public:
  ContextMap(std::int64_t out, std::int64_t hidden, std::int64_t context, int hidden_layers,
             core::Rng& rng, DType dtype = DType::f32);
  Var forward(const Var& x, const Var& context) const override;
  std::int64_t hidden_features() const override { return context_ > 0 ? hidden_ : 0; }

 private:
  std::int64_t out_, hidden_, context_;
  nn::Mlp* net_ = nullptr;
  ad::Parameter* constant_ = nullptr;
};

// Factories binding everything but the widths; `rng` must outlive the construction of the flow.
ConditionerFactory residual_conditioner(std::int64_t hidden, std::int64_t context, int blocks,
                                        nn::Activation activation, double dropout,
                                        core::Rng& rng, DType dtype = DType::f32);
ConditionerFactory mlp_conditioner(std::vector<std::int64_t> hidden, std::int64_t context,
                                   core::Rng& rng, nn::Activation activation = nn::Activation::relu,
                                   DType dtype = DType::f32);
// Ignores `in` (it must be 0 or the identity features are dropped: use it for D = 1).
ConditionerFactory context_map(std::int64_t hidden, std::int64_t context, int hidden_layers,
                               core::Rng& rng, DType dtype = DType::f32);

// nflows' create_alternating_binary_mask: true (transformed) at even indices 0, 2, … when
// `even`, at odd indices otherwise.
std::vector<bool> alternating_mask(std::int64_t features, bool even);

// --- coupling transforms ---------------------------------------------------------------------

class Coupling : public Bijector {
 public:
  Transformed forward(const Var& a, const Var& context) const override;
  Transformed inverse(const Var& z, const Var& context) const override;
  std::int64_t features() const override { return static_cast<std::int64_t>(mask_.size()); }
  const std::vector<bool>& mask() const { return mask_; }
  const Conditioner& conditioner() const { return *conditioner_; }

 protected:
  // multiplier: conditioner outputs per transform feature.
  Coupling(std::vector<bool> mask, std::int64_t multiplier, const ConditionerFactory& make);
  // The elementwise map of the transform features x [B, D_t] with the conditioner's parameters
  // [B, D_t · M]; returns the mapped features and log|det| summed per row [B].
  virtual Transformed transform(const Var& x, const Var& params, bool inverse) const = 0;

 private:
  Transformed apply(const Var& input, const Var& context, bool inverse) const;

  std::vector<bool> mask_;
  std::int64_t multiplier_;
  std::vector<std::int64_t> identity_, transformed_;  // feature indices, ascending
  std::vector<std::int64_t> merge_;  // column c of the output from column merge_[c] of [id | t]
  Conditioner* conditioner_;
};

// RealNVP coupling (nflows AffineCouplingTransform): parameters [t, u] per feature block,
//   forward z = a s + t,  inverse a = (z - t) / s,  s = sigmoid(u + 2) + 1e-3,
//   log|det| = ±Σ log s.
class AffineCoupling : public Coupling {
 public:
  AffineCoupling(std::vector<bool> mask, const ConditionerFactory& make);

 protected:
  Transformed transform(const Var& x, const Var& params, bool inverse) const override;
};

// Neural-spline coupling (nflows PiecewiseRationalQuadraticCouplingTransform, tails="linear"):
// per transform feature 3K - 1 parameters (K widths, K heights, K - 1 interior derivatives);
// widths and heights are divided by √H when the conditioner reports H hidden features.
class SplineCoupling : public Coupling {
 public:
  SplineCoupling(std::vector<bool> mask, const ConditionerFactory& make,
                 const SplineOptions& spline = {});
  const SplineOptions& spline() const { return spline_; }

 protected:
  Transformed transform(const Var& x, const Var& params, bool inverse) const override;

 private:
  SplineOptions spline_;
};

// --- autoregressive transforms ---------------------------------------------------------------

class Autoregressive : public Bijector {
 public:
  Transformed forward(const Var& a, const Var& context) const override;
  Transformed inverse(const Var& z, const Var& context) const override;
  std::int64_t features() const override { return made_->features(); }
  const Made& made() const { return *made_; }

 protected:
  Autoregressive(std::int64_t features, std::int64_t context, std::int64_t multiplier,
                 const MadeOptions& options, core::Rng& rng);
  // As Coupling::transform, with the MADE's parameters [B, D · M], feature-major.
  virtual Transformed transform(const Var& x, const Var& params, bool inverse) const = 0;

 private:
  Made* made_;
};

// MAF layer (nflows MaskedAffineAutoregressiveTransform): parameters (u, t) per feature,
//   forward z_d = s_d a_d + t_d,  s = softplus(u) + 1e-3,  log|det| = Σ log s.
// (nflows replaced the older sigmoid(u + 2) + 1e-3 by softplus; asbi follows the current code.)
class AffineAutoregressive : public Autoregressive {
 public:
  AffineAutoregressive(std::int64_t features, std::int64_t context, const MadeOptions& options,
                       core::Rng& rng);

 protected:
  Transformed transform(const Var& x, const Var& params, bool inverse) const override;
};

// Autoregressive neural spline (nflows MaskedPiecewiseRationalQuadraticAutoregressiveTransform,
// tails="linear"): 3K - 1 parameters per feature. nflows' MADE has no hidden_features
// attribute, so its widths and heights are not rescaled.
class SplineAutoregressive : public Autoregressive {
 public:
  SplineAutoregressive(std::int64_t features, std::int64_t context, const MadeOptions& options,
                       core::Rng& rng, const SplineOptions& spline = {});

 protected:
  Transformed transform(const Var& x, const Var& params, bool inverse) const override;

 private:
  SplineOptions spline_;
};

// --- linear transforms -----------------------------------------------------------------------

// z[:, i] = a[:, order[i]]; log|det| = 0. No parameters.
class Permutation : public Bijector {
 public:
  explicit Permutation(std::vector<std::int64_t> order);
  Transformed forward(const Var& a, const Var& context) const override;
  Transformed inverse(const Var& z, const Var& context) const override;
  std::int64_t features() const override { return static_cast<std::int64_t>(order_.size()); }
  const std::vector<std::int64_t>& order() const { return order_; }

 private:
  std::vector<std::int64_t> order_, inverse_order_;
};

// order = D-1, …, 0 (nflows ReversePermutation).
class ReversePermutation : public Permutation {
 public:
  explicit ReversePermutation(std::int64_t features);
};

// A uniformly random order drawn once from rng (nflows RandomPermutation draws torch.randperm).
class RandomPermutation : public Permutation {
 public:
  RandomPermutation(std::int64_t features, core::Rng& rng);
};

// nflows LULinear: z = W a + b with W = L U, L unit lower triangular ("lower_entries", the
// D(D-1)/2 entries below the diagonal, row by row), U upper triangular ("upper_entries" above the
// diagonal, and the diagonal softplus("unconstrained_upper_diag") + eps), b ("bias").
//   log|det| = Σ log diag(U);  inverse: a = U⁻¹ L⁻¹ (z - b) by two triangular solves, one op
//   with its own backward (differentiable in z and in every parameter; CPU math, O(B·D²)).
// identity_init (sbi's choice): L = U = I, b = 0 at the start; otherwise entries uniform in
// ±1/√D as nflows.
class LULinear : public Bijector {
 public:
  LULinear(std::int64_t features, core::Rng& rng, bool identity_init = true,
           DType dtype = DType::f32, double eps = 1e-3);
  Transformed forward(const Var& a, const Var& context) const override;
  Transformed inverse(const Var& z, const Var& context) const override;
  std::int64_t features() const override { return features_; }
  // The factors as [D, D] Vars (recorded when a tape records), and log|det W| [1].
  Var lower() const;
  Var upper() const;
  Var log_abs_det() const;

 private:
  std::int64_t features_;
  double eps_;
  ad::Parameter* lower_entries_ = nullptr;  // absent when D = 1
  ad::Parameter* upper_entries_ = nullptr;  // absent when D = 1
  ad::Parameter& unconstrained_upper_diag_;
  ad::Parameter& bias_;
  Tensor one_zero_;  // [1, 0]: the constants of the gather sources
  std::vector<std::int64_t> lower_index_, upper_index_;  // gather maps into [entries | consts]
};

// The fixed z-score of the target (sbi's standardizing_transform, an nflows
// PointwiseAffineTransform): z = (a - μ) / σ, log|det| = -Σ log σ. No parameters; μ and σ are
// the standardizer's named tensors (state(), for checkpoints).
class Standardize : public Bijector {
 public:
  explicit Standardize(nn::Standardizer standardizer);
  Transformed forward(const Var& a, const Var& context) const override;
  Transformed inverse(const Var& z, const Var& context) const override;
  std::int64_t features() const override { return standardizer_.features(); }
  nn::Standardizer& standardizer() { return standardizer_; }
  const nn::Standardizer& standardizer() const { return standardizer_; }

 private:
  nn::Standardizer standardizer_;
};

// --- helpers shared with the flow --------------------------------------------------------------

// log|det| of a map that preserves volume: zeros [B] of x's dtype and device (a constant).
Var zero_log_det(const Var& x);
// y[:, j] = x[:, index[j]] for x [B, D]: one recorded op (∂L/∂x[:, index[j]] += ∂L/∂y[:, j]).
Var gather_columns(const Var& x, std::span<const std::int64_t> index);

}  // namespace asbi::flows
