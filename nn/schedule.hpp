#pragma once
// Learning-rate schedules: each sets its optimizer's learning rate once per epoch, with PyTorch's
// formulas (torch.optim.lr_scheduler), so a schedule written for sbi gives the same sequence here.
//
//   auto opt = nn::adam(model.parameters(), {.learning_rate = 1e-3});
//   nn::CosineAnnealingLr schedule(*opt, /*t_max=*/100);
//   for (int epoch = 0; epoch < 100; ++epoch) {
//     ... train one epoch, then measure the validation loss ...
//     schedule.epoch_end(validation_loss);  // the learning rate for the next epoch
//   }
//
// The base learning rate is the optimizer's at construction. Every schedule keeps what it depends
// on as named 1-element float64 tensors (state()); after a checkpoint was loaded into them,
// apply_state() gives the optimizer the learning rate they describe.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "nn/optim.hpp"

namespace asbi::nn {

class LrSchedule {
 public:
  explicit LrSchedule(Optimizer& optimizer);
  virtual ~LrSchedule() = default;
  LrSchedule(const LrSchedule&) = delete;
  LrSchedule& operator=(const LrSchedule&) = delete;

  // Called once after every epoch; schedules that do not watch the loss ignore it.
  void epoch_end(double validation_loss);

  double learning_rate() const { return optimizer_.learning_rate(); }
  double base_learning_rate() const { return base_lr_.data<double>()[0]; }
  int epoch() const;  // epochs ended so far

  // "epoch", "base_learning_rate", "learning_rate", and each schedule's own counters: named
  // scalars for checkpoints.
  virtual std::vector<std::pair<std::string, Tensor*>> state();
  // Sets the optimizer's learning rate from state(), after a checkpoint was loaded into it.
  void apply_state();

 protected:
  // The learning rate for the epoch after `epoch` epochs have ended (the loss of the last one
  // given); may update the schedule's own state.
  virtual double next_learning_rate(int epoch, double validation_loss) = 0;
  static double& scalar(Tensor& t) { return t.data<double>()[0]; }

  Optimizer& optimizer_;
  Tensor base_lr_;        // the optimizer's rate when the schedule was made
  Tensor epoch_;          // epochs ended
  Tensor learning_rate_;  // the rate in force, mirrored here for checkpoints
};

// lr = base: a schedule that never changes the rate.
class ConstantLr final : public LrSchedule {
 public:
  explicit ConstantLr(Optimizer& optimizer) : LrSchedule(optimizer) {}

 protected:
  double next_learning_rate(int, double) override { return base_learning_rate(); }
};

// torch.optim.lr_scheduler.StepLR: lr = base · γ^⌊epoch / step_size⌋.
class StepLr final : public LrSchedule {
 public:
  StepLr(Optimizer& optimizer, int step_size, double gamma = 0.1);

 protected:
  double next_learning_rate(int epoch, double) override;

 private:
  int step_size_;
  double gamma_;
};

// torch.optim.lr_scheduler.CosineAnnealingLR (its closed form, which its recursion equals):
// lr = η_min + (base - η_min) (1 + cos(π · epoch / T_max)) / 2, so (base + η_min) / 2 at T_max/2
// and η_min at T_max (past T_max the cosine continues, as PyTorch's does).
class CosineAnnealingLr final : public LrSchedule {
 public:
  CosineAnnealingLr(Optimizer& optimizer, int t_max, double eta_min = 0.0);

 protected:
  double next_learning_rate(int epoch, double) override;

 private:
  int t_max_;
  double eta_min_;
};

// torch.optim.lr_scheduler.ReduceLROnPlateau, mode "min", threshold_mode "rel".
struct PlateauOptions {
  double factor = 0.1;      // lr ← max(lr · factor, min_lr)
  int patience = 10;        // bad epochs tolerated; the (patience + 1)-th in a row reduces
  double threshold = 1e-4;  // an epoch is better when loss < best · (1 - threshold)
  int cooldown = 0;         // epochs after a reduction during which bad epochs are not counted
  double min_lr = 0.0;
  double eps = 1e-8;  // reductions smaller than this are skipped
};

class ReduceLrOnPlateau final : public LrSchedule {
 public:
  explicit ReduceLrOnPlateau(Optimizer& optimizer, PlateauOptions options = {});
  // Adds "best", "num_bad_epochs" and "cooldown_counter" to the base state.
  std::vector<std::pair<std::string, Tensor*>> state() override;
  double best() const { return best_.data<double>()[0]; }
  int num_bad_epochs() const { return static_cast<int>(num_bad_epochs_.data<double>()[0]); }

 protected:
  double next_learning_rate(int epoch, double validation_loss) override;

 private:
  PlateauOptions options_;
  Tensor best_;              // best loss so far (+∞ before the first epoch)
  Tensor num_bad_epochs_;    // consecutive epochs without improvement
  Tensor cooldown_counter_;  // epochs of cooldown left
};

// Which schedule, with every hyperparameter and its default in one place (for configurations).
enum class ScheduleKind { constant, step, cosine, plateau };
ScheduleKind schedule_kind_from_name(const std::string& name);  // "constant", "step", …; throws
const char* name(ScheduleKind kind);

struct ScheduleOptions {
  ScheduleKind kind = ScheduleKind::constant;
  int step_size = 30;  // step
  double gamma = 0.1;  // step
  int t_max = 100;     // cosine
  double eta_min = 0;  // cosine
  PlateauOptions plateau{};
};

std::unique_ptr<LrSchedule> make_schedule(Optimizer& optimizer, const ScheduleOptions& options);

}  // namespace asbi::nn
