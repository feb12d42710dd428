#include "sbi/ode.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace asbi::sbi {

namespace {

// Dormand & Prince (1980), method RK5(4)7M, as printed in HNW table II.5.2: nodes c, coefficients
// a, the 5th-order weights b (= the last row of a, which makes the 7th stage FSAL) and the error
// weights e = b - b̂ (b̂ the embedded 4th-order weights, b̂7 = 1/40).
constexpr double c2 = 1.0 / 5, c3 = 3.0 / 10, c4 = 4.0 / 5, c5 = 8.0 / 9;
constexpr double a21 = 1.0 / 5;
constexpr double a31 = 3.0 / 40, a32 = 9.0 / 40;
constexpr double a41 = 44.0 / 45, a42 = -56.0 / 15, a43 = 32.0 / 9;
constexpr double a51 = 19372.0 / 6561, a52 = -25360.0 / 2187, a53 = 64448.0 / 6561,
                 a54 = -212.0 / 729;
constexpr double a61 = 9017.0 / 3168, a62 = -355.0 / 33, a63 = 46732.0 / 5247, a64 = 49.0 / 176,
                 a65 = -5103.0 / 18656;
constexpr double b1 = 35.0 / 384, b3 = 500.0 / 1113, b4 = 125.0 / 192, b5 = -2187.0 / 6784,
                 b6 = 11.0 / 84;
constexpr double e1 = 71.0 / 57600, e3 = -71.0 / 16695, e4 = 71.0 / 1920, e5 = -17253.0 / 339200,
                 e6 = 22.0 / 525, e7 = -1.0 / 40;
// Shampine's continuous extension as coded in DOPRI5 (HNW §II.6): with θ = (t - t_n)/h,
// Δ = y_{n+1} - y_n and s = h k1 - Δ,
// y(t) = y_n + θ(Δ + (1-θ)(s + θ(Δ - h k7 - s + (1-θ) h Σ_i d_i k_i))),
// a 4th-order interpolant matching y and y' at both ends.
constexpr double d1 = -12715105075.0 / 11282082432.0, d3 = 87487479700.0 / 32700410799.0,
                 d4 = -10690763975.0 / 1880347072.0, d5 = 701980252875.0 / 199316789632.0,
                 d6 = -1453857185.0 / 822651844.0, d7 = 69997945.0 / 29380423.0;

// Step-size control constants of DOPRI5 (HNW §II.4; Hairer & Wanner vol. II §IV.2).
constexpr double kSafety = 0.9;
constexpr double kMinFactor = 0.2, kMaxFactor = 10.0;
constexpr double kBeta = 0.04;                      // PI (Lund-stabilisation) exponent
constexpr double kExpo = 1.0 / 5.0 - 0.75 * kBeta;  // 1/(q+1) - 0.75β with q = 4
constexpr double kEps = std::numeric_limits<double>::epsilon();

bool all_finite(std::span<const double> v) {
  return std::all_of(v.begin(), v.end(), [](double x) { return std::isfinite(x); });
}

void check_arguments(std::span<const double> y0, double t0, std::span<const double> t_eval,
                     std::span<const double> out, const OdeOptions& o) {
  if (y0.empty()) throw core::ShapeError("solve_ode: expected y0 with at least one value, got 0");
  if (out.size() != t_eval.size() * y0.size())
    throw core::ShapeError(
        core::str("solve_ode: expected out of t_eval.size() * y0.size() = ", t_eval.size(), " * ",
                  y0.size(), " = ", t_eval.size() * y0.size(), " values, got ", out.size()));
  if (!std::isfinite(t0))
    throw core::ValueError(core::str("solve_ode: t0 must be finite, got ", t0));
  for (std::size_t i = 0; i < y0.size(); ++i)
    if (!std::isfinite(y0[i]))
      throw core::ValueError(core::str("solve_ode: y0[", i, "] must be finite, got ", y0[i]));
  for (std::size_t i = 0; i < t_eval.size(); ++i) {
    if (!std::isfinite(t_eval[i]))
      throw core::ValueError(
          core::str("solve_ode: t_eval[", i, "] must be finite, got ", t_eval[i]));
    if (i == 0 ? t_eval[i] < t0 : t_eval[i] < t_eval[i - 1])
      throw core::ValueError(
          core::str("solve_ode: t_eval must be non-decreasing and start at or after t0 = ", t0,
                    " (integration runs forward), but t_eval[", i, "] = ", t_eval[i], " < ",
                    i == 0 ? t0 : t_eval[i - 1]));
  }
  if (!(o.rtol >= 0) || !std::isfinite(o.rtol))
    throw core::ValueError(
        core::str("solve_ode: options.rtol must be finite and >= 0, got ", o.rtol));
  if (!(o.atol > 0) || !std::isfinite(o.atol))
    throw core::ValueError(
        core::str("solve_ode: options.atol must be finite and > 0, got ", o.atol));
  if (o.max_steps <= 0)
    throw core::ValueError(
        core::str("solve_ode: options.max_steps must be > 0, got ", o.max_steps));
  if (!(o.initial_step >= 0) || !std::isfinite(o.initial_step))
    throw core::ValueError(
        core::str("solve_ode: options.initial_step must be finite and >= 0 (0: automatic), got ",
                  o.initial_step));
  if (!(o.max_step >= 0) || std::isnan(o.max_step))
    throw core::ValueError(
        core::str("solve_ode: options.max_step must be >= 0 (0: no limit), got ", o.max_step));
}

}  // namespace

void solve_ode(OdeRhs rhs, std::span<const double> y0, double t0, std::span<const double> t_eval,
               std::span<double> out, const OdeOptions& options, OdeStats* stats) {
  check_arguments(y0, t0, t_eval, out, options);
  OdeStats local;
  OdeStats& st = stats != nullptr ? *stats : local;
  st = {};
  const std::size_t n = y0.size(), n_out = t_eval.size();
  const double rtol = options.rtol, atol = options.atol;

  // One buffer: y, y_new, the seven stages, a scratch state and the dense-output coefficients.
  std::vector<double> work(15 * n);
  const auto slot = [&](std::size_t k) { return std::span<double>(work).subspan(k * n, n); };
  std::span<double> y = slot(0), y_new = slot(1), k1 = slot(2), k2 = slot(3), k3 = slot(4),
                    k4 = slot(5), k5 = slot(6), k6 = slot(7), k7 = slot(8), tmp = slot(9),
                    r1 = slot(10), r2 = slot(11), r3 = slot(12), r4 = slot(13), r5 = slot(14);
  std::copy(y0.begin(), y0.end(), y.begin());

  std::size_t next_out = 0;
  const auto emit = [&](std::span<const double> state) {
    std::copy(state.begin(), state.end(), out.begin() + static_cast<std::ptrdiff_t>(next_out * n));
    ++next_out;
  };
  double t = t0;
  while (next_out < n_out && t_eval[next_out] == t0) emit(y);
  if (next_out == n_out) return;
  const double t_end = t_eval[n_out - 1];
  const double h_max = options.max_step > 0 ? std::min(options.max_step, t_end - t0) : t_end - t0;

  const auto eval = [&](double time, std::span<const double> state, std::span<double> dydt) {
    rhs(time, state, dydt);
    ++st.evaluations;
  };
  eval(t, y, k1);
  if (!all_finite(k1))
    throw OdeError(core::str("solve_ode: the right-hand side is not finite at t0 = ", t0));

  const auto scale = [&](double a, double b) {
    return atol + rtol * std::max(std::abs(a), std::abs(b));
  };
  double h = options.initial_step;
  if (h == 0) {
    // Hairer's starting step (HNW §II.4): h0 makes an explicit Euler step change y by 1% of its
    // size, then h1 keeps the local error estimate (h^5 times a 2nd-derivative proxy) at 0.01.
    double dy = 0, df = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const double s = scale(y[i], y[i]);
      dy += (y[i] / s) * (y[i] / s);
      df += (k1[i] / s) * (k1[i] / s);
    }
    dy = std::sqrt(dy / static_cast<double>(n));
    df = std::sqrt(df / static_cast<double>(n));
    double h0 = (dy < 1e-5 || df < 1e-5) ? 1e-6 : 0.01 * dy / df;
    h0 = std::min(h0, h_max);
    for (std::size_t i = 0; i < n; ++i) tmp[i] = y[i] + h0 * k1[i];
    eval(t + h0, tmp, k2);
    double d2 = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const double s = scale(y[i], y[i]);
      d2 += ((k2[i] - k1[i]) / s) * ((k2[i] - k1[i]) / s);
    }
    d2 = std::sqrt(d2 / static_cast<double>(n)) / h0;
    const double d = std::max(df, d2);
    double h1 = d <= 1e-15 ? std::max(1e-6, h0 * 1e-3) : std::pow(0.01 / d, 1.0 / 5.0);
    if (!std::isfinite(h1)) h1 = h0;  // a non-finite probe: start small, the control adapts
    h = std::min({100 * h0, h1, h_max});
  }
  h = std::min(h, h_max);

  double err_prev = 1e-4;
  bool rejected_last = false, non_finite_last = false;
  while (true) {
    if (st.steps + st.rejected >= options.max_steps)
      throw OdeError(core::str("solve_ode: reached options.max_steps = ", options.max_steps, " (",
                               st.steps, " accepted, ", st.rejected, " rejected) at t = ", t,
                               " of [", t0, ", ", t_end, "] with step ", h,
                               "; the problem may be stiff or rtol = ", rtol, ", atol = ", atol,
                               " too tight"));
    // Below h_min, t + h rounds to t within a few ulps; a remainder that short is still taken.
    const double h_min = 10 * kEps * std::max(std::abs(t), std::abs(t_end));
    if ((h <= h_min && t_end - t > h_min) || !std::isfinite(h))
      throw OdeError(core::str(
          "solve_ode: step size underflow (h = ", h, ") at t = ", t, " of [", t0, ", ", t_end, "]",
          non_finite_last ? "; the right-hand side or the state became non-finite"
                          : "; the solution may blow up or be discontinuous there"));
    bool last = false;
    if (t + 1.01 * h >= t_end) {  // stretch or shrink the step to land on t_end exactly
      h = t_end - t;
      last = true;
    }

    for (std::size_t i = 0; i < n; ++i) tmp[i] = y[i] + h * a21 * k1[i];
    eval(t + c2 * h, tmp, k2);
    for (std::size_t i = 0; i < n; ++i) tmp[i] = y[i] + h * (a31 * k1[i] + a32 * k2[i]);
    eval(t + c3 * h, tmp, k3);
    for (std::size_t i = 0; i < n; ++i)
      tmp[i] = y[i] + h * (a41 * k1[i] + a42 * k2[i] + a43 * k3[i]);
    eval(t + c4 * h, tmp, k4);
    for (std::size_t i = 0; i < n; ++i)
      tmp[i] = y[i] + h * (a51 * k1[i] + a52 * k2[i] + a53 * k3[i] + a54 * k4[i]);
    eval(t + c5 * h, tmp, k5);
    for (std::size_t i = 0; i < n; ++i)
      tmp[i] = y[i] + h * (a61 * k1[i] + a62 * k2[i] + a63 * k3[i] + a64 * k4[i] + a65 * k5[i]);
    const double t_new = last ? t_end : t + h;
    eval(t + h, tmp, k6);
    for (std::size_t i = 0; i < n; ++i)
      y_new[i] = y[i] + h * (b1 * k1[i] + b3 * k3[i] + b4 * k4[i] + b5 * k5[i] + b6 * k6[i]);
    eval(t_new, y_new, k7);

    double err = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const double e =
          h * (e1 * k1[i] + e3 * k3[i] + e4 * k4[i] + e5 * k5[i] + e6 * k6[i] + e7 * k7[i]) /
          scale(y[i], y_new[i]);
      err += e * e;
    }
    err = std::sqrt(err / static_cast<double>(n));
    non_finite_last = !std::isfinite(err) || !all_finite(y_new) || !all_finite(k7);
    if (non_finite_last) {
      // A NaN/Inf stage (overflow, or f undefined there): retry with a much shorter step.
      ++st.rejected;
      rejected_last = true;
      h *= kMinFactor;
      continue;
    }

    const double grow = std::pow(err, kExpo);  // err^(1/5 - 0.75β)
    if (err <= 1) {
      ++st.steps;
      // Outputs in (t, t_new]: the dense-output coefficients are built only when needed.
      bool dense_ready = false;
      while (next_out < n_out && t_eval[next_out] <= t_new) {
        if (t_eval[next_out] == t_new) {
          emit(y_new);
          continue;
        }
        if (!dense_ready) {
          for (std::size_t i = 0; i < n; ++i) {
            const double delta = y_new[i] - y[i], bspl = h * k1[i] - delta;
            r1[i] = y[i];
            r2[i] = delta;
            r3[i] = bspl;
            r4[i] = delta - h * k7[i] - bspl;
            r5[i] =
                h * (d1 * k1[i] + d3 * k3[i] + d4 * k4[i] + d5 * k5[i] + d6 * k6[i] + d7 * k7[i]);
          }
          dense_ready = true;
        }
        const double theta = (t_eval[next_out] - t) / h, theta1 = 1 - theta;
        for (std::size_t i = 0; i < n; ++i)
          tmp[i] = r1[i] + theta * (r2[i] + theta1 * (r3[i] + theta * (r4[i] + theta1 * r5[i])));
        emit(tmp);
      }
      if (last) return;
      std::copy(y_new.begin(), y_new.end(), y.begin());
      std::copy(k7.begin(), k7.end(), k1.begin());  // FSAL
      t = t_new;
      // PI control: h_new = h · safety · err^-expo · err_prev^β, clamped to [0.2, 10].
      double factor = kSafety * std::pow(err_prev, kBeta) / grow;
      factor = std::clamp(factor, kMinFactor, kMaxFactor);
      if (rejected_last) factor = std::min(factor, 1.0);
      err_prev = std::max(err, 1e-4);
      rejected_last = false;
      h = std::min(h * factor, h_max);
    } else {
      ++st.rejected;
      rejected_last = true;
      h *= std::max(kMinFactor, kSafety / grow);
    }
  }
}

}  // namespace asbi::sbi
