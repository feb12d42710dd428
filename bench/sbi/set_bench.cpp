// One configuration of the large-set experiments (docs/benchmarks.md, "Large sets"): train a
// DeepSet NPE on a set task (pair-trained, |S| ≤ K ablation, or end to end at N), then score it on
// observations that development never used (101–110 by default) by C2ST against the task's
// reference posterior, optionally run SBC, and print one JSON line (appended to --out) with the
// training cost per stage: wall seconds, peak tensor memory, and the process's peak RSS.
//
// One configuration per process, so that the peak RSS belongs to it alone:
//   ./build/release/bench/asbi_set_bench --task gaussian_nuisance --set-size 1000
//       --training pairs --out bench/results/sets.jsonl
// Reference samples are cached as CSV under --reference-cache (computed once per task, N and
// observation; MCMC for mixture_nuisance and gp_replicates).
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "sbi/calibration.hpp"
#include "sbi/csv.hpp"
#include "sbi/diagnostics.hpp"
#include "sbi/set_estimator.hpp"
#include "sbi/set_task.hpp"

namespace {

using namespace asbi;
using nlohmann::json;
namespace fs = std::filesystem;

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::int64_t peak_rss_bytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<std::int64_t>(usage.ru_maxrss) * 1024;  // Linux reports KiB
}

json stage_json(const sbi::SetStageCost& cost) {
  return {{"seconds", cost.seconds}, {"peak_bytes", cost.peak_bytes}};
}

// The reference draws of observation k at size n, from the cache or computed and cached.
core::Tensor reference_samples(const sbi::SetTask& task, const core::Tensor& set, int k,
                               std::int64_t n, std::int64_t samples, const fs::path& cache) {
  const fs::path file =
      cache / (task.name() + "_n" + std::to_string(n) + "_obs" + std::to_string(k) + "_" +
               std::to_string(samples) + ".csv");
  if (fs::is_regular_file(file)) return sbi::read_csv(file.string(), core::DType::f64);
  const sbi::SetReference reference =
      sbi::set_reference_posterior(task, set, samples, /*seed=*/1000 + static_cast<std::uint64_t>(k));
  const core::Tensor& ref = reference.samples;
  fs::create_directories(cache);
  std::vector<std::string> header;
  for (std::int64_t j = 1; j <= ref.dim(1); ++j) header.push_back("parameter_" + std::to_string(j));
  sbi::write_csv(file.string(), ref, header);
  return ref;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"asbi_set_bench: one large-set configuration, scored and timed (JSON line)"};
  std::string task_name = "gaussian_nuisance", training = "pairs", encoder = "mlp", out;
  std::int64_t set_size = 100, encoder_set_size = 2, simulations = 10'000, head_simulations = 0;
  std::int64_t c2st_samples = 5000, sbc_sets = 0, sbc_draws = 200;
  int first_observation = 101, observations = 10, max_epochs = 2000;
  std::uint64_t seed = 1;
  bool fine_tune = false;
  std::string cache = "bench/results/set_references";
  app.add_option("--task", task_name, "set task")->capture_default_str();
  app.add_option("--training", training, "pairs or end_to_end")->capture_default_str();
  app.add_option("--encoder", encoder, "mlp or conv")->capture_default_str();
  app.add_option("--set-size", set_size, "deployment set size N")->capture_default_str();
  app.add_option("--encoder-set-size", encoder_set_size, "pairs: largest stage-1 set (2: pairs)")
      ->capture_default_str();
  app.add_option("--simulations", simulations, "sets of stage 1 / end-to-end training")
      ->capture_default_str();
  app.add_option("--head-simulations", head_simulations, "sets of stages 2-3 (0: --simulations)");
  app.add_option("--max-epochs", max_epochs, "epoch cap of every training")->capture_default_str();
  app.add_flag("--fine-tune-head", fine_tune, "stage 3 continues from the stage-1 head");
  app.add_option("--first-observation", first_observation, "first observation index")
      ->capture_default_str();
  app.add_option("--observations", observations, "observations scored by C2ST (0: none)")
      ->capture_default_str();
  app.add_option("--c2st-samples", c2st_samples, "posterior and reference draws per C2ST")
      ->capture_default_str();
  app.add_option("--sbc-sets", sbc_sets, "SBC test sets (0: no SBC)")->capture_default_str();
  app.add_option("--sbc-draws", sbc_draws, "posterior draws per SBC set")->capture_default_str();
  app.add_option("--seed", seed, "training seed")->capture_default_str();
  app.add_option("--reference-cache", cache, "folder of cached reference samples")
      ->capture_default_str();
  app.add_option("--out", out, "JSON lines file to append to (stdout always gets the line)");
  CLI11_PARSE(app, argc, argv);

  try {
    const std::shared_ptr<const sbi::SetTask> task = sbi::make_set_task(task_name);
    sbi::SetEstimatorOptions options;
    options.training = sbi::set_training_from_name(training);
    options.encoder.kind = sbi::set_encoder_from_name(encoder);
    if (options.encoder.kind == sbi::SetEncoderKind::conv) options.aggregate.chunk_elements = 512;
    options.min_set_size = options.max_set_size = set_size;
    options.encoder_max_set_size = encoder_set_size;
    options.encoder_simulations = simulations;
    options.head_simulations = head_simulations > 0 ? head_simulations : simulations;
    options.fine_tune_head = fine_tune;
    options.seed = seed;
    options.encoder_train.seed = seed;
    options.encoder_train.max_epochs = max_epochs;
    options.encoder_train.progress = nn::ProgressMode::lines;
    options.encoder_train.log_every = 20;
    options.head.seed = seed;
    options.head.train = options.encoder_train;

    sbi::SetEstimator estimator(task, options);
    const sbi::SetTrainReport report = estimator.train();
    const auto posterior = estimator.posterior();

    json line = {{"task", task_name},
                 {"training", training},
                 {"encoder", encoder},
                 {"set_size", set_size},
                 {"encoder_set_size", options.training == sbi::SetTraining::pairs
                                          ? encoder_set_size
                                          : set_size},
                 {"simulations", simulations},
                 {"head_simulations", options.head_simulations},
                 {"fine_tune_head", fine_tune},
                 {"seed", seed},
                 {"encoder_epochs", report.encoder.epochs},
                 {"head_epochs", report.head.epochs},
                 {"train_seconds", report.total_seconds()},
                 {"peak_tensor_bytes", report.peak_bytes()},
                 {"stages",
                  {{"simulate_encoder_sets", stage_json(report.simulate_encoder_sets)},
                   {"train_encoder", stage_json(report.train_encoder)},
                   {"aggregate", stage_json(report.aggregate)},
                   {"train_head", stage_json(report.train_head)}}}};

    std::vector<double> c2sts;
    double reference_seconds = 0;
    for (int k = first_observation; k < first_observation + observations; ++k) {
      const sbi::SetObservation observation = sbi::set_observation(*task, k, set_size);
      const auto t0 = std::chrono::steady_clock::now();
      const core::Tensor ref = reference_samples(*task, observation.set, k, set_size, c2st_samples, cache);
      reference_seconds += seconds_since(t0);
      const core::Tensor q = posterior->sample(c2st_samples, observation.set, /*seed=*/k);
      c2sts.push_back(sbi::c2st(ref, q));
      std::cerr << task_name << " N=" << set_size << " observation " << k << ": C2ST "
                << c2sts.back() << '\n';
    }
    if (!c2sts.empty()) {
      double mean = 0;
      for (double c : c2sts) mean += c / static_cast<double>(c2sts.size());
      line["c2st"] = c2sts;
      line["c2st_mean"] = mean;
      line["reference_seconds"] = reference_seconds;
    }

    if (sbc_sets > 0) {
      // SBC on the first target: θ* from the prior, a set at N, the rank of θ*_0 among draws.
      std::vector<std::int64_t> ranks;
      const std::uint64_t sbc_seed = seed ^ 0x5342'4300'0000'0000ull;  // "SBC": apart from training
      core::Rng rng(sbc_seed, /*stream=*/0);
      const core::Tensor thetas = task->prior().sample(sbc_sets, rng, core::DType::f64);
      const std::int64_t p = task->parameter_dim();
      for (std::int64_t i = 0; i < sbc_sets; ++i) {
        const std::span<const double> theta(thetas.data<double>() + i * p, static_cast<std::size_t>(p));
        const core::Tensor set =
            task->simulate_set(theta, set_size, sbc_seed, static_cast<std::uint64_t>(i));
        const core::Tensor draws = posterior->sample(sbc_draws, set, static_cast<std::uint64_t>(i));
        std::int64_t rank = 0;
        for (std::int64_t j = 0; j < sbc_draws; ++j) rank += draws.at(j * draws.dim(1)) < theta[0];
        ranks.push_back(rank);
      }
      const sbi::RankUniformity u = sbi::rank_uniformity(ranks, sbc_draws, 0, seed);
      line["sbc"] = {{"sets", sbc_sets},      {"draws", sbc_draws},
                     {"ks_pvalue", u.ks_pvalue}, {"ks_statistic", u.ks_statistic},
                     {"chi2_pvalue", u.chi2_pvalue}};
    }
    line["peak_rss_bytes"] = peak_rss_bytes();
    const std::string text = line.dump();
    std::cout << text << std::endl;
    if (!out.empty()) {
      std::ofstream file(out, std::ios::app);
      file << text << '\n';
      if (!file) throw core::IoError("cannot append to " + out);
    }
  } catch (const std::exception& e) {
    std::cerr << "asbi_set_bench: error: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
