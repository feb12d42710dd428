// Matrix products through Eigen's GEMM (blocked, vectorised, OpenMP-parallel when large).
#include "core/cpu/cpu_backend.hpp"
#include "core/eigen.hpp"

namespace asbi::core::cpu {

void CpuBackend::gemm(bool trans_a, bool trans_b, double alpha, const Tensor& a, const Tensor& b,
                      double beta, Tensor& c) {
  with_dtype(c.dtype(), [&]<typename T>() {
    auto A = as_matrix<T>(a);
    auto B = as_matrix<T>(b);
    auto C = as_matrix<T>(c);
    const T al = static_cast<T>(alpha);
    if (beta == 0) {
      C.setZero();
    } else if (beta != 1) {
      C *= static_cast<T>(beta);
    }
    // Four spellings so that Eigen sees each transpose statically and picks the right kernel.
    if (!trans_a && !trans_b) C.noalias() += al * A * B;
    else if (trans_a && !trans_b) C.noalias() += al * A.transpose() * B;
    else if (!trans_a && trans_b) C.noalias() += al * A * B.transpose();
    else C.noalias() += al * A.transpose() * B.transpose();
  });
}

void CpuBackend::add_bias(const Tensor& bias, Tensor& y) {
  with_dtype(y.dtype(), [&]<typename T>() {
    const T* b = bias.data<T>();
    T* out = y.data<T>();
    const std::int64_t width = bias.numel(), rows = y.numel() / width;
#pragma omp parallel for if (y.numel() > parallel_grain)
    for (std::int64_t r = 0; r < rows; ++r) {
      T* row = out + r * width;
#pragma omp simd
      for (std::int64_t j = 0; j < width; ++j) row[j] += b[j];
    }
  });
}

}  // namespace asbi::core::cpu
