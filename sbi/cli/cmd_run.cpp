// asbi run [CONFIG.toml]: the whole job in one command — simulate, train, sample the posterior of
// one observation, compare it with sbibm's reference posterior (C2ST) and draw a corner plot.
// Without a config it runs the built-in default (RunConfig's defaults: two_moons, NPE with an
// NSF, 10 000 simulations, observation 1, 10 000 samples, output in asbi-run/).
#include <algorithm>
#include <iomanip>
#include <iostream>
#include <utility>

#include "core/error.hpp"
#include "sbi/cli/jobs.hpp"
#include "sbi/cli/sets.hpp"
#include "sbi/csv.hpp"
#include "sbi/diagnostics.hpp"
#include "sbi/plot.hpp"

namespace asbi::cli {

using core::str;

namespace {

// The observation a config names; a relative observation_file is taken from the config's folder.
std::vector<double> config_observation(const RunConfig& config, const std::string& config_path,
                                       std::int64_t x_dim) {
  ObservationSource source;
  if (!config.observation_file.empty()) {
    std::filesystem::path file = config.observation_file;
    if (file.is_relative() && !config_path.empty())
      file = std::filesystem::path(config_path).parent_path() / file;
    source.file = file.string();
  } else {
    source.index = config.observation_index;
  }
  if (source.file.empty() && source.index == 0)
    throw core::ValueError(str("config '", config_path.empty() ? "(default)" : config_path,
                               "': key 'task.observation' is 0 (none); set an sbibm index or "
                               "task.observation_file"));
  try {
    return load_observation(config.task, source, x_dim, "key 'task.observation' =");
  } catch (const core::Error& e) {
    throw core::IoError(str("config '", config_path.empty() ? "(default)" : config_path, "': ",
                            e.what()));
  }
}

json run_job(const RunConfig& config, const std::string& config_path,
             const CommonOptions& common) {
  if (is_set_task(config.task)) return run_set_job(config, config_path, common);
  const auto task = sbi::make_task(config.task);
  const std::vector<double> x_o = config_observation(config, config_path, task->x_dim());
  const std::filesystem::path dir = config.dir;
  ensure_directory(dir, "output.dir");
  const Stopwatch watch;

  log_line(str("[1/4] simulate and train: ", config.task, ", ", config.method, ", ",
               config.simulations, " simulations → ", dir.string()));
  const TrainedModel trained = train_model(config, *task, x_o, dir, progress_mode(common));
  json summary = {{"config", config_path.empty() ? "(default)" : config_path},
                  {"task", config.task},
                  {"observation", config.observation_file.empty()
                                      ? json(config.observation_index)
                                      : json(config.observation_file)},
                  {"training", trained.summary}};

  log_line(str("[2/4] sample: ", config.num_samples, " posterior draws"));
  Tensor samples;
  const auto samples_path = dir / "samples.csv";
  summary["sampling"] = sample_to_csv(*trained.posterior, x_o, config.num_samples, config.seed,
                                      samples_path, &samples);
  log_line("      " + describe_sampling(summary["sampling"]));

  // The reference posterior exists only for sbibm's own observations.
  Tensor reference;
  std::string why;
  if (config.observation_index > 0 && config.observation_file.empty()) {
    if (const auto path = reference_samples_path(config.task, config.observation_index, &why))
      reference = read_samples_csv(path->string(), task->theta_dim());
  } else {
    why = "the observation is not one of sbibm's, so there is no reference posterior";
  }
  if (config.c2st) {
    if (reference.defined()) {
      log_line(str("[3/4] C2ST against ", reference.dim(0), " reference samples"));
      sbi::C2stOptions options;
      options.seed = config.seed;
      const std::int64_t rows = std::min(reference.dim(0), samples.dim(0));
      const double accuracy =
          sbi::c2st(subsample_rows(reference, rows, config.seed),
                    subsample_rows(samples, rows, config.seed + 1), options);
      summary["c2st"] = accuracy;
      log_line(str("      c2st ", accuracy));
    } else {
      log_line("[3/4] C2ST skipped: " + why);
      summary["c2st"] = nullptr;
      summary["c2st_skipped"] = why;
    }
  } else {
    log_line("[3/4] C2ST off ([output] c2st = false)");
  }

  if (config.plot) {
    const auto plot_path = dir / "corner.png";
    log_line(str("[4/4] corner plot → ", plot_path.string()));
    std::vector<sbi::PlotSeries> series{{str("asbi ", config.method), samples}};
    if (reference.defined()) series.push_back({"reference", reference});
    sbi::CornerOptions options;
    options.labels = column_names("theta", task->theta_dim());
    options.title = str(config.task, ", ", config.method, ", ", config.simulations,
                        " simulations");
    if (reference.defined()) {
      try {
        options.truth = sbi::reference_true_parameters(config.task, config.observation_index);
      } catch (const core::Error&) {
        // θ* only decorates the plot.
      }
    }
    corner_plot_into_summary(series, plot_path, options, summary);
  } else {
    log_line("[4/4] corner plot off ([output] plot = false)");
  }
  return finish_run_summary(dir, samples_path, watch.seconds(), std::move(summary));
}

}  // namespace

void register_run_command(CLI::App& app) {
  struct Options {
    CommonOptions common;
    std::string config_path, out;
    bool print_default = false, dry_run = false;
    CLI::App* command = nullptr;  // to ask whether --seed was given
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = register_command(
      app, "run",
      "Run a whole job from a TOML config: simulate, train, sample the posterior of the "
      "observation, C2ST against sbibm's reference posterior, corner plot. Without CONFIG: "
      "two_moons, NPE (NSF), 10 000 simulations, observation 1, 10 000 samples, into asbi-run/ "
      "(asbi run --print-default-config shows it as TOML). DIR gets model.asbi, config.toml, "
      "training_log.csv, samples.csv, corner.png and summary.json.",
      "asbi run examples/configs/two_moons_npe.toml", [o] {
        if (o->print_default) {
          std::cout << config_to_toml(RunConfig{});
          return 0;
        }
        apply_threads(o->common);
        RunConfig config = o->config_path.empty() ? RunConfig{} : read_config(o->config_path);
        if (!o->out.empty()) config.dir = o->out;
        if (o->command->count("--seed") > 0) config.seed = o->common.seed;
        if (o->dry_run) {
          std::cout << config_to_toml(config);
          return 0;
        }
        // Before any simulation: a GPU job on a machine without one fails at once.
        device_from_name(config.device,
                         str("config '", o->config_path.empty() ? "(default)" : o->config_path,
                             "': key 'compute.device'"));
        const json summary = run_job(config, o->config_path, o->common);
        if (o->common.json) {
          print_json(summary);
          return 0;
        }
        std::cout << "task " << config.task << ", " << config.method << ", "
                  << summary["training"]["kept"].get<std::int64_t>() << " simulations, "
                  << summary["training"]["epochs"].get<int>() << " epochs\n";
        if (!summary["c2st"].is_null())
          std::cout << "c2st " << std::setprecision(4) << summary["c2st"].get<double>() << '\n';
        std::cout << "samples " << summary["samples"].get<std::string>() << '\n';
        if (summary.contains("plot") && !summary["plot"].is_null())
          std::cout << "plot " << summary["plot"].get<std::string>() << '\n';
        std::cout << "summary " << (std::filesystem::path(config.dir) / "summary.json").string()
                  << '\n';
        return 0;
      });
  o->command = cmd;
  cmd->add_option("config", o->config_path, "TOML job configuration (default: built in)");
  cmd->add_option("--out", o->out, "output folder (overrides [output] dir)");
  cmd->add_flag("--print-default-config", o->print_default,
                "print the built-in default config as TOML and exit");
  cmd->add_flag("--dry-run", o->dry_run,
                "check the config and print it with every default filled in; run nothing");
  add_common_options(*cmd, o->common);
  cmd->get_option("--seed")->description("overrides [simulation] seed when given");
}

}  // namespace asbi::cli
