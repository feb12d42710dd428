// Layers: stable parameter names, initialisation bounds and determinism, gradients against finite
// differences (inputs with ad::gradcheck, parameters with the same weighted-sum check below),
// dropout's statistics and reproducibility, and the errors that name what was expected.
#include <gtest/gtest.h>

#include "test_util.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "autodiff/gradcheck.hpp"
#include "autodiff/ops.hpp"
#include "autodiff/tape.hpp"
#include "core/backend.hpp"
#include "nn/layers.hpp"

namespace asbi::nn {
namespace {

constexpr double kTolerance = 1e-6;

using asbi::test_util::expect_error_naming;

// Values in [-1.5, 1.5) that no two entries share, from a fixed sequence.
Tensor input(const Shape& shape, std::uint64_t seed, DType dtype = DType::f64) {
  core::Rng rng(seed, 7);
  std::vector<double> v(static_cast<std::size_t>(shape.numel()));
  for (double& x : v) x = 3 * rng.uniform() - 1.5;
  return Tensor::from(v, shape, dtype);
}

std::vector<std::string> names_of(const Module& m) {
  std::vector<std::string> out;
  for (const NamedParameter& p : m.parameters()) out.push_back(p.name);
  return out;
}

// The gradcheck weights: alternating signs, sizes in [0.5, 1.4].
Tensor weights_like(const Var& y) {
  std::vector<double> w(static_cast<std::size_t>(y.numel()));
  for (std::size_t i = 0; i < w.size(); ++i)
    w[i] = (i % 2 ? -1.0 : 1.0) * (0.5 + double(i % 7) / 7);
  return Tensor::from(w, y.shape(), DType::f64);
}

// ad::gradcheck for a module's parameters: the tape's ∂(Σ w ⊙ f())/∂p against central differences
// of every entry of every (float64, CPU) parameter. Returns the largest entry error, measured as
// gradcheck does: |analytic - numeric| / max(1, |analytic|, |numeric|).
double parameter_gradient_error(Module& m, const std::function<Var()>& f, double eps = 1e-6) {
  m.zero_grad();
  Tensor w;
  {
    ad::Tape tape;
    Var y = f();
    w = weights_like(y);
    tape.backward(ad::sum(ad::mul(y, Var(w))));
  }
  ad::NoGrad no_grad;
  auto loss = [&] {
    const std::vector<double> y = f().value().to_vector(), wv = w.to_vector();
    double s = 0;
    for (std::size_t i = 0; i < y.size(); ++i) s += y[i] * wv[i];
    return s;
  };
  double worst = 0;
  for (const NamedParameter& p : m.parameters()) {
    double* v = p.parameter->value().data<double>();
    const std::vector<double> analytic = p.parameter->grad().to_vector();
    for (std::size_t k = 0; k < analytic.size(); ++k) {
      const double saved = v[k];
      v[k] = saved + eps;
      const double up = loss();
      v[k] = saved - eps;
      const double down = loss();
      v[k] = saved;
      const double numeric = (up - down) / (2 * eps), a = analytic[k];
      const double err = std::abs(a - numeric) / std::max({1.0, std::abs(a), std::abs(numeric)});
      EXPECT_LE(err, kTolerance) << p.name << "[" << k << "]: analytic " << a << ", numeric "
                                 << numeric;
      worst = std::max(worst, err);
    }
  }
  return worst;
}

// --- names, initialisation, determinism ---------------------------------------------------------

TEST(Layers, ResidualNetParameterNamesAreStableAndDotted) {
  core::Rng rng(1);
  ResidualNet net(3, 4, 8, 2, 2, Activation::relu, 0.0, rng);
  const std::vector<std::string> expected = {"initial_layer.weight",
                                             "initial_layer.bias",
                                             "blocks.0.context_layer.weight",
                                             "blocks.0.context_layer.bias",
                                             "blocks.0.linear0.weight",
                                             "blocks.0.linear0.bias",
                                             "blocks.0.linear1.weight",
                                             "blocks.0.linear1.bias",
                                             "blocks.1.context_layer.weight",
                                             "blocks.1.context_layer.bias",
                                             "blocks.1.linear0.weight",
                                             "blocks.1.linear0.bias",
                                             "blocks.1.linear1.weight",
                                             "blocks.1.linear1.bias",
                                             "final_layer.weight",
                                             "final_layer.bias"};
  EXPECT_EQ(names_of(net), expected);
  EXPECT_EQ(net.parameter("initial_layer.weight").value().shape(), Shape({8, 5}));  // x ⊕ context
  EXPECT_EQ(net.parameter("blocks.1.context_layer.weight").value().shape(), Shape({8, 2}));
  EXPECT_EQ(net.parameter("final_layer.weight").value().shape(), Shape({4, 8}));
  EXPECT_EQ(net.parameter_count(), 8 * 5 + 8 + 2 * (8 * 2 + 8 + 2 * (8 * 8 + 8)) + 4 * 8 + 4);

  core::Rng rng2(1);
  ResidualNet plain(3, 4, 8, 0, 1, Activation::relu, 0.0, rng2);
  EXPECT_EQ(names_of(plain),
            (std::vector<std::string>{"initial_layer.weight", "initial_layer.bias",
                                      "blocks.0.linear0.weight", "blocks.0.linear0.bias",
                                      "blocks.0.linear1.weight", "blocks.0.linear1.bias",
                                      "final_layer.weight", "final_layer.bias"}));
}

TEST(Layers, InitialisationBoundsFollowPyTorchAndNflows) {
  core::Rng rng(3);
  ResidualNet net(5, 2, 16, 3, 2, Activation::relu, 0.0, rng);
  auto max_abs = [&](const std::string& name) {
    double m = 0;
    for (double v : net.parameter(name).value().to_vector()) m = std::max(m, std::abs(v));
    return m;
  };
  // Kaiming-uniform: ±1/√fan_in for weights and biases.
  EXPECT_LE(max_abs("initial_layer.weight"), 1 / std::sqrt(8.0));
  EXPECT_GT(max_abs("initial_layer.weight"), 0.8 / std::sqrt(8.0));  // the range is used
  EXPECT_LE(max_abs("blocks.0.linear0.weight"), 1 / std::sqrt(16.0));
  EXPECT_LE(max_abs("blocks.0.context_layer.bias"), 1 / std::sqrt(3.0));
  // nflows' zero initialisation of each block's last layer: uniform in ±1e-3.
  for (const char* name :
       {"blocks.0.linear1.weight", "blocks.0.linear1.bias", "blocks.1.linear1.weight"}) {
    EXPECT_LE(max_abs(name), 1e-3) << name;
    EXPECT_GT(max_abs(name), 1e-4) << name;
  }
}

TEST(Layers, SameSeedSameParametersAndDropoutDoesNotShiftThem) {
  auto values = [](std::uint64_t seed, double dropout) {
    core::Rng rng(seed);
    ResidualNet net(3, 2, 8, 1, 2, Activation::tanh, dropout, rng, DType::f64);
    std::vector<double> all;
    for (const NamedParameter& p : net.parameters()) {
      const std::vector<double> v = p.parameter->value().to_vector();
      all.insert(all.end(), v.begin(), v.end());
    }
    return all;
  };
  EXPECT_EQ(values(11, 0.0), values(11, 0.0));
  EXPECT_NE(values(11, 0.0), values(12, 0.0));
  EXPECT_EQ(values(11, 0.0), values(11, 0.3));
}

TEST(Layers, ZeroInitialisedBlockStartsNearTheIdentity) {
  core::Rng rng(5);
  ResidualBlock block(6, 2, rng, Activation::relu, 0.0, true, DType::f64);
  const Tensor x = input({4, 6}, 1), c = input({4, 2}, 2);
  ad::NoGrad no_grad;
  const std::vector<double> y = block(x, c).value().to_vector(), xv = x.to_vector();
  for (std::size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(y[i], xv[i], 1e-2);
}

// --- gradients ----------------------------------------------------------------------------------

TEST(Layers, LinearGradcheck) {
  core::Rng rng(2);
  Linear layer(4, 3, rng, true, DType::f64);
  const Tensor x = input({5, 4}, 3);
  auto r = ad::gradcheck([&](std::span<const Var> v) { return layer(v[0]); }, {x});
  EXPECT_TRUE(r.passed) << r.str();
  EXPECT_LE(parameter_gradient_error(layer, [&] { return layer(x); }), kTolerance);
}

TEST(Layers, MlpGradcheck) {
  core::Rng rng(4);
  Mlp mlp(3, {6, 5}, 2, rng, Activation::tanh, DType::f64);
  const Tensor x = input({4, 3}, 5);
  auto r = ad::gradcheck([&](std::span<const Var> v) { return mlp(v[0]); }, {x});
  EXPECT_TRUE(r.passed) << r.str();
  EXPECT_LE(parameter_gradient_error(mlp, [&] { return mlp(x); }), kTolerance);
}

TEST(Layers, ResidualNetWithContextGradcheck) {
  core::Rng rng(6);
  ResidualNet net(3, 4, 6, 2, 2, Activation::tanh, 0.0, rng, DType::f64);
  // Larger last-layer weights than the ±1e-3 start, so every path carries a visible gradient.
  for (const char* name : {"blocks.0.linear1.weight", "blocks.1.linear1.weight"})
    net.parameter(name).value().copy_from(input(Shape({6, 6}), 9));
  const Tensor x = input({5, 3}, 7), c = input({5, 2}, 8);
  auto r = ad::gradcheck([&](std::span<const Var> v) { return net(v[0], v[1]); }, {x, c});
  EXPECT_TRUE(r.passed) << r.str();
  EXPECT_LE(parameter_gradient_error(net, [&] { return net(x, c); }), kTolerance);
}

TEST(Layers, ResidualNetWithoutContextGradcheck) {
  core::Rng rng(8);
  ResidualNet net(2, 3, 5, 0, 1, Activation::elu, 0.0, rng, DType::f64);
  const Tensor x = input({4, 2}, 10);
  auto r = ad::gradcheck([&](std::span<const Var> v) { return net(v[0]); }, {x});
  EXPECT_TRUE(r.passed) << r.str();
  EXPECT_LE(parameter_gradient_error(net, [&] { return net(x); }), kTolerance);
}

// Mlp and ResidualBlock run the fused ad::linear_act; written out with the separate ops, in
// float32, the outputs and parameter gradients agree to float rounding.
TEST(Layers, FusedLayersEqualTheSeparateOps) {
  auto expect_same = [](const std::vector<double>& got, const std::vector<double>& want,
                        const std::string& what) {
    ASSERT_EQ(got.size(), want.size());
    for (std::size_t i = 0; i < got.size(); ++i)
      EXPECT_NEAR(got[i], want[i], 1e-5 * std::max(1.0, std::abs(want[i]))) << what << " " << i;
  };
  for (Activation a :
       {Activation::relu, Activation::leaky_relu, Activation::elu, Activation::silu,
        Activation::gelu, Activation::tanh, Activation::sigmoid, Activation::softplus}) {
    core::Rng rng(11);
    Mlp mlp(5, {16, 12}, 3, rng, a, DType::f32);
    ResidualBlock block(3, 0, rng, a, 0.0, false, DType::f32);
    const Tensor x = input({9, 5}, 12, DType::f32);
    auto param = [](const Module& m, const char* name) { return Var(m.parameter(name)); };
    auto separate = [&] {
      Var h = activate(a, ad::linear(x, param(mlp, "0.weight"), param(mlp, "0.bias")));
      h = activate(a, ad::linear(h, param(mlp, "1.weight"), param(mlp, "1.bias")));
      h = ad::linear(h, param(mlp, "2.weight"), param(mlp, "2.bias"));
      Var t = activate(a, ad::linear(activate(a, h), param(block, "linear0.weight"),
                                     param(block, "linear0.bias")));
      return ad::add(h,
                     ad::linear(t, param(block, "linear1.weight"), param(block, "linear1.bias")));
    };
    auto run = [&](const std::function<Var()>& f) {
      mlp.zero_grad();
      block.zero_grad();
      ad::Tape tape;
      const Var y = f();
      tape.backward(ad::sum(ad::square(y)));
      std::vector<double> out = y.value().to_vector();
      for (const Module* m : {static_cast<const Module*>(&mlp), static_cast<const Module*>(&block)})
        for (const NamedParameter& p : m->parameters())
          for (double g : p.parameter->grad().to_vector()) out.push_back(g);
      return out;
    };
    expect_same(run([&] { return block(mlp(x)); }), run(separate), name(a));
  }
}

// On CUDA, a float32 Mlp no wider than core::fused_mlp_max_width runs as one ad::fused_mlp node
// (the single-launch kernels), a wider one layer by layer; both agree with the same network on
// the CPU, outputs and parameter gradients.
TEST(Layers, MlpOnCudaUsesTheFusedKernelAndMatchesTheCpu) {
  if (!core::device_available(core::Device::cuda)) GTEST_SKIP() << "no CUDA device";
  struct Case {
    std::vector<std::int64_t> hidden;
    bool fused;
  };
  for (const Case& c : {Case{{64, 50}, true}, Case{{128, 128, 128}, true}, Case{{130}, false}}) {
    auto run = [&](core::Device device, std::string* ops) {
      core::Rng rng(5);
      Mlp mlp(6, c.hidden, 4, rng, Activation::silu, DType::f32);
      mlp.to(device);
      const Tensor x = input({100, 6}, 13, DType::f32).to(device);
      ad::Tape tape;
      const Var y = mlp(x);
      *ops = tape.str();
      tape.backward(ad::sum(ad::square(y)));
      std::vector<double> out = y.value().to_vector();
      for (const NamedParameter& p : mlp.parameters())
        for (double g : p.parameter->grad().to_vector()) out.push_back(g);
      return out;
    };
    std::string cpu_ops, gpu_ops;
    const std::vector<double> cpu = run(core::Device::cpu, &cpu_ops);
    const std::vector<double> gpu = run(core::Device::cuda, &gpu_ops);
    EXPECT_EQ(cpu_ops.find("fused_mlp"), std::string::npos);
    EXPECT_EQ(gpu_ops.find("fused_mlp") != std::string::npos, c.fused) << gpu_ops;
    ASSERT_EQ(gpu.size(), cpu.size());
    double scale = 1;
    for (double v : cpu) scale = std::max(scale, std::abs(v));
    for (std::size_t i = 0; i < cpu.size(); ++i)
      EXPECT_NEAR(gpu[i], cpu[i], 1e-4 * scale) << "entry " << i;
  }
}

TEST(Layers, LayerNormModuleGradcheck) {
  LayerNorm norm(5, DType::f64);
  EXPECT_EQ(names_of(norm), (std::vector<std::string>{"weight", "bias"}));
  EXPECT_EQ(norm.weight().value().to_vector(), std::vector<double>(5, 1.0));
  EXPECT_EQ(norm.bias().value().to_vector(), std::vector<double>(5, 0.0));
  norm.weight().value().copy_from(input({5}, 11));
  norm.bias().value().copy_from(input({5}, 12));
  const Tensor x = input({3, 5}, 13);
  auto r = ad::gradcheck([&](std::span<const Var> v) { return norm(v[0]); }, {x});
  EXPECT_TRUE(r.passed) << r.str();
  EXPECT_LE(parameter_gradient_error(norm, [&] { return norm(x); }), kTolerance);
}

TEST(Layers, LayerNormNormalisesEachRow) {
  LayerNorm norm(4, DType::f64);
  ad::NoGrad no_grad;
  const Tensor x = input({2, 4}, 14);
  const std::vector<double> y = norm(x).value().to_vector(), xv = x.to_vector();
  auto moments = [](const double* row) {
    double mean = 0, var = 0;
    for (int i = 0; i < 4; ++i) mean += row[i] / 4;
    for (int i = 0; i < 4; ++i) var += (row[i] - mean) * (row[i] - mean) / 4;  // biased, as torch
    return std::pair{mean, var};
  };
  for (int r = 0; r < 2; ++r) {
    const auto [mean_y, var_y] = moments(&y[r * 4]);
    const double var_x = moments(&xv[r * 4]).second;
    EXPECT_NEAR(mean_y, 0, 1e-12);
    EXPECT_NEAR(var_y, var_x / (var_x + 1e-5), 1e-12);  // eps = 1e-5 inside the square root
  }
}

// --- dropout ------------------------------------------------------------------------------------

TEST(Layers, DropoutIsTheIdentityInEvaluation) {
  Dropout dropout(0.5, 42);
  EXPECT_FALSE(dropout.training());
  const Tensor x = input({10, 10}, 15, DType::f32);
  EXPECT_EQ(dropout(x).value().to_vector(), x.to_vector());
  EXPECT_EQ(dropout.counter(), 0u) << "evaluation must not consume random numbers";
}

TEST(Layers, DropoutKeepsOneMinusPWithInvertedScaling) {
  const double p = 0.3;
  Dropout dropout(p, 42);
  dropout.train();
  const Tensor x = Tensor::full({200, 500}, 2.0);
  const std::vector<double> y = dropout(x).value().to_vector();
  std::int64_t kept = 0;
  double sum = 0;
  for (double v : y) {
    if (v != 0) {
      ++kept;
      EXPECT_FLOAT_EQ(v, 2.0 / (1 - p));
    }
    sum += v;
  }
  const double n = static_cast<double>(y.size());
  // Binomial: the standard deviation of the kept fraction is √(p(1-p)/n) ≈ 0.002.
  EXPECT_NEAR(kept / n, 1 - p, 0.01);
  EXPECT_NEAR(sum / n, 2.0, 0.03);  // inverted dropout preserves the expectation
}

TEST(Layers, DropoutMasksAreReproducibleAndAdvance) {
  auto masks = [](std::uint64_t seed, DType dtype) {
    Dropout dropout(0.5, seed);
    dropout.train();
    const Tensor x = Tensor::full({7, 9}, 1.0, dtype);
    std::vector<double> first = dropout(x).value().to_vector();
    std::vector<double> second = dropout(x).value().to_vector();
    return std::pair{first, second};
  };
  const auto [a1, a2] = masks(9, DType::f32);
  const auto [b1, b2] = masks(9, DType::f32);
  EXPECT_EQ(a1, b1);
  EXPECT_EQ(a2, b2);
  EXPECT_NE(a1, a2) << "the second mask must be fresh";
  EXPECT_NE(a1, masks(10, DType::f32).first);
  EXPECT_EQ(a1, masks(9, DType::f64).first) << "float32 and float64 inputs share masks";

  // set_counter replays a mask.
  Dropout dropout(0.5, 9);
  dropout.train();
  const Tensor x = Tensor::full({7, 9}, 1.0);
  const std::uint64_t start = dropout.counter();
  const std::vector<double> first = dropout(x).value().to_vector();
  EXPECT_EQ(dropout.counter(), start + (63 + 3) / 4);  // one float per element, 4 per block
  dropout.set_counter(start);
  EXPECT_EQ(dropout(x).value().to_vector(), first);
}

// The mask is drawn on x's device, with the numbers the CPU would draw.
TEST(Layers, DropoutOnCudaDrawsTheCpuMask) {
  if (!core::device_available(Device::cuda)) GTEST_SKIP() << "no CUDA device";
  for (DType dtype : {DType::f32, DType::f64}) {
    Dropout on_cpu(0.3, 21), on_gpu(0.3, 21);
    on_cpu.train();
    on_gpu.train();
    const Tensor x = input({13, 7}, 17, dtype);
    for (int call = 0; call < 2; ++call) {  // the second mask starts where the first ended
      const Tensor y = on_gpu(x.to(Device::cuda)).value();
      EXPECT_EQ(y.device(), Device::cuda);
      EXPECT_EQ(y.to_vector(), on_cpu(x).value().to_vector()) << "call " << call;
    }
    EXPECT_EQ(on_gpu.counter(), on_cpu.counter());
  }
}

TEST(Layers, DropoutGradientIsTheMask) {
  Dropout dropout(0.4, 3);
  dropout.train();
  ad::Parameter x("x", input({6, 5}, 16));
  ad::Tape tape;
  Var y = dropout(x);
  tape.backward(ad::sum(y));
  const std::vector<double> yv = y.value().to_vector(), xv = x.value().to_vector(),
                            g = x.grad().to_vector();
  for (std::size_t i = 0; i < g.size(); ++i) EXPECT_DOUBLE_EQ(g[i] * xv[i], yv[i]);
}

TEST(Layers, DropoutExtremes) {
  const Tensor x = Tensor::full({4, 4}, 3.0);
  Dropout all(1.0, 1);
  all.train();
  EXPECT_EQ(all(x).value().to_vector(), std::vector<double>(16, 0.0));
  Dropout none(0.0, 1);
  none.train();
  EXPECT_EQ(none(x).value().to_vector(), x.to_vector());
  expect_error_naming<core::ValueError>([] { Dropout(1.5, 1); }, {"[0, 1]", "1.5"});
}

TEST(Layers, TrainModeReachesDropoutInsideResidualNet) {
  core::Rng rng(21);
  ResidualNet net(3, 2, 16, 0, 2, Activation::relu, 0.5, rng);
  const Tensor x = input({8, 3}, 17, DType::f32);
  ad::NoGrad no_grad;
  const std::vector<double> eval1 = net(x).value().to_vector();
  net.train();
  const std::vector<double> train = net(x).value().to_vector();
  net.eval();
  EXPECT_EQ(net(x).value().to_vector(), eval1);
  EXPECT_NE(train, eval1);
}

// --- Sequential ---------------------------------------------------------------------------------

TEST(Layers, SequentialNamesByPositionAndComposes) {
  core::Rng rng(31);
  Sequential seq;
  Linear& first = seq.emplace_back<Linear>(3, 4, rng, true, DType::f64);
  seq.emplace_back<LayerNorm>(4, DType::f64);
  seq.push_back(std::make_unique<Dropout>(0.5, 1));
  Linear& last = seq.emplace_back<Linear>(4, 2, rng, true, DType::f64);
  EXPECT_EQ(seq.size(), 4u);
  EXPECT_EQ(names_of(seq), (std::vector<std::string>{"0.weight", "0.bias", "1.weight", "1.bias",
                                                     "3.weight", "3.bias"}));
  const Tensor x = input({5, 3}, 18);
  ad::NoGrad no_grad;
  const LayerNorm& norm = dynamic_cast<const LayerNorm&>(seq[1]);
  EXPECT_EQ(seq(x).value().to_vector(), last(norm(first(x))).value().to_vector());
}

// --- errors
// ---------------------------------------------------------------------------------------

TEST(Layers, ErrorsNameWhatWasExpected) {
  core::Rng rng(41);
  ResidualNet with_context(3, 2, 4, 2, 1, Activation::relu, 0.0, rng);
  ResidualNet without(3, 2, 4, 0, 1, Activation::relu, 0.0, rng);
  const Tensor x = Tensor::zeros({5, 3}), c = Tensor::zeros({5, 2});
  expect_error_naming<core::ValueError>([&] { with_context(x); }, {"context of 2 features"});
  expect_error_naming<core::ValueError>([&] { without(x, c); }, {"without context", "[5, 2]"});
  expect_error_naming<core::ShapeError>(
      [&] {
        with_context(x, Tensor::zeros({5, 3}));
      },
      {"[5, 2]", "[5, 3]"});
  expect_error_naming<core::ShapeError>(
      [&] {
        without(Tensor::zeros({5, 4}));
      },
      {"[B, 3]", "[5, 4]"});
  LayerNorm norm(4);
  expect_error_naming<core::ShapeError>(
      [&] {
        norm(Tensor::zeros({2, 3}));
      },
      {"[..., 4]", "[2, 3]"});
  expect_error_naming<core::ValueError>([] { LayerNorm(0); }, {">= 1", "0"});
  expect_error_naming<core::ValueError>(
      [&] { ResidualNet(3, 2, 4, -1, 1, Activation::relu, 0.0, rng); }, {"context_features", "-1"});
}

}  // namespace
}  // namespace asbi::nn
