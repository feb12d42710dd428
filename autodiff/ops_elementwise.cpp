// Elementwise ops. The scalar formulas and their derivatives live in core/scalar_math.hpp, shared
// with the CUDA kernels; here each op states its chain rule.
#include "autodiff/ops.hpp"
#include "autodiff/tape.hpp"
#include "core/backend.hpp"

namespace asbi::ad {
namespace {

using core::Binary;
using core::Unary;
using core::UnaryParams;

Tensor output_like(const Var& x, const Shape& shape) {
  return Tensor::scratch(shape, x.dtype(), x.device());
}

// y = a ∘ b (broadcast):  ∂L/∂a += Σ_stretched ∂L/∂y · ∂y/∂a,  and likewise for b.
Var binary(Binary op, const Var& a, const Var& b) {
  core::check_compatible(core::name(op), a.value(), b.value());
  Tensor y = output_like(a, core::broadcast_shapes(a.shape(), b.shape()));
  kernels(a).binary(op, a.value(), b.value(), y);
  return record(y, {.op = core::name(op), .inputs = {a, b}, .variant = static_cast<int>(op),
                    .backward = [](Node& n) {
                      kernels(n).binary_backward(static_cast<Binary>(n.variant), n.input(0),
                                                 n.input(1), n.grad, n.input_grad(0),
                                                 n.input_grad(1));
                    }});
}

// y = f(x):  ∂L/∂x += ∂L/∂y ⊙ f'(x)   (f and f' side by side in core/scalar_math.hpp)
Var unary(Unary op, const Var& x, UnaryParams p = {}) {
  Tensor y = output_like(x, x.shape());
  kernels(x).unary(op, p, x.value(), y);
  return record(y, {.op = core::name(op), .inputs = {x}, .attr = {p.a, p.b},
                    .variant = static_cast<int>(op), .backward = [](Node& n) {
                      kernels(n).unary_backward(static_cast<Unary>(n.variant),
                                                {n.attr[0], n.attr[1]}, n.input(0), n.value,
                                                n.grad, *n.input_grad(0));
                    }});
}

}  // namespace

Var add(const Var& a, const Var& b) { return binary(Binary::add, a, b); }
Var sub(const Var& a, const Var& b) { return binary(Binary::sub, a, b); }
Var mul(const Var& a, const Var& b) { return binary(Binary::mul, a, b); }
Var div(const Var& a, const Var& b) { return binary(Binary::div, a, b); }

Var neg(const Var& x) { return unary(Unary::neg, x); }
Var relu(const Var& x) { return unary(Unary::relu, x); }
Var leaky_relu(const Var& x, double slope) { return unary(Unary::leaky_relu, x, {slope}); }
Var elu(const Var& x, double alpha) { return unary(Unary::elu, x, {alpha}); }
Var silu(const Var& x) { return unary(Unary::silu, x); }
Var gelu(const Var& x) { return unary(Unary::gelu, x); }
Var tanh(const Var& x) { return unary(Unary::tanh, x); }
Var sigmoid(const Var& x) { return unary(Unary::sigmoid, x); }
Var softplus(const Var& x) { return unary(Unary::softplus, x); }
Var exp(const Var& x) { return unary(Unary::exp, x); }
Var log(const Var& x) { return unary(Unary::log, x); }
Var log1p(const Var& x) { return unary(Unary::log1p, x); }
Var square(const Var& x) { return unary(Unary::square, x); }
Var sqrt(const Var& x) { return unary(Unary::sqrt, x); }
Var abs(const Var& x) { return unary(Unary::abs, x); }
Var pow(const Var& x, double exponent) { return unary(Unary::pow, x, {exponent}); }

Var clamp(const Var& x, double lo, double hi) {
  if (!(lo <= hi))
    throw core::ValueError(core::str("clamp: expected lo <= hi, got lo = ", lo, ", hi = ", hi));
  return unary(Unary::clamp, x, {lo, hi});
}

// y = c x:  ∂L/∂x += c ∂L/∂y
Var scale(const Var& x, double factor) {
  Tensor y = output_like(x, x.shape());
  kernels(x).fill(y, 0.0);
  kernels(x).axpy(factor, x.value(), y);
  return record(y, {.op = "scale", .inputs = {x}, .attr = {factor}, .backward = [](Node& n) {
                      kernels(n).axpy(n.attr[0], n.grad, *n.input_grad(0));
                    }});
}

// y = x + c:  ∂L/∂x += ∂L/∂y
Var shift(const Var& x, double offset) {
  Tensor y = output_like(x, x.shape());
  kernels(x).fill(y, offset);
  kernels(x).axpy(1.0, x.value(), y);
  return record(y, {.op = "shift", .inputs = {x}, .backward = [](Node& n) {
                      kernels(n).axpy(1.0, n.grad, *n.input_grad(0));
                    }});
}

// y = c ? a : b:  ∂L/∂a += c ⊙ ∂L/∂y,  ∂L/∂b += (1 - c) ⊙ ∂L/∂y
Var where(const Tensor& cond, const Var& a, const Var& b) {
  core::check_compatible("where", a.value(), b.value());
  core::check_compatible("where", cond, a.value());
  core::check_shape("where", "b", b.value(), a.shape());
  core::check_shape("where", "cond", cond, a.shape());
  Tensor y = output_like(a, a.shape());
  kernels(a).where(cond, a.value(), b.value(), y);
  return record(y, {.op = "where", .inputs = {a, b}, .saved = {cond}, .backward = [](Node& n) {
                      kernels(n).where_backward(n.saved[0], n.grad, n.input_grad(0),
                                                n.input_grad(1));
                    }});
}

}  // namespace asbi::ad
