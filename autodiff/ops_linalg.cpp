// Matrix products. Gradients are themselves GEMMs with transposes, accumulated in place (β = 1).
#include "autodiff/ops.hpp"
#include "autodiff/tape.hpp"
#include "core/backend.hpp"

namespace asbi::ad {

using core::ShapeError;
using core::str;

// Y = A B:  ∂L/∂A += ∂L/∂Y Bᵀ,  ∂L/∂B += Aᵀ ∂L/∂Y
Var matmul(const Var& a, const Var& b) {
  core::check_compatible("matmul", a.value(), b.value());
  if (a.shape().rank() != 2 || b.shape().rank() != 2 || a.dim(1) != b.dim(0))
    throw ShapeError(str("matmul: expected [M, K] · [K, N], got ", a.shape(), " · ", b.shape()));
  Tensor y = Tensor::scratch({a.dim(0), b.dim(1)}, a.dtype(), a.device());
  kernels(a).gemm(false, false, 1.0, a.value(), b.value(), 0.0, y);
  return record(y, {.op = "matmul", .inputs = {a, b}, .backward = [](Node& n) {
                      if (Tensor* ga = n.input_grad(0))
                        kernels(n).gemm(false, true, 1.0, n.grad, n.input(1), 1.0, *ga);
                      if (Tensor* gb = n.input_grad(1))
                        kernels(n).gemm(true, false, 1.0, n.input(0), n.grad, 1.0, *gb);
                    }});
}

// Y = X Wᵀ + b over the rows of X [R, X] (leading dimensions flattened into R):
//   ∂L/∂X += ∂L/∂Y W,   ∂L/∂W += (∂L/∂Y)ᵀ X,   ∂L/∂b += Σ_rows ∂L/∂Y
Var linear(const Var& x, const Var& weight, const Var& bias) {
  core::check_compatible("linear", x.value(), weight.value());
  const std::int64_t in = x.shape().last();
  if (weight.shape().rank() != 2 || weight.dim(1) != in)
    throw ShapeError(str("linear: expected weight of shape [H, ", in, "] for input ", x.shape(),
                         ", got ", weight.shape()));
  const std::int64_t out = weight.dim(0), rows = x.numel() / std::max<std::int64_t>(in, 1);
  if (bias.defined()) {
    core::check_compatible("linear", x.value(), bias.value());
    core::check_shape("linear", "bias", bias.value(), {out});
  }
  Tensor y = Tensor::scratch(x.shape().with(-1, out), x.dtype(), x.device());
  Tensor y2 = y.reshape({rows, out});
  kernels(x).gemm(false, true, 1.0, x.value().reshape({rows, in}), weight.value(), 0.0, y2);
  if (bias.defined()) kernels(x).add_bias(bias.value(), y2);
  return record(y, {.op = "linear", .inputs = {x, weight, bias}, .backward = [](Node& n) {
                      const std::int64_t in = n.input(1).dim(1), out = n.input(1).dim(0);
                      const std::int64_t rows = n.grad.numel() / out;
                      const Tensor dy = n.grad.reshape({rows, out});
                      if (Tensor* gx = n.input_grad(0)) {
                        Tensor gx2 = gx->reshape({rows, in});
                        kernels(n).gemm(false, false, 1.0, dy, n.input(1), 1.0, gx2);
                      }
                      if (Tensor* gw = n.input_grad(1))
                        kernels(n).gemm(true, false, 1.0, dy, n.input(0).reshape({rows, in}),
                                        1.0, *gw);
                      if (Tensor* gb = n.input_grad(2)) kernels(n).sum_axis(dy, 0, 1.0, true, *gb);
                    }});
}

// y = f(z) + r with z = X Wᵀ + b over the rows of X [R, X]:
//   ∂L/∂z = ∂L/∂y ⊙ f'(z),   ∂L/∂b += Σ_rows ∂L/∂z        (one fused pass)
//   ∂L/∂X += ∂L/∂z W,   ∂L/∂W += (∂L/∂z)ᵀ X,   ∂L/∂r += ∂L/∂y
// z is saved for f'; f(z) is the output itself when there is no residual. With f the identity
// ∂L/∂z is ∂L/∂y, and z is not kept (the output is written over it).
Var linear_act(const Var& x, const Var& weight, const Var& bias, core::Unary f,
               core::UnaryParams p, const Var& residual) {
  if (f == core::Unary::identity && !residual.defined()) return linear(x, weight, bias);
  core::check_compatible("linear_act", x.value(), weight.value());
  const std::int64_t in = x.shape().last();
  if (weight.shape().rank() != 2 || weight.dim(1) != in)
    throw ShapeError(str("linear_act: expected weight of shape [H, ", in, "] for input ",
                         x.shape(), ", got ", weight.shape()));
  const std::int64_t out = weight.dim(0), rows = x.numel() / std::max<std::int64_t>(in, 1);
  const Shape y_shape = x.shape().with(-1, out);
  if (bias.defined()) {
    core::check_compatible("linear_act", x.value(), bias.value());
    core::check_shape("linear_act", "bias", bias.value(), {out});
  }
  if (residual.defined()) {
    core::check_compatible("linear_act", x.value(), residual.value());
    core::check_shape("linear_act", "residual", residual.value(), y_shape);
  }
  const bool identity = f == core::Unary::identity;
  Tensor z = Tensor::scratch({rows, out}, x.dtype(), x.device());
  Tensor y = identity ? z.reshape(y_shape) : Tensor::scratch(y_shape, x.dtype(), x.device());
  Tensor y2 = y.reshape({rows, out});
  kernels(x).gemm(false, true, 1.0, x.value().reshape({rows, in}), weight.value(), 0.0, z);
  kernels(x).linear_epilogue(bias.defined() ? bias.value() : Tensor(), f, p,
                             residual.defined() ? residual.value().reshape({rows, out}) : Tensor(),
                             z, y2);
  return record(y, {.op = "linear_act", .inputs = {x, weight, bias, residual},
                    .saved = {identity ? Tensor() : z}, .attr = {p.a, p.b},
                    .variant = static_cast<int>(f), .backward = [](Node& n) {
                      const auto f = static_cast<core::Unary>(n.variant);
                      const std::int64_t in = n.input(1).dim(1), out = n.input(1).dim(0);
                      const std::int64_t rows = n.grad.numel() / out;
                      const Tensor dy = n.grad.reshape({rows, out});
                      Tensor* gb = n.input_grad(2);
                      Tensor dz = dy;  // the identity's ∂L/∂z
                      if (f != core::Unary::identity) {
                        dz = Tensor::scratch({rows, out}, dy.dtype(), dy.device());
                        const bool residual = n.inputs[3].defined();
                        kernels(n).linear_epilogue_backward(
                            f, {n.attr[0], n.attr[1]}, n.saved[0],
                            residual ? Tensor() : n.value.reshape({rows, out}), dy, dz, gb);
                      } else if (gb) {
                        kernels(n).sum_axis(dy, 0, 1.0, true, *gb);
                      }
                      if (Tensor* gx = n.input_grad(0)) {
                        Tensor gx2 = gx->reshape({rows, in});
                        kernels(n).gemm(false, false, 1.0, dz, n.input(1), 1.0, gx2);
                      }
                      if (Tensor* gw = n.input_grad(1))
                        kernels(n).gemm(true, false, 1.0, dz, n.input(0).reshape({rows, in}),
                                        1.0, *gw);
                      if (Tensor* gr = n.input_grad(3)) kernels(n).axpy(1.0, n.grad, *gr);
                    }});
}

}  // namespace asbi::ad
