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

}  // namespace asbi::ad
