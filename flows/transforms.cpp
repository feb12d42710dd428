#include "flows/transforms.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "autodiff/ops.hpp"
#include "autodiff/tape.hpp"
#include "core/backend.hpp"

namespace asbi::flows {
namespace {

using ad::Node;
using core::Device;
using core::ShapeError;
using core::str;
using core::ValueError;

void check_rows(const char* who, const Var& x, std::int64_t features) {
  if (x.shape().rank() != 2 || x.dim(1) != features)
    throw ShapeError(str(who, ": expected input of shape [B, ", features, "], got ", x.shape()));
}

// For each maximal run of consecutive source indices: (destination start, source start, length).
template <typename F>
void for_each_run(std::span<const std::int64_t> index, F&& f) {
  std::size_t j = 0;
  while (j < index.size()) {
    std::size_t len = 1;
    while (j + len < index.size() && index[j + len] == index[j] + static_cast<std::int64_t>(len))
      ++len;
    f(static_cast<std::int64_t>(j), index[j], static_cast<std::int64_t>(len));
    j += len;
  }
}

// --- the gradient of LULinear's inverse (host math, any dtype) -------------------------------

// With g_b = ∂L/∂x_b and q_b = W⁻ᵀ g_b (solve Uᵀ r = g_b, then Lᵀ q_b = r):
//   ∂L/∂y_b = q_b,  ∂L/∂W = -Σ_b q_b x_bᵀ,  ∂L/∂L = ∂L/∂W Uᵀ,  ∂L/∂U = Lᵀ ∂L/∂W.
template <typename T>
void lu_solve_backward(const T* l, const T* u, const T* x, const T* g, std::int64_t rows,
                       std::int64_t d, T* dy, T* dl, T* du) {
  const auto n = static_cast<std::size_t>(d);
  std::vector<double> r(n), q(n), dw(n * n, 0.0);
  for (std::int64_t b = 0; b < rows; ++b) {
    const T* gb = g + b * d;
    const T* xb = x + b * d;
    for (std::int64_t i = 0; i < d; ++i) {  // Uᵀ is lower triangular
      double s = gb[i];
      for (std::int64_t j = 0; j < i; ++j) s -= double(u[j * d + i]) * r[std::size_t(j)];
      r[std::size_t(i)] = s / double(u[i * d + i]);
    }
    for (std::int64_t i = d - 1; i >= 0; --i) {  // Lᵀ is unit upper triangular
      double s = r[std::size_t(i)];
      for (std::int64_t j = i + 1; j < d; ++j) s -= double(l[j * d + i]) * q[std::size_t(j)];
      q[std::size_t(i)] = s;
    }
    for (std::int64_t i = 0; i < d; ++i) {
      if (dy) dy[b * d + i] = static_cast<T>(q[std::size_t(i)]);
      for (std::int64_t j = 0; j < d; ++j)
        dw[std::size_t(i * d + j)] -= q[std::size_t(i)] * double(xb[j]);
    }
  }
  for (std::int64_t i = 0; i < d; ++i)
    for (std::int64_t j = 0; j < d; ++j) {
      double sl = 0, su = 0;
      for (std::int64_t k = 0; k < d; ++k) {
        sl += dw[std::size_t(i * d + k)] * double(u[j * d + k]);  // (∂L/∂W Uᵀ)_ij
        su += double(l[k * d + i]) * dw[std::size_t(k * d + j)];  // (Lᵀ ∂L/∂W)_ij
      }
      dl[i * d + j] = static_cast<T>(sl);
      du[i * d + j] = static_cast<T>(su);
    }
}

// Adds a host tensor into a gradient that may live on another device.
void accumulate(const Tensor& host, Tensor& grad) {
  ad::kernels(grad).axpy(1.0, host.to(grad.device()), grad);
}

// x = U⁻¹ L⁻¹ y per row, W = L U:  ∂L/∂y = W⁻ᵀ ∂L/∂x,  ∂L/∂W = -Σ_b (W⁻ᵀ ∂L/∂x_b) x_bᵀ
Var lu_solve(const Var& y, const Var& lower, const Var& upper) {
  Tensor x = Tensor::scratch(y.shape(), y.dtype(), y.device());
  ad::kernels(y).lu_solve_rows(lower.value(), upper.value(), y.value(), x);
  return ad::record(
      x,
      {.op = "lu_solve", .inputs = {y, lower, upper}, .backward = [](Node& n) {
         const std::int64_t rows = n.value.dim(0), d = n.value.dim(1);
         const core::DType dt = n.value.dtype();
         const Tensor l = n.input(1).to(Device::cpu), u = n.input(2).to(Device::cpu);
         const Tensor x = n.value.to(Device::cpu), g = n.grad.to(Device::cpu);
         Tensor dy = Tensor::scratch({rows, d}, dt, Device::cpu);
         Tensor dl = Tensor::scratch({d, d}, dt, Device::cpu);
         Tensor du = Tensor::scratch({d, d}, dt, Device::cpu);
         if (dt == core::DType::f32)
           lu_solve_backward(l.data<float>(), u.data<float>(), x.data<float>(), g.data<float>(),
                             rows, d, dy.data<float>(), dl.data<float>(), du.data<float>());
         else
           lu_solve_backward(l.data<double>(), u.data<double>(), x.data<double>(),
                             g.data<double>(), rows, d, dy.data<double>(), dl.data<double>(),
                             du.data<double>());
         if (Tensor* gy = n.input_grad(0)) accumulate(dy, *gy);
         if (Tensor* gl = n.input_grad(1)) accumulate(dl, *gl);
         if (Tensor* gu = n.input_grad(2)) accumulate(du, *gu);
       }});
}

Tensor uniform_tensor(const core::Shape& shape, double bound, core::Rng& rng, DType dtype) {
  std::vector<double> v(static_cast<std::size_t>(shape.numel()));
  for (double& x : v) x = bound * (2.0 * rng.uniform() - 1.0);
  return Tensor::from(v, shape, dtype);
}

}  // namespace

// --- helpers -------------------------------------------------------------------------------------

Var zero_log_det(const Var& x) {
  Tensor t = Tensor::scratch({x.dim(0)}, x.dtype(), x.device());
  ad::kernels(t).fill(t, 0.0);
  return Var(t);
}

// y[:, j] = x[:, index[j]]:  ∂L/∂x[:, index[j]] += ∂L/∂y[:, j]   (copied run by run)
Var gather_columns(const Var& x, std::span<const std::int64_t> index) {
  if (x.shape().rank() != 2)
    throw ShapeError(str("gather_columns: expected x of shape [B, D], got ", x.shape()));
  for (std::size_t j = 0; j < index.size(); ++j)
    if (index[j] < 0 || index[j] >= x.dim(1))
      throw ShapeError(str("gather_columns: index[", j, "] = ", index[j],
                           " is outside the columns [0, ", x.dim(1), ") of ", x.shape()));
  Tensor y = Tensor::scratch({x.dim(0), static_cast<std::int64_t>(index.size())}, x.dtype(),
                             x.device());
  for_each_run(index, [&](std::int64_t dst, std::int64_t src, std::int64_t len) {
    ad::kernels(x).copy_axis(x.value(), 1, src, y, dst, len, false);
  });
  return ad::record(y, {.op = "gather_columns", .inputs = {x}, .index = ad::keep(index),
                        .backward = [](Node& n) {
                          Tensor& gx = *n.input_grad(0);
                          for_each_run(n.index, [&](std::int64_t dst, std::int64_t src,
                                                    std::int64_t len) {
                            ad::kernels(n).copy_axis(n.grad, 1, dst, gx, src, len, true);
                          });
                        }});
}

std::vector<bool> alternating_mask(std::int64_t features, bool even) {
  if (features < 1)
    throw ValueError(str("alternating_mask: expected features >= 1, got ", features));
  std::vector<bool> mask(static_cast<std::size_t>(features));
  for (std::size_t i = 0; i < mask.size(); ++i) mask[i] = (i % 2 == 0) == even;
  return mask;
}

// --- conditioners --------------------------------------------------------------------------------

ResidualConditioner::ResidualConditioner(std::int64_t in, std::int64_t out, std::int64_t hidden,
                                         std::int64_t context, int blocks,
                                         nn::Activation activation, double dropout,
                                         core::Rng& rng, DType dtype)
    : hidden_(hidden),
      net_(&child("net", std::make_unique<nn::ResidualNet>(in, out, hidden, context, blocks,
                                                            activation, dropout, rng, dtype))) {}

Var ResidualConditioner::forward(const Var& x, const Var& context) const {
  return net_->forward(x, context);
}

MlpConditioner::MlpConditioner(std::int64_t in, std::int64_t out,
                               const std::vector<std::int64_t>& hidden, std::int64_t context,
                               core::Rng& rng, nn::Activation activation, DType dtype)
    : in_(in), context_(context) {
  if (in + context < 1)
    throw ValueError(str("MlpConditioner: expected inputs or a context, got in = ", in,
                         ", context = ", context));
  net_ = &child("net", std::make_unique<nn::Mlp>(in + context, hidden, out, rng, activation,
                                                  dtype));
}

Var MlpConditioner::forward(const Var& x, const Var& context) const {
  if (in_ > 0 && context_ > 0) return net_->forward(ad::concat({x, context}, 1));
  return net_->forward(in_ > 0 ? x : context);
}

ContextMap::ContextMap(std::int64_t out, std::int64_t hidden, std::int64_t context,
                       int hidden_layers, core::Rng& rng, DType dtype)
    : out_(out), hidden_(hidden), context_(context) {
  if (out < 1 || hidden < 1 || context < 0 || hidden_layers < 0)
    throw ValueError(str("ContextMap: expected out >= 1, hidden >= 1, context >= 0 and "
                         "hidden_layers >= 0, got ", out, ", ", hidden, ", ", context, ", ",
                         hidden_layers));
  if (context > 0) {
    std::vector<std::int64_t> widths(static_cast<std::size_t>(hidden_layers) + 1, hidden);
    net_ = &child("spline_predictor", std::make_unique<nn::Mlp>(context, widths, out, rng,
                                                                 nn::Activation::relu, dtype));
  } else {
    constant_ = &param("constant", Tensor::zeros({1, out}, dtype));
  }
}

Var ContextMap::forward(const Var&, const Var& context) const {
  if (constant_) return *constant_;
  if (!context.defined())
    throw ValueError(str("ContextMap: built for a context of ", context_, " features, got none"));
  return net_->forward(context);
}

ConditionerFactory residual_conditioner(std::int64_t hidden, std::int64_t context, int blocks,
                                        nn::Activation activation, double dropout,
                                        core::Rng& rng, DType dtype) {
  return [=, &rng](std::int64_t in, std::int64_t out) -> std::unique_ptr<Conditioner> {
    return std::make_unique<ResidualConditioner>(in, out, hidden, context, blocks, activation,
                                                 dropout, rng, dtype);
  };
}

ConditionerFactory mlp_conditioner(std::vector<std::int64_t> hidden, std::int64_t context,
                                   core::Rng& rng, nn::Activation activation, DType dtype) {
  return [=, &rng](std::int64_t in, std::int64_t out) -> std::unique_ptr<Conditioner> {
    return std::make_unique<MlpConditioner>(in, out, hidden, context, rng, activation, dtype);
  };
}

ConditionerFactory context_map(std::int64_t hidden, std::int64_t context, int hidden_layers,
                               core::Rng& rng, DType dtype) {
  return [=, &rng](std::int64_t, std::int64_t out) -> std::unique_ptr<Conditioner> {
    return std::make_unique<ContextMap>(out, hidden, context, hidden_layers, rng, dtype);
  };
}

// --- Coupling ------------------------------------------------------------------------------------

Coupling::Coupling(std::vector<bool> mask, std::int64_t multiplier, const ConditionerFactory& make)
    : mask_(std::move(mask)), multiplier_(multiplier) {
  for (std::size_t d = 0; d < mask_.size(); ++d)
    (mask_[d] ? transformed_ : identity_).push_back(static_cast<std::int64_t>(d));
  if (transformed_.empty())
    throw ValueError(str("Coupling: expected a mask with at least one transformed (true) "
                         "feature, got ", mask_.size(), " features and none transformed"));
  std::int64_t id = 0, t = static_cast<std::int64_t>(identity_.size());
  for (bool m : mask_) merge_.push_back(m ? t++ : id++);
  auto net = make(static_cast<std::int64_t>(identity_.size()),
                  static_cast<std::int64_t>(transformed_.size()) * multiplier);
  if (!net) throw ValueError("Coupling: the conditioner factory returned no network");
  conditioner_ = &child("transform_net", std::move(net));
}

// Identity features pass through; the transform features get the elementwise map whose
// parameters the conditioner reads off the identity features and the context.
Transformed Coupling::apply(const Var& input, const Var& context, bool inverse) const {
  check_rows(inverse ? "Coupling::inverse" : "Coupling::forward", input, features());
  const std::int64_t rows = input.dim(0);
  const auto n_t = static_cast<std::int64_t>(transformed_.size());
  const bool split = !identity_.empty();
  const Var id = split ? gather_columns(input, identity_) : Var();
  const Var x = split ? gather_columns(input, transformed_) : input;
  Var params = conditioner_->forward(id, context);
  if (params.shape().rank() != 2 || params.dim(1) != n_t * multiplier_ ||
      (params.dim(0) != rows && params.dim(0) != 1))
    throw ShapeError(str("Coupling: expected the conditioner to return [", rows, ", ",
                         n_t * multiplier_, "] (or one row), got ", params.shape()));
  if (params.dim(0) != rows)
    params = ad::gather_rows(params, std::vector<std::int64_t>(static_cast<std::size_t>(rows), 0));
  Transformed t = transform(x, params, inverse);
  if (!split) return t;
  return {gather_columns(ad::concat({id, t.value}, 1), merge_), t.log_det};
}

Transformed Coupling::forward(const Var& a, const Var& context) const {
  return apply(a, context, false);
}
Transformed Coupling::inverse(const Var& z, const Var& context) const {
  return apply(z, context, true);
}

AffineCoupling::AffineCoupling(std::vector<bool> mask, const ConditionerFactory& make)
    : Coupling(std::move(mask), 2, make) {}

// params = [t | u] (nflows: shift first):  s = sigmoid(u + 2) + 1e-3
//   forward z = x s + t, log|det| = Σ log s;  inverse x = (z - t) / s, log|det| = -Σ log s
Transformed AffineCoupling::transform(const Var& x, const Var& params, bool inverse) const {
  const std::int64_t n = x.dim(1);
  const Var shift = ad::slice(params, 1, 0, n);
  const Var scale = ad::shift(ad::sigmoid(ad::shift(ad::slice(params, 1, n, 2 * n), 2.0)), 1e-3);
  const Var log_det = ad::sum(ad::log(scale), 1);
  if (!inverse) return {ad::add(ad::mul(x, scale), shift), log_det};
  return {ad::div(ad::sub(x, shift), scale), ad::neg(log_det)};
}

SplineCoupling::SplineCoupling(std::vector<bool> mask, const ConditionerFactory& make,
                               const SplineOptions& spline)
    : Coupling(std::move(mask), 3 * static_cast<std::int64_t>(spline.bins) - 1, make),
      spline_(spline) {
  if (spline.bins < 2)
    throw ValueError(str("SplineCoupling: expected at least 2 bins, got ", spline.bins));
}

namespace {

// params [B, D · (3K - 1)] → widths, heights [B, D, K] (divided by √H when H > 0) and interior
// derivatives [B, D, K - 1]; then the fused spline, log|det| summed per row.
Transformed spline_transform(const Var& x, const Var& params, bool inverse,
                             const SplineOptions& spline, std::int64_t hidden) {
  const std::int64_t rows = x.dim(0), n = x.dim(1), k = spline.bins;
  const Var p = ad::reshape(params, {rows, n, 3 * k - 1});
  Var widths = ad::slice(p, 2, 0, k), heights = ad::slice(p, 2, k, 2 * k);
  const Var derivatives = ad::slice(p, 2, 2 * k, 3 * k - 1);
  if (hidden > 0) {
    const double c = 1.0 / std::sqrt(static_cast<double>(hidden));
    widths = ad::scale(widths, c);
    heights = ad::scale(heights, c);
  }
  SplineResult r = rq_spline(x, widths, heights, derivatives, spline, inverse);
  return {r.value, ad::sum(r.log_det, 1)};
}

}  // namespace

Transformed SplineCoupling::transform(const Var& x, const Var& params, bool inverse) const {
  return spline_transform(x, params, inverse, spline_, conditioner().hidden_features());
}

// --- Autoregressive ------------------------------------------------------------------------------

Autoregressive::Autoregressive(std::int64_t features, std::int64_t context,
                               std::int64_t multiplier, const MadeOptions& options,
                               core::Rng& rng)
    : made_(&child("autoregressive_net",
                   std::make_unique<Made>(features, context, multiplier, options, rng))) {}

// One MADE pass gives every feature's parameters from the features before it.
Transformed Autoregressive::forward(const Var& a, const Var& context) const {
  check_rows("Autoregressive::forward", a, features());
  return transform(a, made_->forward(a, context), false);
}

// Feature d's parameters depend on features < d only, so after pass d features 0..d are exact:
// D passes starting from zeros (nflows AutoregressiveTransform.inverse).
Transformed Autoregressive::inverse(const Var& z, const Var& context) const {
  check_rows("Autoregressive::inverse", z, features());
  Tensor start = Tensor::scratch(z.shape(), z.dtype(), z.device());
  ad::kernels(start).fill(start, 0.0);
  Var out = start;
  Transformed t;
  for (std::int64_t d = 0; d < features(); ++d) {
    t = transform(z, made_->forward(out, context), true);
    out = t.value;
  }
  return t;
}

AffineAutoregressive::AffineAutoregressive(std::int64_t features, std::int64_t context,
                                           const MadeOptions& options, core::Rng& rng)
    : Autoregressive(features, context, 2, options, rng) {}

// params [B, D, 2] = (u, t) per feature:  s = softplus(u) + 1e-3
//   forward z = s x + t, log|det| = Σ log s;  inverse x = (z - t) / s, log|det| = -Σ log s
Transformed AffineAutoregressive::transform(const Var& x, const Var& params, bool inverse) const {
  const std::int64_t rows = x.dim(0), n = x.dim(1);
  const Var p = ad::reshape(params, {rows, n, 2});
  const Var u = ad::reshape(ad::slice(p, 2, 0, 1), {rows, n});
  const Var shift = ad::reshape(ad::slice(p, 2, 1, 2), {rows, n});
  const Var scale = ad::shift(ad::softplus(u), 1e-3);
  const Var log_det = ad::sum(ad::log(scale), 1);
  if (!inverse) return {ad::add(ad::mul(x, scale), shift), log_det};
  return {ad::div(ad::sub(x, shift), scale), ad::neg(log_det)};
}

SplineAutoregressive::SplineAutoregressive(std::int64_t features, std::int64_t context,
                                           const MadeOptions& options, core::Rng& rng,
                                           const SplineOptions& spline)
    : Autoregressive(features, context, 3 * static_cast<std::int64_t>(spline.bins) - 1, options,
                     rng),
      spline_(spline) {
  if (spline.bins < 2)
    throw ValueError(str("SplineAutoregressive: expected at least 2 bins, got ", spline.bins));
}

Transformed SplineAutoregressive::transform(const Var& x, const Var& params, bool inverse) const {
  return spline_transform(x, params, inverse, spline_, 0);
}

// --- Permutation ---------------------------------------------------------------------------------

Permutation::Permutation(std::vector<std::int64_t> order) : order_(std::move(order)) {
  const auto n = static_cast<std::int64_t>(order_.size());
  inverse_order_.assign(order_.size(), -1);
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t o = order_[static_cast<std::size_t>(i)];
    if (o < 0 || o >= n || inverse_order_[static_cast<std::size_t>(o)] >= 0)
      throw ValueError(str("Permutation: expected every index 0..", n - 1,
                           " exactly once, got ", o, " at position ", i));
    inverse_order_[static_cast<std::size_t>(o)] = i;
  }
  if (n < 1) throw ValueError("Permutation: expected at least one feature, got none");
}

// z = a[:, order];  inverse a = z[:, order⁻¹];  log|det| = 0
Transformed Permutation::forward(const Var& a, const Var&) const {
  check_rows("Permutation::forward", a, features());
  return {gather_columns(a, order_), zero_log_det(a)};
}

Transformed Permutation::inverse(const Var& z, const Var&) const {
  check_rows("Permutation::inverse", z, features());
  return {gather_columns(z, inverse_order_), zero_log_det(z)};
}

namespace {
std::vector<std::int64_t> reversed(std::int64_t n) {
  std::vector<std::int64_t> order(static_cast<std::size_t>(std::max<std::int64_t>(n, 0)));
  for (std::int64_t i = 0; i < n; ++i) order[static_cast<std::size_t>(i)] = n - 1 - i;
  return order;
}
}  // namespace

ReversePermutation::ReversePermutation(std::int64_t features) : Permutation(reversed(features)) {}

RandomPermutation::RandomPermutation(std::int64_t features, core::Rng& rng)
    : Permutation(rng.permutation(features)) {}

// --- LULinear ------------------------------------------------------------------------------------

LULinear::LULinear(std::int64_t features, core::Rng& rng, bool identity_init, DType dtype,
                   double eps)
    : features_(features),
      eps_(eps),
      unconstrained_upper_diag_(param("unconstrained_upper_diag", Tensor::zeros({features},
                                                                               dtype))),
      bias_(param("bias", Tensor::zeros({features}, dtype))),
      one_zero_(Tensor::from({1.0, 0.0}, {2}, dtype)) {
  if (features < 1) throw ValueError(str("LULinear: expected features >= 1, got ", features));
  if (!(eps > 0 && eps < 1)) throw ValueError(str("LULinear: expected 0 < eps < 1, got ", eps));
  register_buffer("one_zero", one_zero_);
  const std::int64_t d = features, n = d * (d - 1) / 2;
  const double bound = 1.0 / std::sqrt(static_cast<double>(d));
  if (n > 0) {
    auto entries = [&] {
      return identity_init ? Tensor::zeros({n}, dtype) : uniform_tensor({n}, bound, rng, dtype);
    };
    lower_entries_ = &param("lower_entries", entries());
    upper_entries_ = &param("upper_entries", entries());
  }
  // softplus(c) + eps = 1 at c = log(e^{1 - eps} - 1)
  unconstrained_upper_diag_.value().copy_from(
      identity_init ? Tensor::full({d}, std::log(std::expm1(1.0 - eps)), dtype)
                    : uniform_tensor({d}, bound, rng, dtype));
  // Gather maps: L from [lower_entries (n) | 1 | 0], U from [upper_entries (n) | diag (D) | 0],
  // the triangles read row by row (numpy's tril_indices / triu_indices order).
  std::int64_t kl = 0, ku = 0;
  for (std::int64_t i = 0; i < d; ++i)
    for (std::int64_t j = 0; j < d; ++j) {
      lower_index_.push_back(i > j ? kl++ : (i == j ? n : n + 1));
      upper_index_.push_back(i < j ? ku++ : (i == j ? n + i : n + d));
    }
}

Var LULinear::lower() const {
  const Var consts = one_zero_;
  const Var source = lower_entries_ ? ad::concat({*lower_entries_, consts}, 0) : consts;
  return ad::reshape(ad::gather_rows(ad::reshape(source, {source.numel(), 1}), lower_index_),
                     {features_, features_});
}

Var LULinear::upper() const {
  const Var diag = ad::shift(ad::softplus(unconstrained_upper_diag_), eps_);
  const Var zero = one_zero_.rows(1, 2);
  const Var source = upper_entries_ ? ad::concat({*upper_entries_, diag, zero}, 0)
                                    : ad::concat({diag, zero}, 0);
  return ad::reshape(ad::gather_rows(ad::reshape(source, {source.numel(), 1}), upper_index_),
                     {features_, features_});
}

// log|det W| = log|det L| + log|det U| = Σ log(softplus(u_d) + eps)
Var LULinear::log_abs_det() const {
  return ad::sum(ad::log(ad::shift(ad::softplus(unconstrained_upper_diag_), eps_)));
}

// z = L (U a) + b
Transformed LULinear::forward(const Var& a, const Var&) const {
  check_rows("LULinear::forward", a, features_);
  const Var z = ad::linear(ad::linear(a, upper()), lower(), bias_);
  return {z, ad::add(zero_log_det(a), log_abs_det())};
}

// a = U⁻¹ L⁻¹ (z - b)
Transformed LULinear::inverse(const Var& z, const Var&) const {
  check_rows("LULinear::inverse", z, features_);
  const Var a = lu_solve(ad::sub(z, bias_), lower(), upper());
  return {a, ad::sub(zero_log_det(z), log_abs_det())};
}

// --- Standardize ---------------------------------------------------------------------------------

Standardize::Standardize(nn::Standardizer standardizer) : standardizer_(std::move(standardizer)) {
  for (auto& [name, tensor] : standardizer_.state()) register_buffer(name, *tensor);
}

// z = (a - μ) / σ, log|det| = -Σ log σ
Transformed Standardize::forward(const Var& a, const Var&) const {
  check_rows("Standardize::forward", a, features());
  return {standardizer_.apply(a), ad::shift(zero_log_det(a), standardizer_.log_abs_det())};
}

// a = σ z + μ, log|det| = Σ log σ
Transformed Standardize::inverse(const Var& z, const Var&) const {
  check_rows("Standardize::inverse", z, features());
  const Var a = ad::add(ad::mul(z, standardizer_.std()), standardizer_.mean());
  return {a, ad::shift(zero_log_det(z), -standardizer_.log_abs_det())};
}

}  // namespace asbi::flows
