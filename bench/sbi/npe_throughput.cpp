// NPE-NSF training throughput: training samples per second on two_moons (D = X = 2) and
// gaussian_linear (D = X = 10), on --device cpu or cuda, for a fixed number of epochs (no early
// stopping). Prints one JSON line; bench/peers/npe_throughput_torch.py builds the same NSF in
// PyTorch and prints the same fields (bench/README.md, "NPE training throughput").
//
//   ./build/release/bench/asbi_npe_throughput --device cuda --simulations 10000 --epochs 6
//
// The network is sbi's build_nsf default, as asbi's NPE builds it: θ and x z-scored, 5 ×
// [spline coupling (ResidualNet conditioner: 50 hidden, 2 blocks, relu; 10 bins, linear tails at
// ±3) → LULinear], standard normal base; Adam at 5e-4, batch 200, gradient norm clipped at 5,
// 10 % held out for validation. "samples_per_second" is the training rows of an epoch (full
// batches) over the epoch's wall time, its validation pass included (nn::EpochInfo), the median
// over the epochs after the first (which includes the device's warm-up).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/backend.hpp"
#include "nn/module.hpp"
#include "sbi/estimator.hpp"
#include "sbi/simulator.hpp"
#include "sbi/task.hpp"

namespace {

using namespace asbi;
using nlohmann::json;

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

json measure(const std::string& task_name, core::Device device, std::int64_t simulations,
             int epochs, int batch_size, std::uint64_t seed) {
  const auto task = sbi::make_task(task_name);
  const sbi::Dataset data =
      sbi::simulate_dataset(task->prior(), task->simulator(), simulations, seed);
  sbi::EstimatorOptions options{.method = sbi::Method::npe, .seed = seed, .device = device};
  options.train.batch_size = batch_size;
  options.train.max_epochs = epochs;
  options.train.patience = epochs + 1;  // a fixed number of epochs
  options.train.seed = seed;
  options.train.progress = nn::ProgressMode::silent;
  std::vector<double> rates;
  options.train.on_epoch = [&](const nn::EpochInfo& info) {
    rates.push_back(info.samples_per_second);
    return true;
  };
  auto estimator = sbi::make_estimator(task->shared_prior(), task->x_dim(), options);
  estimator->append_simulations(data.theta, data.x);
  const auto start = std::chrono::steady_clock::now();
  const nn::TrainResult result = estimator->train();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const std::vector<double> steady(rates.size() > 1 ? rates.begin() + 1 : rates.begin(),
                                   rates.end());
  return {{"task", task_name},
          {"theta_dim", task->theta_dim()},
          {"x_dim", task->x_dim()},
          {"simulations", data.theta.dim(0)},
          {"epochs", result.epochs},
          {"batch_size", batch_size},
          {"samples_per_second", median(steady)},
          {"first_epoch_samples_per_second", rates.empty() ? 0.0 : rates.front()},
          {"train_seconds", seconds},
          {"final_validation_loss",
           result.validation_loss.empty() ? json(nullptr) : json(result.validation_loss.back())}};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"NPE-NSF training throughput (samples/s) on two_moons and gaussian_linear",
               "asbi_npe_throughput"};
  std::string device_name = "cpu";
  std::int64_t simulations = 10'000;
  int epochs = 6, batch_size = 200;
  std::uint64_t seed = 1;
  std::vector<std::string> tasks = {"two_moons", "gaussian_linear"};
  app.add_option("--device", device_name, "cpu or cuda")
      ->capture_default_str()
      ->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--simulations", simulations, "simulations per task")
      ->capture_default_str()
      ->check(CLI::Range(std::int64_t{20}, std::int64_t{100'000'000}));
  app.add_option("--epochs", epochs, "epochs (fixed; no early stopping)")
      ->capture_default_str()
      ->check(CLI::Range(1, 100'000));
  app.add_option("--batch-size", batch_size, "training batch size")
      ->capture_default_str()
      ->check(CLI::Range(1, 1'000'000));
  app.add_option("--seed", seed, "simulations, split and initial weights")->capture_default_str();
  app.add_option("--tasks", tasks, "tasks to measure")->delimiter(',')->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  const core::Device device = device_name == "cuda" ? core::Device::cuda : core::Device::cpu;
  if (!core::device_available(device)) {
    std::cerr << "asbi_npe_throughput: error: --device " << device_name << ": not available ("
              << nn::device_unavailable_reason(device) << ")\n";
    return 2;
  }
  try {
    json results = json::array();
    for (const std::string& task : tasks)
      results.push_back(measure(task, device, simulations, epochs, batch_size, seed));
    const json line = {{"bench", "npe_throughput"},
                       {"implementation", "asbi"},
                       {"device", device_name},
                       {"device_description", core::backend(device).description()},
                       {"flow", "nsf"},
                       {"transforms", 5},
                       {"hidden", 50},
                       {"blocks", 2},
                       {"bins", 10},
                       {"results", results}};
    std::cout << line.dump() << '\n';
  } catch (const std::exception& e) {
    std::cerr << "asbi_npe_throughput: error: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
