#pragma once
// The steps `asbi train`, `asbi sample` and `asbi run` share: train a model into a folder, load
// it back, sample a posterior into a CSV.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "sbi/cli/common.hpp"
#include "sbi/cli/config.hpp"
#include "sbi/plot.hpp"
#include "sbi/posterior.hpp"
#include "sbi/task.hpp"

namespace asbi::cli {

// What a model folder holds.
inline constexpr const char* kModelFile = "model.asbi";
inline constexpr const char* kConfigFile = "config.toml";
inline constexpr const char* kTrainingLogFile = "training_log.csv";

struct TrainedModel {
  std::shared_ptr<sbi::Posterior> posterior;
  json summary;  // simulations kept/dropped, epochs, losses, seconds, files
};

// Simulates and trains as `config` says (config.rounds > 1 needs x_o), then writes model.asbi,
// config.toml and training_log.csv into `dir` (created). Progress on stderr.
TrainedModel train_model(const RunConfig& config, const sbi::Task& task,
                         std::span<const double> x_o, const std::filesystem::path& dir,
                         nn::ProgressMode progress);

// The config and posterior of a folder written by train_model, the posterior's network on
// `device` (whatever device trained it). IoError naming the folder or the file that is missing or
// corrupt.
struct LoadedModel {
  RunConfig config;
  std::unique_ptr<sbi::Task> task;
  std::shared_ptr<sbi::Posterior> posterior;
};
LoadedModel load_model(const std::filesystem::path& dir, core::Device device = core::Device::cpu);

// n posterior draws at x_o written to `out` (columns parameter_k); the summary has the rate and,
// for MCMC posteriors, R-hat and ESS per dimension.
json sample_to_csv(const sbi::Posterior& posterior, std::span<const double> x_o, std::int64_t n,
                   std::uint64_t seed, const std::filesystem::path& out, Tensor* samples = nullptr);

// The job's corner plot at `out`, recorded in summary["plot"], or summary["plot_skipped"] with
// the reason: the numbers are the job's result, so a missing gnuplot only skips the figure.
void corner_plot_into_summary(const std::vector<sbi::PlotSeries>& series,
                              const std::filesystem::path& out, const sbi::CornerOptions& options,
                              json& summary);

// The end of an `asbi run` job: the samples' path and the wall time recorded, and summary.json
// written (atomically) into the job's folder. Returns the summary.
json finish_run_summary(const std::filesystem::path& dir, const std::filesystem::path& samples,
                        double seconds, json summary);

// One line for people: "10000 samples in 0.21 s (47,000/s), max R-hat 1.003, min ESS 2,345".
std::string describe_sampling(const json& summary);

}  // namespace asbi::cli
