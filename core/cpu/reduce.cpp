// Reductions and the row-wise softmax family. Sums accumulate in double for float32 inputs where
// the row is long, so that results do not drift with the row length.
#include <algorithm>
#include <cmath>
#include <limits>

#include "core/cpu/cpu_backend.hpp"

namespace asbi::core::cpu {
namespace {

// The wider type used to accumulate sums of T.
template <typename T>
using Acc = double;

struct AxisView {
  std::int64_t outer, n, inner;
};

AxisView axis_view(const Shape& s, int axis) {
  axis = s.normalize_axis(axis);
  return {s.outer(axis), s[axis], s.inner(axis)};
}

}  // namespace

void CpuBackend::sum_axis(const Tensor& x, int axis, double scale, bool accumulate, Tensor& y) {
  const AxisView v = axis_view(x.shape(), axis);
  // Columns are summed in blocks of `block` accumulators so that the loop over the summed axis
  // reads whole contiguous rows (the bias gradient, Σ over a batch, is the common case).
  constexpr std::int64_t block = 64;
  const std::int64_t blocks = (v.inner + block - 1) / block;
  with_dtype(x.dtype(), [&]<typename T>() {
    const T* in = x.data<T>();
    T* out = y.data<T>();
    parallel_for(v.outer * blocks, x.numel(), [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t task = begin; task < end; ++task) {
        const std::int64_t o = task / blocks, k0 = task % blocks * block;
        const std::int64_t width = std::min(block, v.inner - k0);
        Acc<T> acc[block] = {};
        for (std::int64_t i = 0; i < v.n; ++i) {
          const T* row = in + (o * v.n + i) * v.inner + k0;
          for (std::int64_t k = 0; k < width; ++k) acc[k] += row[k];
        }
        T* dst = out + o * v.inner + k0;
        for (std::int64_t k = 0; k < width; ++k) {
          const T r = static_cast<T>(scale * acc[k]);
          dst[k] = accumulate ? dst[k] + r : r;
        }
      }
    });
  });
}

void CpuBackend::sum_all(const Tensor& x, double scale, bool accumulate, Tensor& y) {
  // Partial sums over fixed chunks, added in order: the result depends on n only, not on the
  // number of threads.
  constexpr std::int64_t max_chunks = 256;
  const std::int64_t n = x.numel();
  const std::int64_t chunk = std::max<std::int64_t>(parallel_grain, (n + max_chunks - 1) / max_chunks);
  const std::int64_t chunks = (n + chunk - 1) / chunk;
  with_dtype(x.dtype(), [&]<typename T>() {
    const T* in = x.data<T>();
    double partial[max_chunks] = {};
    parallel_for(chunks, n, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t c = begin; c < end; ++c) {
        Acc<T> s = 0;
        for (std::int64_t i = c * chunk, last = std::min(n, i + chunk); i < last; ++i) s += in[i];
        partial[c] = s;
      }
    });
    double s = 0;
    for (std::int64_t c = 0; c < chunks; ++c) s += partial[c];
    T r = static_cast<T>(scale * s);
    T* out = y.data<T>();
    out[0] = accumulate ? out[0] + r : r;
  });
}

void CpuBackend::broadcast_axis(const Tensor& dy, int axis, double scale, Tensor& dx) {
  const AxisView v = axis_view(dx.shape(), axis);
  with_dtype(dx.dtype(), [&]<typename T>() {
    const T* g = dy.data<T>();
    T* out = dx.data<T>();
    const T s = static_cast<T>(scale);
    parallel_for(v.outer * v.n, dx.numel(), [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t row = begin; row < end; ++row) {
        T* dst = out + row * v.inner;
        const T* src = g + row / v.n * v.inner;
        for (std::int64_t k = 0; k < v.inner; ++k) dst[k] += s * src[k];
      }
    });
  });
}

// logsumexp(x) = m + log Σ exp(x - m) with m = max x: never overflows.
void CpuBackend::logsumexp(const Tensor& x, Tensor& y) {
  const std::int64_t width = x.shape().last(), rows = x.numel() / std::max<std::int64_t>(width, 1);
  with_dtype(x.dtype(), [&]<typename T>() {
    const T* in = x.data<T>();
    T* out = y.data<T>();
    parallel_for(rows, x.numel(), [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t r = begin; r < end; ++r) {
        const T* row = in + r * width;
        T m = -std::numeric_limits<T>::infinity();
        for (std::int64_t j = 0; j < width; ++j) m = std::max(m, row[j]);
        if (!std::isfinite(m)) {  // all -inf (or an inf/nan): the plain formula is exact
          out[r] = m;
          continue;
        }
        Acc<T> s = 0;
        for (std::int64_t j = 0; j < width; ++j) s += std::exp(row[j] - m);
        out[r] = static_cast<T>(m + std::log(s));
      }
    });
  });
}

// ∂ logsumexp(x) / ∂xⱼ = exp(xⱼ - y) = softmax(x)ⱼ
void CpuBackend::logsumexp_backward(const Tensor& x, const Tensor& y, const Tensor& dy,
                                    Tensor& dx) {
  const std::int64_t width = x.shape().last(), rows = x.numel() / std::max<std::int64_t>(width, 1);
  with_dtype(x.dtype(), [&]<typename T>() {
    const T* in = x.data<T>();
    const T* out = y.data<T>();
    const T* g = dy.data<T>();
    T* gx = dx.data<T>();
    parallel_for(rows, x.numel(), [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t r = begin; r < end; ++r)
        for (std::int64_t j = 0; j < width; ++j)
          gx[r * width + j] += g[r] * std::exp(in[r * width + j] - out[r]);
    });
  });
}

void CpuBackend::softmax(const Tensor& x, bool log, Tensor& y) {
  const std::int64_t width = x.shape().last(), rows = x.numel() / std::max<std::int64_t>(width, 1);
  with_dtype(x.dtype(), [&]<typename T>() {
    const T* in = x.data<T>();
    T* out = y.data<T>();
    parallel_for(rows, x.numel(), [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t r = begin; r < end; ++r) {
        const T* row = in + r * width;
        T* o = out + r * width;
        T m = -std::numeric_limits<T>::infinity();
        for (std::int64_t j = 0; j < width; ++j) m = std::max(m, row[j]);
        Acc<T> s = 0;
        for (std::int64_t j = 0; j < width; ++j) s += std::exp(row[j] - m);
        if (log) {
          const T lse = static_cast<T>(m + std::log(s));
          for (std::int64_t j = 0; j < width; ++j) o[j] = row[j] - lse;
        } else {
          const T inv = static_cast<T>(1 / s);
          for (std::int64_t j = 0; j < width; ++j) o[j] = std::exp(row[j] - m) * inv;
        }
      }
    });
  });
}

// softmax:      dxⱼ += yⱼ (dyⱼ - Σₖ dyₖ yₖ)
// log_softmax:  dxⱼ += dyⱼ - exp(yⱼ) Σₖ dyₖ
void CpuBackend::softmax_backward(const Tensor& y, const Tensor& dy, bool log, Tensor& dx) {
  const std::int64_t width = y.shape().last(), rows = y.numel() / std::max<std::int64_t>(width, 1);
  with_dtype(y.dtype(), [&]<typename T>() {
    const T* out = y.data<T>();
    const T* g = dy.data<T>();
    T* gx = dx.data<T>();
    parallel_for(rows, y.numel(), [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t r = begin; r < end; ++r) {
        const T* yr = out + r * width;
        const T* gr = g + r * width;
        T* xr = gx + r * width;
        Acc<T> s = 0;
        if (log) {
          for (std::int64_t j = 0; j < width; ++j) s += gr[j];
          for (std::int64_t j = 0; j < width; ++j) xr[j] += gr[j] - std::exp(yr[j]) * T(s);
        } else {
          for (std::int64_t j = 0; j < width; ++j) s += gr[j] * yr[j];
          for (std::int64_t j = 0; j < width; ++j) xr[j] += yr[j] * (gr[j] - T(s));
        }
      }
    });
  });
}

}  // namespace asbi::core::cpu
