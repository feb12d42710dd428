#pragma once
// The layers networks are built from. Shapes: x [B, in] → [B, out]; leading dimensions beyond
// the batch are carried through (x [B, S, in] → [B, S, out]).
#include <cstdint>
#include <string>
#include <vector>

#include "nn/module.hpp"

namespace asbi::nn {

enum class Activation { relu, leaky_relu, elu, silu, gelu, tanh, sigmoid, softplus, identity };
Var activate(Activation a, const Var& x);
Activation activation_from_name(const std::string& name);  // "relu", "tanh", … ; throws
const char* name(Activation a);

// y = x Wᵀ + b with W [out, in], b [out].
class Linear : public Layer {
 public:
  Linear(std::int64_t in, std::int64_t out, core::Rng& rng, bool bias = true,
         DType dtype = DType::f32);
  Var forward(const Var& x) const override;
  std::int64_t in_features() const { return in_; }
  std::int64_t out_features() const { return out_; }
  Parameter& weight() const { return weight_; }
  Parameter* bias() const { return bias_; }

 private:
  std::int64_t in_, out_;
  Parameter& weight_;
  Parameter* bias_ = nullptr;
};

// in → hidden[0] → … → hidden[k-1] → out, the activation after every hidden layer, none after
// the last (a regression or logit head).
class Mlp : public Layer {
 public:
  Mlp(std::int64_t in, const std::vector<std::int64_t>& hidden, std::int64_t out,
      core::Rng& rng, Activation activation = Activation::relu, DType dtype = DType::f32);
  Var forward(const Var& x) const override;

 private:
  std::vector<Linear*> layers_;
  Activation activation_;
};

}  // namespace asbi::nn
