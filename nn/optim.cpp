// Optimizers: SGD with momentum, Adam and AdamW, following PyTorch's update rules (the pseudo-code
// of torch.optim.SGD, Adam and AdamW) so that a run can be compared step by step with sbi's.
//
// All state (moments, step count) is allocated in the constructor; step() then only reads and
// writes it. Adam and AdamW update every parameter of a device in one fused backend call (one
// pass over θ, g and the moments per parameter on the CPU, one kernel launch on a GPU). SGD runs
// one fused loop per parameter on the CPU and a fixed sequence of backend kernels into a scratch
// buffer, allocated up front, elsewhere.
#include "nn/optim.hpp"

#include <algorithm>
#include <cmath>
#include <set>

#include "core/backend.hpp"
#include "core/eigen.hpp"

namespace asbi::nn {
namespace {

using core::Unary;

Tensor count_tensor() { return Tensor::zeros({1}, DType::f64); }
double& count_of(Tensor& t) { return t.data<double>()[0]; }

Tensor zeros_like(const Tensor& t) { return Tensor::zeros(t.shape(), t.dtype(), t.device()); }

// Calls f.template operator()<T>() with T the element type of a CPU tensor.
template <typename F>
void with_float_type(DType dtype, F&& f) {
  if (dtype == DType::f64)
    f.template operator()<double>();
  else
    f.template operator()<float>();
}

void check_finite_nonnegative(const char* who, const char* what, double value) {
  if (!(std::isfinite(value) && value >= 0))
    throw core::ValueError(core::str(who, ": ", what, " must be finite and >= 0, got ", value));
}

// g ← ∇θ (+ λθ), written into `out`: the gradient the rules below see. Kernel path only.
void gradient_with_l2(core::Backend& k, const Parameter& p, double weight_decay, Tensor& out) {
  out.copy_from(p.grad());
  if (weight_decay != 0) k.axpy(weight_decay, p.value(), out);
}

// --- SGD ---------------------------------------------------------------------------------------
// torch.optim.SGD (dampening 0):
//   g ← ∇θ + λθ
//   b ← g on the first step, μ b + g after
//   g ← g + μ b (Nesterov) or b
//   θ ← θ - γ g
class Sgd final : public Optimizer {
 public:
  Sgd(std::vector<NamedParameter> parameters, SgdOptions options)
      : Optimizer(std::move(parameters)), options_(options), step_(count_tensor()) {
    check_finite_nonnegative("sgd", "learning_rate", options.learning_rate);
    check_finite_nonnegative("sgd", "momentum", options.momentum);
    check_finite_nonnegative("sgd", "weight_decay", options.weight_decay);
    if (options.nesterov && options.momentum == 0)
      throw core::ValueError("sgd: nesterov needs momentum > 0, got momentum = 0");
    learning_rate_ = options.learning_rate;
    for (const NamedParameter& p : parameters_) {
      const Tensor& value = p.parameter->value();
      if (options.momentum != 0) momentum_.push_back(zeros_like(value));
      scratch_.push_back(value.device() == Device::cpu ? Tensor() : zeros_like(value));
    }
  }

  void step() override {
    const bool first = count_of(step_) == 0;
    count_of(step_) += 1;
    for (std::size_t i = 0; i < parameters_.size(); ++i) {
      Parameter& p = *parameters_[i].parameter;
      Tensor* buffer = momentum_.empty() ? nullptr : &momentum_[i];
      if (p.value().device() == Device::cpu)
        update_cpu(p, buffer, first);
      else
        update_kernels(p, buffer, scratch_[i], first);
    }
  }

  std::vector<std::pair<std::string, Tensor*>> state() override {
    std::vector<std::pair<std::string, Tensor*>> out{{"step", &step_}};
    for (std::size_t i = 0; i < momentum_.size(); ++i)
      out.emplace_back("momentum/" + parameters_[i].name, &momentum_[i]);
    return out;
  }

 private:
  void update_cpu(Parameter& p, Tensor* buffer, bool first) const {
    with_float_type(p.value().dtype(), [&]<typename T>() {
      T* theta = p.value().data<T>();
      const T* grad = p.grad().data<T>();
      T* b = buffer ? buffer->data<T>() : nullptr;
      const T lr = T(learning_rate_), mu = T(options_.momentum), wd = T(options_.weight_decay);
      const bool nesterov = options_.nesterov;
      const std::int64_t n = p.value().numel();
      for (std::int64_t j = 0; j < n; ++j) {
        T g = grad[j] + wd * theta[j];
        if (b) {
          b[j] = first ? g : mu * b[j] + g;
          g = nesterov ? g + mu * b[j] : b[j];
        }
        theta[j] -= lr * g;
      }
    });
  }

  void update_kernels(Parameter& p, Tensor* buffer, Tensor& g, bool first) const {
    core::Backend& k = core::backend(p.value().device());
    gradient_with_l2(k, p, options_.weight_decay, g);
    if (buffer) {
      const double mu = options_.momentum;
      if (first) {
        buffer->copy_from(g);
      } else {
        k.axpy(mu - 1, *buffer, *buffer);  // b ← μ b
        k.axpy(1, g, *buffer);             // b ← μ b + g
      }
      if (options_.nesterov)
        k.axpy(mu, *buffer, g);  // g ← g + μ b
      else
        g.copy_from(*buffer);
    }
    k.axpy(-learning_rate_, g, p.value());
  }

  SgdOptions options_;
  Tensor step_;
  std::vector<Tensor> momentum_;  // one per parameter when momentum ≠ 0
  std::vector<Tensor> scratch_;   // one per parameter off the CPU
};

// --- Adam and AdamW ----------------------------------------------------------------------------
// torch.optim.Adam / AdamW, in the form PyTorch's implementation evaluates:
//   t ← t + 1
//   g ← ∇θ + λθ                          (Adam with weight decay: an L2 penalty)
//   θ ← θ (1 - γλ)                       (AdamW: decay decoupled from the gradient)
//   m ← β₁ m + (1 - β₁) g,   v ← β₂ v + (1 - β₂) g²
//   θ ← θ - (γ / (1 - β₁ᵗ)) m / (√v / √(1 - β₂ᵗ) + ε)
// which is θ - γ m̂ / (√v̂ + ε) with the bias-corrected m̂ = m / (1 - β₁ᵗ), v̂ = v / (1 - β₂ᵗ).
// The per-element rule is the backends' fused adam_step (core::AdamStep); a step is one call per
// device the parameters live on.
class Adam final : public Optimizer {
 public:
  Adam(std::vector<NamedParameter> parameters, AdamOptions options, bool decoupled)
      : Optimizer(std::move(parameters)),
        options_(options),
        decoupled_(decoupled),
        step_(count_tensor()) {
    const char* who = decoupled ? "adamw" : "adam";
    check_finite_nonnegative(who, "learning_rate", options.learning_rate);
    check_finite_nonnegative(who, "eps", options.eps);
    check_finite_nonnegative(who, "weight_decay", options.weight_decay);
    auto check_beta = [&](const char* name, double beta) {
      if (!(beta >= 0 && beta < 1))
        throw core::ValueError(core::str(who, ": ", name, " must be in [0, 1), got ", beta));
    };
    check_beta("beta1", options.beta1);
    check_beta("beta2", options.beta2);
    learning_rate_ = options.learning_rate;
    for (std::size_t i = 0; i < parameters_.size(); ++i) {
      const Tensor& value = parameters_[i].parameter->value();
      exp_avg_.push_back(zeros_like(value));
      exp_avg_sq_.push_back(zeros_like(value));
      auto group = std::find_if(groups_.begin(), groups_.end(),
                                [&](const DeviceGroup& g) { return g.device == value.device(); });
      if (group == groups_.end())
        group = groups_.insert(groups_.end(), DeviceGroup{value.device(), {}, {}});
      group->indices.push_back(i);
    }
    for (DeviceGroup& g : groups_) g.tensors.reserve(g.indices.size());  // step() allocates nothing
  }

  void step() override {
    const double t = count_of(step_) += 1;
    const core::AdamStep c{.beta1 = options_.beta1,
                           .beta2 = options_.beta2,
                           .eps = options_.eps,
                           .step_size = learning_rate_ / (1 - std::pow(options_.beta1, t)),
                           .bias_correction2_sqrt = std::sqrt(1 - std::pow(options_.beta2, t)),
                           .l2 = decoupled_ ? 0.0 : options_.weight_decay,
                           .decay = decoupled_ ? 1 - learning_rate_ * options_.weight_decay : 1.0};
    for (DeviceGroup& g : groups_) {
      // Rebuilt every step (into reserved capacity) so that a parameter's value or gradient
      // tensor replaced between steps is the one updated.
      g.tensors.clear();
      for (std::size_t i : g.indices) {
        Parameter& p = *parameters_[i].parameter;
        g.tensors.push_back({&p.value(), &p.grad(), &exp_avg_[i], &exp_avg_sq_[i]});
      }
      core::backend(g.device).adam_step(c, g.tensors);
    }
  }

  std::vector<std::pair<std::string, Tensor*>> state() override {
    std::vector<std::pair<std::string, Tensor*>> out{{"step", &step_}};
    for (std::size_t i = 0; i < parameters_.size(); ++i) {
      out.emplace_back("exp_avg/" + parameters_[i].name, &exp_avg_[i]);
      out.emplace_back("exp_avg_sq/" + parameters_[i].name, &exp_avg_sq_[i]);
    }
    return out;
  }

 private:
  // The parameters on one device, updated by one adam_step call.
  struct DeviceGroup {
    Device device;
    std::vector<std::size_t> indices;        // into parameters_
    std::vector<core::AdamTensors> tensors;  // their tensors at the current step
  };

  AdamOptions options_;
  bool decoupled_;
  Tensor step_;
  std::vector<Tensor> exp_avg_, exp_avg_sq_;
  std::vector<DeviceGroup> groups_;
};

}  // namespace

Optimizer::Optimizer(std::vector<NamedParameter> parameters) : parameters_(std::move(parameters)) {
  if (parameters_.empty())
    throw core::ValueError("Optimizer: expected at least one parameter, got none");
  std::set<std::string> names;
  std::set<const Parameter*> seen;
  for (const NamedParameter& p : parameters_) {
    if (!p.parameter)
      throw core::ValueError(core::str("Optimizer: parameter '", p.name, "' is null"));
    if (!names.insert(p.name).second)
      throw core::ValueError(core::str("Optimizer: parameter name '", p.name,
                                       "' appears twice; state is keyed by name"));
    if (!seen.insert(p.parameter).second)
      throw core::ValueError(
          core::str("Optimizer: parameter '", p.name, "' is listed twice under different names"));
  }
}

void Optimizer::zero_grad() {
  for (const NamedParameter& p : parameters_) p.parameter->zero_grad();
}

void Optimizer::set_learning_rate(double lr) {
  check_finite_nonnegative("Optimizer::set_learning_rate", "the learning rate", lr);
  learning_rate_ = lr;
}

std::unique_ptr<Optimizer> sgd(std::vector<NamedParameter> parameters, SgdOptions options) {
  return std::make_unique<Sgd>(std::move(parameters), options);
}

std::unique_ptr<Optimizer> adam(std::vector<NamedParameter> parameters, AdamOptions options) {
  return std::make_unique<Adam>(std::move(parameters), options, /*decoupled=*/false);
}

std::unique_ptr<Optimizer> adamw(std::vector<NamedParameter> parameters, AdamOptions options) {
  return std::make_unique<Adam>(std::move(parameters), options, /*decoupled=*/true);
}

// ‖g‖ = √(Σ_p Σ_i g_pi²) over all parameters together; if ‖g‖ > max_norm every gradient is scaled
// by max_norm / (‖g‖ + 10⁻⁶) (torch.nn.utils.clip_grad_norm_, whose 10⁻⁶ guards ‖g‖ = 0).
double clip_grad_norm(const std::vector<NamedParameter>& parameters, double max_norm) {
  if (!(max_norm >= 0) || std::isinf(max_norm))
    throw core::ValueError(
        core::str("clip_grad_norm: max_norm must be finite and >= 0, got ", max_norm));
  double sum_squares = 0;
  // Off the CPU, every gradient's sum of squares is added into one float64 scalar on its device
  // and read back once: a read synchronises the host with the device, and a flow has dozens of
  // parameter tensors.
  Tensor device_total;
  for (const NamedParameter& p : parameters) {
    const Tensor& g = p.parameter->grad();
    if (g.device() == Device::cpu) {
      with_float_type(g.dtype(), [&]<typename T>() {
        // In double, as a vectorised Eigen reduction (a serial double sum does not vectorise).
        sum_squares += core::as_array<T>(g).template cast<double>().square().sum();
      });
      continue;
    }
    if (device_total.defined() && device_total.device() != g.device()) {
      sum_squares += device_total.item();
      device_total = Tensor();
    }
    if (!device_total.defined()) device_total = Tensor::zeros({1}, DType::f64, g.device());
    core::Backend& k = core::backend(g.device());
    Tensor squares = Tensor::scratch(g.shape(), g.dtype(), g.device());
    k.unary(Unary::square, {}, g, squares);
    if (g.dtype() == DType::f64) {
      k.sum_all(squares, 1.0, /*accumulate=*/true, device_total);
    } else {
      Tensor part = Tensor::scratch({1}, g.dtype(), g.device());
      Tensor wide = Tensor::scratch({1}, DType::f64, g.device());
      k.sum_all(squares, 1.0, /*accumulate=*/false, part);
      k.cast(part, wide);
      k.axpy(1.0, wide, device_total);
    }
  }
  if (device_total.defined()) sum_squares += device_total.item();
  const double norm = std::sqrt(sum_squares);
  // A non-finite norm leaves the gradients as they are (PyTorch would turn them into NaN): the
  // caller sees it in the return value and can skip the step.
  if (!std::isfinite(norm)) return norm;
  const double coef = max_norm / (norm + 1e-6);
  if (coef >= 1) return norm;
  for (const NamedParameter& p : parameters) {
    Tensor& g = p.parameter->grad();
    if (g.device() == Device::cpu) {
      with_float_type(g.dtype(), [&]<typename T>() {
        T* data = g.data<T>();
        const T scale = T(coef);
        for (std::int64_t j = 0; j < g.numel(); ++j) data[j] *= scale;
      });
    } else {
      core::backend(g.device()).axpy(coef - 1, g, g);  // g ← coef g
    }
  }
  return norm;
}

}  // namespace asbi::nn
