#include "sbi/task.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "core/error.hpp"
#include "sbi/cuda/gpu.hpp"

namespace asbi::sbi {

// The ODE tasks, defined in task_ode.cpp.
std::unique_ptr<Task> make_sir_task();
std::unique_ptr<Task> make_lotka_volterra_task();

namespace {

double softplus(double z) { return z > 0 ? z + std::log1p(std::exp(-z)) : std::log1p(std::exp(z)); }

std::shared_ptr<const Prior> box(std::int64_t d, double low, double high) {
  return std::make_shared<BoxUniform>(std::vector<double>(static_cast<std::size_t>(d), low),
                                      std::vector<double>(static_cast<std::size_t>(d), high));
}

std::shared_ptr<const Simulator> row_simulator(std::int64_t d, std::int64_t xd,
                                               CallableSimulator::RowFn fn) {
  return std::make_shared<CallableSimulator>(CallableSimulator::per_row(d, xd, std::move(fn)));
}

// Bernoulli GLM stimulus I_t: numpy RandomState(42).randn(100) as float32
// (shared/reference/sbibm/bernoulli_glm/stimulus_I.csv), small enough to embed.
constexpr std::array<double, 100> kStimulus = {
    0.496714145,   -0.138264298, 0.647688568,   1.5230298,    -0.234153375, -0.234136954,
    1.57921278,    0.767434716,  -0.469474375,  0.542560041,  -0.463417679, -0.465729743,
    0.241962269,   -1.91328025,  -1.72491789,   -0.562287509, -1.01283109,  0.31424734,
    -0.908024073,  -1.41230369,  1.46564877,    -0.2257763,   0.0675282031, -1.42474818,
    -0.544382751,  0.11092259,   -1.15099359,   0.37569803,   -0.600638688, -0.291693747,
    -0.601706624,  1.85227823,   -0.013497225,  -1.05771089,  0.822544932,  -1.22084367,
    0.208863601,   -1.95967007,  -1.32818604,   0.196861237,  0.738466561,  0.171368286,
    -0.115648285,  -0.301103681, -1.47852194,   -0.719844222, -0.460638762, 1.05712223,
    0.343618304,   -1.76304018,  0.324083984,   -0.385082275, -0.676922023, 0.611676276,
    1.03099954,    0.931280136,  -0.839217544,  -0.309212387, 0.331263423,  0.975545108,
    -0.479174227,  -0.185658976, -1.10633492,   -1.19620657,  0.812525809,  1.35624003,
    -0.0720101222, 1.00353289,   0.361636013,   -0.645119727, 0.361395597,  1.53803658,
    -0.0358260386, 1.56464362,   -2.61974502,   0.821902514,  0.0870470703, -0.299007356,
    0.0917607769,  -1.98756886,  -0.21967189,   0.357112557,  1.47789407,   -0.518270195,
    -0.808493614,  -0.501757026, 0.915402114,   0.328751117,  -0.529760182, 0.513267457,
    0.0970775485,  0.968644977,  -0.70205307,   -0.32766214,  -0.392108142, -1.46351492,
    0.296120286,   0.261055261,  0.00511345686, -0.234587133,
};
constexpr std::size_t kGlmT = 100, kGlmD = 10;

// Design matrix X [100, 10]: a column of ones, then I_{t-j} for j = 0..8 (0 before the start).
std::vector<double> glm_design() {
  std::vector<double> x(kGlmT * kGlmD, 0.0);
  for (std::size_t t = 0; t < kGlmT; ++t) {
    x[t * kGlmD] = 1.0;
    for (std::size_t j = 0; j < 9; ++j)
      if (t >= j) x[t * kGlmD + j + 1] = kStimulus[t - j];
  }
  return x;
}

// Prior N(0, B) with precision B⁻¹ = blockdiag(0.5, FᵀF), F = D·D + diag(√(i/9)), D the 9×9
// first-difference matrix.
std::shared_ptr<const Prior> glm_prior() {
  constexpr std::size_t n = 9;
  std::vector<double> f(n * n, 0.0);
  for (std::size_t i = 0; i < n; ++i) {
    f[i * n + i] = 1.0 + std::sqrt(static_cast<double>(i) / 9.0);
    if (i >= 1) f[i * n + i - 1] = -2.0;
    if (i >= 2) f[i * n + i - 2] = 1.0;
  }
  std::vector<double> prec(kGlmD * kGlmD, 0.0);
  prec[0] = 0.5;
  for (std::size_t a = 0; a < n; ++a)
    for (std::size_t b = 0; b < n; ++b) {
      double s = 0;
      for (std::size_t k = 0; k < n; ++k) s += f[k * n + a] * f[k * n + b];
      prec[(a + 1) * kGlmD + b + 1] = s;
    }
  return std::make_shared<Gaussian>(
      Gaussian::from_precision(std::vector<double>(kGlmD, 0.0), prec));
}

std::unique_ptr<Task> bernoulli_glm(bool raw) {
  auto design = std::make_shared<const std::vector<double>>(glm_design());
  auto psi = [design](std::span<const double> theta, std::size_t t) {
    double s = 0;
    for (std::size_t j = 0; j < kGlmD; ++j) s += (*design)[t * kGlmD + j] * theta[j];
    return s;
  };
  // y_t ~ Bernoulli(sigmoid(ψ_t)); x = y (raw) or the sufficient statistic Xᵀy.
  auto sim = [design, psi, raw](std::span<const double> theta, std::span<double> x,
                                core::Rng& rng) {
    if (!raw)
      for (double& v : x) v = 0;
    for (std::size_t t = 0; t < kGlmT; ++t) {
      const double y = rng.uniform() < 1.0 / (1.0 + std::exp(-psi(theta, t))) ? 1.0 : 0.0;
      if (raw) {
        x[t] = y;
      } else {
        for (std::size_t j = 0; j < kGlmD; ++j) x[j] += y * (*design)[t * kGlmD + j];
      }
    }
  };
  // log p(y | θ) = Σ_t y_t ψ_t - log(1 + e^ψ_t); with x = Xᵀy this is θᵀx - Σ_t softplus(ψ_t).
  auto ll = [psi, raw](std::span<const double> theta, std::span<const double> x) {
    double s = 0;
    for (std::size_t t = 0; t < kGlmT; ++t) {
      const double p = psi(theta, t);
      s -= softplus(p);
      if (raw) s += x[t] * p;
    }
    if (!raw)
      for (std::size_t j = 0; j < kGlmD; ++j) s += theta[j] * x[j];
    return s;
  };
  const std::int64_t xd = raw ? static_cast<std::int64_t>(kGlmT) : static_cast<std::int64_t>(kGlmD);
  return std::make_unique<Task>(raw ? "bernoulli_glm_raw" : "bernoulli_glm", glm_prior(),
                                row_simulator(10, xd, sim), ll);
}

// SLCP with distractors: the 8 SLCP values and 92 draws from a fixed mixture of 20
// multivariate Student-t (df 2), permuted by a fixed permutation. The mixture and permutation
// are sbibm's data files (slcp/ in the reference folder).
struct Distractors {
  static constexpr std::size_t kDim = 92, kComponents = 20;
  std::vector<double> weights, df, loc, tril;  // loc [20, 92], tril [20, 92, 92]
  std::vector<std::size_t> permutation;        // x_out[j] = concat[permutation[j]]
};

std::vector<std::vector<double>> rows_of_width(const std::filesystem::path& path, std::size_t rows,
                                               std::size_t width) {
  auto r = read_reference_rows(path);
  if (r.size() != rows)
    throw core::IoError(core::str(path.string(), ": expected ", rows, " rows, got ", r.size()));
  for (const auto& v : r)
    if (v.size() != width)
      throw core::IoError(
          core::str(path.string(), ": expected ", width, " columns, got ", v.size()));
  return r;
}

std::shared_ptr<const Distractors> load_distractors() {
  const std::filesystem::path dir = sbibm_reference_dir() / "slcp";
  auto d = std::make_shared<Distractors>();
  constexpr std::size_t n = Distractors::kDim, k = Distractors::kComponents;
  for (const auto& r : rows_of_width(dir / "distractor_mixture_weights_df.csv", k, 3)) {
    d->weights.push_back(r[1]);
    d->df.push_back(r[2]);
  }
  for (const auto& r : rows_of_width(dir / "distractor_loc.csv", k, n))
    d->loc.insert(d->loc.end(), r.begin(), r.end());
  d->tril.assign(k * n * n, 0.0);
  // Long form: component, row, then the 92 entries of that row of L_component.
  for (const auto& r : rows_of_width(dir / "distractor_scale_tril.csv", k * n, n + 2)) {
    const auto c = static_cast<std::size_t>(r[0]), i = static_cast<std::size_t>(r[1]);
    if (c >= k || i >= n)
      throw core::IoError(core::str((dir / "distractor_scale_tril.csv").string(), ": component ", c,
                                    " row ", i, " out of range"));
    std::copy(r.begin() + 2, r.end(),
              d->tril.begin() + static_cast<std::ptrdiff_t>((c * n + i) * n));
  }
  std::vector<bool> seen(n + 8, false);
  for (const auto& r : rows_of_width(dir / "permutation_idx.csv", n + 8, 1)) {
    const auto j = static_cast<std::size_t>(r[0]);
    if (r[0] < 0 || j >= n + 8 || seen[j])
      throw core::IoError(core::str((dir / "permutation_idx.csv").string(),
                                    ": expected a permutation of 0..99, got entry ", r[0]));
    seen[j] = true;
    d->permutation.push_back(j);
  }
  return d;
}

std::unique_ptr<Task> slcp_distractors() {
  std::shared_ptr<const Distractors> d = load_distractors();
  auto sim = [d](std::span<const double> theta, std::span<double> x, core::Rng& rng) {
    constexpr std::size_t n = Distractors::kDim;
    std::array<double, n + 8> concat{};
    kernels::simulate(kernels::TaskKernel::slcp, theta.data(), concat.data(), rng);
    // Multivariate t: loc + L z · √(df / w), w ~ χ²(df) = 2 · Gamma(df / 2).
    const std::size_t c = rng.categorical(d->weights);
    const double w = 2.0 * rng.gamma(d->df[c] / 2.0);
    const double scale = std::sqrt(d->df[c] / w);
    std::array<double, n> z{};
    for (double& v : z) v = rng.normal();
    for (std::size_t i = 0; i < n; ++i) {
      double s = 0;
      for (std::size_t k = 0; k <= i; ++k) s += d->tril[(c * n + i) * n + k] * z[k];
      concat[8 + i] = d->loc[c * n + i] + scale * s;
    }
    for (std::size_t j = 0; j < n + 8; ++j) x[j] = concat[d->permutation[j]];
  };
  return std::make_unique<Task>("slcp_distractors", box(5, -3, 3), row_simulator(5, 100, sim));
}

}  // namespace

Task::Task(std::string name, std::shared_ptr<const Prior> prior,
           std::shared_ptr<const Simulator> simulator, LikelihoodFn log_likelihood)
    : name_(std::move(name)),
      prior_(std::move(prior)),
      simulator_(std::move(simulator)),
      log_likelihood_(std::move(log_likelihood)) {
  if (!prior_ || !simulator_)
    throw core::ValueError(core::str("Task ", name_, ": expected a prior and a simulator"));
  if (prior_->dim() != simulator_->theta_dim())
    throw core::ValueError(core::str("Task ", name_, ": prior dimension ", prior_->dim(),
                                     " differs from the simulator's theta_dim ",
                                     simulator_->theta_dim()));
}

namespace {

std::shared_ptr<const Prior> kernel_prior(kernels::TaskKernel kernel) {
  const kernels::KernelPrior p = kernels::prior_of(kernel);
  const auto d = static_cast<std::size_t>(kernels::theta_dim(kernel));
  if (!p.gaussian) return box(static_cast<std::int64_t>(d), p.low, p.high);
  std::vector<double> cov(d * d, 0.0);
  for (std::size_t i = 0; i < d; ++i) cov[i * d + i] = p.variance;
  return std::make_shared<Gaussian>(std::vector<double>(d, 0.0), cov);
}

}  // namespace

Task::Task(std::string name, kernels::TaskKernel kernel)
    : Task(std::move(name), kernel_prior(kernel), std::make_shared<TaskKernelSimulator>(kernel),
           [kernel](std::span<const double> theta, std::span<const double> x) {
             return kernels::log_likelihood(kernel, theta.data(), x.data());
           }) {
  kernel_ = kernel;
}

void TaskKernelSimulator::simulate_row(std::span<const double> theta, std::span<double> x,
                                       core::Rng& rng) const {
  kernels::simulate(kernel_, theta.data(), x.data(), rng);
}

void TaskKernelSimulator::simulate(const Tensor& theta, Tensor& x, std::uint64_t seed,
                                   std::uint64_t first_row) const {
  if (!theta.defined() || theta.device() != core::Device::cuda) {
    RowSimulator::simulate(theta, x, seed, first_row);
    return;
  }
  if (theta.rank() != 2 || theta.dim(1) != theta_dim())
    throw core::ShapeError(
        core::str("Simulator::simulate: expected theta [B, ", theta_dim(), "], got ", theta.shape()));
  if (!x.defined() || x.rank() != 2 || x.dim(0) != theta.dim(0) || x.dim(1) != x_dim())
    throw core::ShapeError(core::str("Simulator::simulate: expected x [", theta.dim(0), ", ",
                                     x_dim(), "], got ", x.defined() ? x.shape() : core::Shape{}));
  if (x.device() != core::Device::cuda)
    throw core::DeviceError(core::str("Simulator::simulate: theta is on cuda but x is on ",
                                      x.device(), "; expected both on the same device"));
#if defined(ASBI_SBI_CUDA)
  gpu::simulate_rows(kernel_, theta, x, seed, first_row);
#else
  throw gpu::gpu_unavailable("Simulator::simulate");
#endif
}

double Task::log_likelihood(std::span<const double> theta, std::span<const double> x_obs) const {
  if (!log_likelihood_)
    throw core::StateError(core::str("Task ", name_, " has no tractable likelihood"));
  if (static_cast<std::int64_t>(theta.size()) != theta_dim() ||
      static_cast<std::int64_t>(x_obs.size()) != x_dim())
    throw core::ShapeError(core::str("Task ", name_, "::log_likelihood: expected theta of ",
                                     theta_dim(), " and x of ", x_dim(), " values, got ",
                                     theta.size(), " and ", x_obs.size()));
  return log_likelihood_(theta, x_obs);
}

std::vector<double> Task::log_likelihood(const Tensor& theta, std::span<const double> x_obs) const {
  if (!theta.defined() || theta.rank() != 2 || theta.dim(1) != theta_dim())
    throw core::ShapeError(
        core::str("Task ", name_, "::log_likelihood: expected theta [n, ", theta_dim(), "]"));
  const std::vector<double> v = theta.to_vector();
  const auto d = static_cast<std::size_t>(theta_dim());
  std::vector<double> out(static_cast<std::size_t>(theta.dim(0)));
  for (std::size_t i = 0; i < out.size(); ++i)
    out[i] = log_likelihood(std::span<const double>(v).subspan(i * d, d), x_obs);
  return out;
}

std::vector<std::string> task_names() {
  return {"gaussian_linear",
          "gaussian_linear_uniform",
          "two_moons",
          "slcp",
          "slcp_distractors",
          "gaussian_mixture",
          "bernoulli_glm",
          "bernoulli_glm_raw",
          "sir",
          "lotka_volterra"};
}

std::unique_ptr<Task> make_task(const std::string& name) {
  using kernels::TaskKernel;
  if (name == "gaussian_linear") return std::make_unique<Task>(name, TaskKernel::gaussian_linear);
  if (name == "gaussian_linear_uniform")
    return std::make_unique<Task>(name, TaskKernel::gaussian_linear_uniform);
  if (name == "two_moons") return std::make_unique<Task>(name, TaskKernel::two_moons);
  if (name == "slcp") return std::make_unique<Task>(name, TaskKernel::slcp);
  if (name == "slcp_distractors") return slcp_distractors();
  if (name == "gaussian_mixture") return std::make_unique<Task>(name, TaskKernel::gaussian_mixture);
  if (name == "bernoulli_glm") return bernoulli_glm(false);
  if (name == "bernoulli_glm_raw") return bernoulli_glm(true);
  if (name == "sir") return make_sir_task();
  if (name == "lotka_volterra") return make_lotka_volterra_task();
  std::string known;
  for (const std::string& n : task_names()) known += (known.empty() ? "" : ", ") + n;
  throw core::ValueError(core::str("make_task: unknown task '", name, "'; known tasks: ", known));
}

std::filesystem::path sbibm_reference_dir() {
  const char* env = std::getenv("ASBI_REFERENCE_DIR");
  if (env == nullptr || *env == '\0')
    throw core::IoError("ASBI_REFERENCE_DIR is not set; expected the folder holding sbibm/");
  const std::filesystem::path dir = std::filesystem::path(env) / "sbibm";
  if (!std::filesystem::is_directory(dir))
    throw core::IoError(core::str("sbibm reference folder not found: ", dir.string()));
  return dir;
}

std::vector<std::vector<double>> read_reference_rows(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw core::IoError(core::str("cannot open reference file ", path.string()));
  std::vector<std::vector<double>> rows;
  std::string line;
  std::getline(in, line);  // header
  for (std::size_t line_no = 2; std::getline(in, line); ++line_no) {
    if (line.empty()) continue;
    std::vector<double> row;
    std::stringstream fields(line);
    std::string field;
    while (std::getline(fields, field, ',')) {
      char* end = nullptr;
      const double v = std::strtod(field.c_str(), &end);
      if (field.empty() || end != field.c_str() + field.size())
        throw core::IoError(
            core::str(path.string(), " line ", line_no, ": expected a number, got '", field, "'"));
      row.push_back(v);
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

namespace {

std::vector<double> single_row(const std::filesystem::path& path) {
  auto rows = read_reference_rows(path);
  if (rows.size() != 1)
    throw core::IoError(core::str(path.string(), ": expected 1 data row, got ", rows.size()));
  return rows[0];
}

}  // namespace

std::filesystem::path reference_observation_dir(const std::string& task, int k) {
  // The distractor and raw variants share their base task's folder (TASKS.md).
  std::string folder = task;
  if (task == "bernoulli_glm_raw") folder = "bernoulli_glm";
  if (task == "slcp_distractors") folder = "slcp";
  return sbibm_reference_dir() / folder / ("num_observation_" + std::to_string(k));
}

std::vector<double> reference_observation(const std::string& task, int k) {
  const std::filesystem::path dir = reference_observation_dir(task, k);
  if (task == "bernoulli_glm_raw") return single_row(dir / "observation_raw.csv");
  if (task == "slcp_distractors") return single_row(dir / "observation_distractors.csv");
  return single_row(dir / "observation.csv");
}

std::vector<double> reference_true_parameters(const std::string& task, int k) {
  return single_row(reference_observation_dir(task, k) / "true_parameters.csv");
}

}  // namespace asbi::sbi
