// Conv2d and ConvEncoder: the im2col convolution against plain nested loops, gradients against
// finite differences (input, weight and bias), concurrent forwards, and the errors that name the
// expected field.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "autodiff/gradcheck.hpp"
#include "autodiff/ops.hpp"
#include "autodiff/tape.hpp"
#include "nn/conv.hpp"
#include "test_util.hpp"

namespace asbi::nn {
namespace {

using asbi::test_util::expect_error_naming;

// Standard normal values from the Philox stream `seed`, float64.
Tensor field_values(const Shape& shape, std::uint64_t seed) {
  Tensor t = Tensor::empty(shape, DType::f64);
  core::fill_normal(seed, 3, 0, std::span<double>(t.data<double>(), std::size_t(t.numel())));
  return t;
}

struct Geometry {
  std::int64_t height, width, in_channels, out_channels;
  int kernel, stride, padding;
};

std::string describe(const Geometry& g) {
  return core::str(g.height, "×", g.width, "×", g.in_channels, " → ", g.out_channels, ", K ",
                   g.kernel, ", stride ", g.stride, ", padding ", g.padding);
}

// The definition, one output at a time: y[m, i, j, o] = b_o + Σ_{ki,kj,c} W[o, ki, kj, c] ·
// x[m, i·s − p + ki, j·s − p + kj, c], zero outside the field.
std::vector<double> naive_conv(const Geometry& g, const std::vector<double>& x, std::int64_t fields,
                               const std::vector<double>& w, const std::vector<double>& b) {
  const std::int64_t out_h = (g.height + 2 * g.padding - g.kernel) / g.stride + 1;
  const std::int64_t out_w = (g.width + 2 * g.padding - g.kernel) / g.stride + 1;
  const std::int64_t K = g.kernel, C = g.in_channels, O = g.out_channels;
  std::vector<double> y;
  for (std::int64_t m = 0; m < fields; ++m)
    for (std::int64_t i = 0; i < out_h; ++i)
      for (std::int64_t j = 0; j < out_w; ++j)
        for (std::int64_t o = 0; o < O; ++o) {
          double acc = b[static_cast<std::size_t>(o)];
          for (std::int64_t ki = 0; ki < K; ++ki)
            for (std::int64_t kj = 0; kj < K; ++kj) {
              const std::int64_t pi = i * g.stride - g.padding + ki;
              const std::int64_t pj = j * g.stride - g.padding + kj;
              if (pi < 0 || pi >= g.height || pj < 0 || pj >= g.width) continue;
              for (std::int64_t c = 0; c < C; ++c)
                acc += w[static_cast<std::size_t>(((o * K + ki) * K + kj) * C + c)] *
                       x[static_cast<std::size_t>(((m * g.height + pi) * g.width + pj) * C + c)];
            }
          y.push_back(acc);
        }
  return y;
}

const std::vector<Geometry> geometries = {
    {5, 5, 1, 2, 3, 1, 1},  // "same" convolution
    {6, 4, 2, 3, 3, 2, 1},  // stride 2, non-square
    {7, 5, 3, 2, 3, 2, 0},  // stride 2, no padding, odd sizes
    {4, 6, 2, 4, 1, 1, 0},  // 1×1: a per-pixel linear map
    {3, 8, 1, 3, 5, 1, 2},  // kernel wider than the field's height, padding 2
    {9, 6, 2, 2, 2, 3, 0},  // stride larger than the kernel skips pixels
};

TEST(Conv2d, MatchesNestedLoops) {
  for (const Geometry& g : geometries) {
    core::Rng rng(1);
    Conv2d conv(g.height, g.width, g.in_channels, g.out_channels, g.kernel, g.stride, g.padding,
                rng, DType::f64);
    const std::int64_t fields = 3;
    const Tensor x = field_values({fields, conv.in_features()}, 2);
    ad::NoGrad no_grad;
    const Var y = conv(x);
    ASSERT_EQ(y.shape(), Shape({fields, conv.out_features()})) << describe(g);
    EXPECT_EQ(conv.out_features(), conv.out_height() * conv.out_width() * g.out_channels);
    const std::vector<double> expected =
        naive_conv(g, x.to_vector(), fields, conv.weight().value().to_vector(),
                   conv.bias().value().to_vector());
    const std::vector<double> got = y.value().to_vector();
    ASSERT_EQ(got.size(), expected.size()) << describe(g);
    for (std::size_t i = 0; i < got.size(); ++i)
      ASSERT_NEAR(got[i], expected[i], 1e-12) << describe(g) << ", output " << i;
  }
}

TEST(Conv2d, OutputSizesParametersAndInitialisation) {
  core::Rng rng(2);
  Conv2d conv(16, 15, 3, 8, 3, 2, 1, rng);
  EXPECT_EQ(conv.out_height(), 8);
  EXPECT_EQ(conv.out_width(), 8);  // ⌊(15 + 2 − 3)/2⌋ + 1
  EXPECT_EQ(conv.out_channels(), 8);
  EXPECT_EQ(conv.in_features(), 16 * 15 * 3);
  EXPECT_EQ(conv.out_features(), 8 * 8 * 8);
  const std::vector<NamedParameter> params = conv.parameters();
  ASSERT_EQ(params.size(), 2u);
  EXPECT_EQ(params[0].name, "weight");
  EXPECT_EQ(params[1].name, "bias");
  EXPECT_EQ(conv.weight().value().shape(), Shape({8, 27}));
  EXPECT_EQ(conv.bias().value().shape(), Shape({8}));
  // PyTorch's default: uniform in ±1/√(K·K·C_in) for weight and bias.
  double largest = 0;
  for (double v : conv.weight().value().to_vector()) largest = std::max(largest, std::abs(v));
  EXPECT_LE(largest, 1 / std::sqrt(27.0));
  EXPECT_GT(largest, 0.9 / std::sqrt(27.0));
}

TEST(Conv2d, GradcheckInputWeightAndBias) {
  for (const Geometry& g : {geometries[1], geometries[2], geometries[4]}) {
    core::Rng rng(3);
    Conv2d conv(g.height, g.width, g.in_channels, g.out_channels, g.kernel, g.stride, g.padding,
                rng, DType::f64);
    const Tensor x = field_values({2, conv.in_features()}, 4);
    auto r = ad::gradcheck([&](std::span<const Var> v) { return conv.convolve(v[0], v[1], v[2]); },
                           {x, conv.weight().value().clone(), conv.bias().value().clone()});
    EXPECT_TRUE(r.passed) << describe(g) << ": " << r.str();
  }
}

TEST(Conv2d, ForwardRecordsGradientsForItsParameters) {
  core::Rng rng(4);
  Conv2d conv(4, 4, 1, 2, 3, 1, 1, rng, DType::f64);
  const Tensor x = field_values({2, 16}, 5);
  conv.zero_grad();
  {
    ad::Tape tape;
    tape.backward(ad::sum(conv(x)));
  }
  // ∂Σy/∂b_o = M·P (every output of channel o adds b_o once).
  for (double g : conv.bias().grad().to_vector()) EXPECT_DOUBLE_EQ(g, 2.0 * 16);
  // ∂Σy/∂W[o, centre tap] = Σ of every input pixel (the centre tap reads each pixel once).
  double total = 0;
  for (double v : x.to_vector()) total += v;
  const std::vector<double> dw = conv.weight().grad().to_vector();
  EXPECT_NEAR(dw[4], total, 1e-12);
  EXPECT_NEAR(dw[9 + 4], total, 1e-12);
}

TEST(Conv2d, ConcurrentForwardsOfSeveralBatchSizesAgree) {
  core::Rng rng(5);
  Conv2d conv(6, 5, 2, 3, 3, 2, 1, rng);
  std::vector<Tensor> inputs;
  std::vector<std::vector<double>> expected;
  for (std::int64_t m = 1; m <= 7; ++m) {  // more batch sizes than the index cache holds
    inputs.push_back(field_values({m, conv.in_features()}, 10 + m).to(DType::f32));
    ad::NoGrad no_grad;
    expected.push_back(conv(inputs.back()).value().to_vector());
  }
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      ad::NoGrad no_grad;
      for (int round = 0; round < 50; ++round) {
        const std::size_t k = static_cast<std::size_t>((round * 3 + t) % 7);
        if (conv(inputs[k]).value().to_vector() != expected[k]) ++mismatches[t];
      }
    });
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

TEST(Conv2d, ErrorsNameTheField) {
  core::Rng rng(6);
  Conv2d conv(5, 4, 2, 3, 3, 1, 1, rng);
  ad::NoGrad no_grad;
  expect_error_naming<core::ShapeError>(
      [&] {
        conv(Tensor::zeros({2, 39}));
      },
      {"[M, 40]", "5×4", "2 channels", "[2, 39]"});
  expect_error_naming<core::ShapeError>(
      [&] {
        conv.convolve(Tensor::zeros({1, 40}), Tensor::zeros({3, 9}), Tensor::zeros({3}));
      },
      {"weight", "[3, 18]", "[3, 9]"});
  expect_error_naming<core::ValueError>([&] { Conv2d(2, 8, 1, 1, 5, 1, 1, rng); },
                                        {"5×5", "height 2"});
  expect_error_naming<core::ValueError>([&] { Conv2d(8, 8, 1, 1, 3, 0, 1, rng); }, {"stride", "0"});
  expect_error_naming<core::ValueError>([&] { Conv2d(8, 8, 0, 1, 3, 1, 1, rng); },
                                        {"in_channels", "0"});
}

TEST(ConvEncoder, ShapesAndParameterNames) {
  core::Rng rng(7);
  ConvEncoder encoder(16, 16, {8, 16}, 5, rng);
  EXPECT_EQ(encoder.in_features(), 256);
  EXPECT_EQ(encoder.out_features(), 5);
  std::vector<std::string> names;
  for (const NamedParameter& p : encoder.parameters()) names.push_back(p.name);
  EXPECT_EQ(names, (std::vector<std::string>{"convs.0.weight", "convs.0.bias", "convs.1.weight",
                                             "convs.1.bias", "linear.weight", "linear.bias"}));
  EXPECT_EQ(encoder.parameter("convs.0.weight").value().shape(), Shape({8, 9}));
  EXPECT_EQ(encoder.parameter("convs.1.weight").value().shape(), Shape({16, 72}));
  EXPECT_EQ(encoder.parameter("linear.weight").value().shape(), Shape({5, 4 * 4 * 16}));
  ad::NoGrad no_grad;
  EXPECT_EQ(encoder(Tensor::zeros({3, 256})).shape(), Shape({3, 5}));
  expect_error_naming<core::ShapeError>(
      [&] {
        encoder(Tensor::zeros({3, 255}));
      },
      {"[M, 256]", "[3, 255]"});
}

TEST(ConvEncoder, EqualsItsLayersComposed) {
  core::Rng rng(8);
  ConvEncoder encoder(7, 6, {3, 2}, 4, rng, Activation::tanh, DType::f64);
  core::Rng same(8);
  Conv2d first(7, 6, 1, 3, 3, 2, 1, same, DType::f64);   // 4×3×3
  Conv2d second(4, 3, 3, 2, 3, 2, 1, same, DType::f64);  // 2×2×2
  Linear linear(8, 4, same, true, DType::f64);
  const Tensor x = field_values({3, 42}, 9);
  ad::NoGrad no_grad;
  const Var y = linear(ad::tanh(second(ad::tanh(first(x)))));
  EXPECT_EQ(encoder(x).value().to_vector(), y.value().to_vector());
}

TEST(ConvEncoder, Gradcheck) {
  core::Rng rng(9);
  ConvEncoder encoder(6, 5, {2, 3}, 2, rng, Activation::tanh, DType::f64);
  const Tensor x = field_values({2, 30}, 10);
  auto r = ad::gradcheck([&](std::span<const Var> v) { return encoder(v[0]); }, {x});
  EXPECT_TRUE(r.passed) << r.str();
}

}  // namespace
}  // namespace asbi::nn
