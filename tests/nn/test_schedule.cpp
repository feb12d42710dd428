// Learning-rate schedules: the sequences PyTorch's schedulers give (formulas written out below),
// plateau bookkeeping (patience, threshold, cooldown, min_lr), and resumption from state().
#include <gtest/gtest.h>

#include "test_util.hpp"

#include <cmath>
#include <limits>
#include <numbers>
#include <string>
#include <vector>

#include "nn/schedule.hpp"

namespace asbi::nn {
namespace {

using asbi::test_util::expect_error_naming;

// One parameter is all an optimizer needs to hold a learning rate.
struct Fixture {
  Parameter w{"w", Tensor::zeros({1})};
  std::unique_ptr<Optimizer> optimizer;
  explicit Fixture(double lr) : optimizer(sgd({{"w", &w}}, {.learning_rate = lr})) {}
};

// The rates in force after each of the epochs, fed `losses` (or zeros).
std::vector<double> run(LrSchedule& s, int epochs, const std::vector<double>& losses = {}) {
  std::vector<double> out;
  for (int e = 0; e < epochs; ++e) {
    s.epoch_end(losses.empty() ? 0.0 : losses[static_cast<std::size_t>(e)]);
    out.push_back(s.learning_rate());
  }
  return out;
}

void expect_near(const std::vector<double>& got, const std::vector<double>& want, double tol) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i)
    EXPECT_NEAR(got[i], want[i], tol) << "after epoch " << i + 1;
}

TEST(Schedule, ConstantNeverChanges) {
  Fixture f(0.3);
  ConstantLr s(*f.optimizer);
  expect_near(run(s, 4), {0.3, 0.3, 0.3, 0.3}, 0);
  EXPECT_EQ(s.epoch(), 4);
}

TEST(Schedule, StepMultipliesByGammaEveryStepSizeEpochs) {
  Fixture f(0.1);
  StepLr s(*f.optimizer, 3, 0.5);
  EXPECT_EQ(s.learning_rate(), 0.1);
  expect_near(run(s, 7), {0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025}, 1e-15);
}

TEST(Schedule, CosineMatchesPyTorchsRecursionAndClosedForm) {
  const double base = 1e-2, eta_min = 1e-4;
  const int t_max = 10;
  Fixture f(base);
  CosineAnnealingLr s(*f.optimizer, t_max, eta_min);
  const std::vector<double> got = run(s, 25);
  // PyTorch's CosineAnnealingLR.get_lr, the recursive form, epoch by epoch.
  double lr = base;
  for (int e = 1; e <= 25; ++e) {
    const double pi = std::numbers::pi;
    if ((e - 1 - t_max) % (2 * t_max) == 0)
      lr = lr + (base - eta_min) * (1 - std::cos(pi / t_max)) / 2;
    else
      lr = (1 + std::cos(pi * e / t_max)) / (1 + std::cos(pi * (e - 1) / t_max)) * (lr - eta_min) +
           eta_min;
    EXPECT_NEAR(got[static_cast<std::size_t>(e - 1)], lr, 1e-14) << "epoch " << e;
  }
  EXPECT_NEAR(got[t_max / 2 - 1], (base + eta_min) / 2, 1e-15);  // halfway
  EXPECT_NEAR(got[t_max - 1], eta_min, 1e-15);                   // at T_max
  EXPECT_NEAR(got[2 * t_max - 1], base, 1e-15);                  // and back, as PyTorch's
}

TEST(Schedule, PlateauReducesAfterPatiencePlusOneBadEpochs) {
  Fixture f(1.0);
  ReduceLrOnPlateau s(*f.optimizer, {.factor = 0.5, .patience = 2});
  // Epoch 1 sets the best loss; epochs 2-4 are bad, the third of them (patience + 1) reduces.
  expect_near(run(s, 7, std::vector<double>(7, 1.0)), {1, 1, 1, 0.5, 0.5, 0.5, 0.25}, 0);
  EXPECT_EQ(s.best(), 1.0);
  EXPECT_EQ(s.num_bad_epochs(), 0);
}

TEST(Schedule, PlateauThresholdIsRelative) {
  Fixture small(1.0), enough(1.0), with_nan(1.0);
  ReduceLrOnPlateau a(*small.optimizer, {.factor = 0.5, .patience = 2});
  ReduceLrOnPlateau b(*enough.optimizer, {.factor = 0.5, .patience = 2});
  ReduceLrOnPlateau c(*with_nan.optimizer, {.factor = 0.5, .patience = 2});
  // Improvements by less than 1e-4 of the best do not count; by more, they do.
  expect_near(run(a, 4, {1.0, 0.99995, 0.99992, 0.99991}), {1, 1, 1, 0.5}, 0);
  expect_near(run(b, 4, {1.0, 0.9998, 0.9996, 0.9994}), {1, 1, 1, 1}, 0);
  EXPECT_EQ(b.best(), 0.9994);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  expect_near(run(c, 4, {1.0, nan, nan, nan}), {1, 1, 1, 0.5}, 0);  // NaN is never better
}

TEST(Schedule, PlateauCooldownAndMinLr) {
  Fixture f(1.0);
  ReduceLrOnPlateau s(*f.optimizer, {.factor = 0.5, .patience = 0, .cooldown = 2});
  expect_near(run(s, 8, std::vector<double>(8, 1.0)), {1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125},
              0);
  Fixture g(1.0);
  ReduceLrOnPlateau floored(*g.optimizer, {.factor = 0.1, .patience = 0, .min_lr = 0.05});
  expect_near(run(floored, 4, std::vector<double>(4, 1.0)), {1, 0.1, 0.05, 0.05}, 1e-15);
}

TEST(Schedule, StateResumesExactly) {
  const std::vector<double> losses = {3, 2, 2.5, 2.2, 2.1, 2.05, 2.3, 1.9, 2, 2, 2, 2};
  const PlateauOptions o{.factor = 0.3, .patience = 1, .cooldown = 1};
  Fixture straight(0.5), resumed(0.5), fresh(0.5);
  ReduceLrOnPlateau s(*straight.optimizer, o);
  const std::vector<double> all = run(s, 12, losses);

  ReduceLrOnPlateau first(*resumed.optimizer, o);
  run(first, 5, losses);
  // A new run: a new optimizer and schedule, their state loaded from the first (a checkpoint).
  ReduceLrOnPlateau second(*fresh.optimizer, o);
  auto from = first.state(), to = second.state();
  std::vector<std::string> names;
  for (const auto& [name, t] : to) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{"epoch", "base_learning_rate", "learning_rate", "best",
                                             "num_bad_epochs", "cooldown_counter"}));
  for (std::size_t i = 0; i < from.size(); ++i) {
    EXPECT_EQ(to[i].second->shape(), Shape({1}));
    EXPECT_EQ(to[i].second->dtype(), DType::f64);
    to[i].second->copy_from(*from[i].second);
  }
  second.apply_state();
  EXPECT_EQ(second.learning_rate(), all[4]);
  EXPECT_EQ(second.epoch(), 5);
  const std::vector<double> rest(losses.begin() + 5, losses.end());
  const std::vector<double> continued = run(second, 7, rest);
  EXPECT_EQ(continued, std::vector<double>(all.begin() + 5, all.end()));
}

TEST(Schedule, MakeScheduleAndNames) {
  Fixture f(0.2);
  auto s = make_schedule(*f.optimizer, {.kind = schedule_kind_from_name("cosine"), .t_max = 4});
  expect_near(run(*s, 2), {0.2 * (1 + std::cos(std::numbers::pi / 4)) / 2, 0.1}, 1e-15);
  for (ScheduleKind k :
       {ScheduleKind::constant, ScheduleKind::step, ScheduleKind::cosine, ScheduleKind::plateau})
    EXPECT_EQ(schedule_kind_from_name(name(k)), k);
  expect_error_naming<core::ValueError>([] { schedule_kind_from_name("linear"); },
                                        {"'linear'", "constant, step, cosine or plateau"});
}

TEST(Schedule, ErrorsNameWhatWasExpected) {
  Fixture f(0.1);
  expect_error_naming<core::ValueError>([&] { StepLr(*f.optimizer, 0); }, {"step_size", "0"});
  expect_error_naming<core::ValueError>([&] { CosineAnnealingLr(*f.optimizer, 0); },
                                        {"t_max", ">= 1"});
  expect_error_naming<core::ValueError>([&] { ReduceLrOnPlateau(*f.optimizer, {.factor = 1.0}); },
                                        {"factor", "[0, 1)"});
  expect_error_naming<core::ValueError>([&] { ReduceLrOnPlateau(*f.optimizer, {.patience = -1}); },
                                        {"patience", "-1"});
}

}  // namespace
}  // namespace asbi::nn
