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
#include <span>
#include <string>
#include <vector>

#include "sbi/prior.hpp"
#include "sbi/simulator.hpp"

namespace asbi::sbi {

class Task {
 public:
  using LikelihoodFn = std::function<double(std::span<const double>, std::span<const double>)>;

  Task(std::string name, std::shared_ptr<const Prior> prior,
       std::shared_ptr<const Simulator> simulator, LikelihoodFn log_likelihood = nullptr);

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

 private:
  std::string name_;
  std::shared_ptr<const Prior> prior_;
  std::shared_ptr<const Simulator> simulator_;
  LikelihoodFn log_likelihood_;
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
