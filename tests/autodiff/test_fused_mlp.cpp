// ad::fused_mlp against the same network written with ad::linear_act per layer (the ops it fuses):
// outputs and the gradients of x and of every weight and bias, in float32 and float64, for one to
// three layers and every activation. Its float64 gradcheck is a row of test_gradcheck_ops.cpp;
// the CUDA kernels' parity is tests/cuda/test_fused_mlp.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "autodiff/ops.hpp"
#include "autodiff/parameter.hpp"
#include "autodiff/tape.hpp"
#include "core/backend.hpp"

namespace asbi::ad {
namespace {

using core::DType;
using core::Unary;
using core::UnaryParams;

Tensor pattern(const Shape& shape, double phase, double amplitude, DType dtype) {
  std::vector<double> v(static_cast<std::size_t>(shape.numel()));
  for (std::size_t i = 0; i < v.size(); ++i)
    v[i] = amplitude * std::sin(0.37 * static_cast<double>(i) + phase);
  return Tensor::from(v, shape, dtype);
}

// x, then W₀, b₀, W₁, b₁, … of a network with the given widths, as parameters so that every one
// receives a gradient.
std::vector<Parameter> network(const std::vector<std::int64_t>& widths, std::int64_t rows,
                               DType dtype) {
  std::vector<Parameter> v;
  v.emplace_back("x", pattern({rows, widths[0]}, 0.1, 1.0, dtype));
  for (std::size_t l = 0; l + 1 < widths.size(); ++l) {
    const double scale = 1.5 / std::sqrt(static_cast<double>(widths[l]));
    v.emplace_back("w", pattern({widths[l + 1], widths[l]}, 0.2 + double(l), scale, dtype));
    v.emplace_back("b", pattern({widths[l + 1]}, 0.5 + double(l), scale, dtype));
  }
  return v;
}

// y, then the gradient of every entry of `network`, of L = Σ w ⊙ y with fixed weights w.
std::vector<double> outputs_and_gradients(bool fused, const std::vector<std::int64_t>& widths,
                                          Unary f, UnaryParams p, DType dtype) {
  const std::int64_t rows = 37;
  std::vector<Parameter> v = network(widths, rows, dtype);
  Tape tape;
  Var y;
  if (fused) {
    std::vector<Var> weights, biases;
    for (std::size_t i = 1; i < v.size(); i += 2) {
      weights.push_back(v[i]);
      biases.push_back(v[i + 1]);
    }
    y = fused_mlp(v[0], weights, biases, f, p);
  } else {
    y = v[0];
    for (std::size_t i = 1; i < v.size(); i += 2) {
      const bool last = i + 2 == v.size();
      y = linear_act(y, v[i], v[i + 1], last ? Unary::identity : f, last ? UnaryParams{} : p);
    }
  }
  tape.backward(sum(mul(y, Var(pattern(y.shape(), 0.9, 1.0, dtype)))));
  std::vector<double> out = y.value().to_vector();
  for (Parameter& param : v)
    for (double g : param.grad().to_vector()) out.push_back(g);
  return out;
}

TEST(FusedMlp, EqualsLinearActPerLayer) {
  const std::pair<Unary, UnaryParams> activations[] = {
      {Unary::relu, {}},    {Unary::leaky_relu, {0.01}}, {Unary::elu, {1.0}},
      {Unary::silu, {}},    {Unary::gelu, {}},           {Unary::tanh, {}},
      {Unary::sigmoid, {}}, {Unary::softplus, {}},       {Unary::identity, {}},
  };
  const std::vector<std::vector<std::int64_t>> shapes = {{6, 3}, {6, 16, 3}, {6, 20, 9, 3}};
  for (DType dtype : {DType::f32, DType::f64})
    for (const auto& widths : shapes)
      for (auto [f, p] : activations) {
        const std::vector<double> fused = outputs_and_gradients(true, widths, f, p, dtype);
        const std::vector<double> layered = outputs_and_gradients(false, widths, f, p, dtype);
        ASSERT_EQ(fused.size(), layered.size());
        const double rtol = dtype == DType::f32 ? 1e-5 : 1e-13;
        for (std::size_t i = 0; i < fused.size(); ++i)
          ASSERT_NEAR(fused[i], layered[i], rtol * std::max(1.0, std::abs(layered[i])))
              << core::name(f) << " " << dtype << ", " << widths.size() - 1 << " layers, entry "
              << i;
      }
}

TEST(FusedMlp, InferenceSavesNothingAndGivesTheSameOutput) {
  const std::vector<std::int64_t> widths{4, 8, 2};
  std::vector<Parameter> v = network(widths, 5, DType::f64);
  const std::vector<Var> weights{v[1], v[3]}, biases{v[2], v[4]};
  std::vector<double> recorded;
  {
    Tape tape;
    const Var y = fused_mlp(v[0], weights, biases, Unary::tanh);
    EXPECT_TRUE(y.requires_grad());
    recorded = y.value().to_vector();
  }
  const Var y = fused_mlp(v[0], weights, biases, Unary::tanh);
  EXPECT_FALSE(y.requires_grad());
  EXPECT_EQ(y.value().to_vector(), recorded);
}

TEST(FusedMlp, RejectsMismatchedShapes) {
  std::vector<Parameter> v = network({4, 8, 2}, 5, DType::f64);
  const std::vector<Var> w{v[1], v[3]}, b{v[2], v[4]};
  EXPECT_THROW(fused_mlp(v[0], std::vector<Var>{v[1]}, b, Unary::relu), core::ValueError);
  EXPECT_THROW(fused_mlp(v[0], std::vector<Var>{v[3], v[1]}, b, Unary::relu), core::ShapeError);
  EXPECT_THROW(fused_mlp(v[0], w, std::vector<Var>{v[2], v[2]}, Unary::relu), core::ShapeError);
}

}  // namespace
}  // namespace asbi::ad
