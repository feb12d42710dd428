#include "nn/trainer.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <utility>

#include "autodiff/ops.hpp"
#include "autodiff/tape.hpp"
#include "core/backend.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"

namespace asbi::nn {
namespace {

using core::str;
using Clock = std::chrono::steady_clock;

// Philox streams of the trainer, far from the small stream ids simulators and priors take:
// the split, then one stream per epoch for its shuffle ("TRAIN" in ASCII, then the epoch).
constexpr std::uint64_t kSplitStream = 0x5452'4149'4E00'0000ull;
std::uint64_t shuffle_stream(int epoch) {
  return kSplitStream + 1 + static_cast<std::uint64_t>(epoch);
}

// "trainer/state" and "trainer/run": small float64 vectors, every entry an exact integer or a
// double (the seed is split in 32-bit halves, which a double holds exactly).
enum StateField { kEpoch, kBestEpoch, kSinceBest, kBestLoss, kElapsed, kStateSize };
enum RunField { kExamples, kValidation, kBatchSize, kSeedLow, kSeedHigh, kRunSize };
const char* const kRunFieldNames[] = {"number of examples", "validation set size", "batch size",
                                      "seed", "seed"};

}  // namespace

const char* name(StopReason r) {
  switch (r) {
    case StopReason::converged:
      return "converged";
    case StopReason::max_epochs:
      return "max_epochs";
    case StopReason::callback:
      return "callback";
  }
  return "?";
}

Trainer::Trainer(Module& model, std::vector<Tensor> dataset, LossFn loss, TrainOptions options,
                 Tensor example_weights)
    : model_(model),
      parameters_(model.parameters()),
      dataset_(std::move(dataset)),
      loss_(std::move(loss)),
      options_(std::move(options)) {
  const TrainOptions& o = options_;
  auto require = [](bool ok, const std::string& what) {
    if (!ok) throw core::ValueError("Trainer: " + what);
  };
  require(o.batch_size >= 1, str("batch_size must be >= 1, got ", o.batch_size));
  require(o.validation_fraction > 0 && o.validation_fraction < 1,
          str("validation_fraction must be in (0, 1), got ", o.validation_fraction));
  require(o.patience >= 1, str("patience must be >= 1, got ", o.patience));
  require(o.max_epochs >= 0, str("max_epochs must be >= 0, got ", o.max_epochs));
  require(std::isfinite(o.learning_rate) && o.learning_rate > 0,
          str("learning_rate must be finite and > 0, got ", o.learning_rate));
  require(!std::isnan(o.clip_norm) && !std::isinf(o.clip_norm),
          str("clip_norm must be finite (<= 0 disables clipping), got ", o.clip_norm));
  require(o.checkpoint_every >= 1, str("checkpoint_every must be >= 1, got ", o.checkpoint_every));
  require(o.log_every >= 1, str("log_every must be >= 1, got ", o.log_every));
  require(static_cast<bool>(loss_), "no loss function");
  require(!parameters_.empty(), "the model has no parameters");

  // The dataset: tensors sharing dimension 0, copied once to the model's device (if not there
  // already), where every batch is gathered.
  require(!dataset_.empty(), "the dataset holds no tensors");
  const Device device = model_.device();
  for (std::size_t k = 0; k < dataset_.size(); ++k) {
    Tensor& t = dataset_[k];
    require(t.defined(), str("dataset tensor ", k, " is undefined"));
    if (t.rank() < 1)
      throw core::ShapeError(
          str("Trainer: dataset tensor ", k, " has rank 0; expected examples along dimension 0"));
    if (t.dim(0) != dataset_[0].dim(0))
      throw core::ShapeError(str("Trainer: dataset tensors must share dimension 0 (one row per ",
                                 "example): tensor 0 has shape ", dataset_[0].shape(), ", tensor ",
                                 k, " has shape ", t.shape()));
    t = t.to(device);
  }
  const std::int64_t n = dataset_[0].dim(0);

  if (example_weights.defined()) {
    if (example_weights.shape() != Shape{n})
      throw core::ShapeError(str("Trainer: example_weights must have shape [", n,
                                 "] (one per example), got ", example_weights.shape()));
    const std::vector<double> w = example_weights.to_vector();
    for (std::size_t i = 0; i < w.size(); ++i)
      require(std::isfinite(w[i]) && w[i] >= 0,
              str("example weight ", i, " is ", w[i], "; weights must be finite and >= 0"));
    weights_ = example_weights.to(device);
  }

  // The split (sbi's): a permutation; the last floor(fraction · N) indices validate.
  const auto n_validation =
      static_cast<std::int64_t>(o.validation_fraction * static_cast<double>(n));
  if (n_validation < 1 || n_validation >= n)
    throw core::ValueError(str("Trainer: validation_fraction ", o.validation_fraction, " of ", n,
                               " examples leaves ",
                               n_validation < 1 ? "the validation" : "the training",
                               " set empty (floor(", o.validation_fraction, " · ", n,
                               ") = ", n_validation, "); use more examples or another fraction"));
  std::vector<std::int64_t> permutation = core::Rng(o.seed, kSplitStream).permutation(n);
  train_index_.assign(permutation.begin(), permutation.end() - n_validation);
  validation_index_.assign(permutation.end() - n_validation, permutation.end());
  order_ = train_index_;

  // Batch buffers, allocated once: every step gathers into them.
  batch_ = std::min<std::int64_t>(o.batch_size, train_size());
  const std::int64_t capacity =
      std::max(batch_, std::min<std::int64_t>(o.batch_size, validation_size()));
  for (const Tensor& t : dataset_)
    buffers_.push_back(Tensor::empty(t.shape().with(0, capacity), t.dtype(), device));
  views_ = buffers_;
  validation_total_ = Tensor::empty({1}, DType::f64, device);

  optimizer_ = adam(parameters_, {.learning_rate = o.learning_rate});
  schedule_ = make_schedule(*optimizer_, o.schedule);
  copy_parameters(best_);
  const int reserve = std::min(o.max_epochs, 10000);
  train_history_.reserve(static_cast<std::size_t>(reserve));
  validation_history_.reserve(static_cast<std::size_t>(reserve));
}

Trainer::~Trainer() = default;

void Trainer::copy_parameters(std::vector<Tensor>& to) const {
  if (to.empty()) {
    for (const NamedParameter& p : parameters_) to.push_back(p.parameter->value().clone());
    return;
  }
  for (std::size_t i = 0; i < parameters_.size(); ++i)
    to[i].copy_from(parameters_[i].parameter->value());
}

void Trainer::set_parameters(const std::vector<Tensor>& from) {
  for (std::size_t i = 0; i < parameters_.size(); ++i)
    parameters_[i].parameter->value().copy_from(from[i]);
}

// Fisher–Yates from the split's order with the epoch's own stream: the order of epoch e depends
// on (seed, e) only.
void Trainer::shuffle(int epoch) {
  std::copy(train_index_.begin(), train_index_.end(), order_.begin());
  core::Rng rng(options_.seed, shuffle_stream(epoch));
  for (std::size_t i = order_.size() - 1; i > 0; --i) {
    const auto j = static_cast<std::size_t>(rng.uniform_int(static_cast<std::int64_t>(i) + 1));
    std::swap(order_[i], order_[j]);
  }
}

void Trainer::gather(std::span<const std::int64_t> index) {
  const auto rows = static_cast<std::int64_t>(index.size());
  for (std::size_t k = 0; k < dataset_.size(); ++k) {
    views_[k] = buffers_[k].rows(0, rows);
    core::backend(dataset_[k].device()).gather_rows(dataset_[k], index, views_[k]);
  }
}

// mean(w ⊙ l) for a training step, Σ w ⊙ l for validation; the weights of the rows in `index`.
Var Trainer::objective(const Var& losses, bool mean) {
  const std::int64_t rows = views_[0].dim(0);
  if (losses.shape() != Shape{rows})
    throw core::ShapeError(str("Trainer: the loss function must return per-example losses of ",
                               "shape [", rows, "] (the batch size), got ", losses.shape()));
  if (!weights_.defined()) return mean ? ad::mean(losses) : ad::sum(losses);
  // The loss's dtype is known only now; the weights follow it, once.
  if (weights_.dtype() != losses.dtype() || weights_.device() != losses.device()) {
    weights_ = weights_.to(losses.device()).to(losses.dtype());
    weight_buffer_ = Tensor();
  }
  if (!weight_buffer_.defined())
    weight_buffer_ = Tensor::empty({buffers_[0].dim(0)}, weights_.dtype(), weights_.device());
  weight_view_ = weight_buffer_.rows(0, rows);
  core::backend(weights_.device()).gather_rows(weights_, index_, weight_view_);
  Var weighted = ad::mul(losses, Var(weight_view_));
  return mean ? ad::mean(weighted) : ad::sum(weighted);
}

double Trainer::train_epoch(int epoch) {
  shuffle(epoch);
  model_.train(true);
  const std::int64_t batches = train_size() / batch_;
  double total = 0;
  for (std::int64_t b = 0; b < batches; ++b) {
    index_ = std::span<const std::int64_t>(order_).subspan(static_cast<std::size_t>(b * batch_),
                                                           static_cast<std::size_t>(batch_));
    gather(index_);
    ad::Tape tape;
    const Var loss = objective(loss_(views_), /*mean=*/true);
    const double value = loss.item();
    if (!std::isfinite(value))
      throw core::ValueError(str("Trainer: the training loss is ", value, " at epoch ", epoch + 1,
                                 ", batch ", b + 1, " of ", batches));
    tape.backward(loss);
    // Clipping and the step run while the tape's arena scope is open, so any temporaries they
    // need (off the CPU) come from the arena too.
    if (options_.clip_norm > 0) {
      const double norm = clip_grad_norm(parameters_, options_.clip_norm);
      if (!std::isfinite(norm))
        throw core::ValueError(str("Trainer: the gradient norm is ", norm, " at epoch ", epoch + 1,
                                   ", batch ", b + 1, " of ", batches));
    }
    optimizer_->step();
    optimizer_->zero_grad();
    total += value;
  }
  return total / static_cast<double>(batches);
}

// The batch sums are added up in float64 on the model's device (the same additions, in the same
// order, as a host double would see) and copied back once.
double Trainer::validate() {
  model_.train(false);
  ad::NoGrad no_grad;
  core::ArenaScope scope;  // each batch's temporaries are dropped after it
  core::Backend& k = core::backend(validation_total_.device());
  k.fill(validation_total_, 0.0);
  const std::int64_t chunk = buffers_[0].dim(0);
  for (std::int64_t begin = 0; begin < validation_size(); begin += chunk) {
    const std::int64_t end = std::min(begin + chunk, validation_size());
    index_ = std::span<const std::int64_t>(validation_index_)
                 .subspan(static_cast<std::size_t>(begin), static_cast<std::size_t>(end - begin));
    gather(index_);
    Tensor sum = objective(loss_(views_), /*mean=*/false).value();
    if (sum.dtype() != DType::f64) {
      Tensor wide = Tensor::scratch({1}, DType::f64, sum.device());
      k.cast(sum, wide);
      sum = wide;
    }
    k.axpy(1.0, sum, validation_total_);
    scope.rewind();
  }
  return validation_total_.item() / static_cast<double>(validation_size());
}

TrainResult Trainer::train() {
  const bool was_training = model_.training();
  optimizer_->zero_grad();  // gradients the caller may have left behind
  converged_ = since_best_ >= options_.patience;
  std::unique_ptr<Progress> progress = Progress::to_stderr(options_.progress, options_.log_every);
  const Clock::time_point start = Clock::now();
  const double elapsed_before = elapsed_;
  stop_reason_ = converged_ ? StopReason::converged : StopReason::max_epochs;
  int last_saved = -1;

  try {
    while (!converged_ && epoch_ < options_.max_epochs) {
      const Clock::time_point epoch_start = Clock::now();
      const double train_loss = train_epoch(epoch_);
      const double validation_loss = validate();
      ++epoch_;
      train_history_.push_back(train_loss);
      validation_history_.push_back(validation_loss);
      if (validation_loss < best_loss_) {
        best_loss_ = validation_loss;
        best_epoch_ = epoch_;
        since_best_ = 0;
        copy_parameters(best_);
      } else {
        ++since_best_;
      }
      converged_ = since_best_ >= options_.patience;
      const double learning_rate = optimizer_->learning_rate();  // the rate this epoch used
      schedule_->epoch_end(validation_loss);
      const Clock::time_point now = Clock::now();
      elapsed_ = elapsed_before + std::chrono::duration<double>(now - start).count();
      const double epoch_seconds = std::chrono::duration<double>(now - epoch_start).count();
      const EpochInfo info{
          .epoch = epoch_,
          .max_epochs = options_.max_epochs,
          .train_loss = train_loss,
          .validation_loss = validation_loss,
          .best_validation_loss = best_loss_,
          .epochs_since_improvement = since_best_,
          .patience = options_.patience,
          .learning_rate = learning_rate,
          .samples_per_second =
              epoch_seconds > 0
                  ? static_cast<double>(batch_ * (train_size() / batch_)) / epoch_seconds
                  : 0.0,
          .epoch_seconds = epoch_seconds,
          .elapsed_seconds = elapsed_,
      };
      if (progress) progress->epoch(info);
      if (!options_.checkpoint.empty() && epoch_ % options_.checkpoint_every == 0) {
        save(options_.checkpoint);
        last_saved = epoch_;
      }
      const bool go_on = !options_.on_epoch || options_.on_epoch(info);  // every epoch sees it
      if (converged_) {
        stop_reason_ = StopReason::converged;
      } else if (!go_on) {
        stop_reason_ = StopReason::callback;
        break;
      }
    }
    if (!options_.checkpoint.empty() && last_saved != epoch_) save(options_.checkpoint);
  } catch (...) {
    // Leave the model usable: the best weights rather than those of a diverged step.
    if (options_.restore_best && best_epoch_ > 0) set_parameters(best_);
    model_.train(was_training);
    throw;
  }

  if (options_.restore_best && best_epoch_ > 0) set_parameters(best_);
  model_.train(was_training);
  if (progress)
    progress->finish(str("training stopped after ", epoch_, " epochs (",
                         stop_reason_ == StopReason::converged
                             ? str("no improvement for ", since_best_, " epochs")
                         : stop_reason_ == StopReason::callback ? std::string("by the callback")
                                                                : std::string("max_epochs"),
                         "): best validation loss ", best_loss_, " at epoch ", best_epoch_, ", ",
                         Progress::format_duration(elapsed_)));
  return result();
}

TrainResult Trainer::result() const {
  return {.epochs = epoch_,
          .best_epoch = best_epoch_,
          .best_validation_loss = best_loss_,
          .stop_reason = stop_reason_,
          .train_loss = train_history_,
          .validation_loss = validation_history_};
}

// --- checkpoints -------------------------------------------------------------------------------

void Trainer::save_state(Checkpoint& checkpoint) {
  add_module(checkpoint, "trainer/current", model_);
  std::vector<std::pair<std::string, const Tensor*>> best;
  for (std::size_t i = 0; i < parameters_.size(); ++i)
    best.emplace_back(parameters_[i].name, &best_[i]);
  add_tensors(checkpoint, "model", best);
  add_optimizer(checkpoint, "optim", *optimizer_);
  add_tensors(checkpoint, "schedule", schedule_->state());

  std::vector<double> state(kStateSize);
  state[kEpoch] = epoch_;
  state[kBestEpoch] = best_epoch_;
  state[kSinceBest] = since_best_;
  state[kBestLoss] = best_loss_;
  state[kElapsed] = elapsed_;
  checkpoint.add("trainer/state", Tensor::from(state, {kStateSize}, DType::f64));

  std::vector<double> run(kRunSize);
  run[kExamples] = static_cast<double>(dataset_[0].dim(0));
  run[kValidation] = static_cast<double>(validation_size());
  run[kBatchSize] = options_.batch_size;
  run[kSeedLow] = static_cast<double>(options_.seed & 0xFFFF'FFFFu);
  run[kSeedHigh] = static_cast<double>(options_.seed >> 32);
  checkpoint.add("trainer/run", Tensor::from(run, {kRunSize}, DType::f64));

  std::vector<double> history;
  history.reserve(2 * train_history_.size());
  for (std::size_t e = 0; e < train_history_.size(); ++e) {
    history.push_back(train_history_[e]);
    history.push_back(validation_history_[e]);
  }
  checkpoint.add(
      "trainer/history",
      Tensor::from(history, {static_cast<std::int64_t>(train_history_.size()), 2}, DType::f64));
}

void Trainer::load_state(const Checkpoint& checkpoint) {
  auto vector_of = [&](const std::string& name, std::int64_t size) {
    const Tensor& t = checkpoint.at(name);
    if (t.shape() != Shape{size} || t.dtype() != DType::f64)
      throw core::IoError(str(checkpoint.source, ": tensor '", name, "': expected float64 [", size,
                              "], found ", t.dtype(), " ", t.shape()));
    return t.to_vector();
  };
  // What the run depends on must match before anything is overwritten.
  const std::vector<double> run = vector_of("trainer/run", kRunSize);
  const std::vector<double> ours = {
      static_cast<double>(dataset_[0].dim(0)), static_cast<double>(validation_size()),
      static_cast<double>(options_.batch_size), static_cast<double>(options_.seed & 0xFFFF'FFFFu),
      static_cast<double>(options_.seed >> 32)};
  for (int f = 0; f < kRunSize; ++f) {
    if (run[static_cast<std::size_t>(f)] == ours[static_cast<std::size_t>(f)]) continue;
    const bool seed = f == kSeedLow || f == kSeedHigh;
    const auto theirs = seed ? static_cast<std::uint64_t>(run[kSeedLow]) |
                                   (static_cast<std::uint64_t>(run[kSeedHigh]) << 32)
                             : static_cast<std::uint64_t>(run[static_cast<std::size_t>(f)]);
    const auto mine =
        seed ? options_.seed : static_cast<std::uint64_t>(ours[static_cast<std::size_t>(f)]);
    throw core::IoError(str(checkpoint.source,
                            ": tensor 'trainer/run': the checkpoint was written "
                            "for a ",
                            kRunFieldNames[f], " of ", theirs, ", this trainer has ", mine,
                            "; resuming exactly needs the same dataset size, validation "
                            "fraction, batch size and seed"));
  }
  const std::vector<double> state = vector_of("trainer/state", kStateSize);
  const auto epochs = static_cast<std::int64_t>(state[kEpoch]);
  const Tensor& history = checkpoint.at("trainer/history");
  if (history.shape() != Shape{epochs, 2} || history.dtype() != DType::f64)
    throw core::IoError(str(checkpoint.source, ": tensor 'trainer/history': expected float64 [",
                            epochs, ", 2] (one row per epoch trained), found ", history.dtype(),
                            " ", history.shape()));

  // Checked group by group before each copies; a checkpoint written by this class passes all.
  restore_module(checkpoint, "trainer/current", model_);
  std::vector<std::pair<std::string, Tensor*>> best;
  for (std::size_t i = 0; i < parameters_.size(); ++i)
    best.emplace_back(parameters_[i].name, &best_[i]);
  restore_tensors(checkpoint, "model", best, "module");
  restore_optimizer(checkpoint, "optim", *optimizer_);
  restore_tensors(checkpoint, "schedule", schedule_->state(), "learning-rate schedule");
  schedule_->apply_state();

  epoch_ = static_cast<int>(epochs);
  best_epoch_ = static_cast<int>(state[kBestEpoch]);
  since_best_ = static_cast<int>(state[kSinceBest]);
  best_loss_ = state[kBestLoss];
  elapsed_ = state[kElapsed];
  const std::vector<double> h = history.to_vector();
  train_history_.clear();
  validation_history_.clear();
  for (std::int64_t e = 0; e < epochs; ++e) {
    train_history_.push_back(h[static_cast<std::size_t>(2 * e)]);
    validation_history_.push_back(h[static_cast<std::size_t>(2 * e + 1)]);
  }
  converged_ = since_best_ >= options_.patience;
}

void Trainer::save(const std::filesystem::path& path) {
  Checkpoint checkpoint{.config = options_.checkpoint_config};
  if (options_.on_checkpoint) options_.on_checkpoint(checkpoint);
  save_state(checkpoint);
  save_checkpoint(path, checkpoint);
}

void Trainer::resume(const std::filesystem::path& path) { load_state(load_checkpoint(path)); }

TrainResult train(Module& model, std::vector<Tensor> dataset, LossFn loss, TrainOptions options,
                  Tensor example_weights) {
  Trainer trainer(model, std::move(dataset), std::move(loss), std::move(options),
                  std::move(example_weights));
  return trainer.train();
}

}  // namespace asbi::nn
