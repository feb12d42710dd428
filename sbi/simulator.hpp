#pragma once
// Batched simulators x ~ p(x | θ) and the training-set builder.
//
// Reproducibility contract: row i of a batch draws all its randomness from
// core::Rng(seed, /*stream=*/first_row + i), so x does not depend on the thread count or on how
// a dataset is split into batches (simulate rows [0, 500) and [500, 1000) with first_row 0 and
// 500, and the result equals one call over [0, 1000)).
//
//   auto sim = sbi::CallableSimulator::per_row(2, 2, [](auto theta, auto x, core::Rng& rng) {
//     for (int j = 0; j < 2; ++j) x[j] = theta[j] + 0.1 * rng.normal();
//   });
//   sbi::Dataset data = sbi::simulate_dataset(prior, sim, 10000, /*seed=*/1);
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "core/rng.hpp"
#include "core/tensor.hpp"
#include "sbi/prior.hpp"

namespace asbi::sbi {

class Simulator {
 public:
  virtual ~Simulator() = default;
  virtual std::int64_t theta_dim() const = 0;
  virtual std::int64_t x_dim() const = 0;
  // theta [B, theta_dim] (float32 or float64); x [B, x_dim], allocated by the caller, any float
  // dtype. Rows whose simulation fails may be written as NaN.
  virtual void simulate(const Tensor& theta, Tensor& x, std::uint64_t seed,
                        std::uint64_t first_row) const = 0;
  // Convenience: allocates x [B, x_dim] of theta's dtype on theta's device.
  Tensor simulate(const Tensor& theta, std::uint64_t seed, std::uint64_t first_row = 0) const;
};

// A simulator defined one row at a time; simulate() runs the rows in parallel (OpenMP) with one
// Rng per row. simulate_row must therefore be safe to call concurrently.
class RowSimulator : public Simulator {
 public:
  virtual void simulate_row(std::span<const double> theta, std::span<double> x,
                            core::Rng& rng) const = 0;
  void simulate(const Tensor& theta, Tensor& x, std::uint64_t seed,
                std::uint64_t first_row) const override;
  using Simulator::simulate;
};

// Wraps a C++ callable: per_row (run in parallel, so the callable must be thread-safe) or
// per_batch (called once with the whole batch; it must honour the per-row stream contract
// itself to keep results independent of batch splits).
class CallableSimulator : public RowSimulator {
 public:
  using RowFn = std::function<void(std::span<const double>, std::span<double>, core::Rng&)>;
  using BatchFn = std::function<void(const Tensor&, Tensor&, std::uint64_t, std::uint64_t)>;

  static CallableSimulator per_row(std::int64_t theta_dim, std::int64_t x_dim, RowFn fn);
  static CallableSimulator per_batch(std::int64_t theta_dim, std::int64_t x_dim, BatchFn fn);

  std::int64_t theta_dim() const override { return theta_dim_; }
  std::int64_t x_dim() const override { return x_dim_; }
  void simulate_row(std::span<const double> theta, std::span<double> x,
                    core::Rng& rng) const override;
  void simulate(const Tensor& theta, Tensor& x, std::uint64_t seed,
                std::uint64_t first_row) const override;
  using Simulator::simulate;

 private:
  CallableSimulator(std::int64_t theta_dim, std::int64_t x_dim, RowFn row, BatchFn batch);
  std::int64_t theta_dim_, x_dim_;
  RowFn row_;
  BatchFn batch_;
};

// A simulator run as a separate program, once per batch: θ rows go to its stdin as CSV (one row
// per line, no header) and it must print exactly B lines of x_dim comma-separated numbers to
// stdout ("nan" marks a failed row). Its stderr is inherited. The program gets the batch's
// seed and first_row in the environment variables ASBI_SEED and ASBI_FIRST_ROW; results stay
// independent of batch splits only if it derives row i's randomness from (seed, first_row + i).
// Throws core::Error when the program cannot start, exits non-zero or runs past the timeout
// (it is then killed), and IoError naming the line when its output is malformed.
class ExternalSimulator : public Simulator {
 public:
  ExternalSimulator(std::vector<std::string> command, std::int64_t theta_dim, std::int64_t x_dim,
                    double timeout_seconds = 600);
  std::int64_t theta_dim() const override { return theta_dim_; }
  std::int64_t x_dim() const override { return x_dim_; }
  void simulate(const Tensor& theta, Tensor& x, std::uint64_t seed,
                std::uint64_t first_row) const override;
  using Simulator::simulate;

 private:
  std::vector<std::string> command_;
  std::int64_t theta_dim_, x_dim_;
  double timeout_seconds_;
};

struct Dataset {
  Tensor theta;                    // [n - invalid_count, D]
  Tensor x;                        // [n - invalid_count, X]
  std::int64_t invalid_count = 0;  // rows dropped because x held NaN or Inf
};

// n draws θ ~ prior, x ~ simulator(θ), in batches; rows with a non-finite x are dropped and
// counted. Throws ValueError when every row is invalid. The prior draws use Rng(seed, stream 0);
// the simulator gets a seed derived from `seed`, so its per-row streams never meet the prior's.
Dataset simulate_dataset(const Prior& prior, const Simulator& simulator, std::int64_t n,
                         std::uint64_t seed, DType dtype = DType::f32,
                         std::int64_t batch_size = 1000);

// x ~ simulator(θ) for given θ [n, D] (simulator seed `seed`, rows numbered from 0), non-finite
// rows dropped and counted as in simulate_dataset.
Dataset simulate_at(const Tensor& theta, const Simulator& simulator, std::uint64_t seed,
                    DType dtype = DType::f32, std::int64_t batch_size = 1000);

// The seed simulate_dataset hands the simulator for a dataset seed.
std::uint64_t simulator_seed(std::uint64_t seed);

}  // namespace asbi::sbi
