// Layer normalisation and set mean-pooling.
#include "autodiff/ops.hpp"
#include "autodiff/tape.hpp"
#include "core/backend.hpp"

namespace asbi::ad {

using core::ShapeError;
using core::str;

// x̂ = (x - μ) / √(σ² + ε),  y = γ ⊙ x̂ + β over the last axis   (Ba et al. 2016)
// The backward (core kernels) uses the saved μ and 1/√(σ² + ε) of every row:
//   ∂L/∂x = rstd (ĝ - mean(ĝ) - x̂ mean(ĝ ⊙ x̂)) with ĝ = γ ⊙ ∂L/∂y
Var layer_norm(const Var& x, const Var& gamma, const Var& beta, double eps) {
  const std::int64_t width = x.shape().last(), rows = x.numel() / width;
  for (const Var* p : {&gamma, &beta})
    if (p->defined()) {
      core::check_compatible("layer_norm", x.value(), p->value());
      core::check_shape("layer_norm", "gamma and beta", p->value(), {width});
    }
  if (!(eps > 0)) throw core::ValueError(str("layer_norm: eps must be > 0, got ", eps));
  Tensor y = Tensor::scratch(x.shape(), x.dtype(), x.device());
  Tensor mean = Tensor::scratch({rows}, x.dtype(), x.device());
  Tensor rstd = Tensor::scratch({rows}, x.dtype(), x.device());
  kernels(x).layer_norm(x.value(), gamma.defined() ? gamma.value() : Tensor(),
                        beta.defined() ? beta.value() : Tensor(), eps, y, mean, rstd);
  return record(y, {.op = "layer_norm", .inputs = {x, gamma, beta}, .saved = {mean, rstd},
                    .backward = [](Node& n) {
                      kernels(n).layer_norm_backward(n.input(0), n.input(1), n.saved[0],
                                                     n.saved[1], n.grad, n.input_grad(0),
                                                     n.input_grad(1), n.input_grad(2));
                    }});
}

// y_b = (1/S) Σᵢ x_{b,i}:  ∂L/∂x_{b,i} += ∂L/∂y_b / S
Var mean_pool(const Var& x) {
  if (x.shape().rank() != 3)
    throw ShapeError(str("mean_pool: expected sets of shape [B, S, H], got ", x.shape()));
  if (x.dim(1) == 0) throw ShapeError("mean_pool: sets must have at least one element, S = 0");
  Tensor y = Tensor::scratch({x.dim(0), x.dim(2)}, x.dtype(), x.device());
  kernels(x).mean_pool(x.value(), {}, y);
  return record(y, {.op = "mean_pool", .inputs = {x}, .backward = [](Node& n) {
                      kernels(n).mean_pool_backward(n.grad, {}, *n.input_grad(0));
                    }});
}

// Ragged: y_b = (1/n_b) Σ_{i<n_b} x_{first_b + i}:  ∂L/∂x_{first_b + i} += ∂L/∂y_b / n_b
Var mean_pool(const Var& x, std::span<const std::int64_t> lengths) {
  if (x.shape().rank() != 2)
    throw ShapeError(str("mean_pool: expected packed set elements of shape [N, H], got ",
                         x.shape()));
  std::int64_t total = 0;
  for (std::size_t b = 0; b < lengths.size(); ++b) {
    if (lengths[b] < 1)
      throw ShapeError(str("mean_pool: set ", b, " has length ", lengths[b],
                           "; every set needs at least one element"));
    total += lengths[b];
  }
  if (total != x.dim(0))
    throw ShapeError(str("mean_pool: the set lengths add up to ", total, " but x has ", x.dim(0),
                         " rows"));
  Tensor y = Tensor::scratch({static_cast<std::int64_t>(lengths.size()), x.dim(1)}, x.dtype(),
                             x.device());
  kernels(x).mean_pool(x.value(), lengths, y);
  return record(y, {.op = "mean_pool_ragged", .inputs = {x}, .index = keep(lengths),
                    .backward = [](Node& n) {
                      kernels(n).mean_pool_backward(n.grad, n.index, *n.input_grad(0));
                    }});
}

}  // namespace asbi::ad
