// asbi train | sample | reference, and the jobs behind them (jobs.hpp), which `asbi run` reuses.
#include <algorithm>
#include <cmath>
#include <iomanip>
#include <iostream>
#include <limits>
#include <sstream>

#include "core/error.hpp"
#include "sbi/cli/jobs.hpp"
#include "sbi/cli/sets.hpp"
#include "sbi/csv.hpp"
#include "sbi/estimator.hpp"
#include "sbi/reference.hpp"

namespace asbi::cli {

using core::IoError;
using core::str;

namespace {

std::string fixed(double value, int digits) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(digits) << value;
  return out.str();
}

// Wraps a library error with the flag that carried the bad value.
template <class F>
auto with_flag(const char* flag, F f) -> decltype(f()) {
  try {
    return f();
  } catch (const core::Error& e) {
    throw core::ValueError(str(flag, ": ", e.what()));
  }
}

// Rows (round, epoch, train_loss, validation_loss) of every train() call.
Tensor training_log(const std::vector<nn::TrainResult>& history) {
  std::vector<double> rows;
  std::int64_t n = 0;
  for (std::size_t round = 0; round < history.size(); ++round) {
    const nn::TrainResult& r = history[round];
    for (std::size_t e = 0; e < r.train_loss.size(); ++e, ++n) {
      const double val = e < r.validation_loss.size() ? r.validation_loss[e]
                                                      : std::numeric_limits<double>::quiet_NaN();
      rows.insert(rows.end(), {static_cast<double>(round), static_cast<double>(e + 1),
                               r.train_loss[e], val});
    }
  }
  return Tensor::from(rows, {n, 4}, core::DType::f64);
}

json vector_json(const std::vector<double>& v) {
  json out = json::array();
  for (double x : v) out.push_back(std::isfinite(x) ? json(x) : json(nullptr));
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Jobs.

TrainedModel train_model(const RunConfig& config, const sbi::Task& task,
                         std::span<const double> x_o, const std::filesystem::path& dir,
                         nn::ProgressMode progress) {
  ensure_directory(dir, "output folder");
  sbi::EstimatorOptions options = estimator_options(config);
  options.train.progress = progress;
  options.mcmc.progress = progress != nn::ProgressMode::silent;
  auto estimator = sbi::make_estimator(task.shared_prior(), task.x_dim(), options);

  const std::int64_t per_round = config.simulations / config.rounds;
  if (per_round * config.rounds != config.simulations)
    log_line(str("note: ", config.simulations, " simulations do not split evenly over ",
                 config.rounds, " rounds; running ", per_round, " per round"));
  json rounds = json::array();
  std::int64_t kept = 0;
  sbi::SequentialOptions sequential;
  sequential.rounds = config.rounds;
  sequential.simulations_per_round = per_round;
  sequential.seed = config.seed;
  sequential.on_round = [&](int round, std::int64_t simulations, const nn::TrainResult& r) {
    kept += simulations;
    log_line(str("round ", round + 1, "/", config.rounds, ": ", simulations, " simulations kept, ",
                 r.epochs, " epochs (", nn::name(r.stop_reason), "), best validation loss ",
                 fixed(r.best_validation_loss, 4), " at epoch ", r.best_epoch));
    rounds.push_back({{"round", round},
                      {"simulations", simulations},
                      {"dropped", per_round - simulations},
                      {"epochs", r.epochs},
                      {"best_epoch", r.best_epoch},
                      {"best_validation_loss", r.best_validation_loss},
                      {"stop_reason", nn::name(r.stop_reason)}});
  };
  log_line(str("training ", config.method, " on ", task.name(), ": ", config.simulations,
               " simulations", config.rounds > 1 ? str(" in ", config.rounds, " rounds") : "",
               ", seed ", config.seed));
  const Stopwatch watch;
  TrainedModel trained;
  trained.posterior = sbi::train_sequential(*estimator, task.simulator(), x_o, sequential);
  const double seconds = watch.seconds();

  const auto model_path = dir / kModelFile;
  const auto config_path = dir / kConfigFile;
  const auto log_path = dir / kTrainingLogFile;
  estimator->save(model_path);
  write_text_atomic(config_path, config_to_toml(config));
  sbi::write_csv(log_path.string(), training_log(estimator->history()),
                 {"round", "epoch", "train_loss", "validation_loss"});

  int epochs = 0;
  for (const auto& r : estimator->history()) epochs += static_cast<int>(r.train_loss.size());
  const nn::TrainResult& last = estimator->history().back();
  trained.summary = {{"task", task.name()},
                     {"method", config.method},
                     {"simulations", per_round * config.rounds},
                     {"kept", kept},
                     {"dropped", per_round * config.rounds - kept},
                     {"epochs", epochs},
                     {"best_validation_loss", last.best_validation_loss},
                     {"seconds", seconds},
                     {"rounds", rounds},
                     {"dir", dir.string()},
                     {"files",
                      {{"model", model_path.string()},
                       {"config", config_path.string()},
                       {"training_log", log_path.string()}}}};
  return trained;
}

LoadedModel load_model(const std::filesystem::path& dir, core::Device device) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec))
    throw IoError(str("--model '", dir.string(), "': no such folder (expected the --out folder "
                      "of asbi train)"));
  for (const char* file : {kConfigFile, kModelFile})
    if (!std::filesystem::is_regular_file(dir / file, ec))
      throw IoError(str("--model '", dir.string(), "': missing ", (dir / file).string(),
                        " (expected the --out folder of asbi train)"));
  LoadedModel model;
  model.config = read_config((dir / kConfigFile).string());
  model.task = sbi::make_task(model.config.task);
  model.posterior = sbi::load_posterior(dir / kModelFile, model.task->shared_prior(), device);
  if (model.posterior->x_dim() != model.task->x_dim())
    throw IoError(str((dir / kModelFile).string(), ": x_dim ", model.posterior->x_dim(),
                      " does not match task ", model.config.task, " (", model.task->x_dim(),
                      ") named in ", (dir / kConfigFile).string()));
  return model;
}

void corner_plot_into_summary(const std::vector<sbi::PlotSeries>& series,
                              const std::filesystem::path& out, const sbi::CornerOptions& options,
                              json& summary) {
  try {
    sbi::corner_plot(series, out, options);
    summary["plot"] = out.string();
  } catch (const core::Error& e) {
    log_line(str("      corner plot skipped: ", e.what()));
    summary["plot"] = nullptr;
    summary["plot_skipped"] = e.what();
  }
}

json finish_run_summary(const std::filesystem::path& dir, const std::filesystem::path& samples,
                        double seconds, json summary) {
  summary["samples"] = samples.string();
  summary["seconds"] = seconds;
  write_text_atomic(dir / "summary.json", summary.dump(2) + "\n");
  return summary;
}

json sample_to_csv(const sbi::Posterior& posterior, std::span<const double> x_o, std::int64_t n,
                   std::uint64_t seed, const std::filesystem::path& out, Tensor* samples_out) {
  const Stopwatch watch;
  const Tensor samples = posterior.sample(n, x_o, seed);
  const double seconds = watch.seconds();
  sbi::write_csv(out.string(), samples, column_names("parameter", samples.dim(1)));
  json summary = {{"samples", samples.dim(0)},
                  {"seconds", seconds},
                  {"samples_per_second", seconds > 0 ? samples.dim(0) / seconds : 0.0},
                  {"out", out.string()}};
  const sbi::McmcResult report = posterior.last_sampling();
  if (!report.r_hat.empty()) {
    summary["r_hat"] = vector_json(report.r_hat);
    summary["ess"] = vector_json(report.ess);
    summary["acceptance_rate"] = report.acceptance_rate;
  }
  if (samples_out) *samples_out = samples;
  return summary;
}

std::string describe_sampling(const json& s) {
  std::string line = str(s["samples"].get<std::int64_t>(), " samples in ",
                         fixed(s["seconds"].get<double>(), 2), " s (",
                         nn::Progress::format_count(s["samples_per_second"].get<double>()), "/s)");
  if (s.contains("r_hat")) {
    double max_r_hat = 0, min_ess = std::numeric_limits<double>::infinity();
    for (const auto& v : s["r_hat"]) max_r_hat = std::max(max_r_hat, v.is_null() ? NAN : v.get<double>());
    for (const auto& v : s["ess"]) min_ess = std::min(min_ess, v.is_null() ? NAN : v.get<double>());
    line += str(", max R-hat ", fixed(max_r_hat, 3), ", min ESS ",
                nn::Progress::format_count(min_ess));
  }
  return line;
}

// ---------------------------------------------------------------------------------------------
// Subcommands.

namespace {

void register_train(CLI::App& app) {
  struct Options {
    CommonOptions common;
    RunConfig config;
    ObservationSource observation;
    int transforms = 0, blocks = 0;
    std::int64_t hidden = 0;
    std::string out;
    SetTrainFlags sets;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = register_command(
      app, "train",
      "Simulate a task and train a neural posterior (npe), likelihood (nle) or ratio (nre) "
      "estimator. DIR gets model.asbi (the checkpoint), config.toml (the job, `asbi run` "
      "accepts it) and training_log.csv (round, epoch, train_loss, validation_loss).",
      "asbi train --task two_moons --method npe --simulations 10000 --seed 1 --out models/tm",
      [o] {
        apply_threads(o->common);
        if (is_set_task(o->config.task) || o->sets.any()) {
          if (!is_set_task(o->config.task))
            throw core::ValueError(str("--task ", o->config.task, " is not a set task; the set "
                                       "flags (--set-encoder, --set-size, …) need one"));
          if (o->config.method != "npe")
            throw core::ValueError(str("--method ", o->config.method, ": set tasks train npe"));
          return run_set_train({.task = o->config.task,
                                .out = o->out,
                                .simulations = o->config.simulations,
                                .train = o->config.train,
                                .hidden = o->hidden,
                                .transforms = o->transforms,
                                .blocks = o->blocks,
                                .device = device_from_name(o->config.device)},
                               o->sets, o->common);
        }
        RunConfig config = o->config;
        config.seed = o->common.seed;
        config.dir = o->out;
        if (o->transforms > 0) config.transforms = o->transforms;
        if (o->blocks > 0) config.blocks = o->blocks;
        if (o->hidden > 0) config.hidden = o->hidden;
        const auto task = with_flag("--task", [&] { return sbi::make_task(config.task); });
        with_flag("--method", [&] { return sbi::method_from_name(config.method); });
        config.observation_index = o->observation.index;
        config.observation_file =
            o->observation.file.empty()
                ? ""
                : std::filesystem::absolute(o->observation.file).string();
        validate(config, "asbi train");
        std::vector<double> x_o;
        if (config.rounds > 1) {
          if (o->observation.file.empty() && o->observation.index == 0)
            throw core::ValueError(str("--rounds ", config.rounds, ": sequential training needs "
                                       "--observation FILE or --observation-index K"));
          x_o = load_observation(config.task, o->observation, task->x_dim());
        } else if (!o->observation.file.empty() || o->observation.index > 0) {
          // Checked now, so that a bad file fails before minutes of training.
          x_o = load_observation(config.task, o->observation, task->x_dim());
        }
        const TrainedModel trained =
            train_model(config, *task, x_o, o->out, progress_mode(o->common));
        const json& s = trained.summary;
        if (o->common.json) {
          print_json(s);
        } else {
          std::cout << "trained " << config.method << " on " << task->name() << ": "
                    << s["kept"].get<std::int64_t>() << " simulations kept, "
                    << s["dropped"].get<std::int64_t>() << " dropped, "
                    << s["epochs"].get<int>() << " epochs, best validation loss "
                    << fixed(s["best_validation_loss"].get<double>(), 4) << ", "
                    << fixed(s["seconds"].get<double>(), 1) << " s\n"
                    << "wrote " << s["files"]["model"].get<std::string>() << ", "
                    << s["files"]["config"].get<std::string>() << ", "
                    << s["files"]["training_log"].get<std::string>() << '\n';
        }
        return 0;
      });
  RunConfig& c = o->config;
  cmd->add_option("--task", c.task, "task name (asbi tasks lists them)")->required();
  cmd->add_option("--method", c.method, "npe, nle, nre (= nre_b), nre_a, nre_b or nre_c")
      ->required();
  cmd->add_option("--flow", c.flow, "density estimator of npe/nle (default: npe nsf, nle maf)")
      ->check(CLI::IsMember({"nsf", "maf"}));
  cmd->add_option("--simulations", c.simulations, "simulation budget, split evenly over rounds")
      ->required()
      ->check(at_least(2));
  cmd->add_option("--rounds", c.rounds, "sequential rounds (> 1 needs an observation)")
      ->capture_default_str()
      ->check(at_least(1));
  add_observation_options(*cmd, o->observation);
  cmd->add_option("--batch-size", c.train.batch_size, "training batch size")
      ->capture_default_str()
      ->check(at_least(1));
  cmd->add_option("--learning-rate", c.train.learning_rate, "Adam learning rate")
      ->capture_default_str()
      ->check(greater_than(0));
  cmd->add_option("--validation-fraction", c.train.validation_fraction,
                  "share of simulations held out for early stopping")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--max-epochs", c.train.max_epochs, "epoch limit per round")
      ->capture_default_str()
      ->check(at_least(1));
  cmd->add_option("--patience", c.train.patience, "epochs without improvement before stopping")
      ->capture_default_str()
      ->check(at_least(1));
  cmd->add_option("--transforms", o->transforms, "flow transforms (default: the library's)")
      ->check(at_least(1));
  cmd->add_option("--hidden", o->hidden, "hidden width of the flow's or classifier's networks")
      ->check(at_least(1));
  cmd->add_option("--blocks", o->blocks, "residual blocks per network")->check(at_least(1));
  cmd->add_option("--embedding-hidden", c.embedding_hidden,
                  "hidden widths of an MLP embedding of x, e.g. 64,64")
      ->delimiter(',');
  cmd->add_option("--embedding-features", c.embedding_features,
                  "output width of the embedding of x (0: none)")
      ->check(at_least(0));
  cmd->add_option("--sampler", c.sampler, "MCMC sampler of nle/nre posteriors")
      ->capture_default_str()
      ->check(CLI::IsMember({"slice", "mh", "hmc"}));
  cmd->add_option("--chains", c.chains, "MCMC chains of nle/nre posteriors")
      ->capture_default_str()
      ->check(at_least(1));
  cmd->add_option("--out", o->out, "output folder DIR")->required();
  add_device_option(*cmd, c.device);
  add_set_train_options(*cmd, o->sets);
  add_common_options(*cmd, o->common);
}

void register_sample(CLI::App& app) {
  struct Options {
    CommonOptions common;
    std::string model, out;
    ObservationSource observation;
    std::int64_t num_samples = 10'000;
    std::string device = "cpu";
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = register_command(
      app, "sample",
      "Draw posterior samples for an observation from a model folder written by asbi train "
      "(no retraining). Without --observation/--observation-index, the observation in "
      "DIR/config.toml is used.",
      "asbi sample --model models/tm --observation observation.csv --num-samples 10000 --out "
      "samples.csv",
      [o] {
        apply_threads(o->common);
        const core::Device device = device_from_name(o->device);
        if (is_set_model(o->model))
          return run_set_sample(o->model, o->observation.file, o->num_samples, o->out, device,
                                o->common);
        const LoadedModel model = load_model(o->model, device);
        ObservationSource source = o->observation;
        if (source.file.empty() && source.index == 0) {
          source.file = model.config.observation_file;
          source.index = source.file.empty() ? model.config.observation_index : 0;
          if (source.file.empty() && source.index == 0)
            throw core::ValueError(str("--observation FILE or --observation-index K is required (",
                                       (std::filesystem::path(o->model) / kConfigFile).string(),
                                       " names no observation)"));
          log_line(str("using ", source.describe(), " from ",
                       (std::filesystem::path(o->model) / kConfigFile).string()));
        }
        const std::vector<double> x_o = load_observation(model.config.task, source,
                                                         model.task->x_dim());
        const json summary =
            sample_to_csv(*model.posterior, x_o, o->num_samples, o->common.seed, o->out);
        if (o->common.json)
          print_json(summary);
        else
          std::cout << describe_sampling(summary) << "; wrote " << o->out << '\n';
        return 0;
      });
  cmd->add_option("--model", o->model, "model folder (the --out of asbi train)")->required();
  add_observation_options(*cmd, o->observation);
  cmd->add_option("--num-samples", o->num_samples, "number of posterior samples")
      ->capture_default_str()
      ->check(at_least(1));
  cmd->add_option("--out", o->out, "output CSV (columns parameter_1 …)")->required();
  add_device_option(*cmd, o->device);
  add_common_options(*cmd, o->common);
}

void register_reference(CLI::App& app) {
  struct Options {
    CommonOptions common;
    // The library's defaults for reference posteriors.
    sbi::McmcOptions defaults = sbi::reference_mcmc_options();
    std::string task, out, sampler = sbi::name(defaults.sampler);
    ObservationSource observation;
    std::int64_t num_samples = 10'000;
    int chains = defaults.chains, warmup = defaults.warmup, thin = defaults.thin;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = register_command(
      app, "reference",
      "Reference posterior samples by MCMC on the task's exact likelihood (tasks with one: "
      "asbi tasks).",
      "asbi reference --task two_moons --observation-index 1 --num-samples 10000 --out ref.csv",
      [o] {
        apply_threads(o->common);
        if (is_set_task(o->task))
          return run_set_reference(o->task, o->observation.file, o->num_samples, o->out, o->common);
        const auto task = with_flag("--task", [&] { return sbi::make_task(o->task); });
        if (!task->has_likelihood())
          throw core::ValueError(str("--task ", o->task, ": the task has no tractable "
                                     "likelihood, so MCMC cannot sample its posterior"));
        const std::vector<double> x_o = load_observation(o->task, o->observation, task->x_dim());
        sbi::McmcOptions options = sbi::reference_mcmc_options(o->common.seed);
        options.sampler = sbi::sampler_from_name(o->sampler);
        options.chains = o->chains;
        options.warmup = o->warmup;
        options.thin = o->thin;
        options.seed = o->common.seed;
        options.progress = o->common.progress != "none";
        log_line(str("sampling ", o->num_samples, " reference draws of ", o->task, " (",
                     o->sampler, ", ", o->chains, " chains) …"));
        const sbi::McmcResult r = sbi::reference_posterior(*task, x_o, o->num_samples, options);
        sbi::write_csv(o->out, r.samples, column_names("parameter", task->theta_dim()));
        json summary = {{"samples", r.samples.dim(0)},
                        {"seconds", r.seconds},
                        {"samples_per_second", r.seconds > 0 ? r.samples.dim(0) / r.seconds : 0.0},
                        {"r_hat", vector_json(r.r_hat)},
                        {"ess", vector_json(r.ess)},
                        {"acceptance_rate", r.acceptance_rate},
                        {"evaluations", r.evaluations},
                        {"out", o->out}};
        if (o->common.json)
          print_json(summary);
        else
          std::cout << describe_sampling(summary) << "; wrote " << o->out << '\n';
        return 0;
      });
  cmd->add_option("--task", o->task, "task name")->required();
  add_observation_options(*cmd, o->observation);
  cmd->add_option("--num-samples", o->num_samples, "number of samples")
      ->capture_default_str()
      ->check(at_least(1));
  cmd->add_option("--sampler", o->sampler, "MCMC sampler")
      ->capture_default_str()
      ->check(CLI::IsMember({"slice", "mh", "hmc"}));
  cmd->add_option("--chains", o->chains, "chains")->capture_default_str()->check(at_least(1));
  cmd->add_option("--warmup", o->warmup, "warm-up steps per chain")
      ->capture_default_str()
      ->check(at_least(0));
  cmd->add_option("--thin", o->thin, "keep every k-th state")
      ->capture_default_str()
      ->check(at_least(1));
  cmd->add_option("--out", o->out, "output CSV (columns parameter_1 …)")->required();
  add_common_options(*cmd, o->common);
}

}  // namespace

void register_train_commands(CLI::App& app) {
  register_train(app);
  register_sample(app);
  register_reference(app);
}

}  // namespace asbi::cli
