#pragma once
// The scalar functions behind the elementwise ops, each with its derivative beside it. CPU and
// CUDA kernels both instantiate these, so a formula is written exactly once.
//
// `value(x)` computes y = f(x); `derivative(x, y)` computes f'(x), given y = f(x) because many
// derivatives are cheapest in terms of the output (tanh' = 1 - y², exp' = y).
#include <cmath>

#include "core/backend.hpp"
#include "core/host_device.hpp"


namespace asbi::core::scalar {

using std::abs, std::exp, std::log, std::log1p, std::sqrt, std::tanh, std::erf, std::pow;

template <typename T>
ASBI_HOST_DEVICE inline T sigmoid(T x) {
  // Split by sign so that exp never overflows.
  if (x >= T(0)) return T(1) / (T(1) + exp(-x));
  T e = exp(x);
  return e / (T(1) + e);
}

template <typename T>
ASBI_HOST_DEVICE inline T softplus(T x) {
  // log(1 + eˣ) = max(x, 0) + log1p(e^{-|x|}), exact for large |x|.
  return (x > T(0) ? x : T(0)) + log1p(exp(-abs(x)));
}

template <typename T>
ASBI_HOST_DEVICE inline T unary_value(Unary op, UnaryParams p, T x) {
  switch (op) {
    case Unary::neg: return -x;
    case Unary::relu: return x > T(0) ? x : T(0);
    case Unary::leaky_relu: return x > T(0) ? x : T(p.a) * x;
    case Unary::elu: return x > T(0) ? x : T(p.a) * (exp(x) - T(1));
    case Unary::silu: return x * sigmoid(x);
    // The exact GELU, x Φ(x), as in PyTorch's default.
    case Unary::gelu: return T(0.5) * x * (T(1) + erf(x * T(0.70710678118654752440)));
    case Unary::tanh: return tanh(x);
    case Unary::sigmoid: return sigmoid(x);
    case Unary::softplus: return softplus(x);
    case Unary::exp: return exp(x);
    case Unary::log: return log(x);
    case Unary::log1p: return log1p(x);
    case Unary::square: return x * x;
    case Unary::sqrt: return sqrt(x);
    case Unary::abs: return abs(x);
    case Unary::pow: return pow(x, T(p.a));
    case Unary::clamp: return x < T(p.a) ? T(p.a) : (x > T(p.b) ? T(p.b) : x);
    case Unary::identity: return x;
  }
  return x;
}

template <typename T>
ASBI_HOST_DEVICE inline T unary_derivative(Unary op, UnaryParams p, T x, T y) {
  switch (op) {
    case Unary::neg: return T(-1);
    case Unary::relu: return x > T(0) ? T(1) : T(0);
    case Unary::leaky_relu: return x > T(0) ? T(1) : T(p.a);
    case Unary::elu: return x > T(0) ? T(1) : y + T(p.a);            // α eˣ = y + α
    case Unary::silu: {                                               // σ(x)(1 + x(1 - σ(x)))
      T s = sigmoid(x);
      return s * (T(1) + x * (T(1) - s));
    }
    case Unary::gelu:                                                 // Φ(x) + x φ(x)
      return T(0.5) * (T(1) + erf(x * T(0.70710678118654752440))) +
             x * T(0.39894228040143267794) * exp(T(-0.5) * x * x);
    case Unary::tanh: return T(1) - y * y;
    case Unary::sigmoid: return y * (T(1) - y);
    case Unary::softplus: return sigmoid(x);
    case Unary::exp: return y;
    case Unary::log: return T(1) / x;
    case Unary::log1p: return T(1) / (T(1) + x);
    case Unary::square: return T(2) * x;
    case Unary::sqrt: return T(0.5) / y;
    case Unary::abs: return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0));
    case Unary::pow: return T(p.a) * pow(x, T(p.a - 1));
    case Unary::clamp: return (x >= T(p.a) && x <= T(p.b)) ? T(1) : T(0);
    case Unary::identity: return T(1);
  }
  return T(0);
}

template <typename T>
ASBI_HOST_DEVICE inline T binary_value(Binary op, T a, T b) {
  switch (op) {
    case Binary::add: return a + b;
    case Binary::sub: return a - b;
    case Binary::mul: return a * b;
    case Binary::div: return a / b;
  }
  return a;
}

// ∂(a ∘ b)/∂a and ∂(a ∘ b)/∂b.
template <typename T>
ASBI_HOST_DEVICE inline T binary_da(Binary op, T, T b) {
  switch (op) {
    case Binary::add: case Binary::sub: return T(1);
    case Binary::mul: return b;
    case Binary::div: return T(1) / b;
  }
  return T(0);
}

template <typename T>
ASBI_HOST_DEVICE inline T binary_db(Binary op, T a, T b) {
  switch (op) {
    case Binary::add: return T(1);
    case Binary::sub: return T(-1);
    case Binary::mul: return a;
    case Binary::div: return -a / (b * b);
  }
  return T(0);
}

// Calls f.template operator()<Op>() with the op as a compile-time constant, so that the switch
// inside unary_value / binary_value folds away and each kernel's element loop vectorises.
// clang-format off
template <typename F>
void with_unary(Unary op, F&& f) {
  switch (op) {
#define ASBI_CASE(name) \
  case Unary::name: f.template operator()<Unary::name>(); break;
    ASBI_CASE(neg) ASBI_CASE(relu) ASBI_CASE(leaky_relu) ASBI_CASE(elu) ASBI_CASE(silu)
    ASBI_CASE(gelu) ASBI_CASE(tanh) ASBI_CASE(sigmoid) ASBI_CASE(softplus) ASBI_CASE(exp)
    ASBI_CASE(log) ASBI_CASE(log1p) ASBI_CASE(square) ASBI_CASE(sqrt) ASBI_CASE(abs)
    ASBI_CASE(pow) ASBI_CASE(clamp) ASBI_CASE(identity)
#undef ASBI_CASE
  }
}

template <typename F>
void with_binary(Binary op, F&& f) {
  switch (op) {
    case Binary::add: f.template operator()<Binary::add>(); break;
    case Binary::sub: f.template operator()<Binary::sub>(); break;
    case Binary::mul: f.template operator()<Binary::mul>(); break;
    case Binary::div: f.template operator()<Binary::div>(); break;
  }
}
// clang-format on

}  // namespace asbi::core::scalar
