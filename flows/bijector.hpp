#pragma once
// Bijectors and distributions, conditioned on a context. Direction convention (as nflows):
// forward maps data a to noise z, so log q(a | b) = log p(z | b) + log|det ∂z/∂a|; inverse maps
// noise back to data, which is how samples are drawn.
//
// Shapes: a, z [B, D]; context [B, C] (or undefined when unconditional); log_det [B].
#include <memory>
#include <vector>

#include "nn/module.hpp"

namespace asbi::flows {

using ad::Var;
using core::Tensor;

struct Transformed {
  Var value;    // z for forward, a for inverse
  Var log_det;  // log|det J| of the map that was applied, one per row
};

class Bijector : public nn::Module {
 public:
  virtual Transformed forward(const Var& a, const Var& context) const = 0;
  virtual Transformed inverse(const Var& z, const Var& context) const = 0;
  virtual std::int64_t features() const = 0;
};

class Distribution : public nn::Module {
 public:
  // log density of every row of x [B, D] given its context row; [B].
  virtual Var log_prob(const Var& x, const Var& context) const = 0;
  // n draws [n, D] for one context row [1, C] (or undefined), or one draw per row of context
  // [n, C]. Draws come from rng's stream; the same rng state gives the same samples.
  virtual Tensor sample(std::int64_t n, const Tensor& context, core::Rng& rng) const = 0;
  virtual std::int64_t features() const = 0;
};

}  // namespace asbi::flows
