// Row-structured kernels: layer norm, set mean-pooling, block copies and row gathers.
#include <cmath>
#include <cstring>
#include <numeric>

#include "core/cpu/cpu_backend.hpp"

namespace asbi::core::cpu {

// x̂ = (x - μ) · rstd,  rstd = 1 / √(σ² + ε),  y = x̂ ⊙ γ + β   (Ba et al. 2016, eq. 4)
void CpuBackend::layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps,
                            Tensor& y, Tensor& mean, Tensor& rstd) {
  const std::int64_t width = x.shape().last(), rows = x.numel() / width;
  with_dtype(x.dtype(), [&]<typename T>() {
    const T* in = x.data<T>();
    const T* g = gamma.defined() ? gamma.data<T>() : nullptr;
    const T* b = beta.defined() ? beta.data<T>() : nullptr;
    T* out = y.data<T>();
    T* mu = mean.data<T>();
    T* rs = rstd.data<T>();
    parallel_for(rows, x.numel(), [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t r = begin; r < end; ++r) {
        const T* row = in + r * width;
        double m = 0;
        for (std::int64_t j = 0; j < width; ++j) m += row[j];
        m /= static_cast<double>(width);
        double v = 0;  // two passes: the one-pass formula loses precision when |μ| ≫ σ
        for (std::int64_t j = 0; j < width; ++j) v += (row[j] - m) * (row[j] - m);
        v /= static_cast<double>(width);
        const T inv = static_cast<T>(1 / std::sqrt(v + eps));
        mu[r] = static_cast<T>(m);
        rs[r] = inv;
        T* o = out + r * width;
        for (std::int64_t j = 0; j < width; ++j) {
          T xhat = (row[j] - mu[r]) * inv;
          o[j] = (g ? xhat * g[j] : xhat) + (b ? b[j] : T(0));
        }
      }
    });
  });
}

// dβ += Σ_rows dy,  dγ += Σ_rows dy ⊙ x̂,
// dx += rstd · (dx̂ - mean(dx̂) - x̂ · mean(dx̂ ⊙ x̂))  with dx̂ = dy ⊙ γ
void CpuBackend::layer_norm_backward(const Tensor& x, const Tensor& gamma, const Tensor& mean,
                                     const Tensor& rstd, const Tensor& dy, Tensor* dx,
                                     Tensor* dgamma, Tensor* dbeta) {
  const std::int64_t width = x.shape().last(), rows = x.numel() / width;
  with_dtype(x.dtype(), [&]<typename T>() {
    const T* in = x.data<T>();
    const T* g = gamma.defined() ? gamma.data<T>() : nullptr;
    const T* mu = mean.data<T>();
    const T* rs = rstd.data<T>();
    const T* gy = dy.data<T>();
    if (dgamma || dbeta) {  // sums over rows: one pass, columns contiguous
      T* gg = dgamma ? dgamma->data<T>() : nullptr;
      T* gb = dbeta ? dbeta->data<T>() : nullptr;
      for (std::int64_t r = 0; r < rows; ++r)
        for (std::int64_t j = 0; j < width; ++j) {
          const T d = gy[r * width + j];
          if (gg) gg[j] += d * (in[r * width + j] - mu[r]) * rs[r];
          if (gb) gb[j] += d;
        }
    }
    if (!dx) return;
    T* gx = dx->data<T>();
    parallel_for(rows, x.numel(), [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t r = begin; r < end; ++r) {
        const T* row = in + r * width;
        const T* d = gy + r * width;
        double mean_dxhat = 0, mean_dxhat_xhat = 0;
        for (std::int64_t j = 0; j < width; ++j) {
          const T xhat = (row[j] - mu[r]) * rs[r];
          const T dxhat = g ? d[j] * g[j] : d[j];
          mean_dxhat += dxhat;
          mean_dxhat_xhat += dxhat * xhat;
        }
        mean_dxhat /= static_cast<double>(width);
        mean_dxhat_xhat /= static_cast<double>(width);
        for (std::int64_t j = 0; j < width; ++j) {
          const T xhat = (row[j] - mu[r]) * rs[r];
          const T dxhat = g ? d[j] * g[j] : d[j];
          gx[r * width + j] += rs[r] * (dxhat - static_cast<T>(mean_dxhat) -
                                        xhat * static_cast<T>(mean_dxhat_xhat));
        }
      }
    });
  });
}

namespace {

// Calls f(b, first_row, count) for every set: dense sets are [B, S, H], ragged ones packed.
template <typename F>
void for_each_set(std::int64_t sets, std::int64_t dense_size, std::int64_t width,
                  std::span<const std::int64_t> lengths, F&& f) {
  if (lengths.empty()) {
    parallel_for(sets, sets * dense_size * width, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t b = begin; b < end; ++b) f(b, b * dense_size, dense_size);
    });
    return;
  }
  std::vector<std::int64_t> first(lengths.size());
  std::exclusive_scan(lengths.begin(), lengths.end(), first.begin(), std::int64_t{0});
  const std::int64_t rows = first.empty() ? 0 : first.back() + lengths.back();
  parallel_for(sets, rows * width, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t b = begin; b < end; ++b)
      f(b, first[static_cast<std::size_t>(b)], lengths[static_cast<std::size_t>(b)]);
  });
}

}  // namespace

// y_b = (1/n_b) Σ_{i<n_b} x_{b,i}
void CpuBackend::mean_pool(const Tensor& x, std::span<const std::int64_t> lengths, Tensor& y) {
  const std::int64_t width = y.shape().last(), sets = y.shape()[0];
  const std::int64_t dense_size = lengths.empty() ? x.shape()[1] : 0;
  with_dtype(x.dtype(), [&]<typename T>() {
    const T* in = x.data<T>();
    T* out = y.data<T>();
    for_each_set(sets, dense_size, width, lengths, [&](std::int64_t b, std::int64_t first,
                                                std::int64_t n) {
      T* o = out + b * width;
      std::fill(o, o + width, T(0));
      for (std::int64_t i = 0; i < n; ++i) {
        const T* row = in + (first + i) * width;
#pragma omp simd
        for (std::int64_t j = 0; j < width; ++j) o[j] += row[j];
      }
      const T inv = T(1) / static_cast<T>(n);
      for (std::int64_t j = 0; j < width; ++j) o[j] *= inv;
    });
  });
}

// dx_{b,i} += dy_b / n_b
void CpuBackend::mean_pool_backward(const Tensor& dy, std::span<const std::int64_t> lengths,
                                    Tensor& dx) {
  const std::int64_t width = dy.shape().last(), sets = dy.shape()[0];
  const std::int64_t dense_size = lengths.empty() ? dx.shape()[1] : 0;
  with_dtype(dy.dtype(), [&]<typename T>() {
    const T* g = dy.data<T>();
    T* gx = dx.data<T>();
    for_each_set(sets, dense_size, width, lengths, [&](std::int64_t b, std::int64_t first,
                                                std::int64_t n) {
      const T inv = T(1) / static_cast<T>(n);
      for (std::int64_t i = 0; i < n; ++i) {
        T* row = gx + (first + i) * width;
#pragma omp simd
        for (std::int64_t j = 0; j < width; ++j) row[j] += g[b * width + j] * inv;
      }
    });
  });
}

void CpuBackend::copy_axis(const Tensor& src, int axis, std::int64_t src_begin, Tensor& dst,
                           std::int64_t dst_begin, std::int64_t len, bool accumulate) {
  const int a = src.shape().normalize_axis(axis);
  const std::int64_t outer = src.shape().outer(a), inner = src.shape().inner(a);
  const std::int64_t src_n = src.shape()[a], dst_n = dst.shape()[a];
  with_dtype(src.dtype(), [&]<typename T>() {
    const T* in = src.data<T>();
    T* out = dst.data<T>();
    const std::int64_t block = len * inner;  // contiguous elements per outer index
    parallel_for(outer, outer * block, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t o = begin; o < end; ++o) {
        const T* s = in + (o * src_n + src_begin) * inner;
        T* d = out + (o * dst_n + dst_begin) * inner;
        if (accumulate) {
  #pragma omp simd
          for (std::int64_t k = 0; k < block; ++k) d[k] += s[k];
        } else {
          std::memcpy(d, s, static_cast<std::size_t>(block) * sizeof(T));
        }
      }
    });
  });
}

void CpuBackend::gather_rows(const Tensor& x, std::span<const std::int64_t> index, Tensor& y) {
  const std::int64_t width = x.shape().cols();
  with_dtype(x.dtype(), [&]<typename T>() {
    const T* in = x.data<T>();
    T* out = y.data<T>();
    const auto n = static_cast<std::int64_t>(index.size());
    parallel_for(n, n * width, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t i = begin; i < end; ++i)
        std::memcpy(out + i * width, in + index[static_cast<std::size_t>(i)] * width,
                    static_cast<std::size_t>(width) * sizeof(T));
    });
  });
}

void CpuBackend::scatter_add_rows(const Tensor& dy, std::span<const std::int64_t> index,
                                  Tensor& dx) {
  const std::int64_t width = dx.shape().cols();
  with_dtype(dy.dtype(), [&]<typename T>() {
    const T* g = dy.data<T>();
    T* gx = dx.data<T>();
    // Serial: repeated indices write the same row, and the order must not depend on threads.
    for (std::size_t i = 0; i < index.size(); ++i) {
      T* row = gx + index[i] * width;
      const T* src = g + static_cast<std::int64_t>(i) * width;
      for (std::int64_t j = 0; j < width; ++j) row[j] += src[j];
    }
  });
}

}  // namespace asbi::core::cpu
