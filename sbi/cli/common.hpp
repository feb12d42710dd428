#pragma once
// What every `asbi` subcommand shares: the common flags, reading observations and sample files
// with errors that name the file, line and column, results on stdout (text or JSON), logs and
// progress on stderr.
//
// Each cmd_*.cpp registers its subcommands with register_command(): a CLI11 subcommand plus the
// function main() runs once parsing has succeeded (parsing never runs work, so a usage error
// never leaves a half-written output behind).
#include <CLI/CLI.hpp>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.hpp"
#include "nn/progress.hpp"

namespace asbi::cli {

using core::Tensor;
using nlohmann::json;

// --seed, --threads, --json, --progress.
struct CommonOptions {
  std::uint64_t seed = 1;
  int threads = 0;  // 0: OpenMP's default (OMP_NUM_THREADS or every core)
  bool json = false;
  std::string progress = "auto";  // auto | live | lines | none
};
void add_common_options(CLI::App& command, CommonOptions& options);
// A validator for numeric options: the value must be a number >= `min` (its message says which,
// where CLI11's own range check would print the type's whole range).
CLI::Validator at_least(double min);
CLI::Validator greater_than(double bound);
// --device cpu|cuda (train, sample): where the network trains and evaluates. Checked while the
// command line is parsed: cuda without a usable GPU is a usage error (exit code 2) naming the flag
// and the reason.
void add_device_option(CLI::App& command, std::string& device);
// "cpu" or "cuda" → the device; ValueError naming `flag` (a flag or a config key) for anything
// else, DeviceError naming it when the device is absent.
core::Device device_from_name(const std::string& name, const std::string& flag = "--device");
// Sets the OpenMP thread count when --threads was given.
void apply_threads(const CommonOptions& options);
nn::ProgressMode progress_mode(const CommonOptions& options);

// A subcommand and what it runs; the function returns the exit code.
struct Command {
  CLI::App* app;
  std::function<int()> run;
};
std::vector<Command>& commands();
// Adds a subcommand with `description` and an example invocation (shown as the --help footer).
CLI::App* register_command(CLI::App& app, const std::string& name, const std::string& description,
                           const std::string& example, std::function<int()> run);

void register_data_commands(CLI::App& app);   // tasks, simulate, c2st, mmd, plot
void register_train_commands(CLI::App& app);  // train, sample, reference
void register_run_command(CLI::App& app);     // run
void register_sbc_command(CLI::App& app);     // sbc

// Column names "<prefix>_1", …, "<prefix>_n" (sbibm's "parameter_k" for θ, "data_k" for x).
std::vector<std::string> column_names(const std::string& prefix, std::int64_t n);

// An observation file in sbibm's layout: a header row and exactly one data row of x_dim finite
// numbers. Errors (core::IoError) name the file, the line and the column (data_k).
std::vector<double> read_observation_csv(const std::string& path, std::int64_t x_dim);

// Where x_o comes from: a file (--observation) or observation k of the sbibm reference data
// (--observation-index). Exactly one must be given unless `fallback_index` is set.
struct ObservationSource {
  std::string file{};
  int index = 0;  // 0: none
  std::string describe() const;
};
// `index_name` names the index in errors (a flag, or a config key).
std::vector<double> load_observation(const std::string& task, const ObservationSource& source,
                                     std::int64_t x_dim,
                                     const std::string& index_name = "--observation-index");
// Adds --observation FILE and --observation-index K.
void add_observation_options(CLI::App& command, ObservationSource& source);

// A samples file: header row, at least one row; `expected_columns` (when > 0) checked.
Tensor read_samples_csv(const std::string& path, std::int64_t expected_columns = 0,
                        std::vector<std::string>* header = nullptr);

// `rows` rows of x drawn without replacement (seeded), in their original order; x itself when it
// has no more rows than that. C2ST compares equal-sized sets: its 0.5 means "indistinguishable"
// only then (with 2000 against 10 000 rows, always guessing the larger set scores 0.83).
Tensor subsample_rows(const Tensor& x, std::int64_t rows, std::uint64_t seed);

// The reference posterior samples of sbibm observation k of `task`, when the reference data is
// there (nullopt otherwise; `why` then says what is missing).
std::optional<std::filesystem::path> reference_samples_path(const std::string& task, int k,
                                                            std::string* why = nullptr);

// Writes `text` to `path` atomically (temporary file in the same folder, then rename).
void write_text_atomic(const std::filesystem::path& path, const std::string& text);
// Creates a folder (and its parents); IoError naming it when that fails or it is a file.
void ensure_directory(const std::filesystem::path& dir, const std::string& option);

// Results go to stdout; logs to stderr (one line each).
void print_json(const json& value);
void log_line(const std::string& line);

// Wall seconds since construction.
class Stopwatch {
 public:
  Stopwatch();
  double seconds() const;

 private:
  double start_;
};

}  // namespace asbi::cli
