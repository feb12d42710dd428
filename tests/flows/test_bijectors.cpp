// Every bijector, with and without a context, for D = 1, 2, 5:
//   - inverse(forward(a)) = a: ≤ 1e-10 in float64, ≤ 1e-5 in float32;
//   - the inverse's log|det| is minus the forward's;
//   - log|det J| equals the log-determinant of the Jacobian of forward taken by central finite
//     differences (float64, per example, LU with partial pivoting) to 1e-6.
// Parameters are perturbed away from their near-identity initialisation first, so that every
// map is far from the identity (a wrong mask, a wrong triangle or a sign slip shows), but not so
// far that the map is ill-conditioned: an autoregressive inverse runs D passes, and rounding in
// feature d reaches feature d + 1 amplified by the map's sensitivity (1e-5 in float32 is a
// statement about well-conditioned maps; float64 checks the algebra to 1e-10).
#include <gtest/gtest.h>

#include "flows/flow_test_util.hpp"

#include <algorithm>
#include <cmath>
#include <ostream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "autodiff/ops.hpp"
#include "autodiff/tape.hpp"
#include "flows/flow.hpp"
#include "flows/made.hpp"
#include "flows/transforms.hpp"

namespace asbi::flows {
namespace {

using core::DType;

constexpr std::int64_t kContext = 3;
constexpr std::int64_t kRows = 7;

using test_util::normal_tensor;
using test_util::perturb;

struct Kind {
  std::string name;
  // Builds the bijector for D features and C context features (C = 0: unconditional).
  std::function<std::unique_ptr<Bijector>(std::int64_t, std::int64_t, DType, core::Rng&)> make;
  double perturbation = 0.15;
};

ConditionerFactory conditioner_for(std::int64_t d, std::int64_t c, DType dtype, core::Rng& rng) {
  if (d == 1) return context_map(16, c, 1, rng, dtype);
  return residual_conditioner(16, c, 2, nn::Activation::relu, 0.0, rng, dtype);
}

const SplineOptions kSpline{.bins = 6, .tail_bound = 3.0};

std::vector<Kind> kinds() {
  return {
      {"affine_coupling",
       [](std::int64_t d, std::int64_t c, DType t, core::Rng& r) -> std::unique_ptr<Bijector> {
         return std::make_unique<AffineCoupling>(alternating_mask(d, true),
                                                 conditioner_for(d, c, t, r));
       }},
      {"affine_coupling_odd",
       [](std::int64_t d, std::int64_t c, DType t, core::Rng& r) -> std::unique_ptr<Bijector> {
         if (d == 1) return std::make_unique<AffineCoupling>(std::vector<bool>{true},
                                                             conditioner_for(d, c, t, r));
         return std::make_unique<AffineCoupling>(alternating_mask(d, false),
                                                 mlp_conditioner({12, 12}, c, r,
                                                                 nn::Activation::tanh, t));
       }},
      {"spline_coupling",
       [](std::int64_t d, std::int64_t c, DType t, core::Rng& r) -> std::unique_ptr<Bijector> {
         return std::make_unique<SplineCoupling>(alternating_mask(d, true),
                                                 conditioner_for(d, c, t, r), kSpline);
       }},
      {"spline_coupling_odd",
       [](std::int64_t d, std::int64_t c, DType t, core::Rng& r) -> std::unique_ptr<Bijector> {
         const std::vector<bool> mask = d == 1 ? std::vector<bool>{true}
                                               : alternating_mask(d, false);
         return std::make_unique<SplineCoupling>(mask, conditioner_for(d, c, t, r), kSpline);
       }},
      {"affine_autoregressive",
       [](std::int64_t d, std::int64_t c, DType t, core::Rng& r) -> std::unique_ptr<Bijector> {
         return std::make_unique<AffineAutoregressive>(
             d, c, MadeOptions{.hidden = 12, .residual = false,
                               .activation = nn::Activation::tanh, .dtype = t}, r);
       }},
      {"affine_autoregressive_residual",
       [](std::int64_t d, std::int64_t c, DType t, core::Rng& r) -> std::unique_ptr<Bijector> {
         return std::make_unique<AffineAutoregressive>(
             d, c, MadeOptions{.hidden = 12, .residual = true, .dtype = t}, r);
       }},
      {"spline_autoregressive",
       [](std::int64_t d, std::int64_t c, DType t, core::Rng& r) -> std::unique_ptr<Bijector> {
         return std::make_unique<SplineAutoregressive>(
             d, c, MadeOptions{.hidden = 12, .residual = true, .dtype = t}, r, kSpline);
       },
       0.1},
      {"reverse_permutation",
       [](std::int64_t d, std::int64_t, DType, core::Rng&) -> std::unique_ptr<Bijector> {
         return std::make_unique<ReversePermutation>(d);
       }},
      {"random_permutation",
       [](std::int64_t d, std::int64_t, DType, core::Rng& r) -> std::unique_ptr<Bijector> {
         return std::make_unique<RandomPermutation>(d, r);
       }},
      {"lu_linear",
       [](std::int64_t d, std::int64_t, DType t, core::Rng& r) -> std::unique_ptr<Bijector> {
         return std::make_unique<LULinear>(d, r, /*identity_init=*/false, t);
       },
       0.3},
      {"lu_linear_identity_init",
       [](std::int64_t d, std::int64_t, DType t, core::Rng& r) -> std::unique_ptr<Bijector> {
         return std::make_unique<LULinear>(d, r, /*identity_init=*/true, t);
       },
       0.3},
      {"standardize",
       [](std::int64_t d, std::int64_t, DType t, core::Rng&) -> std::unique_ptr<Bijector> {
         std::vector<double> mean, sd;
         for (std::int64_t i = 0; i < d; ++i) {
           mean.push_back(0.3 * double(i) - 0.5);
           sd.push_back(0.5 + 0.4 * double(i));
         }
         return std::make_unique<Standardize>(nn::Standardizer(Tensor::from(mean, {d}, t),
                                                               Tensor::from(sd, {d}, t)));
       }},
  };
}

// log|det M| by LU with partial pivoting (M is n × n, row-major).
double log_abs_det(std::vector<double> m, std::int64_t n) {
  double out = 0;
  for (std::int64_t k = 0; k < n; ++k) {
    std::int64_t p = k;
    for (std::int64_t i = k + 1; i < n; ++i)
      if (std::abs(m[std::size_t(i * n + k)]) > std::abs(m[std::size_t(p * n + k)])) p = i;
    if (p != k)
      for (std::int64_t j = 0; j < n; ++j) std::swap(m[std::size_t(k * n + j)],
                                                     m[std::size_t(p * n + j)]);
    const double pivot = m[std::size_t(k * n + k)];
    out += std::log(std::abs(pivot));
    for (std::int64_t i = k + 1; i < n; ++i) {
      const double f = m[std::size_t(i * n + k)] / pivot;
      for (std::int64_t j = k; j < n; ++j)
        m[std::size_t(i * n + j)] -= f * m[std::size_t(k * n + j)];
    }
  }
  return out;
}

struct Case {
  Kind kind;
  std::int64_t d;
  std::int64_t c;
};

void PrintTo(const Case& c, std::ostream* out) {
  *out << c.kind.name << " D=" << c.d << " C=" << c.c;
}

std::string case_name(const Case& k) {
  return k.kind.name + "_D" + std::to_string(k.d) + (k.c ? "_context" : "_plain");
}

class BijectorTest : public ::testing::TestWithParam<Case> {};

TEST_P(BijectorTest, InverseUndoesForwardFloat64) {
  const Case& k = GetParam();
  core::Rng rng(11, 0);
  auto b = k.kind.make(k.d, k.c, DType::f64, rng);
  perturb(*b, k.kind.perturbation, 1);
  ad::NoGrad no_grad;
  const Tensor a = normal_tensor({kRows, k.d}, 1.5, DType::f64, 2);
  const Var context = k.c ? Var(normal_tensor({kRows, k.c}, 1.0, DType::f64, 3)) : Var();
  const Transformed f = b->forward(a, context);
  const Transformed g = b->inverse(f.value, context);
  ASSERT_EQ(f.value.shape(), a.shape());
  ASSERT_EQ(f.log_det.shape(), core::Shape({kRows}));
  ASSERT_EQ(g.log_det.shape(), core::Shape({kRows}));
  const std::vector<double> av = a.to_vector(), back = g.value.value().to_vector();
  for (std::size_t i = 0; i < av.size(); ++i) EXPECT_NEAR(back[i], av[i], 1e-10) << i;
  const std::vector<double> lf = f.log_det.value().to_vector(), li = g.log_det.value().to_vector();
  for (std::size_t i = 0; i < lf.size(); ++i) EXPECT_NEAR(li[i], -lf[i], 1e-10) << i;
  // Far from the identity, except a permutation of one feature.
  const std::vector<double> z = f.value.value().to_vector();
  double moved = 0;
  for (std::size_t i = 0; i < av.size(); ++i) moved = std::max(moved, std::abs(z[i] - av[i]));
  for (double l : lf) moved = std::max(moved, std::abs(l));
  // (A random order of two features may be the identity.)
  if (k.kind.name.find("permutation") == std::string::npos || k.d > 2) {
    EXPECT_GT(moved, 0.05) << "the test map is too close to the identity to test anything";
  }
}

TEST_P(BijectorTest, InverseUndoesForwardFloat32) {
  const Case& k = GetParam();
  core::Rng rng(11, 0);
  auto b = k.kind.make(k.d, k.c, DType::f32, rng);
  perturb(*b, k.kind.perturbation, 1);
  ad::NoGrad no_grad;
  const Tensor a = normal_tensor({kRows, k.d}, 1.5, DType::f32, 2);
  const Var context = k.c ? Var(normal_tensor({kRows, k.c}, 1.0, DType::f32, 3)) : Var();
  const Transformed f = b->forward(a, context);
  const Transformed g = b->inverse(f.value, context);
  const std::vector<double> av = a.to_vector(), back = g.value.value().to_vector();
  for (std::size_t i = 0; i < av.size(); ++i) EXPECT_NEAR(back[i], av[i], 1e-5) << i;
}

TEST_P(BijectorTest, LogDetMatchesFiniteDifferenceJacobian) {
  const Case& k = GetParam();
  core::Rng rng(11, 0);
  auto b = k.kind.make(k.d, k.c, DType::f64, rng);
  perturb(*b, k.kind.perturbation, 1);
  ad::NoGrad no_grad;
  const Tensor a = normal_tensor({kRows, k.d}, 1.5, DType::f64, 2);
  const Tensor context = k.c ? normal_tensor({kRows, k.c}, 1.0, DType::f64, 3) : Tensor();
  const std::vector<double> log_det = b->forward(a, context).log_det.value().to_vector();
  const double h = 1e-5;
  const std::vector<double> av = a.to_vector();
  for (std::int64_t row = 0; row < kRows; ++row) {
    // J[i][j] = (z_i(a + h e_j) - z_i(a - h e_j)) / 2h, all columns j at once: the rows of the
    // batch are the 2D perturbed copies of example `row`, each with that example's context.
    std::vector<double> batch;
    for (std::int64_t j = 0; j < k.d; ++j)
      for (double sign : {1.0, -1.0})
        for (std::int64_t i = 0; i < k.d; ++i)
          batch.push_back(av[std::size_t(row * k.d + i)] + (i == j ? sign * h : 0.0));
    Var ctx;
    if (k.c) {
      std::vector<double> cv = context.to_vector(), rep;
      for (std::int64_t r = 0; r < 2 * k.d; ++r)
        for (std::int64_t i = 0; i < k.c; ++i) rep.push_back(cv[std::size_t(row * k.c + i)]);
      ctx = Tensor::from(rep, {2 * k.d, k.c}, DType::f64);
    }
    const std::vector<double> z =
        b->forward(Tensor::from(batch, {2 * k.d, k.d}, DType::f64), ctx).value.value().to_vector();
    std::vector<double> jac(std::size_t(k.d * k.d));
    for (std::int64_t j = 0; j < k.d; ++j)
      for (std::int64_t i = 0; i < k.d; ++i)
        jac[std::size_t(i * k.d + j)] =
            (z[std::size_t((2 * j) * k.d + i)] - z[std::size_t((2 * j + 1) * k.d + i)]) / (2 * h);
    EXPECT_NEAR(log_det[std::size_t(row)], log_abs_det(jac, k.d), 1e-6) << "row " << row;
  }
}

std::vector<Case> all_cases() {
  std::vector<Case> out;
  for (const Kind& kind : kinds())
    for (std::int64_t d : {1, 2, 5})
      for (std::int64_t c : {std::int64_t{0}, kContext}) out.push_back({kind, d, c});
  return out;
}

INSTANTIATE_TEST_SUITE_P(Flows, BijectorTest, ::testing::ValuesIn(all_cases()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return case_name(info.param);
                         });

// --- structure ---------------------------------------------------------------------------------

TEST(AlternatingMask, MatchesNflows) {
  EXPECT_EQ(alternating_mask(5, true), (std::vector<bool>{true, false, true, false, true}));
  EXPECT_EQ(alternating_mask(5, false), (std::vector<bool>{false, true, false, true, false}));
  EXPECT_EQ(alternating_mask(1, true), (std::vector<bool>{true}));
}

// Output j of the MADE must not depend on inputs ≥ its feature: perturbing input i changes only
// outputs of features > i.
TEST(Made, IsAutoregressive) {
  for (bool residual : {false, true}) {
    const std::int64_t d = 5, m = 3;
    core::Rng rng(3, 0);
    Made made(d, 2, m, MadeOptions{.hidden = 20, .residual = residual, .dtype = DType::f64}, rng);
    perturb(made, 0.3, 4);
    ad::NoGrad no_grad;
    const Tensor ctx = normal_tensor({1, 2}, 1.0, DType::f64, 5);
    std::vector<double> x = normal_tensor({1, d}, 1.0, DType::f64, 6).to_vector();
    const std::vector<double> base =
        made.forward(Tensor::from(x, {1, d}, DType::f64), ctx).value().to_vector();
    for (std::int64_t i = 0; i < d; ++i) {
      std::vector<double> moved = x;
      moved[std::size_t(i)] += 0.7;
      const std::vector<double> out =
          made.forward(Tensor::from(moved, {1, d}, DType::f64), ctx).value().to_vector();
      for (std::int64_t j = 0; j < d * m; ++j) {
        const std::int64_t feature = j / m;
        if (feature <= i)
          EXPECT_EQ(out[std::size_t(j)], base[std::size_t(j)])
              << "output " << j << " moved with input " << i << " (residual " << residual << ")";
        else
          EXPECT_NE(out[std::size_t(j)], base[std::size_t(j)])
              << "output " << j << " ignores input " << i << " (residual " << residual << ")";
      }
    }
  }
}

TEST(Made, HiddenDegreesFollowNflows) {
  EXPECT_EQ(Made::hidden_degrees(6, 3), (std::vector<std::int64_t>{1, 2, 1, 2, 1, 2}));
  EXPECT_EQ(Made::hidden_degrees(3, 1), (std::vector<std::int64_t>{0, 0, 0}));
  EXPECT_EQ(Made::hidden_degrees(4, 5), (std::vector<std::int64_t>{1, 2, 3, 4}));
}

TEST(LULinear, IdentityInitIsTheIdentity) {
  core::Rng rng(1, 0);
  LULinear lu(4, rng, true, DType::f64);
  ad::NoGrad no_grad;
  const Tensor a = normal_tensor({3, 4}, 1.0, DType::f64, 2);
  const Transformed t = lu.forward(a, {});
  const std::vector<double> av = a.to_vector(), z = t.value.value().to_vector();
  for (std::size_t i = 0; i < av.size(); ++i) EXPECT_NEAR(z[i], av[i], 1e-15);
  for (double l : t.log_det.value().to_vector()) EXPECT_NEAR(l, 0.0, 1e-15);
  EXPECT_EQ(lu.parameter_count(), 6 + 6 + 4 + 4);  // nflows: two triangles, diagonal, bias
}

TEST(Coupling, IdentityFeaturesPassThrough) {
  core::Rng rng(1, 0);
  SplineCoupling c(alternating_mask(5, true),
                   residual_conditioner(8, 0, 1, nn::Activation::relu, 0.0, rng, DType::f64),
                   kSpline);
  perturb(c, 0.5, 2);
  ad::NoGrad no_grad;
  const Tensor a = normal_tensor({4, 5}, 1.0, DType::f64, 3);
  const std::vector<double> av = a.to_vector(), z = c.forward(a, {}).value.value().to_vector();
  for (std::size_t i = 0; i < av.size(); ++i)
    if (i % 5 % 2 == 1) {
      EXPECT_EQ(z[i], av[i]) << i;
    } else {
      EXPECT_NE(z[i], av[i]) << i;
    }
}

TEST(Coupling, RejectsAMaskThatTransformsNothing) {
  core::Rng rng(1, 0);
  EXPECT_THROW(AffineCoupling(std::vector<bool>{false, false}, mlp_conditioner({4}, 0, rng)),
               core::ValueError);
}

TEST(Bijectors, ShapeErrorsNameTheExpectedShape) {
  core::Rng rng(1, 0);
  LULinear lu(3, rng);
  try {
    lu.forward(Tensor::zeros({2, 4}), {});
    FAIL() << "expected a ShapeError";
  } catch (const core::ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("[B, 3]"), std::string::npos) << e.what();
  }
}

// Inverses are differentiable: the gradient of Σ inverse(z) w.r.t. LULinear's parameters agrees
// with central differences (the triangular-solve op's backward).
TEST(LULinear, InverseGradientMatchesFiniteDifferences) {
  core::Rng rng(7, 0);
  LULinear lu(4, rng, false, DType::f64);
  const Tensor z = normal_tensor({5, 4}, 1.0, DType::f64, 8);
  const Tensor w = normal_tensor({5, 4}, 1.0, DType::f64, 9);
  auto loss = [&] {
    Transformed t = lu.inverse(z, {});
    return ad::add(ad::sum(ad::mul(t.value, w)), ad::sum(t.log_det));
  };
  lu.zero_grad();
  {
    ad::Tape tape;
    tape.backward(loss());
  }
  ad::NoGrad no_grad;
  const double eps = 1e-6;
  for (const nn::NamedParameter& p : lu.parameters()) {
    Tensor& v = p.parameter->value();
    const std::vector<double> g = p.parameter->grad().to_vector();
    for (std::int64_t i = 0; i < v.numel(); ++i) {
      double* x = v.data<double>() + i;
      const double saved = *x;
      *x = saved + eps;
      const double up = loss().item();
      *x = saved - eps;
      const double down = loss().item();
      *x = saved;
      EXPECT_NEAR(g[std::size_t(i)], (up - down) / (2 * eps), 1e-6) << p.name << "[" << i << "]";
    }
  }
}

}  // namespace
}  // namespace asbi::flows
