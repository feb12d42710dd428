// Batched simulators on the GPU, one thread per simulation (per set element for the set tasks).
// Each thread runs the same sbi/task_kernels.hpp function as the CPU loop, from the same Philox
// counters, so a seed gives the same x on both devices (tests/sbi/test_cuda_simulators.cpp).
//
// Napkin math (H100): a gaussian_linear row is 10 normals (5 Philox blocks, 5 log + 10 sin/cos
// in float64) and 80 bytes of θ in, 80 of x out: compute-bound on float64 transcendentals, about
// 10⁹ rows/s at the 67 TFLOP/s float64 peak if each transcendental costs ~20 flops.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "core/backend.hpp"
#include "cuda/check.cuh"
#include "sbi/cuda/gpu.hpp"
#include "sbi/task_kernels.hpp"

namespace asbi::sbi::gpu {
namespace {

using kernels::TaskKernel;

constexpr int kBlock = 256;

unsigned blocks_for(std::int64_t n) {
  return static_cast<unsigned>(std::clamp<std::int64_t>((n + kBlock - 1) / kBlock, 1, 1 << 16));
}

template <typename In, typename Out>
__global__ void simulate_rows_kernel(TaskKernel task, const In* theta, Out* x, std::int64_t rows,
                                     std::uint64_t seed, std::uint64_t first_row) {
  const int d = kernels::theta_dim(task), xd = kernels::x_dim(task);
  for (std::int64_t i = std::int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < rows;
       i += std::int64_t{gridDim.x} * blockDim.x) {
    double th[kernels::kMaxThetaDim], xv[kernels::kMaxXDim];
    for (int j = 0; j < d; ++j) th[j] = static_cast<double>(theta[i * d + j]);
    kernels::PhiloxRng rng(seed, first_row + static_cast<std::uint64_t>(i));
    kernels::simulate(task, th, xv, rng);
    for (int j = 0; j < xd; ++j) x[i * xd + j] = static_cast<Out>(xv[j]);
  }
}

template <typename In>
__global__ void scalar_sets_kernel(ScalarSetTask task, const In* theta, std::int64_t sets,
                                   std::int64_t n, std::uint64_t seed, std::uint64_t first_set_id,
                                   float* out) {
  for (std::int64_t k = std::int64_t{blockIdx.x} * blockDim.x + threadIdx.x; k < sets * n;
       k += std::int64_t{gridDim.x} * blockDim.x) {
    const std::int64_t b = k / n;
    const auto i = static_cast<std::uint64_t>(k % n);
    const std::uint64_t set_id = first_set_id + static_cast<std::uint64_t>(b);
    const double a = static_cast<double>(theta[2 * b]), c = static_cast<double>(theta[2 * b + 1]);
    const double z =
        kernels::normal_at(seed, kernels::set_stream_of(kernels::kSetNoisePurpose, set_id), i);
    if (task == ScalarSetTask::gaussian_nuisance) {
      out[k] = kernels::gaussian_nuisance_element(a, sqrt(c), z);
    } else {
      const double u = kernels::uniform_at(
          seed, kernels::set_stream_of(kernels::kSetComponentPurpose, set_id), i);
      out[k] = kernels::mixture_nuisance_element(a, c, z, u);
    }
  }
}

}  // namespace

void simulate_rows(TaskKernel task, const core::Tensor& theta, core::Tensor& x,
                   std::uint64_t seed, std::uint64_t first_row) {
  const std::int64_t rows = theta.dim(0);
  if (rows == 0) return;
  auto launch = [&]<typename In, typename Out>() {
    simulate_rows_kernel<In, Out><<<blocks_for(rows), kBlock>>>(
        task, static_cast<const In*>(theta.raw()), static_cast<Out*>(x.raw()), rows, seed,
        first_row);
  };
  const bool in64 = theta.dtype() == core::DType::f64, out64 = x.dtype() == core::DType::f64;
  if (in64 && out64) launch.template operator()<double, double>();
  if (in64 && !out64) launch.template operator()<double, float>();
  if (!in64 && out64) launch.template operator()<float, double>();
  if (!in64 && !out64) launch.template operator()<float, float>();
  ASBI_CUDA_CHECK_LAUNCH("simulate_rows_kernel");
}

void simulate_scalar_sets(ScalarSetTask task, const core::Tensor& theta, std::int64_t n,
                          std::uint64_t seed, std::uint64_t first_set_id, core::Tensor& out) {
  const std::int64_t sets = theta.dim(0);
  if (sets == 0 || n == 0) return;
  float* o = static_cast<float*>(out.raw());
  if (theta.dtype() == core::DType::f64)
    scalar_sets_kernel<<<blocks_for(sets * n), kBlock>>>(
        task, static_cast<const double*>(theta.raw()), sets, n, seed, first_set_id, o);
  else
    scalar_sets_kernel<<<blocks_for(sets * n), kBlock>>>(
        task, static_cast<const float*>(theta.raw()), sets, n, seed, first_set_id, o);
  ASBI_CUDA_CHECK_LAUNCH("scalar_sets_kernel");
}

}  // namespace asbi::sbi::gpu
