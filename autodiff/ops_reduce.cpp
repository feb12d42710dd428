// Reductions and the softmax family.
#include "autodiff/ops.hpp"
#include "autodiff/tape.hpp"
#include "core/backend.hpp"

namespace asbi::ad {
namespace {

// The shape left after reducing `axis`: kept as size 1, or removed (a scalar stays [1]).
Shape reduced(const Shape& s, int axis, bool keepdim) {
  if (keepdim) return s.with(axis, 1);
  Shape out;
  for (int i = 0; i < s.rank(); ++i)
    if (i != axis) out.push_back(s[i]);
  if (out.rank() == 0) out.push_back(1);
  return out;
}

// y = c Σ_axis x:  ∂L/∂x += c ∂L/∂y broadcast along the axis
Var sum_scaled(const Var& x, int axis, bool keepdim, double c, const char* op) {
  axis = x.shape().normalize_axis(axis);
  Tensor y = Tensor::scratch(reduced(x.shape(), axis, keepdim), x.dtype(), x.device());
  kernels(x).sum_axis(x.value(), axis, c, false, y);
  return record(y, {.op = op, .inputs = {x}, .attr = {c}, .axis = axis, .backward = [](Node& n) {
                      kernels(n).broadcast_axis(n.grad, n.axis, n.attr[0], *n.input_grad(0));
                    }});
}

// y = c Σ x:  ∂L/∂xᵢ += c ∂L/∂y
Var sum_all_scaled(const Var& x, double c, const char* op) {
  Tensor y = Tensor::scratch({1}, x.dtype(), x.device());
  kernels(x).sum_all(x.value(), c, false, y);
  return record(y, {.op = op, .inputs = {x}, .attr = {c}, .backward = [](Node& n) {
                      Tensor& gx = *n.input_grad(0);
                      // Read x as [1, numel, 1]: the gradient spreads over one long axis.
                      Tensor flat = gx.reshape({1, gx.numel()});
                      kernels(n).broadcast_axis(n.grad, 1, n.attr[0], flat);
                    }});
}

}  // namespace

Var sum(const Var& x) { return sum_all_scaled(x, 1.0, "sum"); }
Var mean(const Var& x) {
  return sum_all_scaled(x, 1.0 / static_cast<double>(std::max<std::int64_t>(x.numel(), 1)),
                        "mean");
}
Var sum(const Var& x, int axis, bool keepdim) { return sum_scaled(x, axis, keepdim, 1.0, "sum"); }
Var mean(const Var& x, int axis, bool keepdim) {
  const double n = static_cast<double>(x.dim(axis));
  return sum_scaled(x, axis, keepdim, 1.0 / n, "mean");
}

// y = log Σⱼ exp(xⱼ):  ∂L/∂xⱼ += ∂L/∂y · exp(xⱼ - y)
Var logsumexp(const Var& x) {
  const int last = x.shape().rank() - 1;
  Tensor y = Tensor::scratch(reduced(x.shape(), last, false), x.dtype(), x.device());
  kernels(x).logsumexp(x.value(), y);
  return record(y, {.op = "logsumexp", .inputs = {x}, .backward = [](Node& n) {
                      kernels(n).logsumexp_backward(n.input(0), n.value, n.grad,
                                                    *n.input_grad(0));
                    }});
}

// softmax:      yⱼ = exp(xⱼ) / Σₖ exp(xₖ),  ∂L/∂xⱼ += yⱼ (∂L/∂yⱼ - Σₖ ∂L/∂yₖ yₖ)
// log_softmax:  yⱼ = xⱼ - logsumexp(x),     ∂L/∂xⱼ += ∂L/∂yⱼ - exp(yⱼ) Σₖ ∂L/∂yₖ
static Var softmax_family(const Var& x, bool log) {
  Tensor y = Tensor::scratch(x.shape(), x.dtype(), x.device());
  kernels(x).softmax(x.value(), log, y);
  return record(y, {.op = log ? "log_softmax" : "softmax", .inputs = {x}, .variant = log,
                    .backward = [](Node& n) {
                      kernels(n).softmax_backward(n.value, n.grad, n.variant != 0,
                                                  *n.input_grad(0));
                    }});
}

Var softmax(const Var& x) { return softmax_family(x, false); }
Var log_softmax(const Var& x) { return softmax_family(x, true); }

}  // namespace asbi::ad
