// asbi sbc: simulation-based calibration and expected coverage of a trained model over datasets
// simulated from its task's prior (sbi/calibration.hpp has the method and its references).
#include <iomanip>
#include <iostream>

#include "core/error.hpp"
#include "sbi/calibration.hpp"
#include "sbi/cli/common.hpp"
#include "sbi/cli/jobs.hpp"
#include "sbi/cli/sets.hpp"
#include "sbi/csv.hpp"

namespace asbi::cli {

using core::str;

namespace {

// One row per dataset: θ*, the rank of each θ*_d among the posterior draws, and (with coverage)
// the HPD rank and the credibility level of θ*.
Tensor rank_table(const sbi::SbcResult& r) {
  const std::int64_t n = r.datasets, d = r.theta_dim;
  const bool coverage = !r.hpd_ranks.empty();
  const std::int64_t width = 2 * d + (coverage ? 2 : 0);
  Tensor table = Tensor::empty({n, width}, core::DType::f64);
  double* row = table.data<double>();
  const double* theta = r.theta.data<double>();
  for (std::int64_t i = 0; i < n; ++i, row += width) {
    for (std::int64_t j = 0; j < d; ++j) {
      row[j] = theta[i * d + j];
      row[d + j] = static_cast<double>(r.ranks[static_cast<std::size_t>(i * d + j)]);
    }
    if (coverage) {
      row[2 * d] = static_cast<double>(r.hpd_ranks[static_cast<std::size_t>(i)]);
      row[2 * d + 1] = r.credibility[static_cast<std::size_t>(i)];
    }
  }
  return table;
}

}  // namespace

void register_sbc_command(CLI::App& app) {
  struct Options {
    CommonOptions common;
    std::string model, out, device = "cpu";
    sbi::SbcOptions sbc;
    bool no_coverage = false;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = register_command(
      app, "sbc",
      "Simulation-based calibration of a model folder written by asbi train: datasets "
      "(θ*, x) from the task's prior and simulator, posterior draws for each, the rank of θ* "
      "per dimension with KS and chi-square uniformity tests, and the expected coverage of "
      "the highest-density regions. A calibrated posterior has p-values that are not small "
      "and a coverage gap near 0 (negative: overconfident, positive: conservative).",
      "asbi sbc --model models/tm --datasets 500 --posterior-samples 200 --out ranks.csv",
      [o] {
        apply_threads(o->common);
        if (is_set_model(o->model))
          throw core::ValueError(str("--model ", o->model,
                                     ": a set model; its calibration needs sets of a chosen "
                                     "size — use asbi_set_bench --sbc-sets (bench/sbi/set_bench.cpp)"));
        const LoadedModel model = load_model(o->model, device_from_name(o->device));
        sbi::SbcOptions options = o->sbc;
        options.seed = o->common.seed;
        options.expected_coverage = !o->no_coverage;
        log_line(str("SBC of ", o->model, " (", model.config.task, ", ", model.config.method,
                     "): ", options.num_datasets, " datasets × ", options.posterior_samples,
                     " posterior draws"));
        const Stopwatch watch;
        const sbi::SbcResult result =
            sbi::sbc(*model.posterior, model.task->prior(), model.task->simulator(), options);
        const sbi::SbcReport report = sbi::sbc_report(result);
        json summary = json::parse(sbi::to_json(report));
        summary["task"] = model.config.task;
        summary["seconds"] = watch.seconds();
        if (!o->out.empty()) {
          std::vector<std::string> header = column_names("parameter", result.theta_dim);
          for (const std::string& name : column_names("rank", result.theta_dim))
            header.push_back(name);
          if (!result.hpd_ranks.empty()) {
            header.push_back("hpd_rank");
            header.push_back("credibility");
          }
          sbi::write_csv(o->out, rank_table(result), header);
          summary["out"] = o->out;
        }
        if (o->common.json) {
          print_json(summary);
          return 0;
        }
        std::cout << "SBC over " << report.datasets << " datasets (" << report.posterior_samples
                  << " draws each";
        if (report.invalid_simulations > 0)
          std::cout << ", " << report.invalid_simulations << " invalid simulations dropped";
        std::cout << ")\n";
        for (std::size_t d = 0; d < report.ks_pvalue.size(); ++d)
          std::cout << "  parameter_" << d + 1 << ": rank KS p = " << std::setprecision(3)
                    << report.ks_pvalue[d] << ", chi-square p = " << report.chi2_pvalue[d] << '\n';
        if (report.has_coverage)
          std::cout << "  expected coverage: max gap " << std::setprecision(3)
                    << report.max_coverage_gap << ", mean gap " << report.mean_coverage_gap
                    << '\n';
        if (!o->out.empty()) std::cout << "wrote " << o->out << '\n';
        return 0;
      });
  cmd->add_option("--model", o->model, "model folder (the --out of asbi train)")->required();
  cmd->add_option("--datasets", o->sbc.num_datasets, "simulated datasets (θ*, x)")
      ->capture_default_str()
      ->check(at_least(1));
  cmd->add_option("--posterior-samples", o->sbc.posterior_samples,
                  "posterior draws per dataset (L; ranks are 0…L)")
      ->capture_default_str()
      ->check(at_least(1));
  cmd->add_option("--bins", o->sbc.bins, "chi-square bins (0: datasets / 20 in [2, 50])")
      ->capture_default_str()
      ->check(at_least(0));
  cmd->add_flag("--no-coverage", o->no_coverage,
                "skip expected coverage (it scores every draw with log_prob)");
  cmd->add_option("--out", o->out,
                  "CSV of θ*, ranks (and hpd_rank, credibility), one row per dataset");
  add_device_option(*cmd, o->device);
  add_common_options(*cmd, o->common);
}

}  // namespace asbi::cli
