#pragma once
// Eigen views of CPU tensors, for CPU math. Kept out of tensor.hpp so that code which does not do
// math on the CPU does not pay for Eigen's headers.
#include <Eigen/Core>

#include "core/tensor.hpp"

namespace asbi::core {

template <typename T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using MatrixMap = Eigen::Map<RowMatrix<T>, Eigen::Aligned16>;
template <typename T>
using ConstMatrixMap = Eigen::Map<const RowMatrix<T>>;

// The tensor as a [rows × cols] row-major matrix, where rows is dimension 0 (see Shape::rows).
template <typename T>
Eigen::Map<RowMatrix<T>> as_matrix(const Tensor& t) {
  if (t.device() != Device::cpu)
    throw DeviceError(str("as_matrix: Eigen views need a CPU tensor, got one on ", t.device()));
  return {t.data<T>(), t.shape().rows(), t.shape().cols()};
}

template <typename T>
Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>> as_array(const Tensor& t) {
  if (t.device() != Device::cpu)
    throw DeviceError(str("as_array: Eigen views need a CPU tensor, got one on ", t.device()));
  return {t.data<T>(), t.numel()};
}

}  // namespace asbi::core
