// CPU memory, copies and the simplest elementwise kernels.
#include <cstdlib>
#include <cstring>
#include <new>

#include <Eigen/Core>
#include <string>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

#include "core/cpu/cpu_backend.hpp"

namespace asbi::core::cpu {

namespace {

// Gradients through saturated units shrink into float32's denormal range, where each multiply-add
// takes a microcode assist: NRE-B training on two_moons ran 3.8× slower for it (22.9 s against
// 6.0 s for 60 epochs), all of it inside the GEMMs. So the thread that first uses the CPU backend
// flushes denormal results to zero and reads denormal inputs as zero (MXCSR FTZ and DAZ, as JAX
// and TensorFlow do on CPU); OpenMP's worker threads, created later by that thread, inherit its
// floating-point environment. Values below 1.2e-38 (float) or 2.2e-308 (double) become 0.
// ASBI_KEEP_DENORMALS=1 leaves the environment as it is.
void flush_denormals_to_zero() {
#if defined(__SSE__)
  const char* keep = std::getenv("ASBI_KEEP_DENORMALS");
  if (keep && std::string(keep) == "1") return;
  _mm_setcsr(_mm_getcsr() | 0x8040);  // FTZ (bit 15) | DAZ (bit 6)
#endif
}

}  // namespace

Backend& backend() {
  // Never destroyed: tensors in static storage may be freed after main returns.
  static CpuBackend* instance = [] {
    flush_denormals_to_zero();
    return new CpuBackend;
  }();
  return *instance;
}

std::string CpuBackend::description() const {
  return str("CPU, ", omp_get_max_threads(), " OpenMP threads, Eigen ", EIGEN_WORLD_VERSION, ".",
             EIGEN_MAJOR_VERSION, ".", EIGEN_MINOR_VERSION, " (", Eigen::SimdInstructionSetsInUse(),
             ")");
}

void* CpuBackend::allocate(std::size_t bytes) {
  std::size_t rounded = (bytes + Arena::alignment - 1) / Arena::alignment * Arena::alignment;
  void* ptr = std::aligned_alloc(Arena::alignment, rounded);
  if (!ptr) throw std::bad_alloc();
  return ptr;
}

void CpuBackend::deallocate(void* ptr, std::size_t) { std::free(ptr); }

void CpuBackend::copy_bytes(void* dst, Device dst_device, const void* src, Device src_device,
                            std::size_t bytes) {
  if (dst_device != Device::cpu || src_device != Device::cpu)
    throw DeviceError("cpu backend: cannot copy to or from a device; use that device's backend");
  if (bytes) std::memmove(dst, src, bytes);
}

void CpuBackend::fill(Tensor& y, double value) {
  with_dtype(y.dtype(), [&]<typename T>() {
    T* p = y.data<T>();
    const std::int64_t n = y.numel();
    const T v = static_cast<T>(value);
    parallel_for(n, n, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t i = begin; i < end; ++i) p[i] = v;
    });
  });
}

void CpuBackend::cast(const Tensor& x, Tensor& y) {
  const std::int64_t n = x.numel();
  if (x.dtype() == y.dtype()) {
    std::memmove(y.raw(), x.raw(), x.bytes());
  } else if (x.dtype() == DType::f32) {
    const float* src = x.data<float>();
    double* dst = y.data<double>();
    parallel_for(n, n, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t i = begin; i < end; ++i) dst[i] = src[i];
    });
  } else {
    const double* src = x.data<double>();
    float* dst = y.data<float>();
    parallel_for(n, n, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t i = begin; i < end; ++i) dst[i] = static_cast<float>(src[i]);
    });
  }
}

void CpuBackend::axpy(double alpha, const Tensor& x, Tensor& y) {
  with_dtype(y.dtype(), [&]<typename T>() {
    const T* src = x.data<T>();
    T* dst = y.data<T>();
    const T a = static_cast<T>(alpha);
    const std::int64_t n = y.numel();
    parallel_for(n, n, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t i = begin; i < end; ++i) dst[i] += a * src[i];
    });
  });
}

}  // namespace asbi::core::cpu
