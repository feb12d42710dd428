// Simulations per second of the cheap tasks' batched simulators on the CPU (OpenMP over rows) and
// on the GPU (one thread per row, sbi/cuda/simulate.cu), and chain iterations per second of
// sample_task_posterior (Metropolis, half of them warm-up, whose adaptation syncs with the host
// after every iteration) on both: one JSON line per (task, device) on stdout. The GPU lines are
// left out on a machine without a CUDA device.
//
//   ./build/release/bench/asbi_gpu_simulate_bench --rows 1000000 --chains 4096
//
// Each figure is the best of --repeats runs after one warm-up run (first-launch costs, the pool's
// first allocation); the GPU times include the device synchronisation of reading x back, not the
// host → device copy of θ, which a training loop keeps on the device.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/backend.hpp"
#include "core/rng.hpp"
#include "sbi/mcmc.hpp"
#include "sbi/task.hpp"

namespace {


template <typename F>
double best_seconds(int repeats, F&& f) {
  f();  // warm-up
  double best = 1e300;
  for (int r = 0; r < repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
                              .count());
  }
  return best;
}

}  // namespace

using namespace asbi;
using core::DType;
using core::Tensor;

int main(int argc, char** argv) {
  CLI::App app("Batched simulators and many-chain MCMC: CPU vs GPU");
  std::int64_t rows = 1'000'000;
  int chains = 4096, iterations = 200, repeats = 3;
  app.add_option("--rows", rows, "simulations per batch");
  app.add_option("--chains", chains, "MCMC chains");
  app.add_option("--iterations", iterations, "MCMC iterations per chain (warm-up included)");
  app.add_option("--repeats", repeats, "timed runs per figure (the best is reported)");
  CLI11_PARSE(app, argc, argv);

  std::vector<core::Device> devices = {core::Device::cpu};
  if (core::device_available(core::Device::cuda)) devices.push_back(core::Device::cuda);
  for (const std::string name :
       {"gaussian_linear", "two_moons", "slcp", "gaussian_mixture"}) {
    const auto task = sbi::make_task(name);
    core::Rng rng(1, 0);
    const Tensor theta = task->prior().sample(rows, rng, DType::f32);
    core::Rng obs_rng(2, 0);
    const std::vector<double> x_o =
        task->simulator().simulate(task->prior().sample(1, obs_rng), 3).to_vector();
    for (const core::Device device : devices) {
      const Tensor theta_on = theta.to(device);
      Tensor x = Tensor::empty({rows, task->x_dim()}, DType::f32, device);
      const double sim_s = best_seconds(repeats, [&] {
        task->simulator().simulate(theta_on, x, 7, 0);
        (void)x.at(rows * task->x_dim() - 1);  // waits for the device
      });
      sbi::McmcOptions o;
      o.sampler = sbi::SamplerKind::mh;
      o.chains = chains;
      o.warmup = iterations / 2;
      o.init = sbi::ChainInit::proposal;  // one draw per chain: the figure is the iterations'
      const double mcmc_s = best_seconds(repeats, [&] {
        sbi::sample_task_posterior(*task, x_o, static_cast<std::int64_t>(chains) * (iterations / 2),
                                   o, device);
      });
      nlohmann::json line = {{"bench", "gpu_simulate"},
                             {"task", name},
                             {"device", device == core::Device::cuda ? "cuda" : "cpu"},
                             {"rows", rows},
                             {"simulations_per_s", static_cast<double>(rows) / sim_s},
                             {"chains", chains},
                             {"iterations", iterations},
                             {"mh_chain_iterations_per_s",
                              static_cast<double>(chains) * iterations / mcmc_s}};
      if (device == core::Device::cuda) line["gpu"] = core::backend(device).description();
      std::cout << line.dump() << std::endl;
    }
  }
  return 0;
}
