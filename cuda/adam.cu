// The fused Adam / AdamW step: every parameter of an optimizer updated by one kernel launch,
// instead of eleven small kernels per parameter. The per-element rule is core::AdamStep's, the
// same expression the CPU backend evaluates, in the parameter's dtype.
//
// The launch carries its own descriptor: the tensors' pointers and sizes travel by value as a
// kernel argument (within the 4 KiB every CUDA version accepts), so a step needs no upload, no
// host synchronisation and no device memory of its own. Optimizers with more tensors than one
// descriptor holds take one launch per kAdamTensorsPerLaunch tensors (and per dtype).
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

// The parameters of each dtype go in launches of up to kAdamTensorsPerLaunch tensors: one launch
// for a typical model, whose parameters share one dtype.
void CudaBackend::adam_step(const core::AdamStep& step,
                            std::span<const core::AdamTensors> parameters) {
  for (const core::AdamTensors& p : parameters)
    expect_device("adam_step", {p.value, p.grad, p.exp_avg, p.exp_avg_sq});
  for (const core::DType dtype : {core::DType::f32, core::DType::f64}) {
    with_dtype(dtype, [&]<typename T>() {
      const AdamCoefficients<T> c{T(1 - step.beta1), T(step.beta2),
                                  T(1 - step.beta2), T(step.eps),
                                  T(step.step_size), T(step.bias_correction2_sqrt),
                                  T(step.l2),        T(step.decay)};
      AdamBatch<T> batch{};
      std::int64_t longest = 0;
      auto launch = [&] {
        if (longest > 0) {
          const dim3 grid(std::min(grid_for(longest), 1024u), static_cast<unsigned>(batch.count));
          adam_step_kernel<T><<<grid, block_size>>>(c, batch);
          ASBI_CUDA_CHECK_LAUNCH("adam_step_kernel");
        }
        batch.count = 0;
        longest = 0;
      };
      for (const core::AdamTensors& p : parameters) {
        if (p.value->dtype() != dtype) continue;
        const std::int64_t n = p.value->numel();
        batch.slot[batch.count++] = {p.value->data<T>(), p.grad->data<T>(), p.exp_avg->data<T>(),
                                     p.exp_avg_sq->data<T>(), n};
        longest = std::max(longest, n);
        if (batch.count == kAdamTensorsPerLaunch) launch();
      }
      if (batch.count > 0) launch();
    });
  }
}

}  // namespace asbi::cuda
