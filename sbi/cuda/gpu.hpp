#pragma once
// The CUDA kernels of the sbi layer (library asbi_sbi_cuda, built from sbi/cuda/*.cu when asbi is
// configured with CUDA): batched simulators of the cheap tasks, one thread per simulation, and
// many-chain MCMC on their posteriors, one thread per chain. Plain C++, no CUDA headers. The
// math is that of sbi/task_kernels.hpp and sbi/chain_kernels.hpp, shared with the CPU paths.
//
// Callers are Task / SetTask / sample_task_posterior, which check shapes, devices and parameter
// values first; these functions assume that. sbi is compiled with ASBI_SBI_CUDA=1 when the
// library exists; without it the callers throw gpu_unavailable() instead of calling here.
#include <cstdint>
#include <vector>

#include "core/error.hpp"
#include "core/tensor.hpp"
#include "sbi/chain_kernels.hpp"
#include "sbi/task_kernels.hpp"

namespace asbi::sbi::gpu {

// What a GPU-only entry point throws in a build without CUDA.
inline core::DeviceError gpu_unavailable(const char* what) {
  return core::DeviceError(core::str(what,
                                     ": the tensors are on cuda, but asbi was built without CUDA "
                                     "(configure with -DASBI_CUDA=ON on a machine with nvcc)"));
}

// x[i] = simulate(task, θ[i]) drawing from PhiloxRng(seed, first_row + i): θ [B, D] and x [B, X]
// on the CUDA device, float32 or float64 each (computed in float64).
void simulate_rows(kernels::TaskKernel task, const core::Tensor& theta, core::Tensor& x,
                   std::uint64_t seed, std::uint64_t first_row);

// B sets of n elements of a scalar set task, set b from θ row b = (μ, σ²) or (θ, w) with set id
// first_set_id + b: theta [B, 2] float32 or float64 and out [B, n, 1] float32 on the device.
enum class ScalarSetTask : std::uint8_t { gaussian_nuisance, mixture_nuisance };
void simulate_scalar_sets(ScalarSetTask task, const core::Tensor& theta, std::int64_t n,
                          std::uint64_t seed, std::uint64_t first_set_id, core::Tensor& out);

// The chains of sample_task_posterior in device memory: one ChainSlot per chain and the kept
// states [chains, kept, D]. The same three calls as the CPU runner in mcmc.cpp.
class DeviceChains {
 public:
  DeviceChains(const kernels::ChainTarget& target, std::int64_t chains, std::int64_t kept,
               std::uint64_t seed);
  ~DeviceChains();
  DeviceChains(const DeviceChains&) = delete;
  DeviceChains& operator=(const DeviceChains&) = delete;

  void initialise(bool sir, int candidates);
  void run(const kernels::ChainSweep& sweep);  // advance_chain on every chain
  // Host copies of the slots (after the last call) and of the kept states.
  const std::vector<kernels::ChainSlot>& slots();
  std::vector<double> kept_states() const;

 private:
  kernels::ChainTarget target_;
  std::int64_t chains_, kept_, dim_;
  std::uint64_t seed_;
  core::Tensor slots_device_;  // raw bytes of chains ChainSlots, as a float64 tensor
  core::Tensor kept_device_;   // [chains, kept, D] float64
  std::vector<kernels::ChainSlot> slots_host_;
};

}  // namespace asbi::sbi::gpu
