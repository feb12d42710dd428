// asbi tasks | simulate | c2st | mmd | plot: the subcommands that need no trained model.
#include <algorithm>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>

#include "core/error.hpp"
#include "sbi/cli/common.hpp"
#include "sbi/cli/sets.hpp"
#include "sbi/csv.hpp"
#include "sbi/diagnostics.hpp"
#include "sbi/plot.hpp"
#include "sbi/task.hpp"

namespace asbi::cli {

using core::str;

namespace {

// Priors as sbibm documents them (shared/reference/sbibm/TASKS.md); the Prior interface carries
// no description of itself.
std::string prior_description(const std::string& task) {
  static const std::map<std::string, std::string> priors = {
      {"gaussian_linear", "N(0, 0.1 I)"},
      {"gaussian_linear_uniform", "U(-1, 1)^10"},
      {"two_moons", "U(-1, 1)^2"},
      {"slcp", "U(-3, 3)^5"},
      {"slcp_distractors", "U(-3, 3)^5"},
      {"gaussian_mixture", "U(-10, 10)^2"},
      {"bernoulli_glm", "Gaussian smoothness prior (precision blockdiag(0.5, F^T F))"},
      {"bernoulli_glm_raw", "Gaussian smoothness prior (precision blockdiag(0.5, F^T F))"},
      {"sir", "beta ~ LogNormal(log 0.4, 0.5), gamma ~ LogNormal(log 0.125, 0.2)"},
      {"lotka_volterra", "alpha, gamma ~ LogNormal(-0.125, 0.5); beta, delta ~ LogNormal(-3, 0.5)"},
      {"gaussian_nuisance", "sigma2 ~ InvGamma(3, 2), mu | sigma2 ~ N(0, sigma2); target mu"},
      {"mixture_nuisance", "theta ~ U(0, 3), w ~ U(0.1, 0.9); target theta"},
      {"gp_replicates", "ell ~ U(0.05, 0.6), sigma2 ~ U(0.5, 2); target ell"},
  };
  const auto it = priors.find(task);
  return it == priors.end() ? "(see the task's definition)" : it->second;
}

// make_task with the option that named the task in its error.
std::unique_ptr<sbi::Task> task_from_option(const std::string& name) {
  try {
    return sbi::make_task(name);
  } catch (const core::Error& e) {
    throw core::ValueError(str("--task: ", e.what()));
  }
}

void register_tasks(CLI::App& app) {
  auto common = std::make_shared<CommonOptions>();
  CLI::App* cmd = register_command(
      app, "tasks", "List the benchmark tasks with their dimensions and priors.", "asbi tasks --json",
      [common] {
        json rows = json::array();
        for (const std::string& name : sbi::task_names()) {
          json row{{"name", name}, {"kind", "benchmark"}, {"prior", prior_description(name)}};
          try {
            const auto task = sbi::make_task(name);
            row["theta_dim"] = task->theta_dim();
            row["x_dim"] = task->x_dim();
            row["likelihood"] = task->has_likelihood();
          } catch (const core::Error& e) {
            // slcp_distractors needs the reference data; the others are still listed.
            row["unavailable"] = e.what();
          }
          rows.push_back(row);
        }
        // Set tasks: a set of exchangeable elements per observation, targets among the
        // parameters, the rest shared nuisance factors (docs/set_tasks.md).
        json set_rows = json::array();
        for (const std::string& name : sbi::set_task_names()) {
          const auto task = sbi::make_set_task(name);
          const std::vector<std::string>& parameters = task->parameter_names();
          set_rows.push_back({{"name", name},
                              {"kind", "set"},
                              {"prior", prior_description(name)},
                              {"targets", std::vector<std::string>(
                                              parameters.begin(),
                                              parameters.begin() + task->target_dim())},
                              {"nuisance", std::vector<std::string>(
                                               parameters.begin() + task->target_dim(),
                                               parameters.end())},
                              {"element_dim", task->element_dim()}});
        }
        if (common->json) {
          for (json& row : set_rows) rows.push_back(std::move(row));
          print_json(rows);
          return 0;
        }
        std::cout << std::left << std::setw(25) << "task" << std::setw(11) << "theta_dim"
                  << std::setw(7) << "x_dim" << std::setw(12) << "likelihood" << "prior\n";
        for (const json& row : rows) {
          std::cout << std::setw(25) << row["name"].get<std::string>();
          if (row.contains("unavailable")) {
            std::cout << "unavailable: " << row["unavailable"].get<std::string>() << '\n';
            continue;
          }
          std::cout << std::setw(11) << row["theta_dim"].get<std::int64_t>() << std::setw(7)
                    << row["x_dim"].get<std::int64_t>() << std::setw(12)
                    << (row["likelihood"].get<bool>() ? "exact" : "none")
                    << row["prior"].get<std::string>() << '\n';
        }
        std::cout << "\nset task                 targets    nuisance   element_dim  prior\n";
        const auto joined = [](const json& names) {
          std::string out;
          for (const json& n : names) out += (out.empty() ? "" : ",") + n.get<std::string>();
          return out;
        };
        for (const json& row : set_rows)
          std::cout << std::setw(25) << row["name"].get<std::string>() << std::setw(11)
                    << joined(row["targets"]) << std::setw(11) << joined(row["nuisance"])
                    << std::setw(13) << row["element_dim"].get<std::int64_t>()
                    << row["prior"].get<std::string>() << '\n';
        return 0;
      });
  cmd->add_flag("--json", common->json, "print the list as JSON on stdout");
}

void register_simulate(CLI::App& app) {
  struct Options {
    CommonOptions common;
    std::string task, out;
    std::int64_t num = 0;
    std::int64_t batch_size = 1000;
    int observation_index = 0;  // set tasks
    std::int64_t set_size = 0;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = register_command(
      app, "simulate",
      "Draw θ from a task's prior and simulate x; writes one row per simulation "
      "(parameter_1…, data_1…). Simulations that fail (non-finite x) are dropped and counted. "
      "For a set task, writes observation K at N elements instead (--observation-index K "
      "--set-size N; one row per element: data_1…), the file asbi sample takes.",
      "asbi simulate --task two_moons --num 1000 --seed 3 --out sims.csv", [o] {
        apply_threads(o->common);
        if (is_set_task(o->task))
          return run_set_simulate(o->task, o->observation_index, o->set_size, o->out, o->common);
        if (o->num < 1) throw CLI::RequiredError("--num");  // a usage error (exit code 2)
        const auto task = task_from_option(o->task);
        const Stopwatch watch;
        log_line(str("simulating ", o->num, " draws of ", task->name(), " …"));
        const sbi::Dataset data = sbi::simulate_dataset(task->prior(), task->simulator(), o->num,
                                                        o->common.seed, core::DType::f64,
                                                        o->batch_size);
        const std::int64_t kept = data.theta.dim(0);
        const auto d = static_cast<std::size_t>(task->theta_dim());
        const auto xd = static_cast<std::size_t>(task->x_dim());
        const std::vector<double> theta = data.theta.to_vector(), x = data.x.to_vector();
        std::vector<double> values;
        values.reserve(theta.size() + x.size());
        for (std::size_t i = 0; i < static_cast<std::size_t>(kept); ++i) {
          values.insert(values.end(), theta.begin() + i * d, theta.begin() + (i + 1) * d);
          values.insert(values.end(), x.begin() + i * xd, x.begin() + (i + 1) * xd);
        }
        const Tensor rows = Tensor::from(values, {kept, task->theta_dim() + task->x_dim()},
                                         core::DType::f64);
        std::vector<std::string> header = column_names("parameter", task->theta_dim());
        for (const auto& name : column_names("data", task->x_dim())) header.push_back(name);
        sbi::write_csv(o->out, rows, header);
        const double seconds = watch.seconds();
        if (o->common.json) {
          print_json({{"task", task->name()},
                      {"simulations", kept},
                      {"dropped", data.invalid_count},
                      {"seconds", seconds},
                      {"out", o->out}});
        } else {
          std::cout << "wrote " << kept << " simulations to " << o->out << " (" << data.invalid_count
                    << " dropped as non-finite) in " << std::setprecision(3) << seconds << " s\n";
        }
        return 0;
      });
  cmd->add_option("--task", o->task, "task name (asbi tasks lists them)")->required();
  cmd->add_option("--num", o->num, "number of simulations")->check(at_least(1));
  cmd->add_option("--observation-index", o->observation_index,
                  "set tasks: write observation K (one row per element)")
      ->check(at_least(1));
  cmd->add_option("--set-size", o->set_size, "set tasks: elements of the observation")
      ->check(at_least(1));
  cmd->add_option("--out", o->out, "output CSV")->required();
  cmd->add_option("--batch-size", o->batch_size, "simulations per simulator call")
      ->capture_default_str()
      ->check(at_least(1));
  add_common_options(*cmd, o->common);
}

// c2st and mmd: two sample files, one number.
void register_distance(CLI::App& app, const std::string& name) {
  struct Options {
    CommonOptions common;
    std::string samples, reference;
    int folds = sbi::C2stOptions{}.folds;
  };
  auto o = std::make_shared<Options>();
  const bool is_c2st = name == "c2st";
  const std::string description =
      is_c2st ? "Classifier two-sample test (sbibm's C2ST): held-out accuracy of a classifier "
                "telling the samples from the reference; 0.5 means indistinguishable. The larger set is "
                "subsampled (seeded) to the size of the smaller."
              : "Squared maximum mean discrepancy (sbibm's MMD, Gaussian kernel with the "
                "reference's median distance); about 0 when the sets agree.";
  CLI::App* cmd = register_command(
      app, name, description,
      "asbi " + name + " --samples samples.csv --reference reference_posterior_samples.csv",
      [o, name, is_c2st] {
        apply_threads(o->common);
        std::vector<std::string> header;
        const Tensor reference = read_samples_csv(o->reference, 0, &header);
        const Tensor samples = read_samples_csv(o->samples);
        if (samples.dim(1) != reference.dim(1))
          throw core::IoError(str("--samples '", o->samples, "' has ", samples.dim(1),
                                  " columns but --reference '", o->reference, "' has ",
                                  reference.dim(1)));
        const Stopwatch watch;
        double value = 0;
        std::int64_t rows_used = std::min(samples.dim(0), reference.dim(0));
        if (is_c2st) {
          if (samples.dim(0) != reference.dim(0))
            log_line(str("c2st: using ", rows_used, " rows of each set (", samples.dim(0),
                         " samples, ", reference.dim(0), " reference), so that 0.5 means "
                         "indistinguishable"));
          sbi::C2stOptions options;
          options.seed = o->common.seed;
          options.folds = o->folds;
          value = sbi::c2st(subsample_rows(reference, rows_used, o->common.seed),
                            subsample_rows(samples, rows_used, o->common.seed + 1), options);
        } else {
          value = sbi::mmd(reference, samples);
        }
        if (o->common.json)
          print_json({{name, value},
                      {"samples", is_c2st ? rows_used : samples.dim(0)},
                      {"reference", is_c2st ? rows_used : reference.dim(0)},
                      {"seconds", watch.seconds()}});
        else
          std::cout << name << " " << std::setprecision(6) << value << '\n';
        return 0;
      });
  cmd->add_option("--samples", o->samples, "CSV of samples (header row, one sample per row)")
      ->required();
  cmd->add_option("--reference", o->reference, "CSV of reference samples, same columns")
      ->required();
  if (is_c2st)
    cmd->add_option("--folds", o->folds, "cross-validation folds")
        ->capture_default_str()
        ->check(at_least(2));
  add_common_options(*cmd, o->common);
}

void register_plot(CLI::App& app) {
  struct Options {
    CommonOptions common;
    std::string samples, reference, truth, out, title;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = register_command(
      app, "plot",
      "Corner plot (gnuplot): marginal histograms on the diagonal, pairwise scatter below, the "
      "reference overlaid in a second colour.",
      "asbi plot --samples samples.csv --reference reference_posterior_samples.csv --out "
      "corner.png",
      [o] {
        std::vector<std::string> labels;
        const Tensor samples = read_samples_csv(o->samples, 0, &labels);
        std::vector<sbi::PlotSeries> series{{"samples", samples}};
        if (!o->reference.empty())
          series.push_back({"reference", read_samples_csv(o->reference, samples.dim(1))});
        sbi::CornerOptions options;
        options.labels = labels;
        options.title = o->title;
        if (!o->truth.empty())
          options.truth = read_samples_csv(o->truth, samples.dim(1)).rows(0, 1).to_vector();
        sbi::corner_plot(series, o->out, options);
        if (o->common.json)
          print_json({{"out", o->out}});
        else
          std::cout << "wrote " << o->out << '\n';
        return 0;
      });
  cmd->add_option("--samples", o->samples, "CSV of samples")->required();
  cmd->add_option("--reference", o->reference, "CSV of reference samples to overlay");
  cmd->add_option("--truth", o->truth, "CSV whose first row marks θ* (sbibm's true_parameters.csv)");
  cmd->add_option("--title", o->title, "plot title");
  cmd->add_option("--out", o->out, "output PNG")->required();
  cmd->add_flag("--json", o->common.json, "print the result as JSON on stdout");
}

}  // namespace

void register_data_commands(CLI::App& app) {
  register_tasks(app);
  register_simulate(app);
  register_distance(app, "c2st");
  register_distance(app, "mmd");
  register_plot(app);
}

}  // namespace asbi::cli
