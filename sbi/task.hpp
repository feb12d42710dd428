#pragma once
// sbibm benchmark tasks (Lueckmann et al. 2021) implemented natively: prior, simulator and, where
// the task has one, the exact log-likelihood. Definitions follow shared/reference/sbibm/TASKS.md.
//
//   std::unique_ptr<sbi::Task> task = sbi::make_task("two_moons");
//   sbi::Dataset data = sbi::simulate_dataset(task->prior(), task->simulator(), 10000, seed);
//   std::vector<double> x_o = sbi::reference_observation("two_moons", 1);  // needs the data dir
//
// Reference data (observations, true parameters) are read from the folder named by the
// environment variable ASBI_REFERENCE_DIR (its sbibm/ subfolder).
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "sbi/prior.hpp"
#include "sbi/simulator.hpp"
#include "sbi/task_kernels.hpp"

namespace asbi::sbi {

class Task {
 public:
  using LikelihoodFn = std::function<double(std::span<const double>, std::span<const double>)>;

  Task(std::string name, std::shared_ptr<const Prior> prior,
       std::shared_ptr<const Simulator> simulator, LikelihoodFn log_likelihood = nullptr);
  // A task whose prior, simulator and likelihood are those of a kernel in sbi/task_kernels.hpp:
  // it simulates on the GPU for θ on a CUDA device, and sample_task_posterior can run its
  // posterior's chains there.
  Task(std::string name, kernels::TaskKernel kernel);

  const std::string& name() const { return name_; }
  const Prior& prior() const { return *prior_; }
  std::shared_ptr<const Prior> shared_prior() const { return prior_; }
  const Simulator& simulator() const { return *simulator_; }
  std::int64_t theta_dim() const { return prior_->dim(); }
  std::int64_t x_dim() const { return simulator_->x_dim(); }
  bool has_likelihood() const { return static_cast<bool>(log_likelihood_); }
  // log p(x_obs | θ) for one θ; throws StateError when the task has no likelihood.
  double log_likelihood(std::span<const double> theta, std::span<const double> x_obs) const;
  // One value per row of theta [n, D].
  std::vector<double> log_likelihood(const Tensor& theta, std::span<const double> x_obs) const;
  // The kernel the task was built from, if any.
  std::optional<kernels::TaskKernel> kernel() const { return kernel_; }

 private:
  std::string name_;
  std::shared_ptr<const Prior> prior_;
  std::shared_ptr<const Simulator> simulator_;
  LikelihoodFn log_likelihood_;
  std::optional<kernels::TaskKernel> kernel_;
};

// The simulator of a kernel task. θ on the CPU: rows in parallel (OpenMP), row i drawing from
// core::Rng(seed, first_row + i) as every RowSimulator. θ on a CUDA device: one GPU thread per
// row, drawing the same numbers from the same counters (sbi/task_kernels.hpp); x must then be on
// the device too (DeviceError otherwise, and in a build without CUDA).
class TaskKernelSimulator : public RowSimulator {
 public:
  explicit TaskKernelSimulator(kernels::TaskKernel kernel) : kernel_(kernel) {}
  std::int64_t theta_dim() const override { return kernels::theta_dim(kernel_); }
  std::int64_t x_dim() const override { return kernels::x_dim(kernel_); }
  void simulate_row(std::span<const double> theta, std::span<double> x,
                    core::Rng& rng) const override;
  void simulate(const Tensor& theta, Tensor& x, std::uint64_t seed,
                std::uint64_t first_row) const override;
  using Simulator::simulate;
  kernels::TaskKernel kernel() const { return kernel_; }

 private:
  kernels::TaskKernel kernel_;
};

// Every name make_task accepts.
std::vector<std::string> task_names();
// Throws ValueError listing the known names when `name` is not one of them. slcp_distractors
// reads its fixed distractor mixture from the reference folder (IoError naming the missing path).
std::unique_ptr<Task> make_task(const std::string& name);

// $ASBI_REFERENCE_DIR/sbibm; throws IoError when the variable is unset or the folder is missing.
std::filesystem::path sbibm_reference_dir();
// The numeric rows of a reference CSV (header skipped); throws IoError naming the path.
std::vector<std::vector<double>> read_reference_rows(const std::filesystem::path& path);
// The folder of observation k (1-based) of a task: .../sbibm/<task>/num_observation_k, the base
// task's folder for slcp_distractors and bernoulli_glm_raw (they share its reference samples).
std::filesystem::path reference_observation_dir(const std::string& task, int k);
// x_o and θ* of observation k (1-based) of a task, from the sbibm reference folder (tasks
// slcp_distractors and bernoulli_glm_raw read their base task's folder).
std::vector<double> reference_observation(const std::string& task, int k);
std::vector<double> reference_true_parameters(const std::string& task, int k);

}  // namespace asbi::sbi
