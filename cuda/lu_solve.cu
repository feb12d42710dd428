// LULinear's inverse, x_b = U⁻¹ L⁻¹ y_b per row: one thread per row running core/lu_math.hpp's
// substitutions, so that sampling a flow with LU layers stays on the device.
//
// Launch: grid-stride over the B rows, 256 threads. Traffic: each row reads y_b (D values) and
// writes x_b, plus D doubles of scratch per row written and read once; L and U (D² values each)
// are read by every thread and served from L1/L2 after the first warp.
#include "core/lu_math.hpp"
#include "cuda/backend_impl.cuh"

namespace asbi::cuda {
namespace {

template <typename T>
__global__ void lu_solve_rows_kernel(const T* lower, const T* upper, const T* y, T* x,
                                     double* scratch, std::int64_t rows, std::int64_t d) {
  ASBI_GRID_LOOP(b, rows) {
    core::lu::solve_row(lower, upper, y + b * d, x + b * d, d, scratch + b * d);
  }
}

}  // namespace

void CudaBackend::lu_solve_rows(const core::Tensor& lower, const core::Tensor& upper,
                                const core::Tensor& y, core::Tensor& x) {
  expect_device("lu_solve_rows", {&lower, &upper, &y, &x});
  core::lu::check_solve_shapes("cuda lu_solve_rows", lower, upper, y, x);
  const std::int64_t rows = y.dim(0), d = y.dim(1);
  if (rows == 0 || d == 0) return;
  Scratch scratch(static_cast<std::size_t>(rows * d) * sizeof(double));
  with_dtype(y.dtype(), [&]<typename T>() {
    lu_solve_rows_kernel<T><<<grid_for(rows), block_size>>>(lower.data<T>(), upper.data<T>(),
                                                            y.data<T>(), x.data<T>(),
                                                            scratch.as<double>(), rows, d);
  });
  ASBI_CUDA_CHECK_LAUNCH("lu_solve_rows_kernel");
}

}  // namespace asbi::cuda
