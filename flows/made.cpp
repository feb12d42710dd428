#include "flows/made.hpp"

#include <algorithm>

#include "autodiff/ops.hpp"

namespace asbi::flows {
namespace {

using core::str;

Tensor mask_tensor(const std::vector<std::int64_t>& in_degrees,
                   const std::vector<std::int64_t>& out_degrees, bool is_output, DType dtype) {
  const auto in = static_cast<std::int64_t>(in_degrees.size());
  const auto out = static_cast<std::int64_t>(out_degrees.size());
  std::vector<double> m(static_cast<std::size_t>(in * out));
  for (std::int64_t j = 0; j < out; ++j)
    for (std::int64_t i = 0; i < in; ++i) {
      const std::int64_t dj = out_degrees[static_cast<std::size_t>(j)];
      const std::int64_t di = in_degrees[static_cast<std::size_t>(i)];
      m[static_cast<std::size_t>(j * in + i)] = (is_output ? dj > di : dj >= di) ? 1.0 : 0.0;
    }
  return Tensor::from(m, {out, in}, dtype);
}

// Uniform on ±bound (nflows' near-zero init of a residual block's last layer: bound 1e-3).
void reinit_uniform(Tensor& t, double bound, core::Rng& rng) {
  std::vector<double> v(static_cast<std::size_t>(t.numel()));
  for (double& x : v) x = bound * (2.0 * rng.uniform() - 1.0);
  t.copy_from(Tensor::from(v, t.shape(), t.dtype()));
}

}  // namespace

MaskedLinear::MaskedLinear(std::vector<std::int64_t> in_degrees,
                           std::vector<std::int64_t> out_degrees, bool is_output, core::Rng& rng,
                           DType dtype)
    : out_degrees_(std::move(out_degrees)),
      mask_(mask_tensor(in_degrees, out_degrees_, is_output, dtype)),
      weight_(param("weight", nn::kaiming_uniform(mask_.shape(), mask_.dim(1), rng, dtype))),
      bias_(param("bias", nn::kaiming_uniform({mask_.dim(0)}, mask_.dim(1), rng, dtype))) {
  register_buffer("mask", mask_);
}

// y = x (W ⊙ M)ᵀ + b:  ∂L/∂W = M ⊙ (∂L/∂y)ᵀ x, so masked weights never receive a gradient
Var MaskedLinear::forward(const Var& x) const {
  return ad::linear(x, ad::mul(weight_, mask_), bias_);
}

std::vector<std::int64_t> Made::hidden_degrees(std::int64_t hidden, std::int64_t features) {
  const std::int64_t max_degree = std::max<std::int64_t>(1, features - 1);
  const std::int64_t min_degree = std::min<std::int64_t>(1, features - 1);
  std::vector<std::int64_t> d(static_cast<std::size_t>(hidden));
  for (std::int64_t k = 0; k < hidden; ++k)
    d[static_cast<std::size_t>(k)] = k % max_degree + min_degree;
  return d;
}

Made::Made(std::int64_t features, std::int64_t context, std::int64_t multiplier,
           const MadeOptions& options, core::Rng& rng)
    : features_(features), context_(context), multiplier_(multiplier), options_(options) {
  if (features < 1 || context < 0 || multiplier < 1 || options.hidden < 1 || options.blocks < 0)
    throw core::ValueError(str("Made: expected features >= 1, context >= 0, multiplier >= 1, "
                               "hidden >= 1 and blocks >= 0, got ", features, ", ", context, ", ",
                               multiplier, ", ", options.hidden, ", ", options.blocks));
  const DType dtype = options.dtype;
  std::vector<std::int64_t> inputs(static_cast<std::size_t>(features));
  for (std::int64_t i = 0; i < features; ++i) inputs[static_cast<std::size_t>(i)] = i + 1;
  const std::vector<std::int64_t> hidden = hidden_degrees(options.hidden, features);

  initial_ = &child("initial_layer",
                    std::make_unique<MaskedLinear>(inputs, hidden, false, rng, dtype));
  if (context > 0)
    context_layer_ = &child("context_layer", std::make_unique<nn::Linear>(context, options.hidden,
                                                                           rng, true, dtype));
  for (int b = 0; b < options.blocks; ++b) {
    const std::string prefix = str("blocks.", b, ".");
    Block block;
    // The sequential degrees of a hidden layer depend only on its width, so every block maps
    // degrees onto the same degrees and a residual connection keeps the ordering.
    if (options.residual && context > 0)
      block.context_layer = &child(prefix + "context_layer",
                                   std::make_unique<nn::Linear>(context, options.hidden, rng,
                                                                true, dtype));
    block.linear0 = &child(prefix + (options.residual ? "linear_layers.0" : "linear"),
                           std::make_unique<MaskedLinear>(hidden, hidden, false, rng, dtype));
    if (options.residual) {
      block.linear1 = &child(prefix + "linear_layers.1",
                             std::make_unique<MaskedLinear>(hidden, hidden, false, rng, dtype));
      reinit_uniform(block.linear1->weight().value(), 1e-3, rng);
      reinit_uniform(block.linear1->bias().value(), 1e-3, rng);
    }
    blocks_.push_back(block);
  }
  std::vector<std::int64_t> outputs(static_cast<std::size_t>(features * multiplier));
  for (std::size_t j = 0; j < outputs.size(); ++j)
    outputs[j] = static_cast<std::int64_t>(j) / multiplier + 1;
  final_ = &child("final_layer", std::make_unique<MaskedLinear>(hidden, outputs, true, rng, dtype));
}

// h = M₀x (+ act(W_c c));  feed-forward blocks: h = act(M h);  residual blocks:
// h = h + M₁ act(M₀ act(h) + W_c c);  out = M_out h
Var Made::forward(const Var& x, const Var& context) const {
  if (x.shape().rank() != 2 || x.dim(1) != features_)
    throw core::ShapeError(str("Made: expected x of shape [B, ", features_, "], got ", x.shape()));
  if (context_ > 0 && (!context.defined() || context.shape().rank() != 2 ||
                       context.dim(1) != context_ || context.dim(0) != x.dim(0)))
    throw core::ShapeError(str("Made: expected a context of shape [", x.dim(0), ", ", context_,
                               "], got ", context.defined() ? context.shape().str() : "none"));
  const nn::Activation act = options_.activation;
  Var h = initial_->forward(x);
  if (context_layer_) h = ad::add(h, nn::activate(act, context_layer_->forward(context)));
  if (!options_.residual) h = nn::activate(act, h);
  for (const Block& b : blocks_) {
    if (!options_.residual) {
      h = nn::activate(act, b.linear0->forward(h));
      continue;
    }
    Var t = b.linear0->forward(nn::activate(act, h));
    if (b.context_layer) t = ad::add(t, b.context_layer->forward(context));
    h = ad::add(h, b.linear1->forward(nn::activate(act, t)));
  }
  return final_->forward(h);
}

}  // namespace asbi::flows
