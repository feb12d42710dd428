#pragma once
// The device seam. Every op in autodiff/ reaches the hardware only through this interface, which
// each device implements once: CPU in core/cpu/ (Eigen + OpenMP), CUDA in cuda/. An op's forward
// and backward rules therefore read the same on every device; only these kernels differ.
//
// Conventions shared by all kernels:
// - tensors are contiguous and row-major; every tensor passed to one call has the same dtype and
//   lives on this backend's device (autodiff checks both before dispatching);
// - outputs are preallocated by the caller with the right shape;
// - backward kernels *accumulate* into gradients (dx += ...), so a variable used twice gets the
//   sum of its two contributions without extra copies;
// - "axis" reductions read a tensor as [outer, n, inner] around the reduced axis.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "core/types.hpp"

namespace asbi::core {

class Tensor;

enum class Unary : std::uint8_t {
  neg, relu, leaky_relu, elu, silu, gelu, tanh, sigmoid, softplus,
  exp, log, log1p, square, sqrt, abs, pow, clamp,
  identity,  // f(x) = x: the linear epilogue without an activation
};
// Scalar parameters of a unary function: leaky_relu slope (a), elu alpha (a), pow exponent (a),
// clamp bounds [a, b].
struct UnaryParams {
  double a = 0;
  double b = 0;
};
const char* name(Unary op);

enum class Binary : std::uint8_t { add, sub, mul, div };
const char* name(Binary op);

// The constants of a rational-quadratic spline (Durkan et al. 2019): K bins on [-B, B], identity
// outside, each bin at least min_bin_width · 2B wide and min_bin_height · 2B high, every knot
// derivative at least min_derivative. The per-element math is in core/spline_math.hpp.
struct RqSplineParams {
  int bins = 10;              // K
  double tail_bound = 3.0;    // B
  double min_bin_width = 1e-3;
  double min_bin_height = 1e-3;
  double min_derivative = 1e-3;
};

// The scalars of one Adam / AdamW step, shared by every parameter (nn/optim.cpp derives them).
// Per element, in the parameter's dtype:
//   g ← ∇θ + l2 θ
//   m ← m + (1 - β₁)(g - m),   v ← β₂ v + (1 - β₂) g²
//   θ ← decay θ - step_size · m / (√v / bias_correction2_sqrt + ε)
struct AdamStep {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double step_size = 0;              // γ / (1 - β₁ᵗ)
  double bias_correction2_sqrt = 1;  // √(1 - β₂ᵗ)
  double l2 = 0;                     // λ added to the gradient (Adam), else 0
  double decay = 1;                  // 1 - γλ (AdamW), else 1
};

// One parameter of an Adam step: its value, gradient and two moments, all of one shape.
struct AdamTensors {
  Tensor* value;
  const Tensor* grad;
  Tensor* exp_avg;     // m
  Tensor* exp_avg_sq;  // v
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;
  // Whether the hardware is present (a CUDA build on a machine without a GPU says no).
  virtual bool available() const { return true; }
  virtual std::string description() const = 0;  // e.g. "NVIDIA H100 80GB HBM3, CUDA 13.0"

  // --- memory -----------------------------------------------------------------------------
  virtual void* allocate(std::size_t bytes) = 0;
  virtual void deallocate(void* ptr, std::size_t bytes) = 0;
  // Copies bytes between this device and itself or the host.
  virtual void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device,
                          std::size_t bytes) = 0;
  virtual void synchronize() {}

  // --- elementwise ------------------------------------------------------------------------
  virtual void fill(Tensor& y, double value) = 0;
  virtual void cast(const Tensor& x, Tensor& y) = 0;  // float32 <-> float64, same shape
  virtual void axpy(double alpha, const Tensor& x, Tensor& y) = 0;  // y += alpha x, same numel
  virtual void unary(Unary op, UnaryParams p, const Tensor& x, Tensor& y) = 0;
  // dx += dy ⊙ f'(x); y = f(x) is passed because many derivatives are cheapest from it.
  virtual void unary_backward(Unary op, UnaryParams p, const Tensor& x, const Tensor& y,
                              const Tensor& dy, Tensor& dx) = 0;
  // y = a ∘ b with NumPy broadcasting: shapes align from the right, size-1 dimensions stretch.
  virtual void binary(Binary op, const Tensor& a, const Tensor& b, Tensor& y) = 0;
  // da += Σ_broadcast dy ⊙ ∂y/∂a, and likewise db; a null gradient is skipped.
  virtual void binary_backward(Binary op, const Tensor& a, const Tensor& b, const Tensor& dy,
                               Tensor* da, Tensor* db) = 0;
  // y = cond ≠ 0 ? a : b (all of y's shape); da += cond ⊙ dy, db += (1 - cond) ⊙ dy.
  virtual void where(const Tensor& cond, const Tensor& a, const Tensor& b, Tensor& y) = 0;
  virtual void where_backward(const Tensor& cond, const Tensor& dy, Tensor* da, Tensor* db) = 0;

  // --- linear algebra ---------------------------------------------------------------------
  // C = alpha op(A) op(B) + beta C for 2-D row-major matrices; op transposes when asked.
  virtual void gemm(bool trans_a, bool trans_b, double alpha, const Tensor& a, const Tensor& b,
                    double beta, Tensor& c) = 0;
  // y[r, :] += bias for every row r of y read as [rows, bias.numel()].
  virtual void add_bias(const Tensor& bias, Tensor& y) = 0;
  // x_b = U⁻¹ L⁻¹ y_b for every row b of y [B, D] (LULinear's inverse): L [D, D] unit lower
  // triangular (its diagonal is not read), U [D, D] upper; sums in double (core/lu_math.hpp).
  virtual void lu_solve_rows(const Tensor& lower, const Tensor& upper, const Tensor& y,
                             Tensor& x) = 0;

  // --- reductions -------------------------------------------------------------------------
  // y = scale Σ_i x[o, i, n] over the axis (y has the axis removed, or size 1); += if accumulate.
  virtual void sum_axis(const Tensor& x, int axis, double scale, bool accumulate, Tensor& y) = 0;
  // y[0] = scale Σ x; += if accumulate.
  virtual void sum_all(const Tensor& x, double scale, bool accumulate, Tensor& y) = 0;
  // dx[o, i, n] += scale dy[o, n] for every i along the axis: the adjoint of sum_axis.
  virtual void broadcast_axis(const Tensor& dy, int axis, double scale, Tensor& dx) = 0;

  // --- row-wise ops over the last axis ----------------------------------------------------
  virtual void logsumexp(const Tensor& x, Tensor& y) = 0;
  virtual void logsumexp_backward(const Tensor& x, const Tensor& y, const Tensor& dy,
                                  Tensor& dx) = 0;
  virtual void softmax(const Tensor& x, bool log, Tensor& y) = 0;
  virtual void softmax_backward(const Tensor& y, const Tensor& dy, bool log, Tensor& dx) = 0;
  // y = (x - mean) rstd ⊙ gamma + beta per row; mean and rstd (one per row) saved for backward.
  // gamma and beta may be undefined tensors (no affine part).
  virtual void layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps,
                          Tensor& y, Tensor& mean, Tensor& rstd) = 0;
  virtual void layer_norm_backward(const Tensor& x, const Tensor& gamma, const Tensor& mean,
                                   const Tensor& rstd, const Tensor& dy, Tensor* dx,
                                   Tensor* dgamma, Tensor* dbeta) = 0;

  // --- sets -------------------------------------------------------------------------------
  // Dense: x [B, S, H] → y [B, H], the mean over S. Ragged (lengths non-empty): x [Σ n_b, H]
  // holds the sets one after another, set b has lengths[b] ≥ 1 rows, y [B, H].
  virtual void mean_pool(const Tensor& x, std::span<const std::int64_t> lengths, Tensor& y) = 0;
  virtual void mean_pool_backward(const Tensor& dy, std::span<const std::int64_t> lengths,
                                  Tensor& dx) = 0;

  // --- copies and indexing ----------------------------------------------------------------
  // dst[o, dst_begin + i, n] (+)= src[o, src_begin + i, n] for i < len along `axis`.
  virtual void copy_axis(const Tensor& src, int axis, std::int64_t src_begin, Tensor& dst,
                         std::int64_t dst_begin, std::int64_t len, bool accumulate) = 0;
  // y[i, ...] = x[index[i], ...]  and its adjoint dx[index[i], ...] += dy[i, ...].
  virtual void gather_rows(const Tensor& x, std::span<const std::int64_t> index, Tensor& y) = 0;
  virtual void scatter_add_rows(const Tensor& dy, std::span<const std::int64_t> index,
                                Tensor& dx) = 0;

  // --- flows ------------------------------------------------------------------------------
  // The rational-quadratic spline, elementwise: x [...] (n elements); unnormalised widths and
  // heights [..., K]; unnormalised interior knot derivatives [..., K - 1]. Writes y = s(x) and
  // log_det = log s'(x) (inverse: x = s⁻¹(y) and -log s'(x)), both of x's shape.
  virtual void rq_spline(const Tensor& x, const Tensor& widths, const Tensor& heights,
                         const Tensor& derivatives, const RqSplineParams& p, bool inverse,
                         Tensor& y, Tensor& log_det) = 0;
  // dx, dwidths, dheights, dderivatives += the gradients of Σ dy ⊙ y + dlog_det ⊙ log_det, all
  // recomputed from the inputs. dy or dlog_det may be undefined (read as zero); a null gradient
  // is skipped.
  virtual void rq_spline_backward(const Tensor& x, const Tensor& widths, const Tensor& heights,
                                  const Tensor& derivatives, const RqSplineParams& p,
                                  bool inverse, const Tensor& dy, const Tensor& dlog_det,
                                  Tensor* dx, Tensor* dwidths, Tensor* dheights,
                                  Tensor* dderivatives) = 0;

  // --- fused linear layer -----------------------------------------------------------------
  // The epilogue of y = f(x Wᵀ + b) + r, run once a GEMM has written x Wᵀ into z [rows, H]:
  //   z ← z + b   (kept for the backward's f'(z)),   y = f(z) + r,
  // in one pass. bias [H] and residual (y's shape) may be undefined. y may be z itself when f is
  // the identity (whose backward does not read z).
  virtual void linear_epilogue(const Tensor& bias, Unary f, UnaryParams p, const Tensor& residual,
                               Tensor& z, Tensor& y) = 0;
  // Its backward through f and the bias, in one pass: dz = dy ⊙ f'(z) (written, not
  // accumulated) and db += Σ_rows dz, summed in an order fixed by the shapes alone. fz = f(z)
  // when the caller has it (y without a residual); undefined, it is recomputed where f' needs it.
  // A null dbias skips the sum.
  virtual void linear_epilogue_backward(Unary f, UnaryParams p, const Tensor& z, const Tensor& fz,
                                        const Tensor& dy, Tensor& dz, Tensor* dbias) = 0;

  // --- fused small MLP --------------------------------------------------------------------
  // A whole MLP of L layers in one call: widths [in, H₁, …, H_{L-1}, out] (L + 1 entries),
  //   h₀ = x [rows, in],   z_l = h_l W_lᵀ + b_l,   h_{l+1} = f(z_l) for l < L - 1,   y = z_{L-1}
  // (f after every hidden layer, none after the last). The parameters are one flat buffer,
  // layer after layer: W_l [w_{l+1}, w_l] row-major, then b_l [w_{l+1}] (fused_mlp_parameter_count
  // elements). hidden, when given, receives z_0 … z_{L-2} one after another ([rows, w_{l+1}]
  // each, rows · (w_1 + … + w_{L-1}) elements): what the backward reads.
  // These defaults run layer by layer through gemm and linear_epilogue on any backend (the CPU's
  // implementation, core/cpu/fused_mlp.cpp); CUDA overrides them with one kernel launch for
  // float32 networks no wider than fused_mlp_max_width.
  virtual void fused_mlp_forward(const Tensor& x, const Tensor& parameters,
                                 std::span<const std::int64_t> widths, Unary f, UnaryParams p,
                                 Tensor& y, Tensor* hidden);
  // Its backward from dy [rows, out]: dx += ∂L/∂x and dparameters += ∂L/∂parameters (same
  // layout as parameters); a null gradient is skipped. Sums over rows run in an order fixed by
  // the shapes alone.
  virtual void fused_mlp_backward(const Tensor& x, const Tensor& parameters,
                                  std::span<const std::int64_t> widths, Unary f, UnaryParams p,
                                  const Tensor& hidden, const Tensor& dy, Tensor* dx,
                                  Tensor* dparameters);

  // --- optimizers -------------------------------------------------------------------------
  // One Adam / AdamW step (AdamStep above) over all of an optimizer's parameters in one call:
  // on a GPU one kernel launch per 96 tensors of one dtype, on the CPU one vectorised pass each.
  virtual void adam_step(const AdamStep& step, std::span<const AdamTensors> parameters) = 0;

  // --- random numbers ---------------------------------------------------------------------
  // y = the numbers core::fill_uniform / core::fill_normal (core/rng.hpp) write for (seed,
  // stream, offset) into a span of y's dtype: element i depends only on (seed, stream,
  // offset + i), read from Philox blocks in the layout documented there ("Counters consumed").
  // Uniforms are the same bits on every device; normals agree to a few ulp (each device has its
  // own log, sin and cos).
  virtual void random_uniform(std::uint64_t seed, std::uint64_t stream, std::uint64_t offset,
                              Tensor& y) = 0;
  virtual void random_normal(std::uint64_t seed, std::uint64_t stream, std::uint64_t offset,
                             Tensor& y) = 0;
  // Inverted dropout's mask: y[i] = keep_scale when u[i] ≥ drop_probability, else 0, with u the
  // float32 uniforms random_uniform writes at `offset` whatever y's dtype (so float32 and float64
  // inputs see one mask); the comparison is made in y's dtype.
  virtual void dropout_mask(std::uint64_t seed, std::uint64_t stream, std::uint64_t offset,
                            double drop_probability, double keep_scale, Tensor& y) = 0;
};

// The widest layer CUDA's single-launch MLP kernel takes (its weights sit in shared memory).
inline constexpr std::int64_t fused_mlp_max_width = 128;
// Elements of a fused MLP's parameter buffer: Σ_l w_{l+1} (w_l + 1).
std::int64_t fused_mlp_parameter_count(std::span<const std::int64_t> widths);
// Elements of its hidden buffer per row: w_1 + … + w_{L-1}.
std::int64_t fused_mlp_hidden_width(std::span<const std::int64_t> widths);

// The backend of a device; throws DeviceError when asbi was built without it.
Backend& backend(Device device);
// Installs a device's backend (asbi::cuda does this for Device::cuda).
void register_backend(Device device, Backend* impl);
// Built in and backed by hardware: what tests check before running on a device.
bool device_available(Device device);

}  // namespace asbi::core
