// The rational-quadratic spline as one op: one forward kernel call, one backward kernel call, two
// outputs. The math (normalisation, bin search, spline, inverse root, gradients) is per element
// in core/spline_math.hpp and derived in docs/spline.md.
//
// Two outputs from one-output nodes: `value` is the spline node, with inputs {x, widths, heights,
// derivatives}; `log_det` is a second node whose only input is `value` and whose value is the
// log-det the same kernel call wrote. The log-det node keeps no rule of its own: nodes run in
// reverse order, so its backward runs first and hands ∂L/∂log_det to the spline node (saved[0]);
// the spline node's backward then makes one kernel call with ∂L/∂value and ∂L/∂log_det together.
#include "flows/spline.hpp"

#include <array>
#include <bit>
#include <cmath>

#include "autodiff/tape.hpp"
#include "core/backend.hpp"
#include "core/spline_math.hpp"

namespace asbi::flows {
namespace {

using ad::Node;
using ad::Var;
using core::RqSplineParams;
using core::Shape;
using core::ShapeError;
using core::str;
using core::Tensor;
using core::ValueError;

constexpr int max_bins = core::spline::max_bins;  // the kernels' per-element arrays

void check_options(const SplineOptions& o) {
  if (o.bins < 2 || o.bins > max_bins)
    throw ValueError(str("rq_spline: bins must be in [2, ", max_bins, "], got ", o.bins));
  if (!(o.tail_bound > 0) || !std::isfinite(o.tail_bound))
    throw ValueError(str("rq_spline: tail_bound must be positive and finite, got ", o.tail_bound));
  const auto check_min = [&](const char* name, double min_size) {
    if (!(min_size >= 0) || !(min_size * o.bins < 1))
      throw ValueError(str("rq_spline: ", name, " must be in [0, 1/bins) = [0, ", 1.0 / o.bins,
                           ") for ", o.bins, " bins, got ", min_size));
  };
  check_min("min_bin_width", o.min_bin_width);
  check_min("min_bin_height", o.min_bin_height);
  if (!(o.min_derivative >= 0) || !std::isfinite(o.min_derivative))
    throw ValueError(
        str("rq_spline: min_derivative must be >= 0 and finite, got ", o.min_derivative));
}

// Every parameter tensor is x's shape followed by its per-element length.
void check_parameter(const char* name, const Var& x, const Var& parameter, std::int64_t length,
                     const char* length_name) {
  core::check_compatible("rq_spline", x.value(), parameter.value());
  Shape expected = x.shape();
  expected.push_back(length);
  if (parameter.shape() != expected)
    throw ShapeError(str("rq_spline: ", name, " must have shape ", expected, " (x's shape ",
                         x.shape(), " and ", length_name, "), got ", parameter.shape()));
}

// The node's two attr slots cannot hold the four constants: they travel in its integer slot, each
// double as its bit pattern. K is read back from the widths' last dimension.
std::array<std::int64_t, 4> pack(const SplineOptions& o) {
  return {std::bit_cast<std::int64_t>(o.tail_bound), std::bit_cast<std::int64_t>(o.min_bin_width),
          std::bit_cast<std::int64_t>(o.min_bin_height),
          std::bit_cast<std::int64_t>(o.min_derivative)};
}

RqSplineParams unpack(const Node& n) {
  return {.bins = static_cast<int>(n.input(1).shape().last()),
          .tail_bound = std::bit_cast<double>(n.index[0]),
          .min_bin_width = std::bit_cast<double>(n.index[1]),
          .min_bin_height = std::bit_cast<double>(n.index[2]),
          .min_derivative = std::bit_cast<double>(n.index[3])};
}

}  // namespace

// value = s(x) (or s⁻¹(x)), log_det = ±log s'. Backward, in one kernel call:
//   ∂L/∂x, ∂L/∂u_w, ∂L/∂u_h, ∂L/∂u_δ += the chain rule of ∂L/∂value and ∂L/∂log_det through the
//   spline, its normalisation (softmax, cumsum, softplus) and, for the inverse, the implicit
//   function theorem (docs/spline.md §5).
SplineResult rq_spline(const Var& x, const Var& widths, const Var& heights, const Var& derivatives,
                       const SplineOptions& options, bool inverse) {
  check_options(options);
  if (x.shape().rank() < 1 || x.shape().rank() >= Shape::max_rank)
    throw ShapeError(str("rq_spline: x must have 1 to ", Shape::max_rank - 1,
                         " dimensions (the parameters add one), got ", x.shape()));
  const std::int64_t bins = options.bins;
  check_parameter("widths", x, widths, bins, "K = bins");
  check_parameter("heights", x, heights, bins, "K = bins");
  check_parameter("derivatives", x, derivatives, bins - 1, "K - 1 interior knots");
  const RqSplineParams params{.bins = options.bins,
                              .tail_bound = options.tail_bound,
                              .min_bin_width = options.min_bin_width,
                              .min_bin_height = options.min_bin_height,
                              .min_derivative = options.min_derivative};

  Tensor value = Tensor::scratch(x.shape(), x.dtype(), x.device());
  Tensor log_det = Tensor::scratch(x.shape(), x.dtype(), x.device());
  ad::kernels(x).rq_spline(x.value(), widths.value(), heights.value(), derivatives.value(), params,
                           inverse, value, log_det);

  const std::array<std::int64_t, 4> packed = pack(options);
  Var value_var =
      ad::record(value, {.op = inverse ? "rq_spline_inverse" : "rq_spline",
                         .inputs = {x, widths, heights, derivatives},
                         .variant = inverse ? 1 : 0,
                         .index = ad::keep(packed),
                         .backward = [](Node& n) {
                           // saved[0]: ∂L/∂log_det, undefined if no gradient reached it
                           ad::kernels(n).rq_spline_backward(
                               n.input(0), n.input(1), n.input(2), n.input(3), unpack(n),
                               n.variant != 0, n.grad, n.saved[0], n.input_grad(0), n.input_grad(1),
                               n.input_grad(2), n.input_grad(3));
                         }});
  Var log_det_var = ad::record(
      log_det, {.op = "rq_spline_log_det", .inputs = {value_var}, .backward = [](Node& n) {
                  n.input_grad(0);  // makes the spline node run even if only log_det was used
                  n.inputs[0].node()->saved[0] = n.grad;
                }});
  return {value_var, log_det_var};
}

}  // namespace asbi::flows
