// Elementwise kernels: fill, cast, axpy, the unary maps with their derivatives, broadcasting
// binary ops, where, and the bias add. One grid-stride kernel per family, instantiated for every
// op from core/scalar_math.hpp, so the GPU evaluates exactly the formulas the CPU does.
#include "core/scalar_math.hpp"
#include "cuda/backend_impl.cuh"

namespace asbi::cuda {

using core::Binary;
using core::Tensor;
using core::Unary;
using core::UnaryParams;

namespace {

using core::scalar::with_binary;
using core::scalar::with_unary;

// Both inputs read at the 4-D broadcast shape of the output (shapes right-aligned, leading 1s):
// element strides, 0 along a dimension the input is stretched over. Plain arrays, not
// std::array, so device code needs no constexpr relaxations.
struct Broadcast4 {
  std::int64_t dims[4] = {1, 1, 1, 1};
  std::int64_t a[4] = {};
  std::int64_t b[4] = {};
};

void strides_in(const core::Shape& in, const std::int64_t (&dims)[4], std::int64_t (&s)[4]) {
  std::int64_t stride = 1;
  for (int i = 3, k = in.rank() - 1; i >= 0; --i, --k) {
    const std::int64_t d = k >= 0 ? in[k] : 1;
    s[i] = (d == 1 && dims[i] != 1) ? 0 : stride;
    stride *= d;
  }
}

Broadcast4 broadcast4(const core::Shape& a, const core::Shape& b, const core::Shape& y) {
  Broadcast4 bc;
  for (int i = 0; i < y.rank(); ++i) bc.dims[4 - y.rank() + i] = y[i];
  strides_in(a, bc.dims, bc.a);
  strides_in(b, bc.dims, bc.b);
  return bc;
}

__device__ inline void unflatten(std::int64_t i, const std::int64_t (&dims)[4],
                                 std::int64_t (&idx)[4]) {
  for (int k = 3; k >= 0; --k) {
    idx[k] = i % dims[k];
    i /= dims[k];
  }
}

__device__ inline std::int64_t dot4(const std::int64_t (&idx)[4], const std::int64_t (&s)[4]) {
  return idx[0] * s[0] + idx[1] * s[1] + idx[2] * s[2] + idx[3] * s[3];
}

// --- kernels --------------------------------------------------------------------------------

template <typename T>
__global__ void fill_kernel(T* y, T value, std::int64_t n) {
  ASBI_GRID_LOOP(i, n) y[i] = value;
}

template <typename From, typename To>
__global__ void cast_kernel(const From* x, To* y, std::int64_t n) {
  ASBI_GRID_LOOP(i, n) y[i] = static_cast<To>(x[i]);
}

template <typename T>
__global__ void axpy_kernel(T alpha, const T* x, T* y, std::int64_t n) {
  ASBI_GRID_LOOP(i, n) y[i] += alpha * x[i];
}

template <typename T, Unary Op>
__global__ void unary_kernel(UnaryParams p, const T* x, T* y, std::int64_t n) {
  ASBI_GRID_LOOP(i, n) y[i] = core::scalar::unary_value<T>(Op, p, x[i]);
}

template <typename T, Unary Op>
__global__ void unary_backward_kernel(UnaryParams p, const T* x, const T* y, const T* dy, T* dx,
                                      std::int64_t n) {
  ASBI_GRID_LOOP(i, n) dx[i] += dy[i] * core::scalar::unary_derivative<T>(Op, p, x[i], y[i]);
}

template <typename T, Binary Op>
__global__ void binary_kernel(const T* a, const T* b, T* y, std::int64_t n) {
  ASBI_GRID_LOOP(i, n) y[i] = core::scalar::binary_value(Op, a[i], b[i]);
}

template <typename T, Binary Op>
__global__ void binary_broadcast_kernel(const T* a, const T* b, T* y, Broadcast4 bc,
                                        std::int64_t n) {
  ASBI_GRID_LOOP(i, n) {
    std::int64_t idx[4];
    unflatten(i, bc.dims, idx);
    y[i] = core::scalar::binary_value(Op, a[dot4(idx, bc.a)], b[dot4(idx, bc.b)]);
  }
}

template <typename T, Binary Op>
__global__ void binary_backward_kernel(const T* a, const T* b, const T* dy, T* da, T* db,
                                       std::int64_t n) {
  ASBI_GRID_LOOP(i, n) {
    if (da) da[i] += dy[i] * core::scalar::binary_da(Op, a[i], b[i]);
    if (db) db[i] += dy[i] * core::scalar::binary_db(Op, a[i], b[i]);
  }
}

// The gradient of one input (a when ForA, else b) under broadcasting: one thread per element of
// that input, summing over the output positions it was stretched to in row-major order, the
// order the CPU visits them in. Each gradient element has one writer: no atomics, and the same
// sum on every run.
template <typename T, Binary Op, bool ForA>
__global__ void binary_backward_broadcast_kernel(const T* a, const T* b, const T* dy, T* grad,
                                                 Broadcast4 bc, std::int64_t count) {
  const std::int64_t(&sx)[4] = ForA ? bc.a : bc.b;
  std::int64_t own[4], spread = 1;
  for (int k = 0; k < 4; ++k) {
    own[k] = sx[k] == 0 ? 1 : bc.dims[k];
    if (sx[k] == 0) spread *= bc.dims[k];
  }
  ASBI_GRID_LOOP(j, count) {
    std::int64_t idx[4];
    unflatten(j, own, idx);
    T acc = grad[j];
    for (std::int64_t t = 0; t < spread; ++t) {
      std::int64_t r = t;
      for (int k = 3; k >= 0; --k)
        if (sx[k] == 0) {
          idx[k] = r % bc.dims[k];
          r /= bc.dims[k];
        }
      const std::int64_t iy =
          ((idx[0] * bc.dims[1] + idx[1]) * bc.dims[2] + idx[2]) * bc.dims[3] + idx[3];
      const T va = a[dot4(idx, bc.a)], vb = b[dot4(idx, bc.b)];
      acc += dy[iy] *
             (ForA ? core::scalar::binary_da(Op, va, vb) : core::scalar::binary_db(Op, va, vb));
    }
    grad[j] = acc;
  }
}

template <typename T>
__global__ void where_kernel(const T* cond, const T* a, const T* b, T* y, std::int64_t n) {
  ASBI_GRID_LOOP(i, n) y[i] = cond[i] != T(0) ? a[i] : b[i];
}

template <typename T>
__global__ void where_backward_kernel(const T* cond, const T* dy, T* da, T* db, std::int64_t n) {
  ASBI_GRID_LOOP(i, n) {
    if (cond[i] != T(0)) {
      if (da) da[i] += dy[i];
    } else if (db) {
      db[i] += dy[i];
    }
  }
}

template <typename T>
__global__ void add_bias_kernel(const T* bias, T* y, std::int64_t width, std::int64_t n) {
  ASBI_GRID_LOOP(i, n) y[i] += bias[i % width];
}

}  // namespace

// --- launches -------------------------------------------------------------------------------

void CudaBackend::fill(Tensor& y, double value) {
  expect_device("fill", {&y});
  const std::int64_t n = y.numel();
  if (n == 0) return;
  with_dtype(y.dtype(), [&]<typename T>() {
    fill_kernel<T><<<grid_for(n), block_size>>>(y.data<T>(), static_cast<T>(value), n);
  });
  ASBI_CUDA_CHECK_LAUNCH("fill_kernel");
}

void CudaBackend::cast(const Tensor& x, Tensor& y) {
  expect_device("cast", {&x, &y});
  const std::int64_t n = x.numel();
  if (n == 0) return;
  if (x.dtype() == y.dtype()) {
    ASBI_CUDA_CHECK(cudaMemcpy(y.raw(), x.raw(), x.bytes(), cudaMemcpyDeviceToDevice));
  } else if (x.dtype() == core::DType::f32) {
    cast_kernel<<<grid_for(n), block_size>>>(x.data<float>(), y.data<double>(), n);
    ASBI_CUDA_CHECK_LAUNCH("cast_kernel");
  } else {
    cast_kernel<<<grid_for(n), block_size>>>(x.data<double>(), y.data<float>(), n);
    ASBI_CUDA_CHECK_LAUNCH("cast_kernel");
  }
}

void CudaBackend::axpy(double alpha, const Tensor& x, Tensor& y) {
  expect_device("axpy", {&x, &y});
  const std::int64_t n = y.numel();
  if (n == 0) return;
  with_dtype(y.dtype(), [&]<typename T>() {
    axpy_kernel<T><<<grid_for(n), block_size>>>(static_cast<T>(alpha), x.data<T>(), y.data<T>(), n);
  });
  ASBI_CUDA_CHECK_LAUNCH("axpy_kernel");
}

void CudaBackend::unary(Unary op, UnaryParams p, const Tensor& x, Tensor& y) {
  expect_device("unary", {&x, &y});
  const std::int64_t n = x.numel();
  if (n == 0) return;
  with_dtype(x.dtype(), [&]<typename T>() {
    with_unary(op, [&]<Unary Op>() {
      unary_kernel<T, Op><<<grid_for(n), block_size>>>(p, x.data<T>(), y.data<T>(), n);
    });
  });
  ASBI_CUDA_CHECK_LAUNCH("unary_kernel");
}

void CudaBackend::unary_backward(Unary op, UnaryParams p, const Tensor& x, const Tensor& y,
                                 const Tensor& dy, Tensor& dx) {
  expect_device("unary_backward", {&x, &y, &dy, &dx});
  const std::int64_t n = x.numel();
  if (n == 0) return;
  with_dtype(x.dtype(), [&]<typename T>() {
    with_unary(op, [&]<Unary Op>() {
      unary_backward_kernel<T, Op>
          <<<grid_for(n), block_size>>>(p, x.data<T>(), y.data<T>(), dy.data<T>(), dx.data<T>(), n);
    });
  });
  ASBI_CUDA_CHECK_LAUNCH("unary_backward_kernel");
}

void CudaBackend::binary(Binary op, const Tensor& a, const Tensor& b, Tensor& y) {
  expect_device("binary", {&a, &b, &y});
  const std::int64_t n = y.numel();
  if (n == 0) return;
  with_dtype(y.dtype(), [&]<typename T>() {
    with_binary(op, [&]<Binary Op>() {
      if (a.numel() == n && b.numel() == n) {  // the common case: no broadcast at all
        binary_kernel<T, Op><<<grid_for(n), block_size>>>(a.data<T>(), b.data<T>(), y.data<T>(), n);
      } else {
        binary_broadcast_kernel<T, Op><<<grid_for(n), block_size>>>(
            a.data<T>(), b.data<T>(), y.data<T>(), broadcast4(a.shape(), b.shape(), y.shape()), n);
      }
    });
  });
  ASBI_CUDA_CHECK_LAUNCH("binary_kernel");
}

void CudaBackend::binary_backward(Binary op, const Tensor& a, const Tensor& b, const Tensor& dy,
                                  Tensor* da, Tensor* db) {
  expect_device("binary_backward", {&a, &b, &dy, da, db});
  const std::int64_t n = dy.numel();
  if (n == 0 || (!da && !db)) return;
  with_dtype(dy.dtype(), [&]<typename T>() {
    with_binary(op, [&]<Binary Op>() {
      const T* pa = a.data<T>();
      const T* pb = b.data<T>();
      const T* g = dy.data<T>();
      if (a.numel() == n && b.numel() == n) {
        binary_backward_kernel<T, Op><<<grid_for(n), block_size>>>(
            pa, pb, g, da ? da->data<T>() : nullptr, db ? db->data<T>() : nullptr, n);
        return;
      }
      const Broadcast4 bc = broadcast4(a.shape(), b.shape(), dy.shape());
      if (da && a.numel() > 0) {
        binary_backward_broadcast_kernel<T, Op, true>
            <<<grid_for(a.numel()), block_size>>>(pa, pb, g, da->data<T>(), bc, a.numel());
        ASBI_CUDA_CHECK_LAUNCH("binary_backward_broadcast_kernel");
      }
      if (db && b.numel() > 0)
        binary_backward_broadcast_kernel<T, Op, false>
            <<<grid_for(b.numel()), block_size>>>(pa, pb, g, db->data<T>(), bc, b.numel());
    });
  });
  ASBI_CUDA_CHECK_LAUNCH("binary_backward_kernel");
}

void CudaBackend::where(const Tensor& cond, const Tensor& a, const Tensor& b, Tensor& y) {
  expect_device("where", {&cond, &a, &b, &y});
  const std::int64_t n = y.numel();
  if (n == 0) return;
  with_dtype(y.dtype(), [&]<typename T>() {
    where_kernel<T>
        <<<grid_for(n), block_size>>>(cond.data<T>(), a.data<T>(), b.data<T>(), y.data<T>(), n);
  });
  ASBI_CUDA_CHECK_LAUNCH("where_kernel");
}

void CudaBackend::where_backward(const Tensor& cond, const Tensor& dy, Tensor* da, Tensor* db) {
  expect_device("where_backward", {&cond, &dy, da, db});
  const std::int64_t n = dy.numel();
  if (n == 0 || (!da && !db)) return;
  with_dtype(dy.dtype(), [&]<typename T>() {
    where_backward_kernel<T><<<grid_for(n), block_size>>>(cond.data<T>(), dy.data<T>(),
                                                          da ? da->data<T>() : nullptr,
                                                          db ? db->data<T>() : nullptr, n);
  });
  ASBI_CUDA_CHECK_LAUNCH("where_backward_kernel");
}

void CudaBackend::add_bias(const Tensor& bias, Tensor& y) {
  expect_device("add_bias", {&bias, &y});
  const std::int64_t n = y.numel(), width = bias.numel();
  if (n == 0) return;
  if (width == 0 || n % width != 0)
    throw core::ShapeError(core::str("cuda add_bias: bias of shape ", bias.shape(),
                                     " does not divide the rows of y of shape ", y.shape()));
  with_dtype(y.dtype(), [&]<typename T>() {
    add_bias_kernel<T><<<grid_for(n), block_size>>>(bias.data<T>(), y.data<T>(), width, n);
  });
  ASBI_CUDA_CHECK_LAUNCH("add_bias_kernel");
}

}  // namespace asbi::cuda
