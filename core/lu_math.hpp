#pragma once
// One row of LULinear's inverse, x = U⁻¹ L⁻¹ y (W = L U, L unit lower triangular, U upper), by
// forward then back substitution with every sum in double. The CPU and CUDA kernels both call it,
// so the two devices do the same arithmetic in the same order.
#include <cstdint>

#include "core/host_device.hpp"
#include "core/tensor.hpp"

namespace asbi::core::lu {

// l, u: [d, d] row-major (l's diagonal is not read); y, x: one row of d; t: d doubles of scratch.
template <typename T>
ASBI_HOST_DEVICE inline void solve_row(const T* l, const T* u, const T* y, T* x, std::int64_t d,
                                       double* t) {
  for (std::int64_t i = 0; i < d; ++i) {  // L t = y
    double s = y[i];
    for (std::int64_t j = 0; j < i; ++j) s -= double(l[i * d + j]) * t[j];
    t[i] = s;
  }
  for (std::int64_t i = d - 1; i >= 0; --i) {  // U x = t
    double s = t[i];
    for (std::int64_t j = i + 1; j < d; ++j) s -= double(u[i * d + j]) * double(x[j]);
    x[i] = static_cast<T>(s / double(u[i * d + i]));
  }
}

// What every backend's lu_solve_rows checks first: y and x [B, D], lower and upper [D, D].
inline void check_solve_shapes(const char* op, const Tensor& lower, const Tensor& upper,
                               const Tensor& y, const Tensor& x) {
  if (y.shape().rank() != 2)
    throw ShapeError(str(op, ": expected y of shape [B, D], got ", y.shape()));
  const std::int64_t d = y.dim(1);
  check_shape(op, "lower", lower, {d, d});
  check_shape(op, "upper", upper, {d, d});
  check_shape(op, "x", x, y.shape());
  check_compatible(op, y, lower);
  check_compatible(op, y, upper);
  check_compatible(op, y, x);
}

}  // namespace asbi::core::lu
