#pragma once
// The set tasks in `asbi train | sample | reference | simulate` (cmd_sets.cpp): a DeepSet
// encoder trained on pairs (or end to end), observations that are CSV files with one row per set
// element. The subcommands dispatch here when the task is a set task or the model folder holds a
// set estimator.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "nn/trainer.hpp"
#include "sbi/cli/common.hpp"
#include "sbi/set_estimator.hpp"

namespace asbi::cli {

struct RunConfig;

// True for the names sbi::make_set_task accepts.
bool is_set_task(const std::string& name);

// "N" or "MIN:MAX" → (MIN, MAX); ValueError naming `what` otherwise.
std::pair<std::int64_t, std::int64_t> parse_set_size(const std::string& text,
                                                     const std::string& what = "--set-size");

// The flags `asbi train` adds for set tasks.
struct SetTrainFlags {
  std::string set_encoder{};  // "deepset" selects the set pipeline
  bool pair_training = false;
  bool end_to_end = false;
  std::string set_size{};  // MIN:MAX (or N) deployment sizes
  std::string encoder = "mlp";
  std::vector<std::int64_t> encoder_hidden{64, 64};
  std::vector<std::int64_t> encoder_channels{8, 16};
  std::int64_t embedding_features = 16;
  std::int64_t encoder_set_size = 2;
  std::int64_t head_simulations = 0;  // 0: --simulations
  bool fine_tune_head = false;
  bool any() const;  // whether any of these flags was given
};
void add_set_train_options(CLI::App& command, SetTrainFlags& flags);

// What `asbi train` passes on for a set task.
struct SetTrainJob {
  std::string task, out;
  std::int64_t simulations = 0;
  nn::TrainOptions train{};
  std::int64_t hidden = 0;  // head network width (0: the library's)
  int transforms = 0, blocks = 0;
  core::Device device = core::Device::cpu;  // --device
};
// Trains as the flags say and writes model.asbi, config.json and training_log.csv into job.out.
struct TrainedSetModel {
  std::shared_ptr<const sbi::SetTask> task;
  std::shared_ptr<sbi::SetPosterior> posterior;
  sbi::SetTrainReport report;
  json summary;  // epochs, elements, per-stage seconds and peak bytes, files
};
TrainedSetModel train_set_model(const SetTrainJob& job, const SetTrainFlags& flags,
                                std::uint64_t seed, nn::ProgressMode progress);
int run_set_train(const SetTrainJob& job, const SetTrainFlags& flags, const CommonOptions& common);

// `asbi run` on a set task: train, sample observation k (or observation_file), C2ST against the
// task's reference posterior (exact or MCMC), corner plot; the summary `asbi run` prints.
json run_set_job(const RunConfig& config, const std::string& config_path,
                 const CommonOptions& common);

// True when DIR/model.asbi was written by a set estimator.
bool is_set_model(const std::string& dir);
int run_set_sample(const std::string& model_dir, const std::string& observation_file,
                   std::int64_t num_samples, const std::string& out, core::Device device,
                   const CommonOptions& common);
// Reference samples of a set task's target for an observed set (analytic or MCMC).
int run_set_reference(const std::string& task, const std::string& observation_file,
                      std::int64_t num_samples, const std::string& out,
                      const CommonOptions& common);
// Observation k of a set task at `set_size` elements, one row per element.
int run_set_simulate(const std::string& task, int observation_index, std::int64_t set_size,
                     const std::string& out, const CommonOptions& common);

}  // namespace asbi::cli
