// The CUDA layer norm and set mean-pooling kernels (cuda/norm_pool.cu) against the CPU backend:
// forward values, saved statistics and every gradient over awkward shapes (widths that are not a
// multiple of the warp, width 1, many rows, ragged sets of length 1 beside a long one), and two
// runs giving the same bits. Every test skips on a machine without a CUDA device.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/backend.hpp"
#include "core/error.hpp"
#include "core/tensor.hpp"
#include "cuda/cuda_backend.hpp"
#include "cuda_test_util.hpp"

namespace asbi::cuda {
namespace {

using core::Device;
using core::DType;
using core::Shape;
using core::Tensor;

class CudaNormPoolTest : public test_util::CudaTest {};

constexpr DType dtypes[] = {DType::f32, DType::f64};

Tensor random_cpu(const Shape& shape, DType dtype, std::uint64_t seed, double lo = -1,
                  double hi = 1) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(static_cast<std::size_t>(shape.numel()));
  for (double& x : v) x = dist(rng);
  return Tensor::from(v, shape, dtype);
}

using test_util::expect_close;
using test_util::on_gpu;
using test_util::Tolerance;
using test_util::tolerance;

// The same bytes: what "deterministic" promises, stronger than equal values (signed zeros).
void expect_same_bits(const Tensor& a, const Tensor& b, const std::string& what) {
  const Tensor ha = a.to(Device::cpu), hb = b.to(Device::cpu);
  ASSERT_EQ(ha.shape(), hb.shape()) << what;
  EXPECT_EQ(std::memcmp(ha.raw(), hb.raw(), ha.bytes()), 0) << what << ": not deterministic";
}

// --- layer norm -----------------------------------------------------------------------------

enum class Affine { none, gamma_and_beta, gamma_only };

const char* name(Affine a) {
  switch (a) {
    case Affine::none:
      return "no affine";
    case Affine::gamma_and_beta:
      return "gamma and beta";
    case Affine::gamma_only:
      return "gamma only";
  }
  return "?";
}

// Widths below, at and above the warp, not multiples of 32, width 1, and many rows.
const Shape layer_norm_shapes[] = {{3, 5},    {1000, 1}, {7, 33},     {2, 3, 257},
                                   {300, 32}, {4, 1024}, {20011, 64}, {1, 4099}};

void check_layer_norm(core::Backend& cpu, core::Backend& gpu, const Shape& shape, DType dtype,
                      Affine affine) {
  const std::string what = core::str("layer_norm ", shape, " ", dtype, " ", name(affine));
  const std::int64_t width = shape.last(), rows = shape.numel() / width;
  const Shape stat{rows};
  // Mean away from zero: the two-pass variance matters when |μ| is large against σ.
  const Tensor x = random_cpu(shape, dtype, 41, -1, 3);
  const Tensor gamma = affine != Affine::none ? random_cpu({width}, dtype, 42, 0.5, 1.5) : Tensor();
  const Tensor beta = affine == Affine::gamma_and_beta ? random_cpu({width}, dtype, 43) : Tensor();
  const double eps = 1e-5;

  Tensor y_cpu = Tensor::empty(shape, dtype), mean_cpu = Tensor::empty(stat, dtype),
         rstd_cpu = Tensor::empty(stat, dtype);
  cpu.layer_norm(x, gamma, beta, eps, y_cpu, mean_cpu, rstd_cpu);
  const Tensor x_gpu = on_gpu(x);
  const Tensor gamma_gpu = gamma.defined() ? on_gpu(gamma) : Tensor();
  const Tensor beta_gpu = beta.defined() ? on_gpu(beta) : Tensor();
  Tensor y_gpu = Tensor::empty(shape, dtype, Device::cuda),
         mean_gpu = Tensor::empty(stat, dtype, Device::cuda),
         rstd_gpu = Tensor::empty(stat, dtype, Device::cuda);
  gpu.layer_norm(x_gpu, gamma_gpu, beta_gpu, eps, y_gpu, mean_gpu, rstd_gpu);
  expect_close(mean_gpu, mean_cpu, tolerance(dtype), what + " mean");
  expect_close(rstd_gpu, rstd_cpu, tolerance(dtype), what + " rstd");
  expect_close(y_gpu, y_cpu, tolerance(dtype), what + " y");

  Tensor y_again = Tensor::empty(shape, dtype, Device::cuda),
         mean_again = Tensor::empty(stat, dtype, Device::cuda),
         rstd_again = Tensor::empty(stat, dtype, Device::cuda);
  gpu.layer_norm(x_gpu, gamma_gpu, beta_gpu, eps, y_again, mean_again, rstd_again);
  expect_same_bits(y_again, y_gpu, what + " y");
  expect_same_bits(mean_again, mean_gpu, what + " mean");
  expect_same_bits(rstd_again, rstd_gpu, what + " rstd");

  // Backward from the CPU's saved statistics on both sides, into gradients that already hold
  // something (the kernels accumulate).
  const Tensor dy = random_cpu(shape, dtype, 44);
  const Tensor dx0 = random_cpu(shape, dtype, 45);
  const Tensor dgamma0 = random_cpu({width}, dtype, 46);
  const Tensor dbeta0 = random_cpu({width}, dtype, 47);
  const bool has_gamma = gamma.defined();
  auto run_gpu = [&](Tensor& dx, Tensor& dgamma, Tensor& dbeta) {
    dx = on_gpu(dx0);
    dgamma = on_gpu(dgamma0);
    dbeta = on_gpu(dbeta0);
    gpu.layer_norm_backward(x_gpu, gamma_gpu, on_gpu(mean_cpu), on_gpu(rstd_cpu), on_gpu(dy), &dx,
                            has_gamma ? &dgamma : nullptr, &dbeta);
  };
  Tensor dx_gpu, dgamma_gpu, dbeta_gpu;
  run_gpu(dx_gpu, dgamma_gpu, dbeta_gpu);

  Tensor dx_cpu = dx0.clone();
  cpu.layer_norm_backward(x, gamma, mean_cpu, rstd_cpu, dy, &dx_cpu, nullptr, nullptr);
  expect_close(dx_gpu, dx_cpu, tolerance(dtype), what + " dx");

  // dγ and dβ sum over all rows. The CPU adds float32 terms in float32, the GPU in double, so the
  // reference is the CPU in float64 on the same values, and the absolute tolerance grows like the
  // rounding of a sum of `rows` unit-sized terms.
  // (clone: for float64, to() returns the tensor itself, which must stay the runs' start.)
  Tensor dgamma_ref = dgamma0.to(DType::f64).clone(), dbeta_ref = dbeta0.to(DType::f64).clone();
  cpu.layer_norm_backward(x.to(DType::f64), has_gamma ? gamma.to(DType::f64) : Tensor(),
                          mean_cpu.to(DType::f64), rstd_cpu.to(DType::f64), dy.to(DType::f64),
                          nullptr, has_gamma ? &dgamma_ref : nullptr, &dbeta_ref);
  const Tolerance row_sum{tolerance(dtype).rtol,
                          tolerance(dtype).atol * std::sqrt(static_cast<double>(rows))};
  if (has_gamma) expect_close(dgamma_gpu, dgamma_ref, row_sum, what + " dgamma");
  expect_close(dbeta_gpu, dbeta_ref, row_sum, what + " dbeta");

  Tensor dx_again, dgamma_again, dbeta_again;
  run_gpu(dx_again, dgamma_again, dbeta_again);
  expect_same_bits(dx_again, dx_gpu, what + " dx");
  if (has_gamma) expect_same_bits(dgamma_again, dgamma_gpu, what + " dgamma");
  expect_same_bits(dbeta_again, dbeta_gpu, what + " dbeta");
}

TEST_F(CudaNormPoolTest, LayerNormMatchesCpuAndRepeats) {
  for (DType dtype : dtypes)
    for (const Shape& shape : layer_norm_shapes)
      for (Affine affine : {Affine::none, Affine::gamma_and_beta, Affine::gamma_only})
        check_layer_norm(cpu(), gpu(), shape, dtype, affine);
}

// Each gradient alone: a null pointer skips its work and leaves the others right.
TEST_F(CudaNormPoolTest, LayerNormBackwardComputesOnlyWhatIsAsked) {
  const Shape shape{97, 45};
  for (DType dtype : dtypes) {
    const Tensor x = random_cpu(shape, dtype, 51), gamma = random_cpu({45}, dtype, 52);
    const Tensor dy = random_cpu(shape, dtype, 53);
    Tensor y = Tensor::empty(shape, dtype), mean = Tensor::empty({97}, dtype),
           rstd = Tensor::empty({97}, dtype);
    cpu().layer_norm(x, gamma, Tensor(), 1e-5, y, mean, rstd);
    for (int wanted = 0; wanted < 3; ++wanted) {
      const std::string what = core::str("layer_norm_backward ", dtype, " gradient ", wanted);
      Tensor want[3] = {Tensor::zeros(shape, dtype), Tensor::zeros({45}, dtype),
                        Tensor::zeros({45}, dtype)};
      Tensor got[3] = {on_gpu(want[0]), on_gpu(want[1]), on_gpu(want[2])};
      auto pick = [&](Tensor* t, int i) { return i == wanted ? &t[i] : nullptr; };
      cpu().layer_norm_backward(x, gamma, mean, rstd, dy, pick(want, 0), pick(want, 1),
                                pick(want, 2));
      gpu().layer_norm_backward(on_gpu(x), on_gpu(gamma), on_gpu(mean), on_gpu(rstd), on_gpu(dy),
                                pick(got, 0), pick(got, 1), pick(got, 2));
      for (int i = 0; i < 3; ++i)
        expect_close(got[i], want[i], tolerance(dtype), core::str(what, " tensor ", i));
    }
  }
}

// --- set mean-pooling -----------------------------------------------------------------------

void check_mean_pool(core::Backend& cpu, core::Backend& gpu, const Tensor& x,
                     std::span<const std::int64_t> lengths, std::int64_t sets,
                     const std::string& what) {
  const DType dtype = x.dtype();
  const Shape pooled{sets, x.shape().last()};
  Tensor y_cpu = Tensor::empty(pooled, dtype);
  cpu.mean_pool(x, lengths, y_cpu);
  const Tensor x_gpu = on_gpu(x);
  Tensor y_gpu = Tensor::empty(pooled, dtype, Device::cuda);
  gpu.mean_pool(x_gpu, lengths, y_gpu);
  expect_close(y_gpu, y_cpu, tolerance(dtype), what + " forward");
  Tensor y_again = Tensor::empty(pooled, dtype, Device::cuda);
  gpu.mean_pool(x_gpu, lengths, y_again);
  expect_same_bits(y_again, y_gpu, what + " forward");

  const Tensor dy = random_cpu(pooled, dtype, 61);
  Tensor dx_cpu = random_cpu(x.shape(), dtype, 62);  // the kernels accumulate
  Tensor dx_gpu = on_gpu(dx_cpu);
  cpu.mean_pool_backward(dy, lengths, dx_cpu);
  gpu.mean_pool_backward(on_gpu(dy), lengths, dx_gpu);
  expect_close(dx_gpu, dx_cpu, tolerance(dtype), what + " backward");
}

TEST_F(CudaNormPoolTest, DenseMeanPoolMatchesCpuAndRepeats) {
  const Shape shapes[] = {{1, 1, 1},    {3, 5, 7},    {64, 17, 33},  {5, 1000, 96},
                          {2000, 3, 1}, {16, 8, 257}, {1, 20000, 40}};
  for (DType dtype : dtypes)
    for (const Shape& shape : shapes)
      check_mean_pool(cpu(), gpu(), random_cpu(shape, dtype, 60), {}, shape[0],
                      core::str("mean_pool ", shape, " ", dtype));
}

TEST_F(CudaNormPoolTest, RaggedMeanPoolMatchesCpuAndRepeats) {
  std::vector<std::vector<std::int64_t>> cases = {
      {1}, {1, 1, 1, 5, 1}, {3, 1, 4096, 1, 2, 37}, {20000}};
  std::mt19937_64 rng(63);
  std::uniform_int_distribution<std::int64_t> length(1, 50);
  std::vector<std::int64_t> many(500);
  for (std::int64_t& n : many) n = length(rng);
  cases.push_back(many);
  for (DType dtype : dtypes)
    for (const std::vector<std::int64_t>& lengths : cases)
      for (std::int64_t width : {1, 33, 128}) {
        std::int64_t rows = 0;
        for (std::int64_t n : lengths) rows += n;
        const auto sets = static_cast<std::int64_t>(lengths.size());
        check_mean_pool(cpu(), gpu(), random_cpu({rows, width}, dtype, 64), lengths, sets,
                        core::str("ragged mean_pool of ", sets, " sets, ", rows, " rows, width ",
                                  width, " ", dtype));
      }
}

// Lengths that would send the kernel outside x are refused before any launch.
TEST_F(CudaNormPoolTest, RaggedMeanPoolRefusesBadLengths) {
  Tensor x = Tensor::zeros({6, 4}, DType::f32, Device::cuda);
  Tensor y = Tensor::zeros({2, 4}, DType::f32, Device::cuda);
  const std::vector<std::int64_t> empty_set = {6, 0}, too_many = {4, 5};
  EXPECT_THROW(gpu().mean_pool(x, empty_set, y), core::ValueError);
  EXPECT_THROW(gpu().mean_pool(x, too_many, y), core::ValueError);
  EXPECT_THROW(gpu().mean_pool_backward(y, too_many, x), core::ValueError);
}

}  // namespace
}  // namespace asbi::cuda
