#pragma once
// Amortized inference from sets of any size N, at a training cost that does not grow with N
// ("It Just Takes Two: Scaling Amortized Inference to Large Sets").
//
//   auto task = std::shared_ptr<sbi::SetTask>(sbi::make_set_task("gaussian_nuisance"));
//   sbi::SetEstimator estimator(task, {.min_set_size = 1000, .max_set_size = 1000});
//   sbi::SetTrainReport report = estimator.train();      // the three stages below
//   Tensor set = sbi::set_observation(*task, 101, 1000).set;          // [1000, 1]
//   Tensor mu = estimator.posterior()->sample(10000, set, /*seed=*/2);  // [10000, 1]
//   estimator.save("model.asbi");         // sbi::load_set_posterior("model.asbi", task)
//
// Pair training (the default, SetTraining::pairs):
//   1. a mean-pool DeepSet h(S) = [(1/N) Σ φ(x_i), log N] and an NPE head q(θ | h) are trained
//      end to end on sets of N ∈ {1, …, encoder_max_set_size} elements (2: pairs). For an
//      exponential family, (1/N) Σ φ(x_i) with N is sufficient at every N, so what φ learns on
//      pairs carries over to sets of thousands;
//   2. φ is frozen; sets at the deployment sizes N ∈ [min_set_size, max_set_size] are simulated
//      and aggregated into h(S) once, streaming (forward only, memory O(chunk · width));
//   3. the head alone is retrained (or fine-tuned from stage 1) on the pairs (θ, h(S)): an
//      ordinary NPE over E + 1 features, whose cost does not depend on N.
// End-to-end (SetTraining::end_to_end, the baseline): the same DeepSet and head trained jointly
// on sets at the deployment sizes; activations, and so memory and time, grow with N.
//
// θ is the task's target parameters only (the nuisances are marginalised by training on their
// prior draws); shapes: B sets, N elements, X element width, E embedding width, T targets.
#include <cstdint>
#include <filesystem>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "nn/deepset.hpp"
#include "sbi/estimator.hpp"
#include "sbi/set_task.hpp"

namespace asbi::sbi {

enum class SetTraining { pairs, end_to_end };
const char* name(SetTraining training);
SetTraining set_training_from_name(const std::string& name);  // "pairs", "end_to_end"

enum class SetEncoderKind { mlp, conv };
const char* name(SetEncoderKind kind);
SetEncoderKind set_encoder_from_name(const std::string& name);  // "mlp", "conv"

// φ: an MLP on each element, or for field-valued elements (X = height · width, square by
// default) 3×3 stride-2 convolutions with `channels`, then a linear map to `features`.
struct SetEncoderOptions {
  SetEncoderKind kind = SetEncoderKind::mlp;
  std::vector<std::int64_t> hidden{64, 64};    // mlp
  std::vector<std::int64_t> channels{8, 16};   // conv
  std::int64_t field_height = 0;               // conv; 0: √X
  std::int64_t features = 16;                  // E
};

struct SetEstimatorOptions {
  SetTraining training = SetTraining::pairs;
  SetEncoderOptions encoder{};
  // Stage 1 (pairs): set sizes uniform in {1, …, encoder_max_set_size}; 2 is pair training, a
  // larger value the ablation "|S| ≤ K".
  std::int64_t encoder_max_set_size = 2;
  // Deployment sizes: stage 2 and 3 (pairs) or the whole training (end to end) draw N
  // log-uniformly from [min_set_size, max_set_size] (a single N when they are equal).
  std::int64_t min_set_size = 100;
  std::int64_t max_set_size = 100;
  std::int64_t encoder_simulations = 10'000;  // sets of stage 1 / of end-to-end training
  std::int64_t head_simulations = 10'000;     // sets of stages 2 and 3 (pairs)
  // true: stage 3 continues from the stage-1 head (its context statistics stay those of stage
  // 1); false: a fresh head, z-scored on the aggregated features.
  bool fine_tune_head = false;
  // The head (method npe; NSF by default) and its stage-3 training; head.seed draws the weights.
  EstimatorOptions head{};
  nn::TrainOptions encoder_train{};  // stage 1 / end-to-end training
  nn::AggregateOptions aggregate{};  // conv encoders: ~512 rows per chunk (im2col columns)
  std::uint64_t seed = 0;  // parameters, set sizes, simulations, encoder weights
  // Where the encoder and the head train and evaluate (head.device is set to it): simulations
  // stay on the host and are copied in once per training, stage 2 copies chunks in
  // (nn::DeepSet::aggregate). Not stored in checkpoints. DeviceError at construction when absent.
  core::Device device = core::Device::cpu;
};

// Wall time and peak tensor memory of each stage (the allocator's counters: the host's, plus the
// device's when SetEstimatorOptions::device is one).
struct SetStageCost {
  double seconds = 0;
  std::int64_t peak_bytes = 0;
};
struct SetTrainReport {
  nn::TrainResult encoder;  // stage 1 (end to end: the only training)
  nn::TrainResult head;     // stage 3 (empty end to end)
  SetStageCost simulate_encoder_sets, train_encoder, aggregate, train_head;
  std::int64_t encoder_elements = 0;  // elements simulated for stage 1 / end-to-end training
  std::int64_t head_elements = 0;     // elements aggregated in stage 2
  double total_seconds() const;
  std::int64_t peak_bytes() const;
};

// p(θ | S) for a set S of any size: S is aggregated (streaming) into h(S), then the head samples.
// The set sizes a head was trained on, inclusive.
struct SetSizeRange {
  std::int64_t min = 1;
  std::int64_t max = std::numeric_limits<std::int64_t>::max();
};

class SetPosterior {
 public:
  // The head was trained on sets of `trained_sizes` elements: a set outside them is a ValueError,
  // not an extrapolation (a head trained at N = 1 000 knows nothing of log N at 10 000).
  SetPosterior(std::shared_ptr<const nn::DeepSet> encoder, std::shared_ptr<Posterior> head,
               nn::AggregateOptions aggregate = {}, SetSizeRange trained_sizes = {});
  std::int64_t theta_dim() const { return head_->theta_dim(); }
  std::int64_t element_dim() const { return encoder_->element_features(); }
  // h(S) [E + 1] of a set [N, X] (any float dtype, N within trained_sizes(), finite): ValueError
  // naming the size range, or the row and the column data_j, otherwise.
  std::vector<double> features(const Tensor& set) const;
  Tensor sample(std::int64_t n, const Tensor& set, std::uint64_t seed) const;  // [n, T] float64
  std::vector<double> log_prob(const Tensor& theta, const Tensor& set) const;  // normalised
  const Posterior& head() const { return *head_; }
  const nn::DeepSet& encoder() const { return *encoder_; }
  SetSizeRange trained_sizes() const { return trained_sizes_; }

 private:
  std::shared_ptr<const nn::DeepSet> encoder_;
  std::shared_ptr<Posterior> head_;
  nn::AggregateOptions aggregate_;
  SetSizeRange trained_sizes_;
};

class SetEstimator {
 public:
  // ValueError for inconsistent options (sizes, a conv encoder on non-square elements, a head
  // that is not npe).
  SetEstimator(std::shared_ptr<const SetTask> task, SetEstimatorOptions options = {});
  ~SetEstimator();

  // Runs the stages (see the top of this file) from scratch.
  SetTrainReport train();
  // StateError before train() or a load.
  std::shared_ptr<SetPosterior> posterior() const;

  // Options, the encoder's weights and the head's checkpoint in one file, written atomically.
  void save(const std::filesystem::path& path) const;

  const SetEstimatorOptions& options() const { return options_; }
  const SetTask& task() const { return *task_; }

 private:
  friend std::shared_ptr<SetPosterior> load_set_posterior(const std::filesystem::path&,
                                                          std::shared_ptr<const SetTask>,
                                                          core::Device);
  std::unique_ptr<nn::DeepSet> make_encoder() const;

  std::shared_ptr<const SetTask> task_;
  SetEstimatorOptions options_;
  std::shared_ptr<nn::DeepSet> encoder_;
  std::unique_ptr<Estimator> head_;
};

// The posterior of a file written by SetEstimator::save, for the task it was trained on (name and
// dimensions checked). IoError naming the file and the field when missing, corrupt or mismatched.
// The encoder and the head are put on `device`, whatever device they were saved from.
std::shared_ptr<SetPosterior> load_set_posterior(const std::filesystem::path& path,
                                                 std::shared_ptr<const SetTask> task,
                                                 core::Device device = core::Device::cpu);
// The options stored in such a file; `task_name` receives the task it was trained on.
SetEstimatorOptions load_set_estimator_options(const std::filesystem::path& path,
                                               std::string* task_name = nullptr);
// True when the checkpoint file was written by SetEstimator::save (not Estimator::save).
bool is_set_estimator_file(const std::filesystem::path& path);

// Options ↔ JSON (the checkpoint's config); parsing names `source` and the field.
std::string to_json(const SetEstimatorOptions& options, const SetTask& task);
SetEstimatorOptions set_estimator_options_from_json(const std::string& text,
                                                    const std::string& source,
                                                    std::string* task_name = nullptr);

}  // namespace asbi::sbi
