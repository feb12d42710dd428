// CPU memory, copies and the simplest elementwise kernels.
#include <cstdlib>
#include <cstring>
#include <new>

#include <Eigen/Core>

#include "core/cpu/cpu_backend.hpp"

namespace asbi::core::cpu {

Backend& backend() {
  // Never destroyed: tensors in static storage may be freed after main returns.
  static CpuBackend* instance = new CpuBackend;
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
