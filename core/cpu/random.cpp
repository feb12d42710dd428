// Random fills: the span fills of core/rng.cpp (already blocked, vectorised and OpenMP-parallel)
// over the tensor's storage, and dropout's mask built from them.
#include "core/cpu/cpu_backend.hpp"
#include "core/rng.hpp"

namespace asbi::core::cpu {

namespace {

template <typename T>
std::span<T> span_of(Tensor& y) {
  return {y.data<T>(), static_cast<std::size_t>(y.numel())};
}

}  // namespace

void CpuBackend::random_uniform(std::uint64_t seed, std::uint64_t stream, std::uint64_t offset,
                                Tensor& y) {
  with_dtype(y.dtype(), [&]<typename T>() { fill_uniform(seed, stream, offset, span_of<T>(y)); });
}

void CpuBackend::random_normal(std::uint64_t seed, std::uint64_t stream, std::uint64_t offset,
                               Tensor& y) {
  with_dtype(y.dtype(), [&]<typename T>() { fill_normal(seed, stream, offset, span_of<T>(y)); });
}

void CpuBackend::dropout_mask(std::uint64_t seed, std::uint64_t stream, std::uint64_t offset,
                              double drop_probability, double keep_scale, Tensor& y) {
  const std::int64_t n = y.numel();
  if (y.dtype() == DType::f32) {  // the uniforms go straight into y, thresholded in place
    float* m = y.data<float>();
    fill_uniform(seed, stream, offset, span_of<float>(y));
    const float p = static_cast<float>(drop_probability), scale = static_cast<float>(keep_scale);
    for (std::int64_t i = 0; i < n; ++i) m[i] = m[i] >= p ? scale : 0.0f;
    return;
  }
  // float64: the float32 uniforms in chunks on the stack; a fill split at matching offsets is
  // the single fill.
  constexpr std::int64_t chunk = 1024;
  float u[chunk];
  double* m = y.data<double>();
  for (std::int64_t begin = 0; begin < n; begin += chunk) {
    const std::int64_t len = std::min(chunk, n - begin);
    fill_uniform(seed, stream, offset + static_cast<std::uint64_t>(begin),
                 std::span<float>(u, static_cast<std::size_t>(len)));
    for (std::int64_t i = 0; i < len; ++i)
      m[begin + i] = double(u[i]) >= drop_probability ? keep_scale : 0.0;
  }
}

}  // namespace asbi::core::cpu
