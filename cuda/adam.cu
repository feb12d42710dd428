// The fused Adam / AdamW step: every parameter of an optimizer updated by one kernel launch,
// instead of eleven small kernels per parameter. The per-element rule is core::AdamStep's, the
// same expression the CPU backend evaluates, in the parameter's dtype.
//
// The launch carries its own descriptor: the tensors' pointers and sizes travel by value as a
// kernel argument (within the 4 KiB every CUDA version accepts), so a step needs no upload, no
// host synchronisation and no device memory of its own. Optimizers with more tensors than one
// descriptor holds take one launch per kAdamTensorsPerLaunch tensors.
#include <cmath>

#include "cuda/backend_impl.cuh"

namespace asbi::cuda {

using core::Tensor;

namespace {

template <typename T>
struct AdamSlot {
  T* value;
  const T* grad;
  T* exp_avg;
  T* exp_avg_sq;
  std::int64_t n;
};

// 96 slots of 40 bytes plus the coefficients stay under the classic 4096-byte argument limit.
constexpr int kAdamTensorsPerLaunch = 96;

template <typename T>
struct AdamBatch {
  AdamSlot<T> slot[kAdamTensorsPerLaunch];
  int count;
};

// core::AdamStep's coefficients, in T as the CPU rounds them.
template <typename T>
struct AdamCoefficients {
  T one_minus_beta1, beta2, one_minus_beta2, eps, step_size, bias_correction2_sqrt, l2, decay;
};

// Reads θ, ∇θ, m, v and writes θ, m, v once each (7 · sizeof(T) bytes per element, no reuse).
// Grid (x blocks, tensors): block row y updates tensor y with a grid-stride loop over x; 256
// threads per block.
template <typename T>
__global__ void adam_step_kernel(AdamCoefficients<T> c, AdamBatch<T> batch) {
  const AdamSlot<T>& s = batch.slot[blockIdx.y];
  ASBI_GRID_LOOP(i, s.n) {
    const T theta = s.value[i];
    const T g = s.grad[i] + c.l2 * theta;
    T m = s.exp_avg[i];
    m += c.one_minus_beta1 * (g - m);
    const T v = c.beta2 * s.exp_avg_sq[i] + c.one_minus_beta2 * (g * g);
    s.exp_avg[i] = m;
    s.exp_avg_sq[i] = v;
    s.value[i] = c.decay * theta - c.step_size * (m / (sqrt(v) / c.bias_correction2_sqrt + c.eps));
  }
}

}  // namespace

void CudaBackend::adam_step(const core::AdamStep& step,
                            std::span<const core::AdamTensors> parameters) {
  if (parameters.empty()) return;
  const core::DType dtype = parameters[0].value->dtype();
  for (const core::AdamTensors& p : parameters) {
    expect_device("adam_step", {p.value, p.grad, p.exp_avg, p.exp_avg_sq});
    if (p.value->dtype() != dtype)
      throw core::DtypeError(core::str("cuda adam_step: parameters of one call share a dtype, got ",
                                       dtype, " and ", p.value->dtype()));
  }
  with_dtype(dtype, [&]<typename T>() {
    const AdamCoefficients<T> c{T(1 - step.beta1), T(step.beta2),     T(1 - step.beta2),
                                T(step.eps),       T(step.step_size), T(step.bias_correction2_sqrt),
                                T(step.l2),        T(step.decay)};
    for (std::size_t first = 0; first < parameters.size(); first += kAdamTensorsPerLaunch) {
      AdamBatch<T> batch{};
      std::int64_t longest = 0;
      for (std::size_t k = first; k < parameters.size() && batch.count < kAdamTensorsPerLaunch;
           ++k) {
        const core::AdamTensors& p = parameters[k];
        const std::int64_t n = p.value->numel();
        batch.slot[batch.count++] = {p.value->data<T>(), p.grad->data<T>(), p.exp_avg->data<T>(),
                                     p.exp_avg_sq->data<T>(), n};
        longest = std::max(longest, n);
      }
      if (longest == 0) continue;
      const dim3 grid(std::min(grid_for(longest), 1024u), static_cast<unsigned>(batch.count));
      adam_step_kernel<T><<<grid, block_size>>>(c, batch);
      ASBI_CUDA_CHECK_LAUNCH("adam_step_kernel");
    }
  });
}

}  // namespace asbi::cuda
