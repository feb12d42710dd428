#include "nn/layers.hpp"

#include <algorithm>
#include <cmath>
#include <span>

#include "autodiff/ops.hpp"
#include "core/backend.hpp"

namespace asbi::nn {
namespace {

// Uniform in ±bound, drawn like kaiming_uniform so that one rng gives one sequence of layers.
Tensor uniform_tensor(const Shape& shape, double bound, core::Rng& rng, DType dtype) {
  std::vector<double> values(static_cast<std::size_t>(shape.numel()));
  for (double& v : values) v = bound * (2.0 * rng.uniform() - 1.0);
  return Tensor::from(values, shape, dtype);
}

// The elementwise function of an activation, with the parameters activate() gives it.
struct UnaryActivation {
  core::Unary op;
  core::UnaryParams params;
};

UnaryActivation unary_of(Activation a) {
  switch (a) {
    case Activation::relu: return {core::Unary::relu, {}};
    case Activation::leaky_relu: return {core::Unary::leaky_relu, {0.01}};
    case Activation::elu: return {core::Unary::elu, {1.0}};
    case Activation::silu: return {core::Unary::silu, {}};
    case Activation::gelu: return {core::Unary::gelu, {}};
    case Activation::tanh: return {core::Unary::tanh, {}};
    case Activation::sigmoid: return {core::Unary::sigmoid, {}};
    case Activation::softplus: return {core::Unary::softplus, {}};
    case Activation::identity: return {core::Unary::identity, {}};
  }
  return {core::Unary::identity, {}};
}

// Whether Mlp::forward takes ad::fused_mlp: on CUDA a float32 network no wider than
// core::fused_mlp_max_width runs as one fused op (one kernel launch each way); everywhere else,
// and on the CPU always, layer by layer, so CPU numbers do not depend on this dispatch.
bool runs_fused(const Var& x, const std::vector<Linear*>& layers) {
  if (x.device() != core::Device::cuda || x.dtype() != DType::f32) return false;
  if (x.shape().rank() == 0 || x.shape().last() > core::fused_mlp_max_width) return false;
  return std::all_of(layers.begin(), layers.end(), [](const Linear* layer) {
    return layer->out_features() <= core::fused_mlp_max_width;
  });
}

}  // namespace

Var activate(Activation a, const Var& x) {
  switch (a) {
    case Activation::relu: return ad::relu(x);
    case Activation::leaky_relu: return ad::leaky_relu(x);
    case Activation::elu: return ad::elu(x);
    case Activation::silu: return ad::silu(x);
    case Activation::gelu: return ad::gelu(x);
    case Activation::tanh: return ad::tanh(x);
    case Activation::sigmoid: return ad::sigmoid(x);
    case Activation::softplus: return ad::softplus(x);
    case Activation::identity: return x;
  }
  return x;
}

const char* name(Activation a) {
  static const char* names[] = {"relu", "leaky_relu", "elu",      "silu",    "gelu",
                                "tanh", "sigmoid",    "softplus", "identity"};
  return names[static_cast<int>(a)];
}

Activation activation_from_name(const std::string& text) {
  for (int i = 0; i <= static_cast<int>(Activation::identity); ++i)
    if (text == name(static_cast<Activation>(i))) return static_cast<Activation>(i);
  throw core::ValueError(core::str("unknown activation '", text,
                                   "'; expected relu, leaky_relu, elu, silu, gelu, tanh, "
                                   "sigmoid, softplus or identity"));
}

Linear::Linear(std::int64_t in, std::int64_t out, core::Rng& rng, bool bias, DType dtype)
    : in_(in), out_(out), weight_(param("weight", kaiming_uniform({out, in}, in, rng, dtype))) {
  if (in < 1 || out < 1)
    throw core::ValueError(core::str("Linear: sizes must be >= 1, got in = ", in, ", out = ", out));
  if (bias) bias_ = &param("bias", kaiming_uniform({out}, in, rng, dtype));
}

Var Linear::forward(const Var& x) const {
  return ad::linear(x, weight_, bias_ ? Var(*bias_) : Var());
}

Var Linear::forward(const Var& x, Activation activation, const Var& residual) const {
  const UnaryActivation f = unary_of(activation);
  return ad::linear_act(x, weight_, bias_ ? Var(*bias_) : Var(), f.op, f.params, residual);
}

Mlp::Mlp(std::int64_t in, const std::vector<std::int64_t>& hidden, std::int64_t out,
         core::Rng& rng, Activation activation, DType dtype)
    : activation_(activation) {
  std::int64_t width = in;
  for (std::size_t i = 0; i <= hidden.size(); ++i) {
    const std::int64_t next = i < hidden.size() ? hidden[i] : out;
    layers_.push_back(&child(std::to_string(i), std::make_unique<Linear>(width, next, rng, true,
                                                                          dtype)));
    width = next;
  }
}

Var Mlp::forward(const Var& x) const {
  if (runs_fused(x, layers_)) {
    std::vector<Var> weights, biases;
    for (const Linear* layer : layers_) {
      weights.emplace_back(layer->weight());
      biases.emplace_back(*layer->bias());
    }
    const UnaryActivation f = unary_of(activation_);
    return ad::fused_mlp(x, weights, biases, f.op, f.params);
  }
  Var h = x;
  for (std::size_t i = 0; i < layers_.size(); ++i)
    h = i + 1 < layers_.size() ? layers_[i]->forward(h, activation_) : layers_[i]->forward(h);
  return h;
}

// y = γ ⊙ (x - μ) / √(σ² + ε) + β over the last axis; the backward is ad::layer_norm's.
LayerNorm::LayerNorm(std::int64_t features, DType dtype, double eps)
    : features_(features),
      eps_(eps),
      weight_(param("weight", Tensor::full({std::max<std::int64_t>(features, 1)}, 1.0, dtype))),
      bias_(param("bias", Tensor::zeros({std::max<std::int64_t>(features, 1)}, dtype))) {
  if (features < 1)
    throw core::ValueError(core::str("LayerNorm: features must be >= 1, got ", features));
  if (!(eps > 0)) throw core::ValueError(core::str("LayerNorm: eps must be > 0, got ", eps));
}

Var LayerNorm::forward(const Var& x) const {
  if (x.shape().rank() == 0 || x.shape().last() != features_)
    throw core::ShapeError(core::str("LayerNorm: expected x of shape [..., ", features_,
                                     "], got ", x.shape()));
  return ad::layer_norm(x, weight_, bias_, eps_);
}

Dropout::Dropout(double p, std::uint64_t seed, std::uint64_t stream) : p_(p), rng_(seed, stream) {
  if (!(p >= 0.0 && p <= 1.0))
    throw core::ValueError(core::str("Dropout: p must be in [0, 1], got ", p));
}

// y = m ⊙ x with m_i = 1/(1 - p) when u_i ≥ p (probability 1 - p), else 0;  ∂L/∂x = m ⊙ ∂L/∂y
// (a product with a constant mask, so ad::mul records the backward).
Var Dropout::forward(const Var& x) const {
  if (!training() || p_ == 0.0) return x;
  // One float32 uniform per element whatever x's dtype, so float32 and float64 inputs see the
  // same mask; drawn on x's device. The block-aligned offset keeps successive masks disjoint.
  const std::int64_t n = x.numel();
  const double keep_scale = p_ < 1.0 ? 1.0 / (1.0 - p_) : 0.0;  // p = 1 drops everything
  Tensor mask = Tensor::scratch(x.shape(), x.dtype(), x.device());
  core::backend(x.device())
      .dropout_mask(rng_.seed(), rng_.stream(), rng_.counter() * core::kFloatsPerBlock, p_,
                    keep_scale, mask);
  rng_.skip((static_cast<std::uint64_t>(n) + core::kFloatsPerBlock - 1) / core::kFloatsPerBlock);
  return ad::mul(x, Var(mask));
}

Var Sequential::forward(const Var& x) const {
  Var h = x;
  for (const Layer* layer : layers_) h = layer->forward(h);
  return h;
}

ResidualBlock::ResidualBlock(std::int64_t features, std::int64_t context_features,
                             core::Rng& rng, Activation activation, double dropout_probability,
                             bool zero_initialization, DType dtype)
    : features_(features),
      context_features_(context_features),
      activation_(activation),
      // nflows registers the context layer first; keeping its order keeps the rng's order.
      context_layer_(context_features > 0
                         ? &child("context_layer", std::make_unique<Linear>(
                                                       context_features, features, rng, true,
                                                       dtype))
                         : nullptr),
      linear0_(child("linear0", std::make_unique<Linear>(features, features, rng, true, dtype))),
      linear1_(child("linear1", std::make_unique<Linear>(features, features, rng, true, dtype))),
      // The seed is drawn whatever the probability, so the parameters of later blocks do not
      // depend on whether dropout is on.
      dropout_(child("dropout", std::make_unique<Dropout>(dropout_probability, rng.next_u64()))) {
  if (context_features < 0)
    throw core::ValueError(core::str("ResidualBlock: context_features must be >= 0 (0: no "
                                     "context), got ", context_features));
  if (zero_initialization) {
    // Near-zero residual branch: the block starts as (almost) the identity.
    Parameter& w = linear1_.weight();
    w.value().copy_from(uniform_tensor(w.value().shape(), 1e-3, rng, dtype));
    Parameter& b = *linear1_.bias();
    b.value().copy_from(uniform_tensor(b.value().shape(), 1e-3, rng, dtype));
  }
}

// y = x + linear1(dropout(act(linear0(act(x))))) ⊙ sigmoid(context_layer(c))
Var ResidualBlock::forward(const Var& x, const Var& context) const {
  if (context_features_ > 0 && !context.defined())
    throw core::ValueError(core::str("ResidualBlock: built for a context of ", context_features_,
                                     " features, but none was given"));
  if (context_features_ == 0 && context.defined())
    throw core::ValueError(core::str("ResidualBlock: built without context, but a context of "
                                     "shape ", context.shape(), " was given"));
  const Var t = dropout_(linear0_.forward(activate(activation_, x), activation_));
  // Without a gate the residual add fuses into linear1.
  if (!context_layer_) return linear1_.forward(t, Activation::identity, x);
  // F.glu(cat(t, g), dim=1) = t ⊙ sigmoid(g): the gate halves never need to be concatenated.
  return ad::add(x, ad::mul(linear1_(t), ad::sigmoid((*context_layer_)(context))));
}

ResidualNet::ResidualNet(std::int64_t in, std::int64_t out, std::int64_t hidden,
                         std::int64_t context_features, int num_blocks, Activation activation,
                         double dropout_probability, core::Rng& rng, DType dtype)
    : in_(in),
      out_(out),
      context_features_(context_features),
      // nflows' first layer reads x and the context side by side.
      initial_layer_(child("initial_layer", std::make_unique<Linear>(
                                                in + (context_features > 0 ? context_features : 0),
                                                hidden, rng, true, dtype))) {
  if (context_features < 0 || num_blocks < 0)
    throw core::ValueError(core::str("ResidualNet: expected context_features >= 0 and "
                                     "num_blocks >= 0, got ", context_features, " and ",
                                     num_blocks));
  for (int k = 0; k < num_blocks; ++k)
    blocks_.push_back(&child(core::str("blocks.", k),
                             std::make_unique<ResidualBlock>(hidden, context_features, rng,
                                                             activation, dropout_probability,
                                                             true, dtype)));
  final_layer_ = &child("final_layer", std::make_unique<Linear>(hidden, out, rng, true, dtype));
}

Var ResidualNet::forward(const Var& x, const Var& context) const {
  if (x.shape().rank() != 2 || x.dim(1) != in_)
    throw core::ShapeError(core::str("ResidualNet: expected x of shape [B, ", in_, "], got ",
                                     x.shape()));
  if (context_features_ > 0) {
    if (!context.defined())
      throw core::ValueError(core::str("ResidualNet: built for a context of ", context_features_,
                                       " features, but none was given"));
    if (context.shape().rank() != 2 || context.dim(0) != x.dim(0) ||
        context.dim(1) != context_features_)
      throw core::ShapeError(core::str("ResidualNet: expected context of shape [", x.dim(0),
                                       ", ", context_features_, "], got ", context.shape()));
  } else if (context.defined()) {
    throw core::ValueError(core::str("ResidualNet: built without context, but a context of "
                                     "shape ", context.shape(), " was given"));
  }
  Var h = initial_layer_(context_features_ > 0 ? ad::concat({x, context}, 1) : x);
  for (const ResidualBlock* block : blocks_) h = block->forward(h, context);
  return (*final_layer_)(h);
}

}  // namespace asbi::nn
