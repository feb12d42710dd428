#pragma once
// The differentiable ops. Each takes Vars and returns a Var; while a tape records, each appends one
// node whose backward rule sits next to its forward code (autodiff/ops_*.cpp). Shapes use the
// letters B (batch), S (set size), H (width), and inputs of one op share dtype and device.
//
// Broadcasting (add, sub, mul, div) follows NumPy: shapes align from the right and size-1
// dimensions stretch, so x[B, H] + b[H] and x[B, H] * s[B, 1] both work.
#include <cstdint>
#include <span>
#include <vector>

#include "autodiff/var.hpp"
#include "core/backend.hpp"

namespace asbi::ad {

// --- arithmetic -----------------------------------------------------------------------------
Var add(const Var& a, const Var& b);
Var sub(const Var& a, const Var& b);
Var mul(const Var& a, const Var& b);
Var div(const Var& a, const Var& b);
Var neg(const Var& x);
Var scale(const Var& x, double factor);  // x · factor
Var shift(const Var& x, double offset);  // x + offset

inline Var operator+(const Var& a, const Var& b) { return add(a, b); }
inline Var operator-(const Var& a, const Var& b) { return sub(a, b); }
inline Var operator*(const Var& a, const Var& b) { return mul(a, b); }
inline Var operator/(const Var& a, const Var& b) { return div(a, b); }
inline Var operator-(const Var& x) { return neg(x); }
inline Var operator*(const Var& x, double s) { return scale(x, s); }
inline Var operator*(double s, const Var& x) { return scale(x, s); }
inline Var operator+(const Var& x, double c) { return shift(x, c); }
inline Var operator-(const Var& x, double c) { return shift(x, -c); }

// --- linear algebra ---------------------------------------------------------------------------
Var matmul(const Var& a, const Var& b);  // [M, K] · [K, N] → [M, N]
// x Wᵀ + b: x [..., X], W [H, X], b [H] (may be undefined) → [..., H]. The layer of every MLP.
Var linear(const Var& x, const Var& weight, const Var& bias = {});
// f(x Wᵀ + b) + r as one node: the GEMM, then one fused pass adding the bias, applying the
// elementwise f (an activation, or core::Unary::identity for none) and adding the residual r
// ([..., H], or undefined). Equals add(unary f(linear(x, W, b)), r) up to float rounding, with
// fewer passes over memory and one node instead of three.
Var linear_act(const Var& x, const Var& weight, const Var& bias, core::Unary f,
               core::UnaryParams p = {}, const Var& residual = {});

// --- fused small MLP ------------------------------------------------------------------------------
// A whole MLP as one node: with h₀ = x [..., w₀],
//   h_{l+1} = f(h_l W_lᵀ + b_l) for the hidden layers,   y = h_{L-1} W_{L-1}ᵀ + b_{L-1}
// (weights[l] [w_{l+1}, w_l], biases[l] [w_{l+1}], all defined; f an activation or identity).
// The parameters are packed into one flat buffer (ad::concat, whose backward unpacks their
// gradients), so the backend sees one tensor; on CUDA a float32 network no wider than
// core::fused_mlp_max_width runs in one kernel launch each way, elsewhere layer by layer.
// Backward, from ∂L/∂y = dz_{L-1}, for l = L-1 … 0:
//   ∂L/∂W_l += dz_lᵀ h_l,   ∂L/∂b_l += Σ_rows dz_l,   dz_{l-1} = (dz_l W_l) ⊙ f'(z_{l-1}),
//   ∂L/∂x += dz₀ W₀,
// with z_l = h_l W_lᵀ + b_l saved by the forward.
Var fused_mlp(const Var& x, std::span<const Var> weights, std::span<const Var> biases,
              core::Unary f, core::UnaryParams p = {});

// --- activations and elementwise functions ------------------------------------------------------
Var relu(const Var& x);
Var leaky_relu(const Var& x, double slope = 0.01);
Var elu(const Var& x, double alpha = 1.0);
Var silu(const Var& x);
Var gelu(const Var& x);
Var tanh(const Var& x);
Var sigmoid(const Var& x);
Var softplus(const Var& x);
Var exp(const Var& x);
Var log(const Var& x);
Var log1p(const Var& x);
Var square(const Var& x);
Var sqrt(const Var& x);
Var abs(const Var& x);
Var pow(const Var& x, double exponent);
Var clamp(const Var& x, double lo, double hi);
// Elementwise choice: cond ≠ 0 ? a : b; cond, a and b share one shape; no gradient flows to cond.
Var where(const Tensor& cond, const Var& a, const Var& b);

// --- reductions ---------------------------------------------------------------------------------
Var sum(const Var& x);                                  // all elements → [1]
Var sum(const Var& x, int axis, bool keepdim = false);  // along one axis
Var mean(const Var& x);
Var mean(const Var& x, int axis, bool keepdim = false);
// Along the last axis: [..., K] → [...] (logsumexp) or [..., K] (softmax, log_softmax).
Var logsumexp(const Var& x);
Var softmax(const Var& x);
Var log_softmax(const Var& x);

// --- normalisation and sets -----------------------------------------------------------------------
// Over the last axis, with optional affine γ, β of shape [H] (pass {} to omit).
Var layer_norm(const Var& x, const Var& gamma = {}, const Var& beta = {}, double eps = 1e-5);
// Mean over the set axis: x [B, S, H] → [B, H].
Var mean_pool(const Var& x);
// Ragged sets packed one after another: x [Σ n_b, H] with n_b = lengths[b] ≥ 1 → [B, H].
Var mean_pool(const Var& x, std::span<const std::int64_t> lengths);

// --- shape and indexing ---------------------------------------------------------------------------
Var concat(std::span<const Var> parts, int axis);
inline Var concat(std::initializer_list<Var> parts, int axis) {
  return concat(std::span<const Var>(parts.begin(), parts.size()), axis);
}
Var slice(const Var& x, int axis, std::int64_t begin, std::int64_t end);  // [begin, end)
Var reshape(const Var& x, const Shape& shape);
// Rows of x by index (repeats allowed): y[i] = x[index[i]].
Var gather_rows(const Var& x, std::span<const std::int64_t> index);

}  // namespace asbi::ad
