// Reductions and the row-wise softmax family. Every sum runs in a fixed order (a tree of fixed
// shape for sum_all, a sequential loop per output elsewhere) and accumulates in double, as the
// CPU does, so that results repeat bit for bit from run to run and stay close to the CPU's.
#include <cmath>

#include "cuda/backend_impl.cuh"

namespace asbi::cuda {

using core::Tensor;

namespace {

constexpr int tree_threads = 256;  // a power of two: the tree halves it down to one
constexpr int max_partials = 1024;

struct AxisView {
  std::int64_t outer, n, inner;
};

AxisView axis_view(const core::Shape& s, int axis) {
  axis = s.normalize_axis(axis);
  return {s.outer(axis), s[axis], s.inner(axis)};
}

// Sums one value per thread of the block into sum[0]; the pairing depends only on blockDim.
__device__ inline void block_tree_sum(double* sum) {
  for (unsigned w = blockDim.x / 2; w > 0; w /= 2) {
    if (threadIdx.x < w) sum[threadIdx.x] += sum[threadIdx.x + w];
    __syncthreads();
  }
}

// Pass 1 of sum_all: one partial sum per block. The grid is a function of n alone, so every
// thread sees the same elements in the same order on every run.
template <typename T>
__global__ void sum_partials_kernel(const T* x, std::int64_t n, double* partials) {
  __shared__ double sum[tree_threads];
  double acc = 0;
  ASBI_GRID_LOOP(i, n) acc += x[i];
  sum[threadIdx.x] = acc;
  __syncthreads();
  block_tree_sum(sum);
  if (threadIdx.x == 0) partials[blockIdx.x] = sum[0];
}

// Pass 2: one block folds the partials and writes y[0].
template <typename T>
__global__ void sum_finish_kernel(const double* partials, int count, double scale, bool accumulate,
                                  T* y) {
  __shared__ double sum[tree_threads];
  double acc = 0;
  for (int i = threadIdx.x; i < count; i += blockDim.x) acc += partials[i];
  sum[threadIdx.x] = acc;
  __syncthreads();
  block_tree_sum(sum);
  if (threadIdx.x == 0) {
    const T r = static_cast<T>(scale * sum[0]);
    y[0] = accumulate ? y[0] + r : r;
  }
}

// One thread per output [o, k], summing its n inputs in order, as the CPU does.
template <typename T>
__global__ void sum_axis_kernel(const T* x, AxisView v, double scale, bool accumulate, T* y) {
  ASBI_GRID_LOOP(e, v.outer * v.inner) {
    const std::int64_t o = e / v.inner, k = e % v.inner;
    const T* p = x + o * v.n * v.inner + k;
    double s = 0;
    for (std::int64_t i = 0; i < v.n; ++i) s += p[i * v.inner];
    const T r = static_cast<T>(scale * s);
    y[e] = accumulate ? y[e] + r : r;
  }
}

template <typename T>
__global__ void broadcast_axis_kernel(const T* dy, AxisView v, T scale, T* dx) {
  ASBI_GRID_LOOP(e, v.outer * v.n * v.inner) {
    const std::int64_t o = e / (v.n * v.inner), k = e % v.inner;
    dx[e] += scale * dy[o * v.inner + k];
  }
}

// The row-wise kernels below give one thread a whole row: right for the short rows of
// categorical heads and mixture weights; long rows would want a block per row.
template <typename T>
__device__ inline T row_max(const T* row, std::int64_t width) {
  T m = -static_cast<T>(INFINITY);
  for (std::int64_t j = 0; j < width; ++j) m = m < row[j] ? row[j] : m;  // NaN-blind, as std::max
  return m;
}

// logsumexp(x) = m + log Σ exp(x - m) with m = max x: never overflows.
template <typename T>
__global__ void logsumexp_kernel(const T* x, std::int64_t rows, std::int64_t width, T* y) {
  ASBI_GRID_LOOP(r, rows) {
    const T* row = x + r * width;
    const T m = row_max(row, width);
    if (!std::isfinite(m)) {  // all -inf (or an inf/nan): the plain formula is exact
      y[r] = m;
      continue;
    }
    double s = 0;
    for (std::int64_t j = 0; j < width; ++j) s += std::exp(row[j] - m);
    y[r] = static_cast<T>(m + std::log(s));
  }
}

// ∂ logsumexp(x) / ∂xⱼ = exp(xⱼ - y) = softmax(x)ⱼ
template <typename T>
__global__ void logsumexp_backward_kernel(const T* x, const T* y, const T* dy, T* dx,
                                          std::int64_t width, std::int64_t n) {
  ASBI_GRID_LOOP(i, n) {
    const std::int64_t r = i / width;
    dx[i] += dy[r] * std::exp(x[i] - y[r]);
  }
}

template <typename T>
__global__ void softmax_kernel(const T* x, std::int64_t rows, std::int64_t width, bool log_out,
                               T* y) {
  ASBI_GRID_LOOP(r, rows) {
    const T* row = x + r * width;
    T* out = y + r * width;
    const T m = row_max(row, width);
    double s = 0;
    for (std::int64_t j = 0; j < width; ++j) s += std::exp(row[j] - m);
    if (log_out) {
      const T lse = static_cast<T>(m + std::log(s));
      for (std::int64_t j = 0; j < width; ++j) out[j] = row[j] - lse;
    } else {
      const T inv = static_cast<T>(1 / s);
      for (std::int64_t j = 0; j < width; ++j) out[j] = std::exp(row[j] - m) * inv;
    }
  }
}

// softmax:      dxⱼ += yⱼ (dyⱼ - Σₖ dyₖ yₖ)
// log_softmax:  dxⱼ += dyⱼ - exp(yⱼ) Σₖ dyₖ
template <typename T>
__global__ void softmax_backward_kernel(const T* y, const T* dy, std::int64_t rows,
                                        std::int64_t width, bool log_out, T* dx) {
  ASBI_GRID_LOOP(r, rows) {
    const T* yr = y + r * width;
    const T* gr = dy + r * width;
    T* xr = dx + r * width;
    double s = 0;
    if (log_out) {
      for (std::int64_t j = 0; j < width; ++j) s += gr[j];
      for (std::int64_t j = 0; j < width; ++j) xr[j] += gr[j] - std::exp(yr[j]) * T(s);
    } else {
      for (std::int64_t j = 0; j < width; ++j) s += gr[j] * yr[j];
      for (std::int64_t j = 0; j < width; ++j) xr[j] += yr[j] * (gr[j] - T(s));
    }
  }
}

struct RowView {
  std::int64_t rows, width;
};

RowView row_view(const Tensor& x) {
  const std::int64_t width = x.shape().last();
  return {x.numel() / std::max<std::int64_t>(width, 1), width};
}

}  // namespace

void CudaBackend::sum_axis(const Tensor& x, int axis, double scale, bool accumulate, Tensor& y) {
  expect_device("sum_axis", {&x, &y});
  const AxisView v = axis_view(x.shape(), axis);
  const std::int64_t outputs = v.outer * v.inner;
  if (outputs == 0) return;
  with_dtype(x.dtype(), [&]<typename T>() {
    sum_axis_kernel<T>
        <<<grid_for(outputs), block_size>>>(x.data<T>(), v, scale, accumulate, y.data<T>());
  });
  ASBI_CUDA_CHECK_LAUNCH("sum_axis_kernel");
}

void CudaBackend::sum_all(const Tensor& x, double scale, bool accumulate, Tensor& y) {
  expect_device("sum_all", {&x, &y});
  const std::int64_t n = x.numel();
  const int blocks = static_cast<int>(
      std::clamp<std::int64_t>((n + tree_threads - 1) / tree_threads, 1, max_partials));
  Scratch partials(static_cast<std::size_t>(blocks) * sizeof(double));
  with_dtype(x.dtype(), [&]<typename T>() {
    sum_partials_kernel<T><<<blocks, tree_threads>>>(x.data<T>(), n, partials.as<double>());
    ASBI_CUDA_CHECK_LAUNCH("sum_partials_kernel");
    sum_finish_kernel<T>
        <<<1, tree_threads>>>(partials.as<double>(), blocks, scale, accumulate, y.data<T>());
  });
  ASBI_CUDA_CHECK_LAUNCH("sum_finish_kernel");
}

void CudaBackend::broadcast_axis(const Tensor& dy, int axis, double scale, Tensor& dx) {
  expect_device("broadcast_axis", {&dy, &dx});
  const AxisView v = axis_view(dx.shape(), axis);
  const std::int64_t n = dx.numel();
  if (n == 0) return;
  with_dtype(dx.dtype(), [&]<typename T>() {
    broadcast_axis_kernel<T>
        <<<grid_for(n), block_size>>>(dy.data<T>(), v, static_cast<T>(scale), dx.data<T>());
  });
  ASBI_CUDA_CHECK_LAUNCH("broadcast_axis_kernel");
}

void CudaBackend::logsumexp(const Tensor& x, Tensor& y) {
  expect_device("logsumexp", {&x, &y});
  const RowView v = row_view(x);
  if (v.rows == 0) return;
  with_dtype(x.dtype(), [&]<typename T>() {
    logsumexp_kernel<T>
        <<<grid_for(v.rows), block_size>>>(x.data<T>(), v.rows, v.width, y.data<T>());
  });
  ASBI_CUDA_CHECK_LAUNCH("logsumexp_kernel");
}

void CudaBackend::logsumexp_backward(const Tensor& x, const Tensor& y, const Tensor& dy,
                                     Tensor& dx) {
  expect_device("logsumexp_backward", {&x, &y, &dy, &dx});
  const std::int64_t n = x.numel(), width = x.shape().last();
  if (n == 0) return;
  with_dtype(x.dtype(), [&]<typename T>() {
    logsumexp_backward_kernel<T><<<grid_for(n), block_size>>>(x.data<T>(), y.data<T>(),
                                                              dy.data<T>(), dx.data<T>(), width, n);
  });
  ASBI_CUDA_CHECK_LAUNCH("logsumexp_backward_kernel");
}

void CudaBackend::softmax(const Tensor& x, bool log, Tensor& y) {
  expect_device("softmax", {&x, &y});
  const RowView v = row_view(x);
  if (v.rows == 0 || v.width == 0) return;
  with_dtype(x.dtype(), [&]<typename T>() {
    softmax_kernel<T>
        <<<grid_for(v.rows), block_size>>>(x.data<T>(), v.rows, v.width, log, y.data<T>());
  });
  ASBI_CUDA_CHECK_LAUNCH("softmax_kernel");
}

void CudaBackend::softmax_backward(const Tensor& y, const Tensor& dy, bool log, Tensor& dx) {
  expect_device("softmax_backward", {&y, &dy, &dx});
  const RowView v = row_view(y);
  if (v.rows == 0 || v.width == 0) return;
  with_dtype(y.dtype(), [&]<typename T>() {
    softmax_backward_kernel<T><<<grid_for(v.rows), block_size>>>(y.data<T>(), dy.data<T>(), v.rows,
                                                                 v.width, log, dx.data<T>());
  });
  ASBI_CUDA_CHECK_LAUNCH("softmax_backward_kernel");
}

}  // namespace asbi::cuda
