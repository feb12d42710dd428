// Set tasks in asbi train | sample | reference | simulate (see sets.hpp).
#include <algorithm>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <utility>

#include "core/error.hpp"
#include "sbi/cli/config.hpp"
#include "sbi/cli/jobs.hpp"
#include "sbi/cli/sets.hpp"
#include "sbi/csv.hpp"
#include "sbi/diagnostics.hpp"
#include "sbi/plot.hpp"
#include "sbi/set_estimator.hpp"
#include "sbi/set_task.hpp"

namespace asbi::cli {

using core::IoError;
using core::str;
using core::ValueError;

namespace {

constexpr const char* kSetConfigFile = "config.json";

std::shared_ptr<const sbi::SetTask> set_task_from_option(const std::string& name) {
  try {
    return sbi::make_set_task(name);
  } catch (const core::Error& e) {
    throw ValueError(str("--task: ", e.what()));
  }
}

// The elements of an observed set: header row, one row per element of the task's width.
Tensor read_set_csv(const std::string& path, std::int64_t element_dim) {
  Tensor set = sbi::read_csv(path, core::DType::f64);
  if (set.dim(0) == 0)
    throw IoError(str("--observation '", path, "': no elements (expected one row per set "
                      "element after the header)"));
  if (set.dim(1) != element_dim)
    throw IoError(str("--observation '", path, "': expected ", element_dim,
                      " columns per element (data_1 … data_", element_dim, "), found ",
                      set.dim(1)));
  const double* v = set.data<double>();
  for (std::int64_t i = 0; i < set.numel(); ++i)
    if (!std::isfinite(v[i]))
      throw IoError(str("--observation '", path, "': line ", i / element_dim + 2, ", column data_",
                        i % element_dim + 1, " is ", v[i], "; expected a finite number"));
  return set;
}

// Rows (stage, epoch, train_loss, validation_loss): stage 1 the encoder (or end to end), 3 the head.
Tensor training_log(const sbi::SetTrainReport& report) {
  std::vector<double> rows;
  std::int64_t n = 0;
  for (const auto& [stage, result] : {std::pair{1, &report.encoder}, std::pair{3, &report.head}})
    for (std::size_t e = 0; e < result->train_loss.size(); ++e, ++n)
      rows.insert(rows.end(), {static_cast<double>(stage), static_cast<double>(e + 1),
                               result->train_loss[e], result->validation_loss[e]});
  return Tensor::from(rows, {n, 4}, core::DType::f64);
}

json cost_json(const sbi::SetStageCost& cost) {
  return {{"seconds", cost.seconds}, {"peak_bytes", cost.peak_bytes}};
}

std::string fixed(double value, int digits) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(digits) << value;
  return out.str();
}

}  // namespace

std::pair<std::int64_t, std::int64_t> parse_set_size(const std::string& text,
                                                     const std::string& what) {
  const auto number = [&](const std::string& part) {
    std::size_t used = 0;
    std::int64_t value = 0;
    try {
      value = std::stoll(part, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != part.size() || value < 1)
      throw ValueError(str(what, " '", text, "': expected N or MIN:MAX with integers >= 1"));
    return value;
  };
  const std::size_t colon = text.find(':');
  if (colon == std::string::npos) {
    const std::int64_t n = number(text);
    return {n, n};
  }
  const std::int64_t lo = number(text.substr(0, colon)), hi = number(text.substr(colon + 1));
  if (hi < lo) throw ValueError(str(what, " '", text, "': MAX is below MIN"));
  return {lo, hi};
}

bool is_set_task(const std::string& name) {
  const auto names = sbi::set_task_names();
  return std::find(names.begin(), names.end(), name) != names.end();
}

bool SetTrainFlags::any() const {
  return !set_encoder.empty() || pair_training || end_to_end || !set_size.empty();
}

void add_set_train_options(CLI::App& cmd, SetTrainFlags& f) {
  cmd.add_option("--set-encoder", f.set_encoder,
                 "set tasks: the set encoder (deepset: a mean-pool DeepSet)")
      ->check(CLI::IsMember({"deepset"}));
  cmd.add_flag("--pair-training", f.pair_training,
               "set tasks: train the encoder on sets of <= --encoder-set-size elements, freeze "
               "it, retrain the head on aggregated sets (the default)");
  cmd.add_flag("--end-to-end", f.end_to_end,
               "set tasks: the baseline, encoder and head trained jointly at the --set-size sizes");
  cmd.add_option("--set-size", f.set_size,
                 "set tasks: deployment set sizes N or MIN:MAX (log-uniform), e.g. 1000 or 10:10000");
  cmd.add_option("--encoder", f.encoder, "set tasks: element encoder (mlp, conv)")
      ->capture_default_str()
      ->check(CLI::IsMember({"mlp", "conv"}));
  cmd.add_option("--encoder-hidden", f.encoder_hidden, "set tasks: hidden widths of the mlp encoder")
      ->delimiter(',');
  cmd.add_option("--encoder-channels", f.encoder_channels,
                 "set tasks: channels of the conv encoder's layers")
      ->delimiter(',');
  cmd.add_option("--set-embedding-features", f.embedding_features,
                 "set tasks: width E of the element embedding")
      ->capture_default_str()
      ->check(at_least(1));
  cmd.add_option("--encoder-set-size", f.encoder_set_size,
                 "set tasks: largest set the encoder trains on with --pair-training (2: pairs)")
      ->capture_default_str()
      ->check(at_least(1));
  cmd.add_option("--head-simulations", f.head_simulations,
                 "set tasks: sets aggregated to retrain the head (default: --simulations)")
      ->check(at_least(10));
  cmd.add_flag("--fine-tune-head", f.fine_tune_head,
               "set tasks: continue the head from the encoder's training instead of a fresh one");
}

TrainedSetModel train_set_model(const SetTrainJob& job, const SetTrainFlags& f,
                                std::uint64_t seed, nn::ProgressMode progress) {
  const auto task = set_task_from_option(job.task);
  if (f.set_encoder.empty())
    throw ValueError(str("--task ", job.task, " produces sets; add --set-encoder deepset"));
  if (f.pair_training && f.end_to_end)
    throw ValueError("--pair-training and --end-to-end exclude each other");
  if (f.set_size.empty())
    throw ValueError(str("--set-size is required for the set task ", job.task,
                         " (N or MIN:MAX, the deployment set sizes)"));
  sbi::SetEstimatorOptions options;
  options.training = f.end_to_end ? sbi::SetTraining::end_to_end : sbi::SetTraining::pairs;
  std::tie(options.min_set_size, options.max_set_size) = parse_set_size(f.set_size);
  options.encoder.kind = sbi::set_encoder_from_name(f.encoder);
  // A field's im2col columns are ~100× its width: smaller chunks keep aggregation near 10 MB.
  if (options.encoder.kind == sbi::SetEncoderKind::conv) options.aggregate.chunk_elements = 512;
  options.encoder.hidden = f.encoder_hidden;
  options.encoder.channels = f.encoder_channels;
  options.encoder.features = f.embedding_features;
  options.encoder_max_set_size = f.encoder_set_size;
  options.encoder_simulations = job.simulations;
  options.head_simulations = f.head_simulations > 0 ? f.head_simulations : job.simulations;
  options.fine_tune_head = f.fine_tune_head;
  options.seed = seed;
  options.encoder_train = job.train;
  options.encoder_train.seed = seed;
  options.encoder_train.progress = progress;
  options.head.seed = seed;
  options.head.train = options.encoder_train;
  if (job.hidden > 0) options.head.nsf.hidden = job.hidden;
  if (job.transforms > 0) options.head.nsf.transforms = job.transforms;
  if (job.blocks > 0) options.head.nsf.blocks = job.blocks;
  options.device = job.device;

  ensure_directory(job.out, "--out");
  sbi::SetEstimator estimator(task, options);
  log_line(str("training a DeepSet NPE on ", task->name(), " (", sbi::name(options.training),
               ", set sizes ", options.min_set_size, ":", options.max_set_size, ", ",
               job.simulations, " sets, seed ", seed, ")"));
  const sbi::SetTrainReport report = estimator.train();

  const std::filesystem::path dir = job.out;
  const auto model_path = dir / kModelFile, config_path = dir / kSetConfigFile,
             log_path = dir / kTrainingLogFile;
  estimator.save(model_path);
  write_text_atomic(config_path, sbi::to_json(options, *task) + "\n");
  sbi::write_csv(log_path.string(), training_log(report),
                 {"stage", "epoch", "train_loss", "validation_loss"});
  const json summary = {
      {"task", task->name()},
      {"training", sbi::name(options.training)},
      {"min_set_size", options.min_set_size},
      {"max_set_size", options.max_set_size},
      {"encoder_epochs", report.encoder.epochs},
      {"head_epochs", report.head.epochs},
      {"encoder_elements", report.encoder_elements},
      {"head_elements", report.head_elements},
      {"seconds", report.total_seconds()},
      {"peak_bytes", report.peak_bytes()},
      {"stages",
       {{"simulate_encoder_sets", cost_json(report.simulate_encoder_sets)},
        {"train_encoder", cost_json(report.train_encoder)},
        {"aggregate", cost_json(report.aggregate)},
        {"train_head", cost_json(report.train_head)}}},
      {"files",
       {{"model", model_path.string()},
        {"config", config_path.string()},
        {"training_log", log_path.string()}}}};
  return {.task = task, .posterior = estimator.posterior(), .report = report, .summary = summary};
}

int run_set_train(const SetTrainJob& job, const SetTrainFlags& f, const CommonOptions& common) {
  const TrainedSetModel trained = train_set_model(job, f, common.seed, progress_mode(common));
  const json& summary = trained.summary;
  if (common.json) {
    print_json(summary);
    return 0;
  }
  const sbi::SetTrainReport& report = trained.report;
  const bool pairs = summary["training"] == sbi::name(sbi::SetTraining::pairs);
  std::cout << "trained a DeepSet NPE on " << trained.task->name() << " ("
            << summary["training"].get<std::string>() << "): encoder " << report.encoder.epochs
            << " epochs";
  if (pairs)
    std::cout << ", head " << report.head.epochs << " epochs on " << report.head_elements
              << " aggregated elements";
  std::cout << ", " << fixed(report.total_seconds(), 1) << " s, peak tensor memory "
            << fixed(static_cast<double>(report.peak_bytes()) / (1 << 20), 1) << " MiB\n"
            << "wrote " << summary["files"]["model"].get<std::string>() << ", "
            << summary["files"]["config"].get<std::string>() << ", "
            << summary["files"]["training_log"].get<std::string>() << '\n';
  return 0;
}

bool is_set_model(const std::string& dir) {
  const std::filesystem::path path = std::filesystem::path(dir) / kModelFile;
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec) && sbi::is_set_estimator_file(path);
}

int run_set_sample(const std::string& model_dir, const std::string& observation_file,
                   std::int64_t num_samples, const std::string& out, core::Device device,
                   const CommonOptions& common) {
  const std::filesystem::path model_path = std::filesystem::path(model_dir) / kModelFile;
  std::string task_name;
  sbi::load_set_estimator_options(model_path, &task_name);
  const auto task = set_task_from_option(task_name);
  const auto posterior = sbi::load_set_posterior(model_path, task, device);
  if (observation_file.empty())
    throw ValueError(str("--observation FILE is required for the set model in ", model_dir,
                         " (a CSV with one row per set element)"));
  const Tensor set = read_set_csv(observation_file, task->element_dim());
  const Stopwatch watch;
  const Tensor samples = posterior->sample(num_samples, set, common.seed);
  const double seconds = watch.seconds();
  sbi::write_csv(out, samples, column_names("parameter", samples.dim(1)));
  const json summary = {{"samples", samples.dim(0)},
                        {"set_size", set.dim(0)},
                        {"seconds", seconds},
                        {"samples_per_second", seconds > 0 ? samples.dim(0) / seconds : 0.0},
                        {"out", out}};
  if (common.json)
    print_json(summary);
  else
    std::cout << describe_sampling(summary) << " for a set of " << set.dim(0)
              << " elements; wrote " << out << '\n';
  return 0;
}

int run_set_reference(const std::string& task_name, const std::string& observation_file,
                      std::int64_t num_samples, const std::string& out,
                      const CommonOptions& common) {
  const auto task = set_task_from_option(task_name);
  if (observation_file.empty())
    throw ValueError(str("--observation FILE is required for the set task ", task_name,
                         " (a CSV with one row per set element)"));
  const Tensor set = read_set_csv(observation_file, task->element_dim());
  const Stopwatch watch;
  const sbi::SetReference reference =
      sbi::set_reference_posterior(*task, set, num_samples, common.seed);
  const double seconds = watch.seconds();
  const Tensor& samples = reference.samples;
  sbi::write_csv(out, samples, column_names("parameter", samples.dim(1)));
  json summary = {{"samples", samples.dim(0)},
                  {"set_size", set.dim(0)},
                  {"exact", reference.exact},
                  {"seconds", seconds},
                  {"samples_per_second", seconds > 0 ? samples.dim(0) / seconds : 0.0},
                  {"out", out}};
  if (!reference.exact) {  // MCMC diagnostics over all parameters
    summary["r_hat"] = reference.r_hat;
    summary["ess"] = reference.ess;
  }
  if (common.json)
    print_json(summary);
  else
    std::cout << describe_sampling(summary) << "; wrote " << out << '\n';
  return 0;
}

int run_set_simulate(const std::string& task_name, int observation_index, std::int64_t set_size,
                     const std::string& out, const CommonOptions& common) {
  const auto task = set_task_from_option(task_name);
  if (observation_index < 1)
    throw ValueError(str("--observation-index K (>= 1) is required for the set task ", task_name));
  if (set_size < 1) throw ValueError(str("--set-size N (>= 1) is required for the set task ", task_name));
  const sbi::SetObservation observation = sbi::set_observation(*task, observation_index, set_size);
  sbi::write_csv(out, observation.set, column_names("data", task->element_dim()));
  json theta = json::object();
  for (std::size_t j = 0; j < observation.theta.size(); ++j)
    theta[task->parameter_names()[j]] = observation.theta[j];
  if (common.json) {
    print_json({{"task", task->name()},
                {"observation", observation_index},
                {"set_size", set_size},
                {"true_parameters", theta},
                {"out", out}});
  } else {
    std::cout << "wrote observation " << observation_index << " of " << task->name() << " ("
              << set_size << " elements, true parameters " << theta.dump() << ") to " << out
              << '\n';
  }
  return 0;
}

json run_set_job(const RunConfig& config, const std::string& config_path,
                 const CommonOptions& common) {
  const std::string source = str("config '", config_path.empty() ? "(default)" : config_path, "'");
  const std::filesystem::path dir = config.dir;
  ensure_directory(dir, "output.dir");
  const Stopwatch watch;

  log_line(str("[1/4] simulate and train: ", config.task, ", DeepSet NPE (",
               config.set.end_to_end ? "end to end" : "pairs", "), set sizes ",
               config.set.set_size, ", ", config.simulations, " sets → ", dir.string()));
  SetTrainJob job{.task = config.task,
                  .out = config.dir,
                  .simulations = config.simulations,
                  .train = config.train,
                  .hidden = config.hidden.value_or(0),
                  .transforms = config.transforms.value_or(0),
                  .blocks = config.blocks.value_or(0),
                  .device = config.device == "cuda" ? core::Device::cuda : core::Device::cpu};
  const TrainedSetModel trained =
      train_set_model(job, config.set, config.seed, progress_mode(common));
  const sbi::SetTask& task = *trained.task;
  json training = trained.summary;
  training["kept"] = config.simulations;  // the fields `asbi run` prints for every task
  training["epochs"] = trained.report.encoder.epochs + trained.report.head.epochs;

  // The observation: the task's k-th set at observation_size elements, or a file.
  Tensor set;
  std::vector<double> truth;
  if (!config.observation_file.empty()) {
    std::filesystem::path file = config.observation_file;
    if (file.is_relative() && !config_path.empty())
      file = std::filesystem::path(config_path).parent_path() / file;
    try {
      set = read_set_csv(file.string(), task.element_dim());
    } catch (const core::Error& e) {
      throw IoError(str(source, ": key 'task.observation_file': ", e.what()));
    }
  } else {
    if (config.observation_index < 1)
      throw ValueError(str(source, ": key 'task.observation' is 0 (none); set an index >= 1 or "
                                   "task.observation_file"));
    const std::int64_t n = config.observation_size > 0
                               ? config.observation_size
                               : parse_set_size(config.set.set_size).second;
    sbi::SetObservation observation = sbi::set_observation(task, config.observation_index, n);
    set = observation.set.to(core::DType::f64);
    truth.assign(observation.theta.begin(), observation.theta.begin() + task.target_dim());
    sbi::write_csv((dir / "observation.csv").string(), set,
                   column_names("data", task.element_dim()));
  }
  json summary = {{"config", config_path.empty() ? "(default)" : config_path},
                  {"task", config.task},
                  {"observation", config.observation_file.empty()
                                      ? json(config.observation_index)
                                      : json(config.observation_file)},
                  {"set_size", set.dim(0)},
                  {"training", training}};

  log_line(str("[2/4] sample: ", config.num_samples, " posterior draws for a set of ", set.dim(0),
               " elements"));
  const Stopwatch sampling;
  const Tensor samples = trained.posterior->sample(config.num_samples, set, config.seed);
  const double sample_seconds = sampling.seconds();
  const auto samples_path = dir / "samples.csv";
  const std::vector<std::string> labels(task.parameter_names().begin(),
                                        task.parameter_names().begin() + task.target_dim());
  sbi::write_csv(samples_path.string(), samples, column_names("parameter", samples.dim(1)));
  summary["sampling"] = {{"samples", samples.dim(0)},
                         {"seconds", sample_seconds},
                         {"samples_per_second",
                          sample_seconds > 0 ? samples.dim(0) / sample_seconds : 0.0}};
  log_line("      " + describe_sampling(summary["sampling"]));

  // Every set task has a reference: exact draws or MCMC on the task's likelihood.
  Tensor reference;
  if (config.c2st || config.plot) {
    const sbi::SetReference r =
        sbi::set_reference_posterior(task, set, config.num_samples, config.seed + 1);
    reference = r.samples;
    summary["reference"] = {{"exact", r.exact}};
    if (!r.exact) summary["reference"].update({{"r_hat", r.r_hat}, {"ess", r.ess}});
  }
  if (config.c2st) {
    log_line(str("[3/4] C2ST against ", reference.dim(0), " reference draws"));
    sbi::C2stOptions options;
    options.seed = config.seed;
    summary["c2st"] = sbi::c2st(reference, samples, options);
    log_line(str("      c2st ", summary["c2st"].get<double>()));
  } else {
    log_line("[3/4] C2ST off ([output] c2st = false)");
  }
  if (config.plot) {
    const auto plot_path = dir / "corner.png";
    log_line(str("[4/4] corner plot → ", plot_path.string()));
    sbi::CornerOptions options;
    options.labels = labels;
    options.truth = truth;
    options.title = str(config.task, ", DeepSet NPE, N = ", set.dim(0));
    corner_plot_into_summary({{"asbi DeepSet NPE", samples}, {"reference", reference}}, plot_path,
                             options, summary);
  } else {
    log_line("[4/4] corner plot off ([output] plot = false)");
  }
  return finish_run_summary(dir, samples_path, watch.seconds(), std::move(summary));
}

}  // namespace asbi::cli
