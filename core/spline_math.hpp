#pragma once
// The rational-quadratic spline of Neural Spline Flows (Durkan, Bekasov, Murray, Papamakarios
// 2019, §3.1 and appendix A), one element at a time, with its gradients. CPU and CUDA kernels both
// call these, so the math is written once; docs/spline.md derives every line.
//
// One element has K bins on [-B, B] (identity outside, as nflows' tails="linear"):
//   x_j, y_j   knots along x and y, j = 0..K, from the unnormalised widths and heights;
//   δ_j        the derivative at knot j: 1 at both ends, min_derivative + softplus(u) inside;
//   bin k      w = x_{k+1} - x_k,  h = y_{k+1} - y_k,  s = h / w,  θ = (x - x_k) / w.
// Arrays are sized for max_bins on the stack: no allocation, on either device.
#include <cmath>

#include "core/backend.hpp"
#include "core/error.hpp"
#include "core/host_device.hpp"
#include "core/scalar_math.hpp"

namespace asbi::core::spline {

using std::exp, std::log, std::sqrt;

constexpr int max_bins = 64;

// Every kernel checks K before running: the per-element arrays hold max_bins.
inline void check_bins(const char* kernel, int bins) {
  if (bins < 2 || bins > max_bins)
    throw ValueError(str(kernel, ": bins must be in [2, ", max_bins, "], got ", bins));
}

// The softmax's numerators e_j = exp(u_j - max u) of one element's K raw sizes (u - max u keeps
// every exponent ≤ 0). The element functions below start from these rather than from u, so that
// the CPU kernel can exponentiate a whole block of elements in one vectorised call.
template <typename T>
ASBI_HOST_DEVICE inline void shift_by_max(const T* unnormalized, int bins, T* shifted) {
  T largest = unnormalized[0];
  for (int j = 1; j < bins; ++j) largest = unnormalized[j] > largest ? unnormalized[j] : largest;
  for (int j = 0; j < bins; ++j) shifted[j] = unnormalized[j] - largest;
}

template <typename T>
ASBI_HOST_DEVICE inline void softmax_numerators(const T* unnormalized, int bins, T* numerators) {
  shift_by_max(unnormalized, bins, numerators);
  for (int j = 0; j < bins; ++j) numerators[j] = exp(numerators[j]);
}

// The knots of one axis from the softmax numerators of its K raw sizes u (nflows' normalisation):
//   p = softmax(u),  size_j = m + (1 - m K) p_j,  knot_0 = -B,
//   knot_j = 2B Σ_{i<j} size_i - B  (0 < j < K),  knot_K = B exactly.
// prob[0..K) holds the numerators on entry and p on return; writes knot[0..K].
template <typename T>
ASBI_HOST_DEVICE inline void normalize_knots(T* prob, int bins, T min_size, T bound, T* knot) {
  T total = 0;
  for (int j = 0; j < bins; ++j) total += prob[j];
  const T inv_total = T(1) / total, size_scale = T(1) - min_size * T(bins);
  T cumulative = 0;
  knot[0] = -bound;
  for (int j = 0; j < bins; ++j) {
    prob[j] *= inv_total;
    cumulative += min_size + size_scale * prob[j];
    knot[j + 1] = T(2) * bound * cumulative - bound;
  }
  knot[bins] = bound;
}

// The bin holding v ∈ [-B, B]: the number of interior knots ≤ v, as nflows' searchsorted (whose
// eps on the last knot only puts v = B into bin K - 1).
template <typename T>
ASBI_HOST_DEVICE inline int locate_bin(const T* knot, int bins, T v) {
  int k = 0;
  for (int j = 1; j < bins; ++j) k += v >= knot[j] ? 1 : 0;
  return k;
}

// δ_j at the interior knots j = 1..K-1: m + softplus(u_{j-1}).
template <typename T>
ASBI_HOST_DEVICE inline void interior_derivatives(const T* unnormalized, int bins, T min_derivative,
                                                  T* derivative) {
  for (int j = 0; j + 1 < bins; ++j)
    derivative[j] = min_derivative + scalar::softplus(unnormalized[j]);
}

// One element's raw parameters after their elementwise transforms. The CPU kernel prepares these
// for a block of elements with vectorised exp and softplus; prepare_element does one.
template <typename T>
struct Element {
  T* width_prob;   // in: softmax numerators of the raw widths; working space, then softmax
  T* height_prob;  // likewise for the raw heights
  const T* interior_derivative;       // δ_1..δ_{K-1}
  const T* unnormalized_derivatives;  // u_δ, for ∂δ/∂u = σ(u) in the backward
};

template <typename T>
ASBI_HOST_DEVICE inline Element<T> prepare_element(const T* unnormalized_widths,
                                                   const T* unnormalized_heights,
                                                   const T* unnormalized_derivatives, int bins,
                                                   T min_derivative, T* width_prob, T* height_prob,
                                                   T* interior_derivative) {
  softmax_numerators(unnormalized_widths, bins, width_prob);
  softmax_numerators(unnormalized_heights, bins, height_prob);
  interior_derivatives(unnormalized_derivatives, bins, min_derivative, interior_derivative);
  return {width_prob, height_prob, interior_derivative, unnormalized_derivatives};
}

// δ_j: 1 at knots 0 and K (the slope of the identity tails; nflows pads with
// log(e^{1 - m} - 1), whose m + softplus is 1), the interior value otherwise.
template <typename T>
ASBI_HOST_DEVICE inline T knot_derivative(const Element<T>& e, int bins, int j) {
  return j == 0 || j == bins ? T(1) : e.interior_derivative[j - 1];
}

// What one bin's formulas read.
template <typename T>
struct Bin {
  T x_lo, width;   // x_k, w
  T y_lo, height;  // y_k, h
  T d_lo, d_hi;    // δ_k, δ_{k+1}
};

template <typename T>
ASBI_HOST_DEVICE inline Bin<T> make_bin(const T* x_knot, const T* y_knot, const Element<T>& e,
                                        int bins, int k) {
  return {x_knot[k],
          x_knot[k + 1] - x_knot[k],
          y_knot[k],
          y_knot[k + 1] - y_knot[k],
          knot_derivative(e, bins, k),
          knot_derivative(e, bins, k + 1)};
}

// y = y_k + h [s θ² + δ_k θ(1-θ)] / [s + (δ_{k+1} + δ_k - 2s) θ(1-θ)]   (NSF eq. 4)
template <typename T>
ASBI_HOST_DEVICE inline T rq_value(const Bin<T>& b, T theta) {
  const T s = b.height / b.width, t = theta * (T(1) - theta);
  const T numerator = b.height * (s * theta * theta + b.d_lo * t);
  const T denominator = s + (b.d_lo + b.d_hi - T(2) * s) * t;
  return b.y_lo + numerator / denominator;
}

// log s'(x) = log(s² [δ_{k+1} θ² + 2s θ(1-θ) + δ_k (1-θ)²]) - 2 log(denominator)   (NSF eq. 5)
template <typename T>
ASBI_HOST_DEVICE inline T rq_log_slope(const Bin<T>& b, T theta) {
  const T s = b.height / b.width, one_minus = T(1) - theta, t = theta * one_minus;
  const T slope_numerator =
      s * s * (b.d_hi * theta * theta + T(2) * s * t + b.d_lo * one_minus * one_minus);
  const T denominator = s + (b.d_lo + b.d_hi - T(2) * s) * t;
  return log(slope_numerator / (denominator * denominator));
}

// θ of y in its bin: the root in [0, 1] of a θ² + b θ + c = 0 (NSF eqs. 6-8) with
//   a = (y - y_k)(δ_k + δ_{k+1} - 2s) + h (s - δ_k),  b = h δ_k - (y - y_k)(δ_k + δ_{k+1} - 2s),
//   c = -s (y - y_k),  as θ = 2c / (-b - √(b² - 4ac)) (nflows' form, finite as a → 0).
template <typename T>
ASBI_HOST_DEVICE inline T rq_inverse_theta(const Bin<T>& b, T y) {
  const T s = b.height / b.width, rise = y - b.y_lo;
  const T excess = b.d_lo + b.d_hi - T(2) * s;
  const T qa = rise * excess + b.height * (s - b.d_lo);
  const T qb = b.height * b.d_lo - rise * excess;
  const T qc = -s * rise;
  const T discriminant = qb * qb - T(4) * qa * qc;
  return T(2) * qc / (-qb - sqrt(discriminant > T(0) ? discriminant : T(0)));
}

// Partial derivatives of one function of a bin with respect to the input x and the bin's six
// quantities, holding the others fixed.
template <typename T>
struct BinGrad {
  T x, x_lo, width, y_lo, height, d_lo, d_hi;
};

template <typename T>
ASBI_HOST_DEVICE inline BinGrad<T> operator*(T c, const BinGrad<T>& g) {
  return {c * g.x, c * g.x_lo, c * g.width, c * g.y_lo, c * g.height, c * g.d_lo, c * g.d_hi};
}

template <typename T>
ASBI_HOST_DEVICE inline BinGrad<T> operator+(const BinGrad<T>& a, const BinGrad<T>& b) {
  return {a.x + b.x,           a.x_lo + b.x_lo, a.width + b.width, a.y_lo + b.y_lo,
          a.height + b.height, a.d_lo + b.d_lo, a.d_hi + b.d_hi};
}

template <typename T>
struct BinPartials {
  BinGrad<T> value;      // ∂y/∂·
  BinGrad<T> log_slope;  // ∂ℓ/∂·, ℓ = log s'(x)
  T slope;               // s'(x) = ∂y/∂x
};

// The partials of y and ℓ at θ (docs/spline.md §5.1). With t = θ(1-θ), R = [sθ² + δ_k t] / den,
// N = δ_{k+1}θ² + 2st + δ_k(1-θ)², den = s + (δ_k + δ_{k+1} - 2s) t, first in (θ, s, δ):
//   ∂y/∂θ = w s'(x),  ∂y/∂s = h (θ² - R(1 - 2t)) / den,
//   ∂y/∂δ_k = h t (1 - R) / den,  ∂y/∂δ_{k+1} = -h R t / den,  ∂y/∂h|_s = R,  ∂y/∂y_k = 1;
//   ∂ℓ/∂θ = 2[δ_{k+1}θ + s(1 - 2θ) - δ_k(1-θ)] / N - 2 (δ_k + δ_{k+1} - 2s)(1 - 2θ) / den,
//   ∂ℓ/∂s = 2/s + 2t/N - 2(1 - 2t)/den,
//   ∂ℓ/∂δ_k = (1-θ)²/N - 2t/den,  ∂ℓ/∂δ_{k+1} = θ²/N - 2t/den;
// then through θ = (x - x_k)/w and s = h/w:
//   ∂/∂x = ∂/∂θ / w,  ∂/∂x_k = -∂/∂θ / w,  ∂/∂w = -(θ ∂/∂θ + s ∂/∂s) / w,
//   ∂/∂h = ∂/∂h|_s + ∂/∂s / w.
template <typename T>
ASBI_HOST_DEVICE inline BinPartials<T> rq_partials(const Bin<T>& b, T theta) {
  const T w = b.width, h = b.height, s = h / w;
  const T one_minus = T(1) - theta, t = theta * one_minus, dt = T(1) - T(2) * theta;
  const T excess = b.d_lo + b.d_hi - T(2) * s;
  const T inv_den = T(1) / (s + excess * t);
  const T n = b.d_hi * theta * theta + T(2) * s * t + b.d_lo * one_minus * one_minus;
  const T inv_n = T(1) / n;
  const T ratio = (s * theta * theta + b.d_lo * t) * inv_den;
  const T slope = s * s * n * inv_den * inv_den;

  const T y_theta = w * slope;
  const T y_s = h * (theta * theta - ratio * (T(1) - T(2) * t)) * inv_den;
  const T l_theta =
      T(2) * (b.d_hi * theta + s * dt - b.d_lo * one_minus) * inv_n - T(2) * excess * dt * inv_den;
  const T l_s = T(2) / s + T(2) * t * inv_n - T(2) * (T(1) - T(2) * t) * inv_den;
  const T inv_w = T(1) / w;

  BinPartials<T> p;
  p.slope = slope;
  p.value = {y_theta * inv_w,
             -y_theta * inv_w,
             -(theta * y_theta + s * y_s) * inv_w,
             T(1),
             ratio + y_s * inv_w,
             h * t * (T(1) - ratio) * inv_den,
             -h * ratio * t * inv_den};
  p.log_slope = {l_theta * inv_w,
                 -l_theta * inv_w,
                 -(theta * l_theta + s * l_s) * inv_w,
                 T(0),
                 l_s * inv_w,
                 one_minus * one_minus * inv_n - T(2) * t * inv_den,
                 theta * theta * inv_n - T(2) * t * inv_den};
  return p;
}

// Gradients of knots k and k + 1 back to the unnormalised sizes u. Only interior knots move
// (knot_0 = -B and knot_K = B are constants); with P_j = Σ_{i<j} p_i and c = 2B(1 - m K):
//   ∂knot_j/∂p_i = c [i < j],  and through the softmax  ∂L/∂u_i = p_i (G_i - Σ_l p_l G_l), so
//   ∂L/∂u_i += c p_i Σ_{j ∈ {k, k+1}} g_j ([i < j] - P_j).
template <typename T>
ASBI_HOST_DEVICE inline void knots_backward(const T* prob, int bins, T min_size, T bound, int k,
                                            T grad_lo, T grad_hi, T* grad_unnormalized) {
  if (k == 0) grad_lo = T(0);
  if (k + 1 == bins) grad_hi = T(0);
  T below_lo = 0;  // P_k
  for (int i = 0; i < k; ++i) below_lo += prob[i];
  const T below_hi = below_lo + prob[k];  // P_{k+1}
  const T c = T(2) * bound * (T(1) - min_size * T(bins));
  const T common = -(grad_lo * below_lo + grad_hi * below_hi);
  for (int i = 0; i < bins; ++i) {
    const T inner = common + (i < k ? grad_lo : T(0)) + (i <= k ? grad_hi : T(0));
    grad_unnormalized[i] += c * prob[i] * inner;
  }
}

// True when v lies on the spline's interval; NaN does not, and passes through like a tail.
template <typename T>
ASBI_HOST_DEVICE inline bool inside(T v, T bound) {
  return v >= -bound && v <= bound;
}

// One element, forward: out = s(in) and log_det = log s'(in), or with `inverse` out = s⁻¹(in)
// and log_det = -log s'(out). Outside [-B, B]: out = in, log_det = 0.
template <typename T>
ASBI_HOST_DEVICE inline void rq_spline_element(T in, const Element<T>& e, const RqSplineParams& p,
                                               bool inverse, T& out, T& log_det) {
  const T bound = T(p.tail_bound);
  if (!inside(in, bound)) {
    out = in;
    log_det = T(0);
    return;
  }
  const int bins = p.bins;
  T x_knot[max_bins + 1], y_knot[max_bins + 1];
  normalize_knots(e.width_prob, bins, T(p.min_bin_width), bound, x_knot);
  normalize_knots(e.height_prob, bins, T(p.min_bin_height), bound, y_knot);
  const int k = locate_bin(inverse ? y_knot : x_knot, bins, in);
  const Bin<T> b = make_bin(x_knot, y_knot, e, bins, k);
  if (inverse) {
    const T theta = rq_inverse_theta(b, in);
    out = b.x_lo + theta * b.width;
    log_det = -rq_log_slope(b, theta);
  } else {
    const T theta = (in - b.x_lo) / b.width;
    out = rq_value(b, theta);
    log_det = rq_log_slope(b, theta);
  }
}

// One element, backward: accumulates the gradients of L = g_out · out + g_log_det · log_det into
// grad_in, grad_widths[0..K), grad_heights[0..K), grad_derivatives[0..K-1); a null one is
// skipped. Forward: the partials above weighted by (g_out, g_log_det). Inverse (x = s⁻¹(y),
// log_det = -ℓ(x)): by the implicit function theorem on s(x) = y, ∂x/∂y = 1 / s'(x) and
// ∂x/∂φ = -(∂y/∂φ) / s'(x). With g_x = g_out - g_log_det ∂ℓ/∂x, all that reaches x,
//   ∂L/∂y = g_x / s'(x),  ∂L/∂φ = -(g_x / s'(x)) ∂y/∂φ - g_log_det ∂ℓ/∂φ.
template <typename T>
ASBI_HOST_DEVICE inline void rq_spline_element_backward(T in, const Element<T>& e,
                                                        const RqSplineParams& p, bool inverse,
                                                        T g_out, T g_log_det, T* grad_in,
                                                        T* grad_widths, T* grad_heights,
                                                        T* grad_derivatives) {
  const T bound = T(p.tail_bound);
  if (!inside(in, bound)) {  // identity: ∂out/∂in = 1, and no parameter is read
    if (grad_in) *grad_in += g_out;
    return;
  }
  const int bins = p.bins;
  T x_knot[max_bins + 1], y_knot[max_bins + 1];
  normalize_knots(e.width_prob, bins, T(p.min_bin_width), bound, x_knot);
  normalize_knots(e.height_prob, bins, T(p.min_bin_height), bound, y_knot);
  const int k = locate_bin(inverse ? y_knot : x_knot, bins, in);
  const Bin<T> b = make_bin(x_knot, y_knot, e, bins, k);

  BinGrad<T> g;
  if (inverse) {
    const T theta = rq_inverse_theta(b, in);
    const BinPartials<T> d = rq_partials(b, theta);
    const T g_y = (g_out - g_log_det * d.log_slope.x) / d.slope;  // g_x / s'(x)
    if (grad_in) *grad_in += g_y;
    g = (-g_y) * d.value + (-g_log_det) * d.log_slope;
  } else {
    const BinPartials<T> d = rq_partials(b, (in - b.x_lo) / b.width);
    g = g_out * d.value + g_log_det * d.log_slope;
    if (grad_in) *grad_in += g.x;
  }

  // x_k and w = x_{k+1} - x_k to the knots, then to the unnormalised sizes; likewise y.
  if (grad_widths)
    knots_backward(e.width_prob, bins, T(p.min_bin_width), bound, k, g.x_lo - g.width, g.width,
                   grad_widths);
  if (grad_heights)
    knots_backward(e.height_prob, bins, T(p.min_bin_height), bound, k, g.y_lo - g.height, g.height,
                   grad_heights);
  // δ_j = m + softplus(u_{j-1}):  ∂L/∂u_{j-1} += ∂L/∂δ_j σ(u_{j-1}) at the interior knots k, k+1.
  if (grad_derivatives) {
    const T* u = e.unnormalized_derivatives;
    if (k > 0) grad_derivatives[k - 1] += g.d_lo * scalar::sigmoid(u[k - 1]);
    if (k + 1 < bins) grad_derivatives[k] += g.d_hi * scalar::sigmoid(u[k]);
  }
}

}  // namespace asbi::core::spline
