// Matrix products through Eigen's GEMM (blocked, vectorised, OpenMP-parallel when large), and
// the triangular solves of LULinear's inverse.
#include <vector>

#include "core/cpu/cpu_backend.hpp"
#include "core/eigen.hpp"
#include "core/lu_math.hpp"

namespace asbi::core::cpu {

namespace {

// Eigen splits a product over every thread once m·n·k ≥ 10⁵ multiply-adds, but the second thread
// pays for its wake-up only from about 2²¹ (bench_gemm: 64³ takes 10 µs on two threads, 4.6 µs on
// one). Smaller products, which is every product of a small MLP, run on the calling thread.
constexpr std::int64_t gemm_parallel_work = std::int64_t{1} << 21;

// Runs f with OpenMP limited to one thread on this thread; the setting is per thread and restored.
template <typename F>
void single_threaded(F&& f) {
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  f();
  omp_set_num_threads(saved);
}

}  // namespace

void CpuBackend::gemm(bool trans_a, bool trans_b, double alpha, const Tensor& a, const Tensor& b,
                      double beta, Tensor& c) {
  const std::int64_t depth = trans_a ? a.shape().rows() : a.shape().cols();
  if (c.numel() * depth < gemm_parallel_work && omp_get_max_threads() > 1)
    return single_threaded([&] { gemm_product(trans_a, trans_b, alpha, a, b, beta, c); });
  gemm_product(trans_a, trans_b, alpha, a, b, beta, c);
}

void CpuBackend::gemm_product(bool trans_a, bool trans_b, double alpha, const Tensor& a,
                              const Tensor& b, double beta, Tensor& c) {
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
    parallel_for(rows, y.numel(), [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t r = begin; r < end; ++r) {
        T* row = out + r * width;
#pragma omp simd
        for (std::int64_t j = 0; j < width; ++j) row[j] += b[j];
      }
    });
  });
}

void CpuBackend::lu_solve_rows(const Tensor& lower, const Tensor& upper, const Tensor& y,
                               Tensor& x) {
  lu::check_solve_shapes("lu_solve_rows", lower, upper, y, x);
  const std::int64_t rows = y.dim(0), d = y.dim(1);
  with_dtype(y.dtype(), [&]<typename T>() {
    const T *l = lower.data<T>(), *u = upper.data<T>(), *yp = y.data<T>();
    T* xp = x.data<T>();
    parallel_for(rows, rows * d * d, [&](std::int64_t begin, std::int64_t end) {
      std::vector<double> t(static_cast<std::size_t>(d));
      for (std::int64_t b = begin; b < end; ++b)
        lu::solve_row(l, u, yp + b * d, xp + b * d, d, t.data());
    });
  });
}

}  // namespace asbi::core::cpu
