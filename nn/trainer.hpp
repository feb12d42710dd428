#pragma once
// Minibatch training with early stopping, the loop every amortized method runs.
//
//   // Dataset: tensors sharing dimension 0 (N examples), here θ [N, D] and x [N, X].
//   nn::Trainer trainer(model, {theta, x},
//                       [&](std::span<const core::Tensor> batch) {   // per-example losses [B]
//                         return ad::neg(estimator.log_prob(batch[0], batch[1]));
//                       });
//   nn::TrainResult result = trainer.train();   // best weights restored at the end
//
// What one run does:
// - Split: a seeded permutation of the N examples, drawn once; the last
//   floor(validation_fraction · N) indices are the validation set, the others the training set
//   (sbi's split).
// - Epoch e (from 0): the training indices are shuffled by Fisher–Yates with a Philox stream keyed
//   by (seed, e), starting from the split's order every time, so a resumed run reproduces every
//   later epoch without replaying random state. The shuffled indices are cut into
//   floor(N_train / B) full batches, B = min(batch_size, N_train); the remainder is left out for
//   this epoch (sbi's drop_last).
// - Step: the batch rows are gathered into buffers allocated once; the loss function returns
//   per-example losses l [B]; the objective is mean(w ⊙ l) with the batch's example weights w
//   (mean(l) without weights; weights are not renormalised per batch, so the objective is an
//   unbiased estimate of the weighted mean loss); backward, clip the global gradient norm,
//   Adam step.
// - Validation: Σ w ⊙ l / N_val over all validation examples, under NoGrad, in batches.
// - Schedule: after validation, the learning-rate schedule sees the validation loss and sets the
//   rate of the next epoch.
// - Early stopping: the best parameters so far are copied aside whenever the validation loss
//   improves; training stops once it has not improved for `patience` epochs (or at max_epochs, or
//   when the callback says so), and the best parameters are copied back.
//
// Resuming: a checkpoint (options.checkpoint, or save()) holds everything the run depends on:
// "trainer/current/…" the live parameters, "model/…" the best ones (what inference wants),
// "optim/…" the optimizer state, "schedule/…" the schedule's, "trainer/state" the counters,
// "trainer/history" the losses and "trainer/run" what must match to resume (dataset size, split,
// batch size, seed). resume() restores it all; training then continues exactly as if it had not
// stopped: the same seed and thread count give bit-identical weights. The dataset itself is not
// fingerprinted: resuming with other data of the same size is the caller's error.
//
// Devices: everything runs on the model's device. The dataset is copied there once; batches are
// gathered there; the host sees one scalar per training step (the loss, checked for finiteness)
// and one per epoch for validation.
//
// Defaults follow sbi's (TrainOptions); the steady state of an epoch allocates no tensor memory
// beyond the tape's arena.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "nn/checkpoint.hpp"
#include "nn/module.hpp"
#include "nn/optim.hpp"
#include "nn/progress.hpp"
#include "nn/schedule.hpp"

namespace asbi::nn {

// Per-example losses [B] for the rows of one batch, given as the batch rows of every dataset
// tensor in order.
using LossFn = std::function<Var(std::span<const Tensor> batch)>;
// Called after every epoch; return false to stop training.
using EpochCallback = std::function<bool(const EpochInfo& info)>;

struct TrainOptions {
  int batch_size = 200;              // sbi: training_batch_size
  double learning_rate = 5e-4;       // Adam; sbi: learning_rate
  double validation_fraction = 0.1;  // sbi: validation_fraction
  int patience = 20;                 // epochs without improvement; sbi: stop_after_epochs
  // sbi's max_num_epochs is 2³¹ - 1, i.e. stop only by patience. A finite cap guards against a
  // validation loss that keeps creeping down by rounding noise; early stopping normally ends a
  // run long before 2000 epochs.
  int max_epochs = 2000;
  double clip_norm = 5.0;    // global gradient L2 norm; <= 0 disables; sbi: clip_max_norm
  std::uint64_t seed = 0;    // split and shuffles
  bool restore_best = true;  // copy the best parameters back when training ends
  // The learning rate per epoch (nn/schedule.hpp); sbi keeps it constant. A plateau schedule
  // watches the validation loss.
  ScheduleOptions schedule{};

  ProgressMode progress = ProgressMode::automatic;  // on stderr
  int log_every = 10;                               // epochs per line when not on a terminal

  // When set, the full training state is written there (atomically) every `checkpoint_every`
  // epochs and when training ends, before the best parameters are restored.
  std::filesystem::path checkpoint{};
  int checkpoint_every = 1;
  std::string checkpoint_config{};                   // the checkpoint's config text
  std::function<void(Checkpoint&)> on_checkpoint{};  // adds the caller's tensors to each write

  EpochCallback on_epoch{};
};

enum class StopReason {
  converged,   // no improvement for `patience` epochs
  max_epochs,  // reached max_epochs
  callback,    // the epoch callback returned false
};
const char* name(StopReason r);

struct TrainResult {
  int epochs = 0;  // epochs trained in total, those before a resume included
  int best_epoch = 0;
  double best_validation_loss = std::numeric_limits<double>::infinity();
  StopReason stop_reason = StopReason::max_epochs;
  std::vector<double> train_loss;       // per epoch, from the first
  std::vector<double> validation_loss;  // per epoch, from the first
};

class Trainer {
 public:
  // `dataset`: tensors sharing dimension 0, on any device: each is copied once to the model's
  // device (Module::device()) unless already there. `example_weights`: optional [N], finite and
  // >= 0, multiplying each example's loss in training and validation. Throws ShapeError for a
  // ragged dataset, ValueError for options out of range or a split that leaves the training or
  // validation set empty, DeviceError for a model split across devices. The optimizer is made
  // here, on the parameters' device: move the model (Module::to) before.
  Trainer(Module& model, std::vector<Tensor> dataset, LossFn loss, TrainOptions options = {},
          Tensor example_weights = {});
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // Trains until early stopping, max_epochs or the callback; may be called again to go on
  // (from the restored best parameters when restore_best is set).
  TrainResult train();

  // The full state, added to / read from a checkpoint (see the top of this file).
  void save_state(Checkpoint& checkpoint);
  void load_state(const Checkpoint& checkpoint);
  // A checkpoint file with options.checkpoint_config, the caller's tensors (on_checkpoint) and
  // the state; resume() loads one and restores the state.
  void save(const std::filesystem::path& path);
  void resume(const std::filesystem::path& path);

  int epoch() const { return epoch_; }  // epochs done
  std::int64_t train_size() const { return static_cast<std::int64_t>(train_index_.size()); }
  std::int64_t validation_size() const {
    return static_cast<std::int64_t>(validation_index_.size());
  }
  // The split, in the order the split drew it.
  std::span<const std::int64_t> train_indices() const { return train_index_; }
  std::span<const std::int64_t> validation_indices() const { return validation_index_; }
  Optimizer& optimizer() { return *optimizer_; }
  LrSchedule& schedule() { return *schedule_; }
  TrainResult result() const;

 private:
  void shuffle(int epoch);
  void gather(std::span<const std::int64_t> index);
  Var objective(const Var& losses, bool mean);  // uses index_ for the weights
  double train_epoch(int epoch);
  double validate();
  void copy_parameters(std::vector<Tensor>& to) const;
  void set_parameters(const std::vector<Tensor>& from);

  Module& model_;
  std::vector<NamedParameter> parameters_;
  std::vector<Tensor> dataset_;
  LossFn loss_;
  TrainOptions options_;
  Tensor weights_;  // [N] or undefined
  std::unique_ptr<Optimizer> optimizer_;
  std::unique_ptr<LrSchedule> schedule_;

  std::vector<std::int64_t> train_index_, validation_index_;
  std::vector<std::int64_t> order_;  // this epoch's shuffled training indices
  std::int64_t batch_ = 0;           // training batch size: min(batch_size, N_train)
  std::vector<Tensor> buffers_;      // one per dataset tensor, [capacity, …], reused every step
  std::vector<Tensor> views_;        // the rows of buffers_ holding the current batch
  Tensor weight_buffer_, weight_view_;
  Tensor validation_total_;              // [1] float64 on the model's device
  std::span<const std::int64_t> index_;  // the example indices of the current batch
  std::vector<Tensor> best_;             // the best parameters so far

  int epoch_ = 0;
  int best_epoch_ = 0;
  int since_best_ = 0;
  double best_loss_ = std::numeric_limits<double>::infinity();
  double elapsed_ = 0;  // wall seconds of training so far, across resumes (for logs)
  bool converged_ = false;
  StopReason stop_reason_ = StopReason::max_epochs;
  std::vector<double> train_history_, validation_history_;
};

// One call: a Trainer, trained.
TrainResult train(Module& model, std::vector<Tensor> dataset, LossFn loss,
                  TrainOptions options = {}, Tensor example_weights = {});

}  // namespace asbi::nn
