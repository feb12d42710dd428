#include "nn/schedule.hpp"

#include <cmath>
#include <limits>
#include <numbers>

namespace asbi::nn {
namespace {

Tensor scalar_tensor(double value) { return Tensor::full({1}, value, DType::f64); }

}  // namespace

LrSchedule::LrSchedule(Optimizer& optimizer)
    : optimizer_(optimizer),
      base_lr_(scalar_tensor(optimizer.learning_rate())),
      epoch_(scalar_tensor(0)),
      learning_rate_(scalar_tensor(optimizer.learning_rate())) {}

int LrSchedule::epoch() const { return static_cast<int>(epoch_.data<double>()[0]); }

void LrSchedule::epoch_end(double validation_loss) {
  const int epoch = this->epoch() + 1;
  scalar(epoch_) = epoch;
  const double lr = next_learning_rate(epoch, validation_loss);
  optimizer_.set_learning_rate(lr);
  scalar(learning_rate_) = lr;
}

std::vector<std::pair<std::string, Tensor*>> LrSchedule::state() {
  return {
      {"epoch", &epoch_}, {"base_learning_rate", &base_lr_}, {"learning_rate", &learning_rate_}};
}

void LrSchedule::apply_state() { optimizer_.set_learning_rate(scalar(learning_rate_)); }

StepLr::StepLr(Optimizer& optimizer, int step_size, double gamma)
    : LrSchedule(optimizer), step_size_(step_size), gamma_(gamma) {
  if (step_size < 1)
    throw core::ValueError(core::str("StepLr: step_size must be >= 1, got ", step_size));
  if (!(gamma > 0 && std::isfinite(gamma)))
    throw core::ValueError(core::str("StepLr: gamma must be finite and > 0, got ", gamma));
}

// lr = base · γ^⌊epoch / step_size⌋
double StepLr::next_learning_rate(int epoch, double) {
  return base_learning_rate() * std::pow(gamma_, epoch / step_size_);
}

CosineAnnealingLr::CosineAnnealingLr(Optimizer& optimizer, int t_max, double eta_min)
    : LrSchedule(optimizer), t_max_(t_max), eta_min_(eta_min) {
  if (t_max < 1)
    throw core::ValueError(core::str("CosineAnnealingLr: t_max must be >= 1, got ", t_max));
  if (!(eta_min >= 0 && std::isfinite(eta_min)))
    throw core::ValueError(
        core::str("CosineAnnealingLr: eta_min must be finite and >= 0, got ", eta_min));
}

// lr = η_min + (base - η_min) (1 + cos(π epoch / T_max)) / 2
double CosineAnnealingLr::next_learning_rate(int epoch, double) {
  const double phase = std::numbers::pi * epoch / t_max_;
  return eta_min_ + (base_learning_rate() - eta_min_) * (1 + std::cos(phase)) / 2;
}

ReduceLrOnPlateau::ReduceLrOnPlateau(Optimizer& optimizer, PlateauOptions options)
    : LrSchedule(optimizer),
      options_(options),
      best_(scalar_tensor(std::numeric_limits<double>::infinity())),
      num_bad_epochs_(scalar_tensor(0)),
      cooldown_counter_(scalar_tensor(0)) {
  const auto& o = options;
  if (!(o.factor >= 0 && o.factor < 1))
    throw core::ValueError(
        core::str("ReduceLrOnPlateau: factor must be in [0, 1), got ", o.factor));
  if (o.patience < 0 || o.cooldown < 0)
    throw core::ValueError(
        core::str("ReduceLrOnPlateau: patience and cooldown must be >= 0, got ", o.patience,
                  " and ", o.cooldown));
  for (double v : {o.threshold, o.min_lr, o.eps})
    if (!(v >= 0 && std::isfinite(v)))
      throw core::ValueError(
          core::str("ReduceLrOnPlateau: threshold, min_lr and eps must be finite and >= 0, "
                    "got ", o.threshold, ", ", o.min_lr, " and ", o.eps));
}

std::vector<std::pair<std::string, Tensor*>> ReduceLrOnPlateau::state() {
  std::vector<std::pair<std::string, Tensor*>> out = LrSchedule::state();
  out.emplace_back("best", &best_);
  out.emplace_back("num_bad_epochs", &num_bad_epochs_);
  out.emplace_back("cooldown_counter", &cooldown_counter_);
  return out;
}

// PyTorch's step(metrics), mode "min", threshold_mode "rel":
//   better ⇔ loss < best (1 - threshold);  better: best ← loss, bad ← 0;  else bad ← bad + 1
//   in cooldown: cooldown ← cooldown - 1, bad ← 0
//   bad > patience: lr ← max(lr · factor, min_lr) (if that changes it by more than eps),
//                   cooldown ← cooldown epochs, bad ← 0
// A NaN loss is never better, so it counts as a bad epoch.
double ReduceLrOnPlateau::next_learning_rate(int, double validation_loss) {
  double& best = scalar(best_);
  double& bad = scalar(num_bad_epochs_);
  double& cooldown = scalar(cooldown_counter_);
  if (validation_loss < best * (1 - options_.threshold)) {
    best = validation_loss;
    bad = 0;
  } else {
    bad += 1;
  }
  if (cooldown > 0) {
    cooldown -= 1;
    bad = 0;
  }
  const double lr = optimizer_.learning_rate();
  if (bad > options_.patience) {
    cooldown = options_.cooldown;
    bad = 0;
    const double reduced = std::max(lr * options_.factor, options_.min_lr);
    if (lr - reduced > options_.eps) return reduced;
  }
  return lr;
}

ScheduleKind schedule_kind_from_name(const std::string& text) {
  for (ScheduleKind k :
       {ScheduleKind::constant, ScheduleKind::step, ScheduleKind::cosine, ScheduleKind::plateau})
    if (text == name(k)) return k;
  throw core::ValueError(core::str("unknown learning-rate schedule '", text,
                                   "'; expected constant, step, cosine or plateau"));
}

const char* name(ScheduleKind kind) {
  switch (kind) {
    case ScheduleKind::constant:
      return "constant";
    case ScheduleKind::step:
      return "step";
    case ScheduleKind::cosine:
      return "cosine";
    case ScheduleKind::plateau:
      return "plateau";
  }
  return "?";
}

std::unique_ptr<LrSchedule> make_schedule(Optimizer& optimizer, const ScheduleOptions& options) {
  switch (options.kind) {
    case ScheduleKind::constant:
      return std::make_unique<ConstantLr>(optimizer);
    case ScheduleKind::step:
      return std::make_unique<StepLr>(optimizer, options.step_size, options.gamma);
    case ScheduleKind::cosine:
      return std::make_unique<CosineAnnealingLr>(optimizer, options.t_max, options.eta_min);
    case ScheduleKind::plateau:
      return std::make_unique<ReduceLrOnPlateau>(optimizer, options.plateau);
  }
  throw core::ValueError("make_schedule: unknown schedule kind");
}

}  // namespace asbi::nn
