#include "nn/layers.hpp"

#include "autodiff/ops.hpp"

namespace asbi::nn {

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
  Var h = x;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    h = layers_[i]->forward(h);
    if (i + 1 < layers_.size()) h = activate(activation_, h);
  }
  return h;
}

}  // namespace asbi::nn
