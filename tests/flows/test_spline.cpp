// The fused rational-quadratic spline (flows::rq_spline) against an independent transcription of
// nflows' unconstrained_rational_quadratic_spline (tails="linear"), against itself (inverse ∘
// forward = identity, log-dets that cancel), against finite differences (log-det, every gradient
// by ad::gradcheck) and against bad arguments.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "autodiff/gradcheck.hpp"
#include "autodiff/ops.hpp"
#include "autodiff/parameter.hpp"
#include "autodiff/tape.hpp"
#include "core/backend.hpp"
#include "flows/spline.hpp"

namespace asbi::flows {
namespace {

using ad::Var;
using core::DType;
using core::Shape;
using core::Tensor;
using Vars = std::span<const Var>;

// --- an independent reference: nflows' code, line by line, in plain double loops --------------

struct Reference {
  double value = 0, log_det = 0;
};

// nflows: softmax → min + (1 - min K) · p → cumsum padded with 0 → (right - left) · c + left,
// first and last set to left and right exactly.
std::vector<double> reference_knots(const double* u, int bins, double min_size, double bound) {
  double largest = u[0], total = 0;
  for (int j = 1; j < bins; ++j) largest = std::max(largest, u[j]);
  std::vector<double> p(static_cast<std::size_t>(bins));
  for (int j = 0; j < bins; ++j) total += p[static_cast<std::size_t>(j)] = std::exp(u[j] - largest);
  std::vector<double> knots{0.0};
  double cumulative = 0;
  for (int j = 0; j < bins; ++j) {
    cumulative += min_size + (1 - min_size * bins) * p[static_cast<std::size_t>(j)] / total;
    knots.push_back(cumulative);
  }
  for (double& k : knots) k = 2 * bound * k - bound;
  knots.front() = -bound;
  knots.back() = bound;
  return knots;
}

Reference reference_spline(double in, const double* uw, const double* uh, const double* ud,
                           const SplineOptions& o, bool inverse) {
  const int K = o.bins;
  const double B = o.tail_bound;
  if (!(in >= -B && in <= B)) return {in, 0.0};
  // F.pad(unnormalized_derivatives, (1, 1)) with constant = log(exp(1 - min_derivative) - 1).
  std::vector<double> u_derivatives{std::log(std::exp(1 - o.min_derivative) - 1)};
  for (int j = 0; j + 1 < K; ++j) u_derivatives.push_back(ud[j]);
  u_derivatives.push_back(u_derivatives.front());
  std::vector<double> derivatives;
  for (double u : u_derivatives) derivatives.push_back(o.min_derivative + std::log1p(std::exp(u)));
  const std::vector<double> cumwidths = reference_knots(uw, K, o.min_bin_width, B);
  const std::vector<double> cumheights = reference_knots(uh, K, o.min_bin_height, B);
  // searchsorted(bin_locations, inputs, eps=1e-6): sum(inputs >= locations) - 1, last + eps.
  std::vector<double> locations = inverse ? cumheights : cumwidths;
  locations.back() += 1e-6;
  int idx = -1;
  for (double l : locations) idx += in >= l ? 1 : 0;
  const auto k = static_cast<std::size_t>(idx);
  const double input_cumwidths = cumwidths[k], input_bin_widths = cumwidths[k + 1] - cumwidths[k];
  const double input_cumheights = cumheights[k], input_heights = cumheights[k + 1] - cumheights[k];
  const double input_delta = input_heights / input_bin_widths;
  const double d0 = derivatives[k], d1 = derivatives[k + 1];
  double theta = 0;
  if (inverse) {
    const double a =
        (in - input_cumheights) * (d0 + d1 - 2 * input_delta) + input_heights * (input_delta - d0);
    const double b = input_heights * d0 - (in - input_cumheights) * (d0 + d1 - 2 * input_delta);
    const double c = -input_delta * (in - input_cumheights);
    theta = (2 * c) / (-b - std::sqrt(b * b - 4 * a * c));
  } else {
    theta = (in - input_cumwidths) / input_bin_widths;
  }
  const double tt = theta * (1 - theta);
  const double numerator = input_heights * (input_delta * theta * theta + d0 * tt);
  const double denominator = input_delta + (d0 + d1 - 2 * input_delta) * tt;
  const double derivative_numerator =
      input_delta * input_delta *
      (d1 * theta * theta + 2 * input_delta * tt + d0 * (1 - theta) * (1 - theta));
  const double log_slope = std::log(derivative_numerator) - 2 * std::log(denominator);
  if (inverse) return {theta * input_bin_widths + input_cumwidths, -log_slope};
  return {input_cumheights + numerator / denominator, log_slope};
}

// --- test data -----------------------------------------------------------------------------------

// Inputs x [rows, cols] and raw parameters for one spline per element.
struct Problem {
  Shape shape;
  int bins = 0;
  std::vector<double> x, widths, heights, derivatives;

  std::int64_t elements() const { return shape.numel(); }
  const double* w(std::int64_t e) const { return widths.data() + e * bins; }
  const double* h(std::int64_t e) const { return heights.data() + e * bins; }
  const double* d(std::int64_t e) const { return derivatives.data() + e * (bins - 1); }
  std::vector<double> knots(std::int64_t e, bool of_heights, const SplineOptions& o) const {
    return of_heights ? reference_knots(h(e), bins, o.min_bin_height, o.tail_bound)
                      : reference_knots(w(e), bins, o.min_bin_width, o.tail_bound);
  }
  std::vector<Tensor> tensors(DType dtype = DType::f64) const {
    const std::int64_t rows = shape[0], cols = shape[1];
    return {Tensor::from(x, shape, dtype), Tensor::from(widths, {rows, cols, bins}, dtype),
            Tensor::from(heights, {rows, cols, bins}, dtype),
            Tensor::from(derivatives, {rows, cols, bins - 1}, dtype)};
  }
};

// Raw parameters uniform on [-spread, spread]; x left at zero for the caller to place.
Problem random_problem(std::int64_t rows, std::int64_t cols, int bins, double spread,
                       unsigned seed) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> u(-spread, spread);
  Problem p{{rows, cols}, bins, {}, {}, {}, {}};
  const auto n = static_cast<std::size_t>(rows * cols);
  p.x.assign(n, 0.0);
  for (std::size_t i = 0; i < n * static_cast<std::size_t>(bins); ++i) {
    p.widths.push_back(u(gen));
    p.heights.push_back(u(gen));
  }
  for (std::size_t i = 0; i < n * static_cast<std::size_t>(bins - 1); ++i)
    p.derivatives.push_back(u(gen));
  return p;
}

// Where round-trip points go, cycling over the elements: inside a bin, exactly on a knot, just
// inside and exactly at ±B, in both tails.
void place_round_trip_points(Problem& p, const SplineOptions& o, bool on_heights, unsigned seed) {
  std::mt19937_64 gen(seed);
  const double B = o.tail_bound;
  std::uniform_real_distribution<double> inside(-B, B), beyond(0.01, 5.0);
  for (std::int64_t e = 0; e < p.elements(); ++e) {
    double& x = p.x[static_cast<std::size_t>(e)];
    const double sign = (e / 7) % 2 ? -1.0 : 1.0;
    switch (e % 7) {
      case 0:
      case 1:
        x = inside(gen);
        break;
      case 2:
        x = p.knots(e, on_heights, o)[static_cast<std::size_t>((e / 7) % (p.bins + 1))];
        break;
      case 3:
        x = sign * (B - 1e-9);
        break;
      case 4:
        x = sign * B;
        break;
      case 5:
        x = sign * (B + beyond(gen));
        break;
      default:  // the first value past the bound
        x = sign * std::nextafter(B, 10 * B);
        break;
    }
  }
}

// Gradcheck points: inside a bin at least 1e-3 from every knot, 1e-4 beside an interior knot on
// either side, 1e-4 inside ±B, and in the tails; never on a knot or on ±B, where the spline is
// only once differentiable.
void place_gradcheck_points(Problem& p, const SplineOptions& o, bool on_heights, unsigned seed) {
  std::mt19937_64 gen(seed);
  const double B = o.tail_bound;
  std::uniform_real_distribution<double> inside(-B, B), beyond(0.05, 2.0);
  for (std::int64_t e = 0; e < p.elements(); ++e) {
    double& x = p.x[static_cast<std::size_t>(e)];
    const std::vector<double> knots = p.knots(e, on_heights, o);
    const auto interior = static_cast<std::size_t>(1 + (e / 5) % (p.bins - 1));
    const double sign = (e / 5) % 2 ? -1.0 : 1.0;
    switch (e % 5) {
      case 0: {
        auto near_knot = [&](double v) {
          return std::any_of(knots.begin(), knots.end(),
                             [&](double k) { return std::abs(v - k) < 1e-3; });
        };
        do x = inside(gen);
        while (near_knot(x));
        break;
      }
      case 1:
        x = knots[interior] + 1e-4;
        break;
      case 2:
        x = knots[interior] - 1e-4;
        break;
      case 3:
        x = sign * (B - 1e-4);
        break;
      default:
        x = sign * (B + beyond(gen));
        break;
    }
  }
}

// Runs the op without a tape; returns {value, log_det} on the host.
std::pair<std::vector<double>, std::vector<double>> run(const std::vector<Tensor>& t,
                                                        const SplineOptions& o, bool inverse) {
  SplineResult r = rq_spline(t[0], t[1], t[2], t[3], o, inverse);
  return {r.value.value().to_vector(), r.log_det.value().to_vector()};
}

// --- nflows equivalence ----------------------------------------------------------------------

TEST(RqSpline, IdentityWhenBinsAreUniformAndDerivativesOne) {
  // Equal raw sizes give equal bins (s = 1); raw derivatives log(e^{1-m} - 1) give δ = 1. Then
  // y = y_k + h θ = x and log s' = log 1 = 0 (NSF eq. 4 with s = δ_k = δ_{k+1} = 1).
  const SplineOptions o{.bins = 4, .tail_bound = 2.0};
  const double u_identity = std::log(std::exp(1 - o.min_derivative) - 1);
  const std::vector<double> x{-2.0, -1.3, -0.5, 0.0, 0.2, 1.0, 1.99, 2.0, 2.5, -7.0};
  const auto n = static_cast<std::int64_t>(x.size());
  const Tensor zeros = Tensor::zeros({n, 1, 4}, DType::f64);
  const Tensor derivatives = Tensor::full({n, 1, 3}, u_identity, DType::f64);
  for (bool inverse : {false, true}) {
    auto [value, log_det] =
        run({Tensor::from(x, {n, 1}, DType::f64), zeros, zeros, derivatives}, o, inverse);
    for (std::size_t i = 0; i < x.size(); ++i) {
      EXPECT_NEAR(value[i], x[i], 1e-12) << "x = " << x[i] << ", inverse " << inverse;
      EXPECT_NEAR(log_det[i], 0.0, 1e-12) << "x = " << x[i] << ", inverse " << inverse;
    }
  }
}

TEST(RqSpline, HandComputedTwoBinSpline) {
  // K = 2 on [-1, 1], no minimum sizes: widths softmax(0, 0) = (1/2, 1/2) → knots -1, 0, 1;
  // heights softmax(log 3, 0) = (3/4, 1/4) → knots -1, 0.5, 1; δ_1 = softplus(0) = log 2.
  // At x = -0.5: bin 0, θ = 1/2, w = 1, h = 3/2, s = 3/2, δ_0 = 1, δ_1 = log 2, θ(1-θ) = 1/4:
  //   y = -1 + (3/2)(3/2 · 1/4 + 1/4) / (3/2 + (1 + log 2 - 3) / 4)
  //   log s' = log((9/4)(log 2 / 4 + 2 · 3/2 · 1/4 + 1/4)) - 2 log(3/2 + (1 + log 2 - 3) / 4)
  const SplineOptions o{
      .bins = 2, .tail_bound = 1.0, .min_bin_width = 0, .min_bin_height = 0, .min_derivative = 0};
  const double ln2 = std::log(2.0);
  const double denominator = 1.5 + (1 + ln2 - 3) / 4;
  const double expected_y = -1 + 1.5 * (1.5 / 4 + 0.25) / denominator;
  const double expected_log_det =
      std::log(2.25 * (ln2 / 4 + 0.75 + 0.25)) - 2 * std::log(denominator);
  EXPECT_NEAR(expected_y, -0.2009626258, 1e-9);  // the same numbers on a calculator
  EXPECT_NEAR(expected_log_det, 0.6511211793, 1e-9);
  const std::vector<Tensor> t{Tensor::from({-0.5}, {1, 1}, DType::f64),
                              Tensor::from({0.0, 0.0}, {1, 1, 2}, DType::f64),
                              Tensor::from({std::log(3.0), 0.0}, {1, 1, 2}, DType::f64),
                              Tensor::from({0.0}, {1, 1, 1}, DType::f64)};
  auto [y, log_det] = run(t, o, false);
  EXPECT_NEAR(y[0], expected_y, 1e-14);
  EXPECT_NEAR(log_det[0], expected_log_det, 1e-14);
  auto [x, inverse_log_det] =
      run({Tensor::from({expected_y}, {1, 1}, DType::f64), t[1], t[2], t[3]}, o, true);
  EXPECT_NEAR(x[0], -0.5, 1e-14);
  EXPECT_NEAR(inverse_log_det[0], -expected_log_det, 1e-14);
}

TEST(RqSpline, MatchesNflowsTranscription) {
  for (int bins : {2, 5, 10, 64}) {
    for (bool inverse : {false, true}) {
      const SplineOptions o{.bins = bins,
                            .tail_bound = 2.5,
                            .min_bin_width = 1e-3,
                            .min_bin_height = 2e-3,
                            .min_derivative = 1e-2};
      Problem p = random_problem(9, 4, bins, 3.0, static_cast<unsigned>(100 + bins));
      place_round_trip_points(p, o, inverse, 7);
      auto [value, log_det] = run(p.tensors(), o, inverse);
      for (std::int64_t e = 0; e < p.elements(); ++e) {
        const auto i = static_cast<std::size_t>(e);
        const Reference r = reference_spline(p.x[i], p.w(e), p.h(e), p.d(e), o, inverse);
        EXPECT_NEAR(value[i], r.value, 1e-12)
            << "K " << bins << " inverse " << inverse << " x " << p.x[i];
        EXPECT_NEAR(log_det[i], r.log_det, 1e-10)
            << "K " << bins << " inverse " << inverse << " x " << p.x[i];
      }
    }
  }
}

TEST(RqSpline, AcceptsRanksOneToThree) {
  // The op is elementwise: x [12], [4, 3] and [2, 3, 2] with the same numbers give the same values.
  const SplineOptions o{.bins = 5, .tail_bound = 2.0};
  Problem p = random_problem(4, 3, 5, 2.0, 3);
  place_round_trip_points(p, o, false, 5);
  const std::vector<Tensor> t = p.tensors();
  auto [expected, expected_log_det] = run(t, o, false);
  for (const Shape& shape : {Shape{12}, Shape{2, 3, 2}}) {
    Shape sizes = shape, derivatives = shape;
    sizes.push_back(5);
    derivatives.push_back(4);
    auto [value, log_det] = run(
        {t[0].reshape(shape), t[1].reshape(sizes), t[2].reshape(sizes), t[3].reshape(derivatives)},
        o, false);
    EXPECT_EQ(value, expected) << shape;
    EXPECT_EQ(log_det, expected_log_det) << shape;
  }
}

// --- invertibility, log-det, monotonicity -----------------------------------------------------

// spread: the range of the raw parameters. The inverse is ill-conditioned where s' is small (an
// error of one ulp in y moves x by ulp / s'): raw values in [-2, 2] reach s' ≈ 2e-4, which alone
// costs float32 ~3e-4, so float32 is held to 1e-5 on raw values in [-1, 1] (s' ≳ 0.05).
void expect_round_trip(DType dtype, double spread, double tolerance) {
  for (int bins : {2, 8}) {
    for (bool inverse_first : {false, true}) {
      const SplineOptions o{.bins = bins, .tail_bound = 3.0};
      Problem p = random_problem(12, 7, bins, spread, static_cast<unsigned>(bins));
      place_round_trip_points(p, o, inverse_first, 11);
      std::vector<Tensor> t = p.tensors(dtype);
      SplineResult there = rq_spline(t[0], t[1], t[2], t[3], o, inverse_first);
      SplineResult back = rq_spline(there.value, t[1], t[2], t[3], o, !inverse_first);
      const std::vector<double> in = t[0].to_vector(), out = back.value.value().to_vector();
      const std::vector<double> ld_there = there.log_det.value().to_vector();
      const std::vector<double> ld_back = back.log_det.value().to_vector();
      for (std::size_t i = 0; i < in.size(); ++i) {
        EXPECT_NEAR(out[i], in[i], tolerance)
            << name(dtype) << " K " << bins << " inverse first " << inverse_first << " element "
            << i << " x " << in[i];
        // forward log-det = -(inverse log-det at the image)
        EXPECT_NEAR(ld_there[i], -ld_back[i], 100 * tolerance) << "element " << i;
      }
    }
  }
}

TEST(RqSpline, InverseUndoesForwardFloat64) { expect_round_trip(DType::f64, 2.0, 1e-10); }
TEST(RqSpline, InverseUndoesForwardFloat32) { expect_round_trip(DType::f32, 1.0, 1e-5); }

TEST(RqSpline, LogDetIsLogOfFiniteDifferenceDerivative) {
  // An elementwise map: the Jacobian is diagonal, its log-determinant per element log|dy/dx|.
  // h = 1e-7: steep narrow bins have large third derivatives (h = 1e-6 is off by 4e-6 beside a
  // knot of a bin with s = 12.5), while rounding costs only ~1e-9.
  const double h = 1e-7;
  for (bool inverse : {false, true}) {
    const SplineOptions o{.bins = 6, .tail_bound = 2.0};
    Problem p = random_problem(10, 3, 6, 2.0, 5);
    place_gradcheck_points(p, o, inverse, 3);
    std::vector<Tensor> t = p.tensors();
    auto [value, log_det] = run(t, o, inverse);
    std::vector<double> up = p.x, down = p.x;
    for (double& v : up) v += h;
    for (double& v : down) v -= h;
    auto [value_up, ld_up] =
        run({Tensor::from(up, p.shape, DType::f64), t[1], t[2], t[3]}, o, inverse);
    auto [value_down, ld_down] =
        run({Tensor::from(down, p.shape, DType::f64), t[1], t[2], t[3]}, o, inverse);
    for (std::size_t i = 0; i < value.size(); ++i) {
      const double slope = (value_up[i] - value_down[i]) / (2 * h);
      EXPECT_NEAR(log_det[i], std::log(slope), 1e-6) << "inverse " << inverse << " x " << p.x[i];
    }
  }
}

TEST(RqSpline, StrictlyIncreasingAcrossBinsAndTails) {
  const SplineOptions o{.bins = 7, .tail_bound = 1.5};
  const Problem one = random_problem(1, 1, 7, 2.5, 21);
  const std::int64_t points = 2001;
  Problem grid{{points, 1}, 7, {}, {}, {}, {}};
  for (std::int64_t i = 0; i < points; ++i) {
    grid.x.push_back(-2.5 + 5.0 * static_cast<double>(i) / (points - 1));
    grid.widths.insert(grid.widths.end(), one.widths.begin(), one.widths.end());
    grid.heights.insert(grid.heights.end(), one.heights.begin(), one.heights.end());
    grid.derivatives.insert(grid.derivatives.end(), one.derivatives.begin(), one.derivatives.end());
  }
  for (bool inverse : {false, true}) {
    auto [value, log_det] = run(grid.tensors(), o, inverse);
    for (std::size_t i = 1; i < value.size(); ++i) {
      ASSERT_GT(value[i], value[i - 1]) << "inverse " << inverse << " at x " << grid.x[i];
      ASSERT_TRUE(std::isfinite(log_det[i]));
    }
  }
}

TEST(RqSpline, Float32MatchesFloat64) {
  // float32 takes the CPU's vectorised exp/log path for the parameters, float64 the scalar one.
  for (bool inverse : {false, true}) {
    const SplineOptions o{.bins = 10, .tail_bound = 3.0};
    Problem p = random_problem(20, 5, 10, 1.0, 77);  // 100 elements: 6 blocks of 16 and a rest
    place_round_trip_points(p, o, inverse, 13);
    auto [value64, log_det64] = run(p.tensors(DType::f64), o, inverse);
    auto [value32, log_det32] = run(p.tensors(DType::f32), o, inverse);
    for (std::size_t i = 0; i < value64.size(); ++i) {
      EXPECT_NEAR(value32[i], value64[i], 1e-5) << "inverse " << inverse << " x " << p.x[i];
      EXPECT_NEAR(log_det32[i], log_det64[i], 1e-4) << "inverse " << inverse << " x " << p.x[i];
    }
  }
}

// --- gradients ---------------------------------------------------------------------------------

enum class Output { value, log_det, both };

ad::GradcheckResult check_gradients(int bins, bool inverse, Output output, unsigned seed) {
  const SplineOptions o{.bins = bins,
                        .tail_bound = 2.0,
                        .min_bin_width = 1e-2,
                        .min_bin_height = 1e-2,
                        .min_derivative = 1e-2};
  Problem p = random_problem(5, 3, bins, 1.5, seed);  // 15 elements: every kind of point 3 times
  place_gradcheck_points(p, o, inverse, seed + 1);
  return ad::gradcheck(
      [o, inverse, output](Vars v) {
        SplineResult r = rq_spline(v[0], v[1], v[2], v[3], o, inverse);
        if (output == Output::value) return r.value;
        if (output == Output::log_det) return r.log_det;
        return ad::concat({r.value, r.log_det}, 0);  // each with its own weights
      },
      p.tensors(), 1e-6, 1e-6);
}

TEST(RqSpline, GradientsMatchFiniteDifferences) {
  for (int bins : {2, 5}) {
    for (bool inverse : {false, true}) {
      for (Output output : {Output::value, Output::log_det, Output::both}) {
        const ad::GradcheckResult r =
            check_gradients(bins, inverse, output, static_cast<unsigned>(31 * bins));
        EXPECT_TRUE(r.passed) << "K " << bins << " inverse " << inverse << " output "
                              << static_cast<int>(output) << ": " << r.str();
      }
    }
  }
}

TEST(RqSpline, TailsPassGradientToXOnly) {
  const SplineOptions o{.bins = 3, .tail_bound = 1.0};
  Problem p = random_problem(2, 2, 3, 1.0, 9);
  p.x = {-1.5, 1.0000001, 4.0, -30.0};
  std::vector<ad::Parameter> params;
  for (const Tensor& t : p.tensors()) params.emplace_back("p", t);
  {
    ad::Tape tape;
    SplineResult r = rq_spline(params[0], params[1], params[2], params[3], o, false);
    EXPECT_EQ(tape.size(), 2u) << "one spline node and its log-det node:\n" << tape.str();
    tape.backward(ad::sum(ad::scale(r.value, 3.0) + r.log_det));
  }
  for (double g : params[0].grad().to_vector()) EXPECT_EQ(g, 3.0);
  for (std::size_t i = 1; i < params.size(); ++i)
    for (double g : params[i].grad().to_vector()) EXPECT_EQ(g, 0.0);
}

// Values, log-dets and all four gradients of one recorded step on `device`, concatenated. With
// `temporaries`, the op reads arena tensors (as a conditioner's outputs are), not parameters.
std::vector<double> step_on(const Problem& p, const SplineOptions& o, bool inverse, DType dtype,
                            core::Device device, bool temporaries = false) {
  std::vector<ad::Parameter> params;
  for (const Tensor& t : p.tensors(dtype)) params.emplace_back("p", t.to(device));
  std::vector<double> out;
  {
    ad::Tape tape;
    std::vector<Var> in(params.begin(), params.end());
    if (temporaries)
      for (Var& v : in) v = ad::scale(v, 1.0);
    SplineResult r = rq_spline(in[0], in[1], in[2], in[3], o, inverse);
    out = r.value.value().to_vector();
    const std::vector<double> ld = r.log_det.value().to_vector();
    out.insert(out.end(), ld.begin(), ld.end());
    tape.backward(ad::sum(ad::scale(r.value, 0.5)) + ad::sum(r.log_det));
  }
  for (const ad::Parameter& q : params) {
    const std::vector<double> g = q.grad().to_vector();
    out.insert(out.end(), g.begin(), g.end());
  }
  return out;
}

// Parameters that are arena temporaries and a batch large enough for the kernels to split it
// over OpenMP threads: every tensor must be read before the parallel region (a liveness check
// inside a worker thread would see that thread's arena, not the tape's), and the result must not
// depend on the thread count.
TEST(RqSpline, LargeBatchOfTemporariesOnAllThreads) {
  const SplineOptions o{.bins = 10, .tail_bound = 3.0};
  Problem p = random_problem(1000, 3, 10, 1.0, 5);  // 3000 elements: parallel on ≥ 2 threads
  place_round_trip_points(p, o, false, 17);
  const int threads = omp_get_max_threads();
  for (bool inverse : {false, true}) {
    const std::vector<double> parallel =
        step_on(p, o, inverse, DType::f32, core::Device::cpu, true);
    omp_set_num_threads(1);
    const std::vector<double> serial = step_on(p, o, inverse, DType::f32, core::Device::cpu, true);
    omp_set_num_threads(threads);
    ASSERT_EQ(parallel.size(), serial.size());
    for (std::size_t i = 0; i < serial.size(); ++i)
      ASSERT_EQ(parallel[i], serial[i]) << "entry " << i << ", " << threads << " threads";
  }
}

TEST(RqSpline, CudaMatchesCpu) {
  if (!core::device_available(core::Device::cuda)) GTEST_SKIP() << "no CUDA device";
  for (DType dtype : {DType::f64, DType::f32}) {
    for (bool inverse : {false, true}) {
      const SplineOptions o{.bins = 10, .tail_bound = 3.0};
      Problem p = random_problem(50, 4, 10, 1.0, 41);
      place_round_trip_points(p, o, inverse, 43);
      const std::vector<double> cpu = step_on(p, o, inverse, dtype, core::Device::cpu);
      const std::vector<double> gpu = step_on(p, o, inverse, dtype, core::Device::cuda);
      ASSERT_EQ(cpu.size(), gpu.size());
      const double tolerance = dtype == DType::f64 ? 1e-12 : 1e-4;
      for (std::size_t i = 0; i < cpu.size(); ++i)
        ASSERT_NEAR(gpu[i], cpu[i], tolerance * std::max(1.0, std::abs(cpu[i])))
            << name(dtype) << " inverse " << inverse << " entry " << i;
    }
  }
}

// --- bad arguments -----------------------------------------------------------------------------

void expect_error_naming(const std::function<void()>& f, const std::string& name,
                         bool shape_error) {
  try {
    f();
    ADD_FAILURE() << "no error for " << name;
  } catch (const core::ShapeError& e) {
    EXPECT_TRUE(shape_error) << e.what();
    EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
  } catch (const core::ValueError& e) {
    EXPECT_FALSE(shape_error) << e.what();
    EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
  }
}

TEST(RqSpline, RejectsBadShapesNamingTheTensor) {
  const SplineOptions o{.bins = 4};
  const Tensor x = Tensor::zeros({3, 2}, DType::f64);
  const Tensor w = Tensor::zeros({3, 2, 4}, DType::f64), d = Tensor::zeros({3, 2, 3}, DType::f64);
  const Tensor w5 = Tensor::zeros({3, 2, 5}, DType::f64),
               rows = Tensor::zeros({2, 2, 4}, DType::f64);
  expect_error_naming([&] { rq_spline(x, w5, w, d, o); }, "widths", true);
  expect_error_naming([&] { rq_spline(x, rows, w, d, o); }, "widths", true);
  expect_error_naming([&] { rq_spline(x, w, w5, d, o); }, "heights", true);
  expect_error_naming([&] { rq_spline(x, w, w, w, o); }, "derivatives", true);
  expect_error_naming(
      [&] {
        rq_spline(x, w, w, Tensor::zeros({3, 2}, DType::f64), o);
      },
      "derivatives", true);
  const Tensor x4 = Tensor::zeros({1, 1, 1, 1}, DType::f64);
  expect_error_naming([&] { rq_spline(x4, w, w, d, o); }, "x", true);
  EXPECT_THROW(rq_spline(x, Tensor::zeros({3, 2, 4}), w, d, o), core::DtypeError);
}

TEST(RqSpline, RejectsBadOptionsNamingThem) {
  const Tensor x = Tensor::zeros({3, 2}, DType::f64);
  auto call = [&](SplineOptions o) {
    return [o, x] {
      const Tensor w = Tensor::zeros({3, 2, o.bins}, DType::f64);
      rq_spline(x, w, w, Tensor::zeros({3, 2, std::max(o.bins - 1, 1)}, DType::f64), o);
    };
  };
  expect_error_naming(call({.bins = 1}), "bins", false);
  expect_error_naming(call({.bins = 65}), "bins", false);
  expect_error_naming(call({.bins = 4, .tail_bound = 0}), "tail_bound", false);
  expect_error_naming(call({.bins = 4, .min_bin_width = 0.25}), "min_bin_width", false);
  expect_error_naming(call({.bins = 4, .min_bin_height = 0.3}), "min_bin_height", false);
  expect_error_naming(call({.bins = 4, .min_derivative = -1}), "min_derivative", false);
}

}  // namespace
}  // namespace asbi::flows
