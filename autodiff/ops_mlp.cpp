// The fused MLP (ops.hpp): one node for a whole network, its forward and backward one backend call
// each (core::Backend::fused_mlp_forward / fused_mlp_backward).
#include <vector>

#include "autodiff/ops.hpp"
#include "autodiff/tape.hpp"
#include "core/backend.hpp"

namespace asbi::ad {

using core::ShapeError;
using core::str;

Var fused_mlp(const Var& x, std::span<const Var> weights, std::span<const Var> biases,
              core::Unary f, core::UnaryParams p) {
  if (weights.empty() || weights.size() != biases.size())
    throw core::ValueError(str("fused_mlp: expected one bias per weight and at least one layer, "
                               "got ", weights.size(), " weights and ", biases.size(),
                               " biases"));
  if (x.shape().rank() == 0) throw ShapeError("fused_mlp: x must have at least one dimension");
  std::vector<std::int64_t> widths{x.shape().last()};
  std::vector<Var> packed_parts;
  for (std::size_t l = 0; l < weights.size(); ++l) {
    const Var& w = weights[l];
    const Var& b = biases[l];
    core::check_compatible("fused_mlp", x.value(), w.value());
    if (w.shape().rank() != 2 || w.dim(1) != widths.back())
      throw ShapeError(str("fused_mlp: expected weight ", l, " of shape [H, ", widths.back(),
                           "], got ", w.shape()));
    core::check_compatible("fused_mlp", x.value(), b.value());
    core::check_shape("fused_mlp", "bias", b.value(), {w.dim(0)});
    widths.push_back(w.dim(0));
    packed_parts.push_back(reshape(w, {w.numel()}));
    packed_parts.push_back(b);
  }
  const Var parameters = concat(packed_parts, 0);
  const std::int64_t rows = x.numel() / widths.front();
  Tensor y = Tensor::scratch(x.shape().with(-1, widths.back()), x.dtype(), x.device());
  // The hidden pre-activations are kept only when a backward will read them.
  const bool keep_hidden = recording() && (x.requires_grad() || parameters.requires_grad());
  Tensor hidden = keep_hidden ? Tensor::scratch({rows * core::fused_mlp_hidden_width(widths)},
                                                x.dtype(), x.device())
                              : Tensor();
  kernels(x).fused_mlp_forward(x.value(), parameters.value(), widths, f, p, y,
                               keep_hidden ? &hidden : nullptr);
  return record(y, {.op = "fused_mlp", .inputs = {x, parameters}, .saved = {hidden},
                    .attr = {p.a, p.b}, .variant = static_cast<int>(f), .index = keep(widths),
                    .backward = [](Node& n) {
                      kernels(n).fused_mlp_backward(
                          n.input(0), n.input(1), n.index, static_cast<core::Unary>(n.variant),
                          {n.attr[0], n.attr[1]}, n.saved[0], n.grad, n.input_grad(0),
                          n.input_grad(1));
                    }});
}

}  // namespace asbi::ad
