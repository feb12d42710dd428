// Many-chain MCMC on the GPU: one thread per chain runs sbi/chain_kernels.hpp's advance_chain,
// the same function the CPU runner in mcmc.cpp calls, on ChainSlots kept in device memory between
// launches. The host driver (sample_task_posterior) adapts the sampler between warm-up launches.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "core/backend.hpp"
#include "cuda/check.cuh"
#include "sbi/cuda/gpu.hpp"

namespace asbi::sbi::gpu {
namespace {

using kernels::ChainSlot;

// Chains carry ~100 doubles of local state each (more for slice sweeps): small blocks keep
// enough of them resident without spilling much.
constexpr int kChainBlock = 128;

unsigned chain_blocks(std::int64_t chains) {
  return static_cast<unsigned>((chains + kChainBlock - 1) / kChainBlock);
}

__global__ void initialise_kernel(kernels::ChainTarget target, bool sir, int candidates,
                                  std::uint64_t seed, std::int64_t chains, ChainSlot* slots) {
  const std::int64_t c = std::int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (c < chains) kernels::initialise_chain(target, sir, candidates, seed, c, slots[c]);
}

__global__ void advance_kernel(kernels::ChainTarget target, kernels::ChainSweep sweep,
                               std::int64_t chains, ChainSlot* slots, double* kept_states) {
  const std::int64_t c = std::int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (c >= chains) return;
  ChainSlot s = slots[c];  // in registers / local memory for the whole launch
  kernels::advance_chain(target, sweep, c, s, kept_states);
  slots[c] = s;
}

std::int64_t slot_doubles(std::int64_t chains) {
  return (chains * static_cast<std::int64_t>(sizeof(ChainSlot)) + 7) / 8;
}

}  // namespace

DeviceChains::DeviceChains(const kernels::ChainTarget& target, std::int64_t chains,
                           std::int64_t kept, std::uint64_t seed)
    : target_(target),
      chains_(chains),
      kept_(kept),
      dim_(kernels::theta_dim(target.task)),
      seed_(seed),
      slots_device_(core::Tensor::empty({slot_doubles(chains)}, core::DType::f64,
                                        core::Device::cuda)),
      kept_device_(core::Tensor::zeros({chains, std::max<std::int64_t>(kept, 1), dim_},
                                       core::DType::f64, core::Device::cuda)),
      slots_host_(static_cast<std::size_t>(chains)) {}

DeviceChains::~DeviceChains() = default;

void DeviceChains::initialise(bool sir, int candidates) {
  initialise_kernel<<<chain_blocks(chains_), kChainBlock>>>(
      target_, sir, candidates, seed_, chains_, static_cast<ChainSlot*>(slots_device_.raw()));
  ASBI_CUDA_CHECK_LAUNCH("initialise_kernel");
}

void DeviceChains::run(const kernels::ChainSweep& sweep) {
  advance_kernel<<<chain_blocks(chains_), kChainBlock>>>(
      target_, sweep, chains_, static_cast<ChainSlot*>(slots_device_.raw()),
      static_cast<double*>(kept_device_.raw()));
  ASBI_CUDA_CHECK_LAUNCH("advance_kernel");
}

const std::vector<ChainSlot>& DeviceChains::slots() {
  core::backend(core::Device::cuda)
      .copy_bytes(slots_host_.data(), core::Device::cpu, slots_device_.raw(), core::Device::cuda,
                  slots_host_.size() * sizeof(ChainSlot));
  return slots_host_;
}

std::vector<double> DeviceChains::kept_states() const {
  std::vector<double> out(static_cast<std::size_t>(chains_ * kept_ * dim_));
  if (!out.empty())
    core::backend(core::Device::cuda)
        .copy_bytes(out.data(), core::Device::cpu, kept_device_.raw(), core::Device::cuda,
                    out.size() * sizeof(double));
  return out;
}

}  // namespace asbi::sbi::gpu
