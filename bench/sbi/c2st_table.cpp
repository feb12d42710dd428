// The sbibm accuracy table: for each task × method × simulation budget, train once (amortized),
// sample 10 000 posterior draws for observations 1–5, and score each against the shipped
// reference samples with sbibm's C2ST. Every cell is one JSON line appended to --out, so a long
// run can be stopped and resumed (cells already in the file are skipped); at the end a markdown
// table sets the mean C2ST beside sbibm's published mean for the same cell (main_paper.csv).
//
//   ./build/release/bench/asbi_c2st_table --tasks two_moons,slcp --methods npe
//       --budgets 10000 --out bench/results/c2st.jsonl
//
// Needs ASBI_REFERENCE_DIR (the folder holding sbibm/). Seeds are fixed: cell (task, method,
// budget) uses simulation seed `--seed` and the same seed for weights and training order.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "sbi/csv.hpp"
#include "sbi/diagnostics.hpp"
#include "sbi/estimator.hpp"
#include "sbi/task.hpp"

namespace {

using namespace asbi;
using nlohmann::json;

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> parts;
  std::stringstream in(text);
  for (std::string part; std::getline(in, part, ',');)
    if (!part.empty()) parts.push_back(part);
  return parts;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// sbibm writes budgets as "10³", "10⁴", "10⁵".
std::string published_budget(std::int64_t budget) {
  switch (budget) {
    case 1000: return "10³";
    case 10000: return "10⁴";
    case 100000: return "10⁵";
    default: return "";
  }
}

std::string published_algorithm(const std::string& method) {
  if (method == "npe") return "NPE";
  if (method == "nle") return "NLE";
  return "NRE";  // sbibm's NRE is SNRE-B run for one round
}

// Mean published C2ST over observations 1–5 per (task, algorithm, budget).
std::map<std::string, double> read_published(const std::filesystem::path& csv) {
  std::ifstream in(csv);
  if (!in) throw core::IoError(core::str(csv.string(), ": cannot open the published results"));
  std::map<std::string, std::pair<double, int>> sums;
  std::string line;
  std::getline(in, line);  // header: task,num_simulations,num_observation,algorithm,C2ST,…
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::stringstream row(line);
    for (std::string cell; std::getline(row, cell, ',');) f.push_back(cell);
    if (f.size() < 5 || f[4].empty()) continue;
    const int observation = std::stoi(f[2]);
    if (observation < 1 || observation > 5) continue;
    auto& [sum, count] = sums[f[0] + "|" + f[3] + "|" + f[1]];
    sum += std::stod(f[4]);
    ++count;
  }
  std::map<std::string, double> means;
  for (const auto& [key, s] : sums) means[key] = s.first / s.second;
  return means;
}

std::string cell_key(const std::string& task, const std::string& method, std::int64_t budget) {
  return task + "|" + method + "|" + std::to_string(budget);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"asbi's sbibm C2ST table (bench/sbi/c2st_table.cpp)"};
  std::string tasks = "two_moons,gaussian_linear,slcp,gaussian_mixture,bernoulli_glm";
  std::string methods = "npe,nle,nre";
  std::string budgets = "1000,10000,100000";
  std::string out = "c2st_table.jsonl";
  int observations = 5;
  std::int64_t num_samples = 10000;
  std::uint64_t seed = 1;
  app.add_option("--tasks", tasks, "comma-separated task names")->capture_default_str();
  app.add_option("--methods", methods, "comma-separated: npe, nle, nre")->capture_default_str();
  app.add_option("--budgets", budgets, "comma-separated simulation budgets")
      ->capture_default_str();
  app.add_option("--observations", observations, "observations 1…k")->capture_default_str();
  app.add_option("--num-samples", num_samples, "posterior draws per observation")
      ->capture_default_str();
  app.add_option("--seed", seed, "simulation, weight and training seed")->capture_default_str();
  app.add_option("--out", out, "JSON lines, appended; finished cells are skipped")
      ->capture_default_str();
  bool report_only = false;
  app.add_flag("--report", report_only,
               "run nothing: print the table of the finished cells already in --out");
  CLI11_PARSE(app, argc, argv);

  try {
    std::set<std::string> done;
    std::vector<json> rows;
    if (std::ifstream previous(out); previous) {
      for (std::string line; std::getline(previous, line);) {
        if (line.empty()) continue;
        json row = json::parse(line);
        rows.push_back(row);
        if (row.value("observation", 0) == observations)
          done.insert(cell_key(row["task"], row["method"], row["budget"]));
      }
    }
    std::ofstream log;
    if (!report_only) log.open(out, std::ios::app);
    for (const std::string& task_name : report_only ? std::vector<std::string>{} : split(tasks)) {
      const auto task = sbi::make_task(task_name);
      for (const std::string& method : split(methods)) {
        for (const std::string& budget_text : split(budgets)) {
          const std::int64_t budget = std::stoll(budget_text);
          if (done.count(cell_key(task_name, method, budget))) continue;
          sbi::EstimatorOptions options{.method = sbi::method_from_name(method), .seed = seed};
          options.train.seed = seed;
          options.train.progress = nn::ProgressMode::silent;
          options.mcmc.seed = seed;
          const auto start = std::chrono::steady_clock::now();
          const sbi::Dataset data =
              sbi::simulate_dataset(task->prior(), task->simulator(), budget, seed);
          const double simulate_seconds = seconds_since(start);
          auto estimator = sbi::make_estimator(task->shared_prior(), task->x_dim(), options);
          estimator->append_simulations(data.theta, data.x);
          const auto train_start = std::chrono::steady_clock::now();
          const nn::TrainResult trained = estimator->train();
          const double train_seconds = seconds_since(train_start);
          const auto posterior = estimator->posterior();
          for (int k = 1; k <= observations; ++k) {
            const std::vector<double> x_o = sbi::reference_observation(task_name, k);
            const auto sample_start = std::chrono::steady_clock::now();
            const core::Tensor samples = posterior->sample(num_samples, x_o, seed + k);
            const double sample_seconds = seconds_since(sample_start);
            const core::Tensor reference = sbi::read_csv(
                sbi::reference_observation_dir(task_name, k) / "reference_posterior_samples.csv");
            const double accuracy = sbi::c2st(reference, samples);
            json row = {{"task", task_name},
                        {"method", method},
                        {"budget", budget},
                        {"observation", k},
                        {"c2st", accuracy},
                        {"simulations_kept", data.theta.dim(0)},
                        {"epochs", trained.epochs},
                        {"simulate_seconds", simulate_seconds},
                        {"train_seconds", train_seconds},
                        {"sample_seconds", sample_seconds}};
            log << row.dump() << '\n' << std::flush;
            std::cerr << row.dump() << '\n';
            rows.push_back(row);
          }
        }
      }
    }

    const auto published =
        read_published(sbi::sbibm_reference_dir() / "published_results" / "main_paper.csv");
    // A cell counts once all its observations are in; a row written twice (two runs appending to
    // one file) counts once, the later one.
    std::map<std::string, std::map<int, json>> cells;
    for (const json& row : rows)
      cells[cell_key(row["task"], row["method"], row["budget"])][row["observation"].get<int>()] =
          row;
    std::map<std::string, std::pair<double, int>> ours;
    std::map<std::string, double> train_time;
    for (const auto& [key, by_observation] : cells) {
      if (std::ssize(by_observation) < observations) continue;
      for (const auto& [k, row] : by_observation) {
        if (k > observations) continue;
        ours[key].first += row["c2st"].get<double>();
        ours[key].second += 1;
        train_time[key] = row["train_seconds"].get<double>();
      }
    }
    std::printf("| task | method | budget | asbi C2ST (mean obs 1–%d) | sbibm published | "
                "train s |\n|---|---|---|---|---|---|\n",
                observations);
    for (const auto& [key, s] : ours) {
      const auto first = key.find('|'), second = key.rfind('|');
      const std::string task = key.substr(0, first), method = key.substr(first + 1,
                                                                         second - first - 1);
      const std::int64_t budget = std::stoll(key.substr(second + 1));
      const auto p = published.find(task + "|" + published_algorithm(method) + "|" +
                                    published_budget(budget));
      std::printf("| %s | %s | %lld | %.3f | %s | %.1f |\n", task.c_str(), method.c_str(),
                  static_cast<long long>(budget), s.first / s.second,
                  p == published.end() ? "–" : core::str(std::fixed, std::setprecision(3),
                                                         p->second).c_str(),
                  train_time[key]);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "asbi_c2st_table: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
