#include "sbi/potential_posterior.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "autodiff/ops.hpp"
#include "autodiff/parameter.hpp"
#include "autodiff/tape.hpp"
#include "core/error.hpp"

namespace asbi::sbi {

namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();
// log_prob evaluates at most this many rows per network call, bounding the arena's growth.
constexpr std::int64_t kLogProbChunk = 8192;

// log π(θ) = t(θ, x_o) + log p(θ) for one observation. Keeps its float32 input buffers (θ of the
// rows inside the support, x_o repeated) between calls and grows them only when a larger batch
// comes, so a chain step allocates nothing beyond the arena. With the network on a device, θ is
// packed on the host and copied in with one transfer per call, x_o is copied once, and the
// network's values (and θ-gradients) come back with one transfer each.
class PotentialDensity final : public LogDensity {
 public:
  PotentialDensity(std::shared_ptr<const Prior> prior, std::shared_ptr<PotentialNetwork> network,
                   std::span<const double> x_o)
      : prior_(std::move(prior)),
        network_(std::move(network)),
        x_o_(x_o.begin(), x_o.end()),
        device_(network_->module().device()) {}

  std::int64_t dim() const override { return prior_->dim(); }
  bool has_gradient() const override { return prior_->has_log_prob_gradient(); }

  void evaluate(const Tensor& theta, std::span<double> out) const override {
    const std::int64_t m = prepare("PotentialDensity::evaluate", theta, out, nullptr);
    if (m == 0) return;
    ad::NoGrad no_grad;
    core::ArenaScope scope;
    const ad::Var t = network_->term(theta_input_.rows(0, m), x_input_.rows(0, m));
    add_term(t.value(), out);
  }

  void evaluate_with_gradient(const Tensor& theta, std::span<double> out,
                              Tensor& grad) const override {
    if (!grad.defined() || grad.dtype() != DType::f64 || grad.shape() != theta.shape())
      throw core::ShapeError(core::str("PotentialDensity::evaluate_with_gradient: expected grad "
                                       "of shape ", theta.shape(), " float64, got ",
                                       grad.defined() ? grad.shape() : core::Shape{}));
    const std::int64_t m = prepare("PotentialDensity::evaluate_with_gradient", theta, out, &grad);
    if (m == 0) return;
    // θ enters the tape as a parameter of its own: backward of Σ_i t(θ_i, x_o) leaves
    // ∂t(θ_i, x_o)/∂θ_i in row i of its gradient (rows do not interact).
    if (!theta_parameter_ || theta_parameter_->value().dim(0) != m)
      theta_parameter_ =
          std::make_unique<ad::Parameter>("theta", Tensor::empty({m, dim()}, DType::f32, device_));
    theta_parameter_->value().copy_from(theta_input_.rows(0, m));
    theta_parameter_->zero_grad();
    {
      ad::Tape tape;
      const ad::Var t = network_->term(*theta_parameter_, x_input_.rows(0, m));
      add_term(t.value(), out);
      tape.backward(ad::sum(t));
    }
    // The backward also filled the network's own parameter gradients; they are not wanted here
    // and would otherwise pile up across calls.
    network_->module().zero_grad();
    const Tensor theta_grad = theta_parameter_->grad().to(core::Device::cpu);
    const float* g = theta_grad.data<float>();
    double* dst = grad.data<double>();
    const std::int64_t d = dim();
    for (std::int64_t k = 0; k < m; ++k) {
      const std::int64_t row = inside_[static_cast<std::size_t>(k)];
      for (std::int64_t j = 0; j < d; ++j) dst[row * d + j] += static_cast<double>(g[k * d + j]);
    }
  }

 private:
  // Writes log p(θ) of every row into out (and its gradient into grad, when given), packs the
  // rows inside the support into theta_buffer_ and returns how many there are.
  std::int64_t prepare(const char* who, const Tensor& theta, std::span<double> out,
                       Tensor* grad) const {
    const std::int64_t d = dim();
    if (!theta.defined() || theta.rank() != 2 || theta.dim(1) != d)
      throw core::ShapeError(core::str(who, ": expected theta of shape [n, ", d, "], got ",
                                       theta.defined() ? theta.shape() : core::Shape{}));
    const std::int64_t n = theta.dim(0);
    if (static_cast<std::int64_t>(out.size()) != n)
      throw core::ShapeError(core::str(who, ": expected out of ", n, " values, got ",
                                       out.size()));
    const Tensor theta64 = theta.dtype() == DType::f64 ? theta : theta.to(DType::f64);
    const double* values = theta64.data<double>();
    double* grad_values = grad ? grad->data<double>() : nullptr;
    inside_.clear();
    const auto width = static_cast<std::size_t>(d);
    for (std::int64_t i = 0; i < n; ++i) {
      const std::span<const double> row(values + i * d, width);
      const double lp = prior_->log_prob_row(row);
      out[static_cast<std::size_t>(i)] = lp;
      if (grad_values) {
        const std::span<double> g(grad_values + i * d, width);
        if (lp > kNegInf)
          prior_->log_prob_gradient_row(row, g);
        else
          std::fill(g.begin(), g.end(), 0.0);
      }
      // The network is evaluated only inside the support (sbi: -inf there, no network call).
      if (lp > kNegInf) inside_.push_back(i);
    }
    const auto m = static_cast<std::int64_t>(inside_.size());
    if (m == 0) return 0;
    reserve(m);
    float* dst = theta_buffer_.data<float>();
    for (std::int64_t k = 0; k < m; ++k) {
      const double* src = values + inside_[static_cast<std::size_t>(k)] * d;
      for (std::int64_t j = 0; j < d; ++j) dst[k * d + j] = static_cast<float>(src[j]);
    }
    if (device_ != core::Device::cpu) theta_input_.rows(0, m).copy_from(theta_buffer_.rows(0, m));
    return m;
  }

  void reserve(std::int64_t rows) const {
    if (theta_buffer_.defined() && theta_buffer_.dim(0) >= rows) return;
    const std::int64_t capacity = std::max<std::int64_t>(rows, 64);
    const auto x_dim = static_cast<std::int64_t>(x_o_.size());
    theta_buffer_ = Tensor::empty({capacity, dim()}, DType::f32);
    Tensor x_host = Tensor::empty({capacity, x_dim}, DType::f32);
    float* x = x_host.data<float>();
    for (std::int64_t i = 0; i < capacity; ++i)
      for (std::int64_t j = 0; j < x_dim; ++j)
        x[i * x_dim + j] = static_cast<float>(x_o_[static_cast<std::size_t>(j)]);
    // On the CPU the inputs are the host buffers themselves.
    theta_input_ = device_ == core::Device::cpu
                       ? theta_buffer_
                       : Tensor::empty({capacity, dim()}, DType::f32, device_);
    x_input_ = x_host.to(device_);
  }

  // out[row] += t for the rows inside the support. A non-finite network value (an overflow far
  // out in the tails) counts as -inf, so that samplers reject the point instead of propagating
  // NaN.
  void add_term(const Tensor& term, std::span<double> out) const {
    const Tensor host = term.to(core::Device::cpu);
    const float* values = host.data<float>();
    for (std::size_t k = 0; k < inside_.size(); ++k) {
      const double v = values[k];
      double& o = out[static_cast<std::size_t>(inside_[k])];
      o = std::isfinite(v) ? o + v : kNegInf;
    }
  }

  std::shared_ptr<const Prior> prior_;
  std::shared_ptr<PotentialNetwork> network_;
  std::vector<double> x_o_;
  mutable std::vector<std::int64_t> inside_;
  core::Device device_;                   // the network's
  mutable Tensor theta_buffer_;           // [capacity, D] float32, host: θ packed
  mutable Tensor theta_input_, x_input_;  // [capacity, D], [capacity, X] on the network's device
  mutable std::unique_ptr<ad::Parameter> theta_parameter_;
};

}  // namespace

PotentialPosterior::PotentialPosterior(std::shared_ptr<const Prior> prior,
                                       std::shared_ptr<PotentialNetwork> network,
                                       McmcOptions mcmc, std::string method)
    : prior_(std::move(prior)),
      network_(std::move(network)),
      mcmc_(mcmc),
      method_(std::move(method)) {
  if (!prior_ || !network_)
    throw core::ValueError(core::str(method_, " posterior: expected a prior and a network"));
  if (prior_->dim() != network_->theta_dim())
    throw core::ValueError(core::str(method_, " posterior: the prior has dimension ",
                                     prior_->dim(), " but the network expects theta of ",
                                     network_->theta_dim()));
}

std::unique_ptr<LogDensity> PotentialPosterior::potential(std::span<const double> x_o) const {
  check_observation((method_ + " posterior").c_str(), x_o, x_dim());
  return std::make_unique<PotentialDensity>(prior_, network_, x_o);
}

Tensor PotentialPosterior::sample(std::int64_t n, std::span<const double> x_o,
                                  std::uint64_t seed) const {
  check_observation((method_ + " posterior: sample").c_str(), x_o, x_dim());
  if (n < 0)
    throw core::ValueError(core::str(method_, " posterior: sample: expected n >= 0, got ", n));
  const std::unique_ptr<LogDensity> target = potential(x_o);
  McmcOptions options = mcmc_;
  options.seed = seed;
  last_ = sample_mcmc(*target, Proposal::from_prior(*prior_), n, options);
  return last_.samples;
}

std::vector<double> PotentialPosterior::log_prob(const Tensor& theta,
                                                 std::span<const double> x_o) const {
  check_observation((method_ + " posterior: log_prob").c_str(), x_o, x_dim());
  if (!theta.defined() || theta.rank() != 2 || theta.dim(1) != theta_dim())
    throw core::ShapeError(core::str(method_, " posterior: log_prob: expected theta of shape [n, ",
                                     theta_dim(), "], got ",
                                     theta.defined() ? theta.shape() : core::Shape{}));
  const std::unique_ptr<LogDensity> target = potential(x_o);
  const std::int64_t n = theta.dim(0);
  std::vector<double> out(static_cast<std::size_t>(n));
  for (std::int64_t begin = 0; begin < n; begin += kLogProbChunk) {
    const std::int64_t end = std::min(n, begin + kLogProbChunk);
    target->evaluate(theta.rows(begin, end),
                     std::span<double>(out).subspan(static_cast<std::size_t>(begin),
                                                    static_cast<std::size_t>(end - begin)));
  }
  return out;
}

}  // namespace asbi::sbi
