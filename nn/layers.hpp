#pragma once
// The layers networks are built from. Shapes: x [B, in] → [B, out]; leading dimensions beyond
// the batch are carried through (x [B, S, in] → [B, S, out]).
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
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
  // activation(x Wᵀ + b) + residual as one fused op (ad::linear_act); residual may be undefined.
  Var forward(const Var& x, Activation activation, const Var& residual = {}) const;
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

// Layer normalisation over the last axis (Ba et al. 2016), as torch.nn.LayerNorm: y = γ ⊙ x̂ + β
// with x̂ = (x - mean) / √(var + eps); γ ("weight") starts at 1 and β ("bias") at 0.
class LayerNorm : public Layer {
 public:
  explicit LayerNorm(std::int64_t features, DType dtype = DType::f32, double eps = 1e-5);
  Var forward(const Var& x) const override;
  std::int64_t features() const { return features_; }
  Parameter& weight() const { return weight_; }
  Parameter& bias() const { return bias_; }

 private:
  std::int64_t features_;
  double eps_;
  Parameter& weight_;
  Parameter& bias_;
};

// Inverted dropout, as torch.nn.Dropout: while training, each element is kept with probability
// 1 - p and scaled by 1/(1 - p), so that the expected output is the input; in evaluation (the
// default) it is the identity. Masks come from the module's own Philox stream (seed, stream):
// the k-th mask after construction is the same on every run and thread count, whatever else
// draws random numbers. Not thread-safe: one forward at a time per module.
class Dropout : public Layer {
 public:
  Dropout(double p, std::uint64_t seed, std::uint64_t stream = 0);
  Var forward(const Var& x) const override;
  double p() const { return p_; }
  // The Philox block the next mask starts at, for checkpoints and replays.
  std::uint64_t counter() const { return rng_.counter(); }
  void set_counter(std::uint64_t counter) { rng_.set_counter(counter); }

 private:
  double p_;
  mutable core::Rng rng_;  // advances with every training-mode forward
};

// Layers applied one after another; children are named by position ("0", "1", …), so the
// parameters of the second layer are "1.weight", "1.bias".
class Sequential : public Layer {
 public:
  Sequential() = default;
  template <typename L>
  L& push_back(std::unique_ptr<L> layer) {
    L& ref = child(std::to_string(layers_.size()), std::move(layer));
    layers_.push_back(&ref);
    return ref;
  }
  template <typename L, typename... Args>
  L& emplace_back(Args&&... args) {
    return push_back(std::make_unique<L>(std::forward<Args>(args)...));
  }
  Var forward(const Var& x) const override;
  std::size_t size() const { return layers_.size(); }
  Layer& operator[](std::size_t i) const { return *layers_.at(i); }

 private:
  std::vector<Layer*> layers_;
};

// The pre-activation residual block of nflows (nflows/nn/nets/resnet.py), the conditioner block
// of neural spline flows:
//   t = linear1(dropout(act(linear0(act(x)))))
//   t = t ⊙ sigmoid(context_layer(c))        (a GLU gate, only when context_features > 0)
//   y = x + t
// With zero_initialization, linear1's weight and bias start uniform in ±1e-3, so the block
// starts close to the identity. Parameters, in registration order: "context_layer.*" (when
// context_features > 0), "linear0.*", "linear1.*".
class ResidualBlock : public Module {
 public:
  ResidualBlock(std::int64_t features, std::int64_t context_features, core::Rng& rng,
                Activation activation = Activation::relu, double dropout_probability = 0.0,
                bool zero_initialization = true, DType dtype = DType::f32);
  // x [B, features], context [B, context_features] (undefined when context_features == 0).
  Var forward(const Var& x, const Var& context = {}) const;
  Var operator()(const Var& x, const Var& context = {}) const { return forward(x, context); }
  std::int64_t features() const { return features_; }
  std::int64_t context_features() const { return context_features_; }

 private:
  std::int64_t features_, context_features_;
  Activation activation_;
  Linear* context_layer_ = nullptr;
  Linear& linear0_;
  Linear& linear1_;
  Dropout& dropout_;
};

// nflows' ResidualNet: x [B, in] (and context [B, context_features] when context_features > 0)
//   h = initial_layer(concat(x, context))      [B, hidden]
//   h = blocks.k(h, context) for k < num_blocks
//   y = final_layer(h)                           [B, out]
// Parameters: "initial_layer.*", "blocks.<k>.<block parameter>", "final_layer.*".
class ResidualNet : public Layer {
 public:
  ResidualNet(std::int64_t in, std::int64_t out, std::int64_t hidden,
              std::int64_t context_features, int num_blocks, Activation activation,
              double dropout_probability, core::Rng& rng, DType dtype = DType::f32);
  Var forward(const Var& x, const Var& context) const;
  Var forward(const Var& x) const override { return forward(x, Var()); }  // no context
  Var operator()(const Var& x, const Var& context = {}) const { return forward(x, context); }
  std::int64_t in_features() const { return in_; }
  std::int64_t out_features() const { return out_; }
  std::int64_t context_features() const { return context_features_; }

 private:
  std::int64_t in_, out_, context_features_;
  Linear& initial_layer_;
  std::vector<ResidualBlock*> blocks_;
  Linear* final_layer_ = nullptr;
};

}  // namespace asbi::nn
