#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <limits>

#include "core/error.hpp"
#include "sbi/simulator.hpp"
#include "test_util.hpp"

namespace asbi::sbi {
namespace {

CallableSimulator noisy() {
  return CallableSimulator::per_row(
      2, 3, [](std::span<const double> t, std::span<double> x, core::Rng& rng) {
        // A data-dependent number of draws, so a shared Rng would show up as a mismatch.
        const int extra = rng.uniform() < 0.5 ? 1 : 3;
        for (int k = 0; k < extra; ++k) rng.normal();
        x[0] = t[0] + rng.normal();
        x[1] = t[1] * rng.uniform();
        x[2] = rng.gamma(2.0);
      });
}

TEST(Simulator, SameNumbersForAnyThreadCountAndBatchSplit) {
  const auto sim = noisy();
  BoxUniform prior({-1, -1}, {1, 1});
  core::Rng rng(3, 0);
  const Tensor theta = prior.sample(1000, rng);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const std::vector<double> one = sim.simulate(theta, 42).to_vector();
  omp_set_num_threads(2);
  const std::vector<double> two = sim.simulate(theta, 42).to_vector();
  Tensor split = Tensor::zeros({1000, 3}, DType::f64);
  Tensor lo = split.rows(0, 337), hi = split.rows(337, 1000);
  sim.simulate(theta.rows(0, 337), lo, 42, 0);
  sim.simulate(theta.rows(337, 1000), hi, 42, 337);
  omp_set_num_threads(saved);
  EXPECT_EQ(one, two);
  EXPECT_EQ(one, split.to_vector());
  EXPECT_NE(one, sim.simulate(theta, 43).to_vector());
}

TEST(Simulator, DatasetDropsAndCountsNonFiniteRows) {
  const auto sim = CallableSimulator::per_row(
      1, 2, [](std::span<const double> t, std::span<double> x, core::Rng& rng) {
        x[0] = t[0] > 0 ? std::numeric_limits<double>::quiet_NaN() : t[0];
        x[1] = t[0] > 0.9 ? std::numeric_limits<double>::infinity() : rng.normal();
      });
  BoxUniform prior({-1}, {1});
  const Dataset d = simulate_dataset(prior, sim, 2000, 5, DType::f32, 300);
  // About half the rows have θ > 0: binomial(2000, ½) lies within 1000 ± 5·22.
  EXPECT_NEAR(static_cast<double>(d.invalid_count), 1000.0, 112.0);
  EXPECT_EQ(d.theta.dim(0), 2000 - d.invalid_count);
  EXPECT_EQ(d.x.shape(), (core::Shape{2000 - d.invalid_count, 2}));
  EXPECT_EQ(d.x.dtype(), DType::f32);
  for (double v : d.theta.to_vector()) EXPECT_LE(v, 0.0);
  // The same seed gives the same dataset, whatever the batch size.
  const Dataset e = simulate_dataset(prior, sim, 2000, 5, DType::f32, 1000);
  EXPECT_EQ(d.x.to_vector(), e.x.to_vector());
}

TEST(Simulator, AllInvalidIsAnError) {
  const auto sim = CallableSimulator::per_row(
      1, 1, [](std::span<const double>, std::span<double> x, core::Rng&) {
        x[0] = std::numeric_limits<double>::quiet_NaN();
      });
  BoxUniform prior({-1}, {1});
  test_util::expect_error_naming<core::ValueError>([&] { simulate_dataset(prior, sim, 50, 1); },
                                                   {"all 50", "NaN"});
}

TEST(Simulator, PerBatchCallableAndErrors) {
  const auto sim = CallableSimulator::per_batch(
      1, 1, [](const Tensor& theta, Tensor& x, std::uint64_t, std::uint64_t first_row) {
        std::vector<double> v = theta.to_vector();
        for (std::size_t i = 0; i < v.size(); ++i) v[i] = 2 * v[i] + static_cast<double>(first_row);
        x.copy_from(Tensor::from(v, x.shape(), x.dtype()));
      });
  const Tensor theta = Tensor::from({1.0, 2.0}, {2, 1}, DType::f64);
  EXPECT_EQ(sim.simulate(theta, 0, 10).to_vector(), (std::vector<double>{12.0, 14.0}));
  Tensor bad = Tensor::zeros({2, 2}, DType::f64);
  test_util::expect_error_naming<core::ShapeError>([&] { sim.simulate(theta, bad, 0, 0); },
                                                   {"x [2, 1]"});
  const auto throwing =
      CallableSimulator::per_row(1, 1, [](std::span<const double>, std::span<double>, core::Rng&) {
        throw core::ValueError("simulator broke");
      });
  test_util::expect_error_naming<core::ValueError>([&] { throwing.simulate(theta, 0); },
                                                   {"simulator broke"});
}

TEST(ExternalSimulator, RoundTripsRowsThroughAProgram) {
  // x = (2 θ1, θ2 + first_row): checks the CSV both ways and the environment contract.
  ExternalSimulator sim(
      {"/bin/sh", "-c",
       "awk -F, '{printf \"%.17g,%.17g\\n\", 2*$1, $2 + ENVIRON[\"ASBI_FIRST_ROW\"]}'"},
      2, 2, 10.0);
  const Tensor theta = Tensor::from({0.25, 1.5, -3.0, 0.125}, {2, 2}, DType::f64);
  EXPECT_EQ(sim.simulate(theta, 1, 7).to_vector(), (std::vector<double>{0.5, 8.5, -6.0, 7.125}));
}

TEST(ExternalSimulator, ErrorsNameTheFailure) {
  const Tensor theta = Tensor::from({0.0, 1.0}, {2, 1}, DType::f64);
  test_util::expect_error_naming<core::Error>(
      [&] {
        ExternalSimulator({"/bin/sh", "-c", "exit 3"}, 1, 1).simulate(theta, 0);
      },
      {"/bin/sh", "status 3"});
  test_util::expect_error_naming<core::IoError>(
      [&] {
        ExternalSimulator({"/bin/sh", "-c", "cat >/dev/null; echo 1; echo x"}, 1, 1)
            .simulate(theta, 0);
      },
      {"line 2", "'x'"});
  test_util::expect_error_naming<core::IoError>(
      [&] {
        ExternalSimulator({"/bin/sh", "-c", "cat >/dev/null; echo 1,2; echo 3,4"}, 1, 1)
            .simulate(theta, 0);
      },
      {"line 1", "expected 1 values, got 2"});
  test_util::expect_error_naming<core::IoError>(
      [&] {
        ExternalSimulator({"/bin/sh", "-c", "cat >/dev/null; echo 1"}, 1, 1).simulate(theta, 0);
      },
      {"printed 1 rows; expected 2"});
  test_util::expect_error_naming<core::Error>(
      [&] {
        ExternalSimulator({"/bin/sh", "-c", "exec sleep 5"}, 1, 1, 0.3).simulate(theta, 0);
      },
      {"timed out"});
  test_util::expect_error_naming<core::Error>(
      [&] {
        ExternalSimulator({"/bin/sh", "-c", "exec >&-; exec sleep 5"}, 1, 1, 0.3)
            .simulate(theta, 0);
      },
      {"timed out"});
  test_util::expect_error_naming<core::Error>(
      [&] { ExternalSimulator({"/nonexistent/asbi_sim"}, 1, 1).simulate(theta, 0); },
      {"/nonexistent/asbi_sim", "127"});
}

}  // namespace
}  // namespace asbi::sbi
