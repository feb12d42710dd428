// Every differentiable op against central finite differences in float64 (ad::gradcheck), one table
// row per case in the spirit of Stan's test_ad and ggml's test-backend-ops: a case names its
// inputs (shape and domain) and the function under test, and one generic checker does the rest.
// The tolerance is the 1e-6 on the max relative error, everywhere.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "autodiff/gradcheck.hpp"
#include "autodiff/ops.hpp"
#include "autodiff/parameter.hpp"
#include "autodiff/tape.hpp"
#include "core/backend.hpp"

namespace asbi::ad {
namespace {

using core::DType;
using Vars = std::span<const Var>;

constexpr double kTolerance = 1e-6;

// Where an input's entries are drawn from: uniform on [lo, hi], redrawn while within `margin` of
// a kink (where the op is not differentiable and finite differences straddle two slopes).
struct Domain {
  double lo = -2, hi = 2;
  std::vector<double> kinks{};
  double margin = 0.05;
};

const Domain kAny{};
const Domain kPositive{0.5, 2.0};         // log, sqrt, non-integer pow
const Domain kNonZero{-2, 2, {0.0}, 0.5};  // abs, relu family, divisors: |x| ≥ 0.5
const Domain kLarge{-50, 50};             // softmax family stability

struct Input {
  Shape shape;
  Domain domain = kAny;
};

struct OpCase {
  std::string name;  // gtest parameter name: letters, digits and underscores only
  std::vector<Input> inputs;
  GradcheckFn f;
  double eps = 1e-6;
};

// gtest prints a failing parameter with this instead of a hex dump of its bytes.
void PrintTo(const OpCase& c, std::ostream* out) { *out << c.name; }

// Deterministic inputs: the seed depends on the case name only, so adding a case does not change
// the numbers of the others.
std::vector<Tensor> make_inputs(const OpCase& c) {
  std::mt19937_64 gen(std::hash<std::string>{}(c.name) ^ 0x5eed);
  std::vector<Tensor> out;
  for (const Input& in : c.inputs) {
    std::uniform_real_distribution<double> u(in.domain.lo, in.domain.hi);
    std::vector<double> v(static_cast<std::size_t>(in.shape.numel()));
    for (double& x : v) {
      auto near_kink = [&](double y) {
        return std::any_of(in.domain.kinks.begin(), in.domain.kinks.end(),
                           [&](double k) { return std::abs(y - k) < in.domain.margin; });
      };
      do x = u(gen);
      while (near_kink(x));
    }
    out.push_back(Tensor::from(v, in.shape, DType::f64));
  }
  return out;
}

// A fixed 0/1 condition for `where`, with both branches present.
Tensor condition(const Shape& s) {
  std::vector<double> v(static_cast<std::size_t>(s.numel()));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = (i * 7 + 3) % 5 < 2 ? 1.0 : 0.0;
  return Tensor::from(v, s, DType::f64);
}

// A long chain mixing scale, add, tanh, softplus, square, sub and mul: 8 ops per round. tanh keeps
// the values bounded, so the gradient neither explodes nor vanishes over the rounds.
Var long_chain(const Var& x, const Var& w, int rounds) {
  Var y = x;
  for (int i = 0; i < rounds; ++i) {
    y = tanh(scale(y, 1.1) + w);
    y = softplus(y) - scale(square(y), 0.1);
    y = y * sigmoid(shift(y, 0.2));
  }
  return y;
}

// linear → tanh → linear, mean-squared error against a fixed target.
Var mlp_loss(const Var& x, const Var& w1, const Var& b1, const Var& w2, const Var& b2,
             const Var& target) {
  return mean(square(linear(tanh(linear(x, w1, b1)), w2, b2) - target));
}

std::vector<OpCase> all_cases() {
  std::vector<OpCase> cs;
  auto add_case = [&](std::string name, std::vector<Input> inputs, GradcheckFn f,
                      double eps = 1e-6) {
    cs.push_back({std::move(name), std::move(inputs), std::move(f), eps});
  };

  // --- arithmetic, same shape and every broadcasting pattern ----------------------------------
  struct Pattern {
    const char* name;
    Shape a, b;
  };
  const Pattern patterns[] = {
      {"same", {3, 4}, {3, 4}},         {"BH_H", {3, 4}, {4}},
      {"BH_B1", {3, 4}, {3, 1}},        {"BH_1", {3, 4}, {1}},
      {"BSH_SH", {2, 3, 4}, {3, 4}},    {"H_BH", {4}, {3, 4}},
      {"B1_BH", {3, 1}, {3, 4}},        {"B1_1H", {3, 1}, {1, 4}},
      {"4d", {2, 3, 1, 4}, {3, 2, 1}},
  };
  for (const Pattern& p : patterns) {
    const std::string s = p.name;
    add_case("add_" + s, {{p.a}, {p.b}}, [](Vars v) { return add(v[0], v[1]); });
    add_case("sub_" + s, {{p.a}, {p.b}}, [](Vars v) { return sub(v[0], v[1]); });
    add_case("mul_" + s, {{p.a}, {p.b}}, [](Vars v) { return mul(v[0], v[1]); });
    add_case("div_" + s, {{p.a}, {p.b, kNonZero}}, [](Vars v) { return div(v[0], v[1]); });
  }
  add_case("neg", {{{3, 4}}}, [](Vars v) { return neg(v[0]); });
  add_case("scale", {{{3, 4}}}, [](Vars v) { return scale(v[0], -1.7); });
  add_case("shift", {{{3, 4}}}, [](Vars v) { return shift(v[0], 0.3); });
  add_case("op_plus", {{{3, 4}}, {{4}}}, [](Vars v) { return v[0] + v[1]; });
  add_case("op_minus", {{{3, 4}}, {{3, 1}}}, [](Vars v) { return v[0] - v[1]; });
  add_case("op_times", {{{3, 4}}, {{3, 4}}}, [](Vars v) { return v[0] * v[1]; });
  add_case("op_divide", {{{3, 4}}, {{4}, kNonZero}}, [](Vars v) { return v[0] / v[1]; });
  add_case("op_negate", {{{3, 4}}}, [](Vars v) { return -v[0]; });
  add_case("op_times_double", {{{3, 4}}}, [](Vars v) { return v[0] * 2.5; });
  add_case("op_double_times", {{{3, 4}}}, [](Vars v) { return -0.75 * v[0]; });
  add_case("op_plus_double", {{{3, 4}}}, [](Vars v) { return v[0] + 1.5; });
  add_case("op_minus_double", {{{3, 4}}}, [](Vars v) { return v[0] - 0.7; });

  // --- linear algebra ---------------------------------------------------------------------------
  add_case("matmul", {{{3, 5}}, {{5, 2}}}, [](Vars v) { return matmul(v[0], v[1]); });
  add_case("matmul_column", {{{4, 1}}, {{1, 3}}}, [](Vars v) { return matmul(v[0], v[1]); });
  add_case("linear_2d_bias", {{{4, 3}}, {{5, 3}}, {{5}}},
           [](Vars v) { return linear(v[0], v[1], v[2]); });
  add_case("linear_2d_nobias", {{{4, 3}}, {{5, 3}}}, [](Vars v) { return linear(v[0], v[1]); });
  add_case("linear_3d_bias", {{{2, 3, 4}}, {{2, 4}}, {{2}}},
           [](Vars v) { return linear(v[0], v[1], v[2]); });
  add_case("linear_3d_nobias", {{{2, 3, 4}}, {{2, 4}}}, [](Vars v) { return linear(v[0], v[1]); });
  // The fused linear + activation (+ residual), for every activation the networks use.
  using core::Unary;
  const std::pair<Unary, core::UnaryParams> activations[] = {
      {Unary::relu, {}},    {Unary::leaky_relu, {0.01}}, {Unary::elu, {1.0}},
      {Unary::silu, {}},    {Unary::gelu, {}},           {Unary::tanh, {}},
      {Unary::sigmoid, {}}, {Unary::softplus, {}},       {Unary::identity, {}},
  };
  for (auto [f, p] : activations) {
    const std::string act = core::name(f);
    add_case("linear_act_" + act, {{{4, 3}}, {{5, 3}}, {{5}}},
             [f, p](Vars v) { return linear_act(v[0], v[1], v[2], f, p); });
    add_case("linear_act_" + act + "_residual", {{{4, 3}}, {{5, 3}}, {{5}}, {{4, 5}}},
             [f, p](Vars v) { return linear_act(v[0], v[1], v[2], f, p, v[3]); });
    add_case("linear_act_" + act + "_3d_nobias_residual", {{{2, 3, 4}}, {{2, 4}}, {{2, 3, 2}}},
             [f, p](Vars v) { return linear_act(v[0], v[1], {}, f, p, v[2]); });
  }

  // The fused MLP: inputs x, W₀, b₀, W₁, b₁, …; one to three layers, x [2, 3, 4] for the leading
  // dimensions, every activation (through the layer-by-layer path every device has in float64).
  for (auto [f, p] : activations) {
    const std::string act = core::name(f);
    auto mlp = [f, p](Vars v) {
      std::vector<Var> weights, biases;
      for (std::size_t i = 1; i + 1 < v.size(); i += 2) {
        weights.push_back(v[i]);
        biases.push_back(v[i + 1]);
      }
      return fused_mlp(v[0], weights, biases, f, p);
    };
    add_case("fused_mlp_1_" + act, {{{4, 3}}, {{5, 3}}, {{5}}}, mlp);
    add_case("fused_mlp_2_" + act, {{{4, 3}}, {{5, 3}}, {{5}}, {{2, 5}}, {{2}}}, mlp);
    add_case("fused_mlp_3_3d_" + act,
             {{{2, 3, 4}}, {{5, 4}}, {{5}}, {{6, 5}}, {{6}}, {{2, 6}}, {{2}}}, mlp);
  }

  // --- activations and elementwise functions -----------------------------------------------------
  const Shape u{3, 5};
  add_case("relu", {{u, kNonZero}}, [](Vars v) { return relu(v[0]); });
  add_case("leaky_relu", {{u, kNonZero}}, [](Vars v) { return leaky_relu(v[0]); });
  add_case("leaky_relu_02", {{u, kNonZero}}, [](Vars v) { return leaky_relu(v[0], 0.2); });
  add_case("elu", {{u, kNonZero}}, [](Vars v) { return elu(v[0]); });
  add_case("elu_05", {{u, kNonZero}}, [](Vars v) { return elu(v[0], 0.5); });
  add_case("silu", {{u}}, [](Vars v) { return silu(v[0]); });
  add_case("gelu", {{u}}, [](Vars v) { return gelu(v[0]); });
  add_case("tanh", {{u}}, [](Vars v) { return tanh(v[0]); });
  add_case("sigmoid", {{u}}, [](Vars v) { return sigmoid(v[0]); });
  add_case("softplus", {{u}}, [](Vars v) { return softplus(v[0]); });
  add_case("exp", {{u}}, [](Vars v) { return exp(v[0]); });
  add_case("log", {{u, kPositive}}, [](Vars v) { return log(v[0]); });
  add_case("log1p", {{u, {-0.5, 2}}}, [](Vars v) { return log1p(v[0]); });
  add_case("square", {{u}}, [](Vars v) { return square(v[0]); });
  add_case("sqrt", {{u, kPositive}}, [](Vars v) { return sqrt(v[0]); });
  add_case("abs", {{u, kNonZero}}, [](Vars v) { return abs(v[0]); });
  add_case("pow_2", {{u}}, [](Vars v) { return pow(v[0], 2.0); });
  add_case("pow_3", {{u}}, [](Vars v) { return pow(v[0], 3.0); });
  add_case("pow_05", {{u, kPositive}}, [](Vars v) { return pow(v[0], 0.5); });
  add_case("pow_17", {{u, kPositive}}, [](Vars v) { return pow(v[0], 1.7); });
  add_case("pow_m1", {{u, kPositive}}, [](Vars v) { return pow(v[0], -1.0); });
  add_case("pow_m25", {{u, kPositive}}, [](Vars v) { return pow(v[0], -2.5); });
  add_case("clamp", {{u, {-2, 2, {-0.5, 0.5}}}}, [](Vars v) { return clamp(v[0], -0.5, 0.5); });
  add_case("where", {{u}, {u}}, [c = condition(u)](Vars v) { return where(c, v[0], v[1]); });

  // --- reductions: all, every axis (also -1), keepdim both ways, 3-D and 4-D --------------------
  add_case("sum_all_2d", {{{3, 4}}}, [](Vars v) { return sum(v[0]); });
  add_case("mean_all_2d", {{{3, 4}}}, [](Vars v) { return mean(v[0]); });
  add_case("sum_all_4d", {{{2, 3, 2, 2}}}, [](Vars v) { return sum(v[0]); });
  add_case("mean_all_4d", {{{2, 3, 2, 2}}}, [](Vars v) { return mean(v[0]); });
  add_case("sum_1d_axis0", {{{5}}}, [](Vars v) { return sum(v[0], 0); });
  for (const Shape& s : {Shape{2, 3, 4}, Shape{2, 3, 2, 3}}) {
    for (int axis = -1; axis < s.rank(); ++axis) {
      for (bool keep : {false, true}) {
        const std::string tag = std::to_string(s.rank()) + "d_axis" +
                                (axis < 0 ? "m1" : std::to_string(axis)) +
                                (keep ? "_keep" : "_drop");
        add_case("sum_" + tag, {{s}}, [axis, keep](Vars v) { return sum(v[0], axis, keep); });
        add_case("mean_" + tag, {{s}}, [axis, keep](Vars v) { return mean(v[0], axis, keep); });
      }
    }
  }
  add_case("logsumexp_1d", {{{5}}}, [](Vars v) { return logsumexp(v[0]); });
  add_case("logsumexp_2d", {{{3, 5}}}, [](Vars v) { return logsumexp(v[0]); });
  add_case("logsumexp_3d", {{{2, 3, 4}}}, [](Vars v) { return logsumexp(v[0]); });
  add_case("logsumexp_large", {{{3, 5}, kLarge}}, [](Vars v) { return logsumexp(v[0]); });
  add_case("softmax", {{{3, 5}}}, [](Vars v) { return softmax(v[0]); });
  add_case("softmax_3d", {{{2, 3, 4}}}, [](Vars v) { return softmax(v[0]); });
  add_case("softmax_large", {{{3, 5}, kLarge}}, [](Vars v) { return softmax(v[0]); });
  add_case("log_softmax", {{{3, 5}}}, [](Vars v) { return log_softmax(v[0]); });
  add_case("log_softmax_3d", {{{2, 3, 4}}}, [](Vars v) { return log_softmax(v[0]); });
  add_case("log_softmax_large", {{{3, 5}, kLarge}}, [](Vars v) { return log_softmax(v[0]); });

  // --- normalisation and sets --------------------------------------------------------------------
  add_case("layer_norm", {{{4, 6}}}, [](Vars v) { return layer_norm(v[0]); });
  add_case("layer_norm_affine", {{{4, 6}}, {{6}}, {{6}}},
           [](Vars v) { return layer_norm(v[0], v[1], v[2]); });
  add_case("layer_norm_gamma", {{{4, 6}}, {{6}}}, [](Vars v) { return layer_norm(v[0], v[1]); });
  add_case("layer_norm_beta", {{{4, 6}}, {{6}}},
           [](Vars v) { return layer_norm(v[0], {}, v[1]); });
  add_case("layer_norm_3d_affine", {{{2, 3, 5}}, {{5}}, {{5}}},
           [](Vars v) { return layer_norm(v[0], v[1], v[2], 1e-3); });
  add_case("mean_pool_dense", {{{2, 3, 4}}}, [](Vars v) { return mean_pool(v[0]); });
  add_case("mean_pool_ragged", {{{6, 4}}}, [](Vars v) {
    static const std::vector<std::int64_t> lengths{1, 3, 2};
    return mean_pool(v[0], lengths);
  });

  // --- shape and indexing ------------------------------------------------------------------------
  add_case("concat2_axis0", {{{2, 3}}, {{1, 3}}}, [](Vars v) { return concat({v[0], v[1]}, 0); });
  add_case("concat2_axis1", {{{2, 3}}, {{2, 2}}}, [](Vars v) { return concat({v[0], v[1]}, 1); });
  add_case("concat3_axis0", {{{2, 3}}, {{1, 3}}, {{3, 3}}}, [](Vars v) { return concat(v, 0); });
  add_case("concat3_middle", {{{2, 1, 3}}, {{2, 2, 3}}, {{2, 3, 3}}},
           [](Vars v) { return concat(v, 1); });
  add_case("concat5_axis0", {{{2, 3}}, {{1, 3}}, {{3, 3}}, {{2, 3}}, {{1, 3}}},
           [](Vars v) { return concat(v, 0); });
  add_case("concat5_middle", {{{2, 1, 3}}, {{2, 2, 3}}, {{2, 3, 3}}, {{2, 1, 3}}, {{2, 2, 3}}},
           [](Vars v) { return concat(v, 1); });
  add_case("concat5_last", {{{2, 1}}, {{2, 2}}, {{2, 3}}, {{2, 1}}, {{2, 2}}},
           [](Vars v) { return concat(v, -1); });
  add_case("slice_axis0", {{{3, 4, 5}}}, [](Vars v) { return slice(v[0], 0, 1, 3); });
  add_case("slice_axis1", {{{3, 4, 5}}}, [](Vars v) { return slice(v[0], 1, 1, 4); });
  add_case("slice_axis2", {{{3, 4, 5}}}, [](Vars v) { return slice(v[0], 2, 0, 2); });
  add_case("slice_axis_m1", {{{3, 4, 5}}}, [](Vars v) { return slice(v[0], -1, 3, 5); });
  add_case("reshape_2d", {{{3, 4}}}, [](Vars v) { return reshape(v[0], {2, 6}); });
  add_case("reshape_flat", {{{2, 3, 4}}}, [](Vars v) { return reshape(v[0], {24}); });
  // The view shares the input's storage; a following op checks that its gradient flows back.
  add_case("reshape_then_tanh", {{{2, 3, 4}}}, [](Vars v) { return tanh(reshape(v[0], {6, 4})); });
  add_case("gather_rows", {{{4, 3}}}, [](Vars v) {
    static const std::vector<std::int64_t> index{2, 0, 2, 3, 2};
    return gather_rows(v[0], index);
  });
  add_case("gather_rows_3d", {{{4, 2, 3}}}, [](Vars v) {
    static const std::vector<std::int64_t> index{1, 1, 3};
    return gather_rows(v[0], index);
  });

  // --- one variable used twice or more: the backward kernels must accumulate -------------------
  add_case("reuse_x_times_x_plus_tanh", {{{3, 4}}},
           [](Vars v) { return v[0] * v[0] + tanh(v[0]); });
  add_case("reuse_mul_broadcast", {{{3, 4}}},
           [](Vars v) { return v[0] * sum(v[0], 0, true); });
  add_case("reuse_div_self_sum", {{{3, 4}, kPositive}},
           [](Vars v) { return v[0] / sum(v[0], 1, true); });
  add_case("reuse_matmul_square", {{{3, 3}}}, [](Vars v) { return matmul(v[0], v[0]); });
  add_case("reuse_concat", {{{2, 3}}}, [](Vars v) { return concat({v[0], v[0], v[0]}, 1); });
  add_case("reuse_where", {{u}}, [c = condition(u)](Vars v) { return where(c, v[0], v[0] * 2.0); });
  add_case("reuse_linear_input_as_weight", {{{3, 3}}}, [](Vars v) { return linear(v[0], v[0]); });

  // --- compositions ------------------------------------------------------------------------------
  add_case("long_chain", {{{3, 4}}, {{4}}}, [](Vars v) { return long_chain(v[0], v[1], 8); });
  add_case("mlp_mse", {{{8, 3}}, {{8}}, {{2, 8}}, {{2}}},
           [x = make_inputs({"mlp_x", {{{5, 3}}}, {}})[0],
            y = make_inputs({"mlp_y", {{{5, 2}}}, {}})[0]](Vars v) {
             return mlp_loss(x, v[0], v[1], v[2], v[3], y);
           });
  add_case("mlp_mse_with_input", {{{5, 3}}, {{8, 3}}, {{8}}, {{2, 8}}, {{2}}},
           [y = make_inputs({"mlp_y", {{{5, 2}}}, {}})[0]](Vars v) {
             return mlp_loss(v[0], v[1], v[2], v[3], v[4], y);
           });
  add_case("set_encoder", {{{6, 3}}, {{4, 3}}, {{4}}, {{4}}}, [](Vars v) {
    static const std::vector<std::int64_t> lengths{2, 1, 3};
    Var h = layer_norm(silu(linear(v[0], v[1], v[2])), v[3]);
    return log_softmax(mean_pool(h, lengths));
  });
  return cs;
}

class GradcheckOps : public ::testing::TestWithParam<OpCase> {};

TEST_P(GradcheckOps, MatchesFiniteDifferences) {
  const OpCase& c = GetParam();
  const GradcheckResult r = gradcheck(c.f, make_inputs(c), c.eps, kTolerance);
  RecordProperty("max_error", core::str(r.max_error));  // in --gtest_output=xml, for margins
  EXPECT_TRUE(r.passed) << c.name << ": " << r.str();
  EXPECT_LE(r.max_error, kTolerance) << r.str();
  std::int64_t expected_entries = 0;
  for (const Input& in : c.inputs) expected_entries += in.shape.numel();
  EXPECT_EQ(r.entries, expected_entries) << "every input entry must be compared";
}

INSTANTIATE_TEST_SUITE_P(AllOps, GradcheckOps, ::testing::ValuesIn(all_cases()),
                         [](const ::testing::TestParamInfo<OpCase>& info) {
                           return info.param.name;
                         });

// The chain in the table must really be long: count the ops its tape records.
TEST(GradcheckComposite, LongChainRecordsAtLeastFiftyOps) {
  Parameter x("x", Tensor::full({3, 4}, 0.3, DType::f64));
  Parameter w("w", Tensor::full({4}, -0.1, DType::f64));
  Tape tape;
  Var y = long_chain(x, w, 8);
  EXPECT_GE(tape.size(), 50u) << tape.str();
  EXPECT_TRUE(std::isfinite(sum(y).item()));
}

// --- negative controls: gradcheck must be able to fail -------------------------------------------

// y = 2x with a backward rule scaled by `factor` (2 is correct), recorded like any op.
Var doubled(const Var& x, double factor) {
  Tensor y = Tensor::scratch(x.shape(), x.dtype(), x.device());
  kernels(x).fill(y, 0.0);
  kernels(x).axpy(2.0, x.value(), y);
  return record(y, {.op = "doubled", .inputs = {x}, .attr = {factor}, .backward = [](Node& n) {
                      kernels(n).axpy(n.attr[0], n.grad, *n.input_grad(0));
                    }});
}

// y = 2x whose backward overwrites the input's gradient instead of adding to it: right when x is
// used once, wrong when x also reaches the loss another way.
Var doubled_overwriting(const Var& x) {
  Tensor y = Tensor::scratch(x.shape(), x.dtype(), x.device());
  kernels(x).fill(y, 0.0);
  kernels(x).axpy(2.0, x.value(), y);
  return record(y, {.op = "doubled_overwriting", .inputs = {x}, .backward = [](Node& n) {
                      Tensor* g = n.input_grad(0);
                      kernels(n).fill(*g, 0.0);
                      kernels(n).axpy(2.0, n.grad, *g);
                    }});
}

TEST(GradcheckNegativeControl, CorrectCustomOpPasses) {
  const auto x = make_inputs({"control", {{{3, 4}}}, {}});
  const GradcheckResult r = gradcheck([](Vars v) { return doubled(v[0], 2.0); }, x);
  EXPECT_TRUE(r.passed) << r.str();
}

TEST(GradcheckNegativeControl, WrongFactorFails) {
  const auto x = make_inputs({"control", {{{3, 4}}}, {}});
  // Off by 1%: far above the tolerance, so gradcheck must flag it and say where.
  const GradcheckResult r = gradcheck([](Vars v) { return doubled(v[0], 2.02); }, x);
  EXPECT_FALSE(r.passed) << r.str();
  EXPECT_GT(r.max_error, 1e-3);
  EXPECT_EQ(r.input, 0);
  EXPECT_NE(r.str().find("FAILED"), std::string::npos) << r.str();
}

TEST(GradcheckNegativeControl, NonAccumulatingBackwardFails) {
  const auto x = make_inputs({"control", {{{3, 4}}}, {}});
  EXPECT_TRUE(gradcheck([](Vars v) { return doubled_overwriting(v[0]); }, x).passed);
  // 2x + tanh(x), with tanh recorded last so that its backward runs first: the overwrite then
  // drops tanh's contribution to x's gradient.
  const GradcheckResult r = gradcheck(
      [](Vars v) {
        Var d = doubled_overwriting(v[0]);
        Var t = tanh(v[0]);
        return d + t;
      },
      x);
  EXPECT_FALSE(r.passed) << r.str();
}

TEST(GradcheckNegativeControl, WrongFactorInsideLongChainFails) {
  const auto in = make_inputs({"control_chain", {{{3, 4}}, {{4}}}, {}});
  // 0.1% off at the start of the chain: the error must survive 32 correct ops after it.
  const GradcheckResult r =
      gradcheck([](Vars v) { return long_chain(doubled(v[0], 2.002), v[1], 4); }, in);
  EXPECT_FALSE(r.passed) << r.str();
}

TEST(Gradcheck, RejectsFloat32Inputs) {
  EXPECT_THROW(gradcheck([](Vars v) { return tanh(v[0]); }, {Tensor::zeros({2}, DType::f32)}),
               core::DtypeError);
}

}  // namespace
}  // namespace asbi::ad
