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
  with_dtype(x.dtype(), [&]<typename T>() {
    const T* in = x.data<T>();
    T* out = y.data<T>();
#pragma omp parallel for if (x.numel() > parallel_grain && v.outer > 1)
    for (std::int64_t o = 0; o < v.outer; ++o) {
      // Summing rows into a vector of `inner` accumulators keeps the inner loop contiguous.
      for (std::int64_t k = 0; k < v.inner; ++k) {
        Acc<T> s = 0;
        const T* p = in + o * v.n * v.inner + k;
        for (std::int64_t i = 0; i < v.n; ++i) s += p[i * v.inner];
        T r = static_cast<T>(scale * s);
        T& dst = out[o * v.inner + k];
        dst = accumulate ? dst + r : r;
      }
    }
  });
}

void CpuBackend::sum_all(const Tensor& x, double scale, bool accumulate, Tensor& y) {
  with_dtype(x.dtype(), [&]<typename T>() {
    const T* in = x.data<T>();
    const std::int64_t n = x.numel();
    Acc<T> s = 0;
#pragma omp parallel for reduction(+ : s) if (n > parallel_grain)
    for (std::int64_t i = 0; i < n; ++i) s += in[i];
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
#pragma omp parallel for collapse(2) if (dx.numel() > parallel_grain)
    for (std::int64_t o = 0; o < v.outer; ++o)
      for (std::int64_t i = 0; i < v.n; ++i) {
        T* row = out + (o * v.n + i) * v.inner;
        const T* src = g + o * v.inner;
#pragma omp simd
        for (std::int64_t k = 0; k < v.inner; ++k) row[k] += s * src[k];
      }
  });
}

// logsumexp(x) = m + log Σ exp(x - m) with m = max x: never overflows.
void CpuBackend::logsumexp(const Tensor& x, Tensor& y) {
  const std::int64_t width = x.shape().last(), rows = x.numel() / std::max<std::int64_t>(width, 1);
  with_dtype(x.dtype(), [&]<typename T>() {
    const T* in = x.data<T>();
    T* out = y.data<T>();
#pragma omp parallel for if (x.numel() > parallel_grain)
    for (std::int64_t r = 0; r < rows; ++r) {
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
#pragma omp parallel for if (x.numel() > parallel_grain)
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t j = 0; j < width; ++j)
        gx[r * width + j] += g[r] * std::exp(in[r * width + j] - out[r]);
  });
}

void CpuBackend::softmax(const Tensor& x, bool log, Tensor& y) {
  const std::int64_t width = x.shape().last(), rows = x.numel() / std::max<std::int64_t>(width, 1);
  with_dtype(x.dtype(), [&]<typename T>() {
    const T* in = x.data<T>();
    T* out = y.data<T>();
#pragma omp parallel for if (x.numel() > parallel_grain)
    for (std::int64_t r = 0; r < rows; ++r) {
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
}

// softmax:      dxⱼ += yⱼ (dyⱼ - Σₖ dyₖ yₖ)
// log_softmax:  dxⱼ += dyⱼ - exp(yⱼ) Σₖ dyₖ
void CpuBackend::softmax_backward(const Tensor& y, const Tensor& dy, bool log, Tensor& dx) {
  const std::int64_t width = y.shape().last(), rows = y.numel() / std::max<std::int64_t>(width, 1);
  with_dtype(y.dtype(), [&]<typename T>() {
    const T* out = y.data<T>();
    const T* g = dy.data<T>();
    T* gx = dx.data<T>();
#pragma omp parallel for if (y.numel() > parallel_grain)
    for (std::int64_t r = 0; r < rows; ++r) {
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
}

}  // namespace asbi::core::cpu
