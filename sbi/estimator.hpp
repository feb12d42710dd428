#pragma once
// Neural posterior, likelihood and ratio estimation: train a network once on simulations
// (θ_i, x_i), then get p(θ | x_o) for any observation.
//
//   auto task = sbi::make_task("two_moons");
//   sbi::Dataset data = sbi::simulate_dataset(task->prior(), task->simulator(), 10000, seed);
//   auto estimator = sbi::make_estimator(task->shared_prior(), task->x_dim(), {.method = npe});
//   estimator->append_simulations(data.theta, data.x);
//   estimator->train();
//   Tensor samples = estimator->posterior()->sample(10000, x_o, /*seed=*/1);
//   estimator->save("model.asbi");   // sbi::load_posterior("model.asbi", prior) gives it back
//
// Methods (defaults follow the Python package sbi):
//   npe    q(θ | x) by a conditional flow (NSF); round 0 maximises log q(θ_i | x_i), later
//          rounds use SNPE-C's atomic loss (Greenberg et al. 2019) with `num_atoms` atoms drawn
//          from the batch; samples outside a bounded prior's support are rejected (leakage).
//   nle    q(x | θ) by a conditional flow (MAF); posterior ∝ q(x_o | θ) p(θ) by MCMC.
//   nre_a  a classifier d(θ, x) between joint pairs and shuffled pairs (Hermans et al. 2020);
//          log r = logit.  nre_b: contrastive over `num_atoms` classes (Durkan et al. 2020);
//   nre_c  contrastive with an extra independent class, `nre_c_classes` and `nre_c_gamma`
//          (Miller et al. 2022). NRE posteriors ∝ r(x_o, θ) p(θ) by MCMC.
// Sequential rounds (SNPE-C, SNLE, SNRE): see train_sequential below.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "flows/flow_io.hpp"
#include "nn/trainer.hpp"
#include "sbi/mcmc.hpp"
#include "sbi/posterior.hpp"
#include "sbi/prior.hpp"
#include "sbi/simulator.hpp"

namespace asbi::sbi {

enum class Method { npe, nle, nre_a, nre_b, nre_c };
const char* name(Method method);
// "npe", "nle", "nre" (= nre_b, as sbi's NRE and sbibm's), "nre_a", "nre_b", "nre_c";
// ValueError listing the known names otherwise.
Method method_from_name(const std::string& name);

// An MLP embedding of x, trained jointly with the estimator (features = 0: none).
struct EmbeddingOptions {
  std::vector<std::int64_t> hidden{};  // widths of the hidden layers (ReLU)
  std::int64_t features = 0;           // output width
};

struct EstimatorOptions {
  Method method = Method::npe;
  std::optional<flows::FlowKind> flow{};  // npe: nsf, nle: maf when unset
  flows::NsfOptions nsf{};
  flows::MafOptions maf{};
  std::int64_t classifier_hidden = 50;  // NRE: residual net, sbi's build_resnet_classifier
  int classifier_blocks = 2;
  int num_atoms = 10;       // SNPE-C atoms; NRE-B classes
  int nre_c_classes = 5;    // NRE-C: K
  double nre_c_gamma = 1.0; // NRE-C: γ
  bool z_score_theta = true;  // standardise θ and x with the training data's statistics
  bool z_score_x = true;
  EmbeddingOptions embedding{};
  nn::TrainOptions train{};
  McmcOptions mcmc{};  // how NLE/NRE posteriors sample
  std::uint64_t seed = 0;  // initial weights (train.seed drives the split and the shuffles)
  // Where the network trains and evaluates: simulations are copied there once per train() call,
  // observations in and samples out at each posterior call. NLE/NRE chains stay on the host and
  // send the network batches of chains. A run time choice, not stored in checkpoints (a model
  // saved from the GPU loads on the CPU and the other way round). DeviceError at construction
  // when the device is absent.
  core::Device device = core::Device::cpu;
};

class Estimator {
 public:
  virtual ~Estimator() = default;
  Method method() const { return options_.method; }
  std::int64_t theta_dim() const { return prior_->dim(); }
  std::int64_t x_dim() const { return x_dim_; }

  // Adds simulations θ [n, D], x [n, X] (any float dtype; kept as float32) drawn with θ from
  // round `round`'s proposal (0: the prior). Each train() call uses every row appended so far.
  // Throws ShapeError for mismatched shapes and ValueError for non-finite rows.
  void append_simulations(const Tensor& theta, const Tensor& x, int round = 0);
  std::int64_t simulations() const;

  // Trains on all rows (continuing from the current weights when called again). The network is
  // built on the first call, with z-scoring statistics from the rows appended by then.
  virtual nn::TrainResult train() = 0;
  // Every train() call's result, in order.
  const std::vector<nn::TrainResult>& history() const { return history_; }

  // The trained posterior; it shares the network with the estimator (later training changes
  // it). StateError before the first train() or load.
  virtual std::shared_ptr<Posterior> posterior() const = 0;

  // Options (JSON, to_json below), dimensions, weights and z-scoring statistics in one checkpoint
  // file, written atomically.
  void save(const std::filesystem::path& path) const;
  // What save() writes, in memory (for models that store an estimator inside their own file).
  nn::Checkpoint checkpoint() const;
  // Builds the network and restores what add_state wrote (names, shapes, dtypes checked).
  virtual void restore_state(const nn::Checkpoint& checkpoint) = 0;

  const EstimatorOptions& options() const { return options_; }
  const Prior& prior() const { return *prior_; }
  std::shared_ptr<const Prior> shared_prior() const { return prior_; }

 protected:
  Estimator(std::shared_ptr<const Prior> prior, std::int64_t x_dim, EstimatorOptions options);
  // Adds the network's parameters and buffers to a checkpoint (save()).
  virtual void add_state(nn::Checkpoint& checkpoint) const = 0;

  // Every appended row, in order (float32), and the round each came from.
  Tensor theta_data() const;
  Tensor x_data() const;
  const std::vector<int>& row_rounds() const { return row_rounds_; }

  std::shared_ptr<const Prior> prior_;
  std::int64_t x_dim_;
  EstimatorOptions options_;
  std::vector<nn::TrainResult> history_;

 private:
  std::vector<Tensor> theta_chunks_, x_chunks_;
  std::vector<int> row_rounds_;
};

// x_dim X ≥ 1; the prior fixes D. Throws ValueError for inconsistent options.
std::unique_ptr<Estimator> make_estimator(std::shared_ptr<const Prior> prior, std::int64_t x_dim,
                                          const EstimatorOptions& options);

// The posterior of a file written by Estimator::save, for the prior it was trained with (its
// dimension is checked), with its network on `device` (whatever device it was saved from).
// IoError naming the file and the field when it is missing, corrupt or of another version;
// DeviceError when the device is absent.
std::shared_ptr<Posterior> load_posterior(const std::filesystem::path& path,
                                          std::shared_ptr<const Prior> prior,
                                          core::Device device = core::Device::cpu);
// The options stored in such a file (what `asbi sample` reports).
EstimatorOptions load_estimator_options(const std::filesystem::path& path);

// Options ↔ JSON text (the checkpoint's config). Parsing names `source` and the field.
std::string to_json(const EstimatorOptions& options, std::int64_t theta_dim, std::int64_t x_dim);
EstimatorOptions estimator_options_from_json(const std::string& text, const std::string& source,
                                             std::int64_t* theta_dim = nullptr,
                                             std::int64_t* x_dim = nullptr);

struct SequentialOptions {
  int rounds = 1;
  std::int64_t simulations_per_round = 1000;
  std::uint64_t seed = 0;           // simulations of round r use seed + r
  std::int64_t simulation_batch = 1000;
  // After each round: its index, the simulations kept and the training result.
  std::function<void(int round, std::int64_t simulations, const nn::TrainResult&)> on_round{};
};

// Round 0 draws θ from the prior; round r > 0 from the current posterior at x_o (sequential
// NPE/NLE/NRE). Non-finite simulations are dropped and counted (ValueError if a round has none).
// Returns the posterior after the last round.
std::shared_ptr<Posterior> train_sequential(Estimator& estimator, const Simulator& simulator,
                                            std::span<const double> x_o,
                                            const SequentialOptions& options);

}  // namespace asbi::sbi
