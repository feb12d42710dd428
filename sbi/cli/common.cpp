#include "sbi/cli/common.hpp"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <system_error>

#include "core/backend.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "nn/module.hpp"
#include "sbi/csv.hpp"
#include "sbi/task.hpp"

namespace asbi::cli {

using core::IoError;
using core::str;

void add_common_options(CLI::App& command, CommonOptions& options) {
  command.add_option("--seed", options.seed, "seed of every random draw (same seed, same result)")
      ->capture_default_str();
  command.add_option("--threads", options.threads, "CPU threads (default: OMP_NUM_THREADS or all)")
      ->check(at_least(0));
  command.add_flag("--json", options.json, "print the result as JSON on stdout");
  command.add_option("--progress", options.progress, "progress on stderr")
      ->check(CLI::IsMember({"auto", "live", "lines", "none"}))
      ->capture_default_str();
}

CLI::Validator at_least(double min) {
  return CLI::Validator(
      [min](std::string& value) -> std::string {
        double number = 0;
        if (!CLI::detail::lexical_cast(value, number))
          return str("expected a number, got '", value, "'");
        if (!(number >= min)) return str("expected a number >= ", min, ", got ", value);
        return {};
      },
      str("NUMBER>=", min));
}

CLI::Validator greater_than(double bound) {
  return CLI::Validator(
      [bound](std::string& value) -> std::string {
        double number = 0;
        if (!CLI::detail::lexical_cast(value, number))
          return str("expected a number, got '", value, "'");
        if (!(number > bound)) return str("expected a number > ", bound, ", got ", value);
        return {};
      },
      str("NUMBER>", bound));
}

namespace {
// Why `name` is not a usable device ("" when it is).
std::string device_problem(const std::string& name) {
  if (name == "cpu") return "";
  if (name != "cuda") return str("expected cpu or cuda, got '", name, "'");
  if (core::device_available(core::Device::cuda)) return "";
  return str("cuda was requested but no CUDA device is available (",
             nn::device_unavailable_reason(core::Device::cuda), "); use --device cpu");
}
}  // namespace

void add_device_option(CLI::App& command, std::string& device) {
  command.add_option("--device", device, "where the network trains and samples: cpu or cuda")
      ->capture_default_str()
      ->check(CLI::Validator([](std::string& value) { return device_problem(value); }, "cpu|cuda"));
}

core::Device device_from_name(const std::string& name, const std::string& flag) {
  const std::string problem = device_problem(name);
  if (!problem.empty()) {
    if (name != "cpu" && name != "cuda") throw core::ValueError(str(flag, ": ", problem));
    throw core::DeviceError(str(flag, ": ", problem));
  }
  return name == "cuda" ? core::Device::cuda : core::Device::cpu;
}

void apply_threads(const CommonOptions& options) {
  if (options.threads > 0) omp_set_num_threads(options.threads);
}

nn::ProgressMode progress_mode(const CommonOptions& options) {
  if (options.progress == "live") return nn::ProgressMode::live;
  if (options.progress == "lines") return nn::ProgressMode::lines;
  if (options.progress == "none") return nn::ProgressMode::silent;
  return nn::ProgressMode::automatic;
}

std::vector<Command>& commands() {
  static std::vector<Command> all;
  return all;
}

CLI::App* register_command(CLI::App& app, const std::string& name, const std::string& description,
                           const std::string& example, std::function<int()> run) {
  CLI::App* command = app.add_subcommand(name, description);
  command->footer("Example:\n  " + example + "\n");
  commands().push_back({command, std::move(run)});
  return command;
}

std::vector<std::string> column_names(const std::string& prefix, std::int64_t n) {
  std::vector<std::string> names;
  for (std::int64_t i = 1; i <= n; ++i) names.push_back(str(prefix, "_", i));
  return names;
}

std::vector<double> read_observation_csv(const std::string& path, std::int64_t x_dim) {
  std::vector<std::string> header;
  // NaN is let through here so that the message can name the observation's column.
  const Tensor x = sbi::read_csv(path, core::DType::f64, &header, /*allow_nan=*/true);
  if (x.dim(1) != x_dim)
    throw IoError(str("observation '", path, "': expected ", x_dim, " columns (data_1 … data_",
                      x_dim, "), found ", x.dim(1)));
  if (x.dim(0) != 1)
    throw IoError(str("observation '", path, "': expected exactly one data row after the header, "
                      "found ", x.dim(0)));
  std::vector<double> values = x.to_vector();
  for (std::size_t j = 0; j < values.size(); ++j)
    if (!std::isfinite(values[j]))
      throw IoError(str("observation '", path, "' line 2 column ", j + 1, " (", header[j],
                        "): found ", values[j], "; an observation must be finite"));
  return values;
}

std::string ObservationSource::describe() const {
  if (!file.empty()) return str("observation file '", file, "'");
  return str("sbibm observation ", index);
}

std::vector<double> load_observation(const std::string& task, const ObservationSource& source,
                                     std::int64_t x_dim, const std::string& index_name) {
  if (!source.file.empty() && source.index > 0)
    throw core::ValueError("--observation and --observation-index: give one, not both");
  if (!source.file.empty()) return read_observation_csv(source.file, x_dim);
  if (source.index <= 0)
    throw core::ValueError("--observation FILE or --observation-index K is required");
  std::vector<double> x_o;
  try {
    x_o = sbi::reference_observation(task, source.index);
  } catch (const core::Error& e) {
    throw IoError(str(index_name, " ", source.index, ": ", e.what()));
  }
  if (static_cast<std::int64_t>(x_o.size()) != x_dim)
    throw IoError(str(index_name, " ", source.index, ": the reference observation has ",
                      x_o.size(), " values; task ", task, " expects ", x_dim));
  return x_o;
}

void add_observation_options(CLI::App& command, ObservationSource& source) {
  command.add_option("--observation", source.file,
                     "CSV with a header row and one row of x (sbibm's observation.csv)");
  command.add_option("--observation-index", source.index,
                     "use sbibm's reference observation K (1-10; needs ASBI_REFERENCE_DIR)")
      ->check(at_least(1));
}

Tensor read_samples_csv(const std::string& path, std::int64_t expected_columns,
                        std::vector<std::string>* header) {
  Tensor samples = sbi::read_csv(path, core::DType::f64, header);
  if (samples.dim(0) == 0)
    throw IoError(str("samples '", path, "': no data rows after the header"));
  if (expected_columns > 0 && samples.dim(1) != expected_columns)
    throw IoError(str("samples '", path, "': expected ", expected_columns, " columns, found ",
                      samples.dim(1)));
  return samples;
}

Tensor subsample_rows(const Tensor& x, std::int64_t rows, std::uint64_t seed) {
  if (x.dim(0) <= rows) return x;
  core::Rng rng(seed, /*stream=*/0);
  std::vector<std::int64_t> pick = rng.permutation(x.dim(0));
  pick.resize(static_cast<std::size_t>(rows));
  std::sort(pick.begin(), pick.end());
  const std::vector<double> values = x.to_vector();
  const auto width = static_cast<std::size_t>(x.dim(1));
  std::vector<double> out;
  out.reserve(static_cast<std::size_t>(rows) * width);
  for (std::int64_t i : pick) {
    const auto begin = values.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(i) * width);
    out.insert(out.end(), begin, begin + static_cast<std::ptrdiff_t>(width));
  }
  return Tensor::from(out, {rows, x.dim(1)}, core::DType::f64);
}

std::optional<std::filesystem::path> reference_samples_path(const std::string& task, int k,
                                                            std::string* why) {
  std::filesystem::path path;
  try {
    path = sbi::reference_observation_dir(task, k) / "reference_posterior_samples.csv";
  } catch (const core::Error& e) {
    if (why) *why = e.what();
    return std::nullopt;
  }
  if (!std::filesystem::is_regular_file(path)) {
    if (why) *why = str("no reference samples at ", path.string());
    return std::nullopt;
  }
  return path;
}

void write_text_atomic(const std::filesystem::path& path, const std::string& text) {
  const std::filesystem::path tmp = path.string() + str(".tmp.", ::getpid());
  {
    std::ofstream out(tmp, std::ios::trunc | std::ios::binary);
    if (!out) throw IoError(str("cannot create '", tmp.string(), "'"));
    out << text;
    out.flush();
    if (!out) throw IoError(str("error while writing '", tmp.string(), "'"));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    throw IoError(str("cannot rename '", tmp.string(), "' to '", path.string(), "'"));
  }
}

void ensure_directory(const std::filesystem::path& dir, const std::string& option) {
  std::error_code ec;
  if (std::filesystem::exists(dir, ec) && !std::filesystem::is_directory(dir, ec))
    throw IoError(str(option, " '", dir.string(), "': exists and is not a folder"));
  std::filesystem::create_directories(dir, ec);
  if (ec) throw IoError(str(option, " '", dir.string(), "': cannot create it (", ec.message(), ")"));
}

void print_json(const json& value) { std::cout << value.dump(2) << '\n' << std::flush; }

void log_line(const std::string& line) { std::cerr << line << '\n' << std::flush; }

namespace {
double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

Stopwatch::Stopwatch() : start_(now_seconds()) {}
double Stopwatch::seconds() const { return now_seconds() - start_; }

}  // namespace asbi::cli
