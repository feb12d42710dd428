#pragma once
// float32 transcendental functions through Eigen's vectorised implementations (within a few ulp
// of libm): GCC does not vectorise calls to std::tanh or std::exp, which then cost ~9 ns an
// element and dominate an MLP step. The scalar formulas in core/scalar_math.hpp stay the
// definition (CUDA and float64 use them); these are the same functions, evaluated faster.
// Shared by the unary kernels and the fused linear epilogue. Private to core/cpu.
#include <Eigen/Core>

#include "core/backend.hpp"

namespace asbi::core::cpu {

using ArrayMap = Eigen::Map<Eigen::ArrayXf>;
using ConstArrayMap = Eigen::Map<const Eigen::ArrayXf>;

inline bool has_vectorised_forward(Unary op) {
  switch (op) {
    case Unary::tanh: case Unary::exp: case Unary::log: case Unary::log1p: case Unary::sqrt:
    case Unary::sigmoid: case Unary::silu: case Unary::softplus: case Unary::elu: return true;
    default: return false;
  }
}

inline bool has_vectorised_backward(Unary op) {
  return op == Unary::softplus || op == Unary::silu;
}

inline void unary_vectorised(Unary op, UnaryParams p, ConstArrayMap x, ArrayMap y) {
  switch (op) {
    case Unary::tanh: y = x.tanh(); return;
    case Unary::exp: y = x.exp(); return;
    case Unary::log: y = x.log(); return;
    case Unary::log1p: y = x.log1p(); return;
    case Unary::sqrt: y = x.sqrt(); return;
    case Unary::sigmoid: y = x.logistic(); return;
    case Unary::silu: y = x * x.logistic(); return;
    case Unary::softplus: y = x.max(0.0f) + (-x.abs()).exp().log1p(); return;
    case Unary::elu:
      y = (x > 0.0f).select(x, static_cast<float>(p.a) * ((x.min(0.0f)).exp() - 1.0f));
      return;
    default: return;
  }
}

// dx (+)= dy ⊙ f'(x) for the derivatives that need a transcendental function of x: accumulated
// by the unary backward, written by the fused epilogue's.
template <bool Accumulate>
void unary_backward_vectorised(Unary op, ConstArrayMap x, ConstArrayMap dy, ArrayMap dx) {
  auto store = [&](const auto& value) {
    if constexpr (Accumulate)
      dx += value;
    else
      dx = value;
  };
  switch (op) {
    case Unary::softplus: store(dy * x.logistic()); return;  // σ(x)
    case Unary::silu:                                         // σ(x)(1 + x(1 - σ(x)))
      store(dy * x.logistic() * (1.0f + x * (1.0f - x.logistic())));
      return;
    default: return;
  }
}

}  // namespace asbi::core::cpu
