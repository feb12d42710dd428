#pragma once
// The per-simulation math of the cheap tasks, written once for the CPU and the GPU: the sbibm
// tasks gaussian_linear(_uniform), two_moons, slcp and gaussian_mixture (prior, simulator,
// likelihood) and the elements of the set tasks gaussian_nuisance and mixture_nuisance. The CPU
// simulators in task.cpp / set_task.cpp and the CUDA kernels in sbi/cuda/ call these same
// functions, so a seed gives the same x on both devices, to the rounding of libm's log, sin and
// cos against CUDA's and of fused multiply-adds (a few ulp of double; float outputs then agree
// except where the two values straddle a float rounding boundary, 1 ulp apart).
//
// Randomness. A simulator row i draws from core::Rng(seed, stream = first_row + i); device code
// cannot hold a core::Rng (its methods live in rng.cpp), so PhiloxRng below re-implements the
// two draws the simulators use, uniform() and normal(), word for word. The simulators are
// templates on the generator: the CPU passes a core::Rng, a kernel a PhiloxRng, and the test
// Kernels.PhiloxRngMatchesCoreRng pins the two to the same bits.
//
// Only built-in types and core/ inside: no allocation, no exceptions, no std::span.
#include <cmath>
#include <cstdint>

#include "core/host_device.hpp"
#include "core/rng.hpp"

namespace asbi::sbi::kernels {

using std::abs, std::cos, std::exp, std::hypot, std::log, std::sin, std::sqrt, std::tanh;

struct Constants {
  static constexpr double pi = 3.14159265358979323846;
  static constexpr double two_pi = 6.283185307179586476925286766559;
  static constexpr double sqrt2 = 1.41421356237309504880;
  static constexpr double log_2pi = 1.83787706640934548356;  // log(2π)
};

// ---- random numbers ---------------------------------------------------------------------------

// The Box–Muller pair of core::Rng::normal() and core::fill_normal(double).
ASBI_HOST_DEVICE inline void box_muller(double u0, double u1, double& z0, double& z1) {
  const double r = sqrt(-2.0 * log(u0));
  const double t = Constants::two_pi * u1;
  z0 = r * cos(t);
  z1 = r * sin(t);
}

// core::Rng's uniform() and normal() for one (seed, stream), consuming the same 32-bit words in
// the same order (four per block, a normal pair per block, the second normal cached), so that
// from the same (seed, stream, counter) both give the same numbers.
class PhiloxRng {
 public:
  PhiloxRng() = default;  // seed 0, stream 0; assigned before the first draw
  ASBI_HOST_DEVICE PhiloxRng(std::uint64_t seed, std::uint64_t stream, std::uint64_t counter = 0)
      : seed_(seed), stream_(stream), counter_(counter) {}

  ASBI_HOST_DEVICE std::uint32_t next_u32() {
    if (lane_ == 4) {
      core::philox_block(seed_, stream_, counter_++, buf_);
      lane_ = 0;
    }
    return buf_[lane_++];
  }
  ASBI_HOST_DEVICE double uniform() {
    const std::uint32_t a = next_u32();
    return core::open_unit_double(a, next_u32());
  }
  ASBI_HOST_DEVICE double normal() {
    if (has_cached_normal_) {
      has_cached_normal_ = false;
      return cached_normal_;
    }
    const double u0 = uniform();
    const double u1 = uniform();
    double z0 = 0.0;
    box_muller(u0, u1, z0, cached_normal_);
    has_cached_normal_ = true;
    return z0;
  }

 private:
  std::uint64_t seed_ = 0, stream_ = 0, counter_ = 0;
  std::uint32_t buf_[4] = {0, 0, 0, 0};
  int lane_ = 4;  // 4: buffer empty
  bool has_cached_normal_ = false;
  double cached_normal_ = 0.0;
};

// Element e of core::fill_normal(seed, stream, 0, span<double>): block e / 2, u0 from lanes
// (0, 1), u1 from lanes (2, 3), the cosine half of the pair for even e, the sine half for odd.
ASBI_HOST_DEVICE inline double normal_at(std::uint64_t seed, std::uint64_t stream,
                                         std::uint64_t e) {
  std::uint32_t w[4];
  core::philox_block(seed, stream, e / 2, w);
  double z0 = 0, z1 = 0;
  box_muller(core::open_unit_double(w[0], w[1]), core::open_unit_double(w[2], w[3]), z0, z1);
  return e % 2 == 0 ? z0 : z1;
}

// Element e of core::fill_uniform(seed, stream, 0, span<double>): lanes 2(e % 2), 2(e % 2) + 1 of
// block e / 2.
ASBI_HOST_DEVICE inline double uniform_at(std::uint64_t seed, std::uint64_t stream,
                                          std::uint64_t e) {
  std::uint32_t w[4];
  core::philox_block(seed, stream, e / 2, w);
  const int lane = 2 * static_cast<int>(e % 2);
  return core::open_unit_double(w[lane], w[lane + 1]);
}

// ---- the sbibm tasks --------------------------------------------------------------------------

enum class TaskKernel : std::uint8_t {
  gaussian_linear,          // θ ~ N(0, 0.1 I₁₀), x ~ N(θ, 0.1 I)
  gaussian_linear_uniform,  // θ ~ U(−1, 1)¹⁰, x ~ N(θ, 0.1 I)
  two_moons,                // θ ~ U(−1, 1)²
  slcp,                     // θ ~ U(−3, 3)⁵, x: four draws of a 2-D Gaussian
  gaussian_mixture,         // θ ~ U(−10, 10)², x ~ ½ N(θ, I) + ½ N(θ, 0.01 I)
};
inline constexpr int kTaskKernelCount = 5;
inline constexpr int kMaxThetaDim = 10;  // the largest theta_dim and x_dim of the tasks above
inline constexpr int kMaxXDim = 10;

ASBI_HOST_DEVICE constexpr int theta_dim(TaskKernel t) {
  switch (t) {
    case TaskKernel::gaussian_linear:
    case TaskKernel::gaussian_linear_uniform: return 10;
    case TaskKernel::slcp: return 5;
    case TaskKernel::two_moons:
    case TaskKernel::gaussian_mixture: return 2;
  }
  return 0;
}

ASBI_HOST_DEVICE constexpr int x_dim(TaskKernel t) {
  switch (t) {
    case TaskKernel::gaussian_linear:
    case TaskKernel::gaussian_linear_uniform: return 10;
    case TaskKernel::slcp: return 8;
    case TaskKernel::two_moons:
    case TaskKernel::gaussian_mixture: return 2;
  }
  return 0;
}

// Every prior above is a box U(low, high)^D or an isotropic N(0, variance I). make_task builds
// its BoxUniform / Gaussian from these numbers, so the two definitions cannot drift apart.
struct KernelPrior {
  bool gaussian;
  double low, high;  // box
  double variance;   // gaussian
};

ASBI_HOST_DEVICE constexpr KernelPrior prior_of(TaskKernel t) {
  switch (t) {
    case TaskKernel::gaussian_linear: return {true, 0, 0, 0.1};  // 0.1 is the variance
    case TaskKernel::gaussian_linear_uniform:
    case TaskKernel::two_moons: return {false, -1, 1, 0};
    case TaskKernel::slcp: return {false, -3, 3, 0};
    case TaskKernel::gaussian_mixture: return {false, -10, 10, 0};
  }
  return {false, 0, 0, 0};
}

// log p(θ), to the rounding of BoxUniform::log_prob_row and Gaussian::log_prob_row (same
// operations in the same order): the box is closed below and open above; -inf outside.
ASBI_HOST_DEVICE inline double log_prior(TaskKernel t, const double* theta) {
  const KernelPrior p = prior_of(t);
  const int d = theta_dim(t);
  if (p.gaussian) {
    const double sd = sqrt(p.variance);
    double log_norm = -0.5 * static_cast<double>(d) * Constants::log_2pi;
    double q = 0;
    for (int i = 0; i < d; ++i) {
      log_norm -= log(sd);
      const double y = theta[i] / sd;
      q += y * y;
    }
    return log_norm - 0.5 * q;
  }
  double log_volume = 0;
  for (int i = 0; i < d; ++i) {
    if (!(theta[i] >= p.low && theta[i] < p.high)) return -INFINITY;
    log_volume += log(p.high - p.low);
  }
  return -log_volume;
}

// θ ~ prior, drawing as BoxUniform::sample_row (one uniform per coordinate) and
// Gaussian::sample_row (one normal per coordinate) do.
template <typename Rng>
ASBI_HOST_DEVICE void sample_prior(TaskKernel t, Rng& rng, double* theta) {
  const KernelPrior p = prior_of(t);
  const int d = theta_dim(t);
  if (p.gaussian) {
    const double sd = sqrt(p.variance);
    for (int i = 0; i < d; ++i) theta[i] = sd * rng.normal();
  } else {
    for (int i = 0; i < d; ++i) theta[i] = p.low + (p.high - p.low) * rng.uniform();
  }
}

// x | θ ~ N(θ, 0.1 I): sbibm's "scale" 0.1 is the variance (TASKS.md NOTE).
inline constexpr double kLinearVariance = 0.1;

// log N(x; m, var) for one coordinate.
ASBI_HOST_DEVICE inline double log_normal_1d(double x, double m, double var) {
  const double d = x - m;
  return -0.5 * d * d / var - 0.5 * log(var) - 0.5 * Constants::log_2pi;
}

// SLCP: four iid draws from N(m, Σ) with m = θ1:2, stds θ3², θ4², correlation tanh θ5.
struct SlcpGaussian {
  double m0, m1, s00, s01, s11;
  ASBI_HOST_DEVICE explicit SlcpGaussian(const double* t) : m0(t[0]), m1(t[1]) {
    const double s1 = t[2] * t[2], s2 = t[3] * t[3], rho = tanh(t[4]);
    s00 = s1 * s1 + 1e-6;
    s01 = rho * s1 * s2;
    s11 = s2 * s2 + 1e-6;
  }
};

// x ~ p(x | θ) for one simulation, all randomness from `rng` (core::Rng or PhiloxRng).
template <typename Rng>
ASBI_HOST_DEVICE void simulate(TaskKernel t, const double* theta, double* x, Rng& rng) {
  switch (t) {
    case TaskKernel::gaussian_linear:
    case TaskKernel::gaussian_linear_uniform: {
      const double sd = sqrt(kLinearVariance);
      for (int j = 0; j < 10; ++j) x[j] = theta[j] + sd * rng.normal();
      return;
    }
    case TaskKernel::two_moons: {
      // a ~ U(-π/2, π/2), r ~ N(0.1, 0.01²), p = (r cos a + 0.25, r sin a), then the rotated θ
      // shifts p.
      const double a = Constants::pi * (rng.uniform() - 0.5);
      const double r = 0.1 + 0.01 * rng.normal();
      const double z1 = (theta[0] + theta[1]) / Constants::sqrt2;
      const double z2 = (theta[1] - theta[0]) / Constants::sqrt2;
      x[0] = r * cos(a) + 0.25 - abs(z1);
      x[1] = r * sin(a) + z2;
      return;
    }
    case TaskKernel::slcp: {
      const SlcpGaussian g(theta);
      const double l00 = sqrt(g.s00), l10 = g.s01 / l00;
      const double r = g.s11 - l10 * l10;
      const double l11 = sqrt(r < 0.0 ? 0.0 : r);  // std::max(r, 0.0), NaN kept
      for (int k = 0; k < 4; ++k) {
        const double a = rng.normal(), b = rng.normal();
        x[2 * k] = g.m0 + l00 * a;
        x[2 * k + 1] = g.m1 + l10 * a + l11 * b;
      }
      return;
    }
    case TaskKernel::gaussian_mixture: {
      // Each simulation picks its own component (the pre-v1.1.0 shared-index bug is not
      // reproduced), std 1 or 0.1 with probability ½ each.
      const double sd = rng.uniform() < 0.5 ? 1.0 : 0.1;
      for (int j = 0; j < 2; ++j) x[j] = theta[j] + sd * rng.normal();
      return;
    }
  }
}

// log p(x | θ), exact.
ASBI_HOST_DEVICE inline double log_likelihood(TaskKernel t, const double* theta, const double* x) {
  switch (t) {
    case TaskKernel::gaussian_linear:
    case TaskKernel::gaussian_linear_uniform: {
      double ll = 0;
      for (int j = 0; j < 10; ++j) ll += log_normal_1d(x[j], theta[j], kLinearVariance);
      return ll;
    }
    case TaskKernel::two_moons: {
      // p is (r, a) in polar form around (0.25, 0), so p(x | θ) = N(r; 0.1, 0.01²) · (1/π) / r
      // (sbibm drops the 1/(π r); see TASKS.md).
      const double z1 = (theta[0] + theta[1]) / Constants::sqrt2;
      const double z2 = (theta[1] - theta[0]) / Constants::sqrt2;
      const double u = x[0] + abs(z1) - 0.25;
      const double v = x[1] - z2;
      if (!(u > 0)) return -INFINITY;  // the angle lies in (-π/2, π/2)
      const double r = hypot(u, v);
      return log_normal_1d(r, 0.1, 0.01 * 0.01) - log(Constants::pi * r);
    }
    case TaskKernel::slcp: {
      const SlcpGaussian g(theta);
      const double det = g.s00 * g.s11 - g.s01 * g.s01;
      if (!(det > 0)) return -INFINITY;
      double ll = 0;
      for (int k = 0; k < 4; ++k) {
        const double d0 = x[2 * k] - g.m0, d1 = x[2 * k + 1] - g.m1;
        const double q = (g.s11 * d0 * d0 - 2 * g.s01 * d0 * d1 + g.s00 * d1 * d1) / det;
        ll += -0.5 * q - 0.5 * log(det) - Constants::log_2pi;
      }
      return ll;
    }
    case TaskKernel::gaussian_mixture: {
      double wide = log(0.5), narrow = log(0.5);
      for (int j = 0; j < 2; ++j) {
        wide += log_normal_1d(x[j], theta[j], 1.0);
        narrow += log_normal_1d(x[j], theta[j], 0.01);
      }
      const double m = wide < narrow ? narrow : wide;  // std::max
      if (m == -INFINITY) return -INFINITY;
      return m + log(exp(wide - m) + exp(narrow - m));
    }
  }
  return -INFINITY;
}

// ---- the scalar set tasks ---------------------------------------------------------------------

// The Philox stream of one purpose of one set (sbi::set_stream without its set_id check): "SET"
// in bits 40–63, the purpose byte in bits 32–39, set_id in bits 0–31.
ASBI_HOST_DEVICE constexpr std::uint64_t set_stream_of(std::uint64_t purpose,
                                                       std::uint64_t set_id) {
  return (std::uint64_t{0x534554} << 40) | (purpose << 32) | set_id;
}
inline constexpr std::uint64_t kSetNoisePurpose = 1;      // SetStream::noise
inline constexpr std::uint64_t kSetComponentPurpose = 2;  // SetStream::component

// gaussian_nuisance: x_i = μ + σ z_i, z_i the normal at position i of the set's noise stream.
ASBI_HOST_DEVICE inline float gaussian_nuisance_element(double mu, double sd, double z) {
  return static_cast<float>(mu + sd * z);
}

// mixture_nuisance: x_i = ±θ + z_i, +θ when the uniform u_i at position i of the component stream
// is below w.
ASBI_HOST_DEVICE inline float mixture_nuisance_element(double theta, double w, double z,
                                                       double u) {
  return static_cast<float>((u < w ? theta : -theta) + z);
}

}  // namespace asbi::sbi::kernels
