// Elementwise kernels: unary maps, broadcasting binary ops, where.
#include <Eigen/Core>
#include <array>

#include "core/cpu/cpu_backend.hpp"
#include "core/cpu/vectorised.hpp"
#include "core/scalar_math.hpp"

namespace asbi::core::cpu {
namespace {

using scalar::with_binary;
using scalar::with_unary;

// Strides (in elements) of `in` read at the 4-D broadcast shape `out4`: 0 where `in` stretches.
struct Broadcast4 {
  std::array<std::int64_t, 4> dims{1, 1, 1, 1};
  std::array<std::int64_t, 4> a{}, b{};
};

std::array<std::int64_t, 4> strides_in(const Shape& in, const std::array<std::int64_t, 4>& dims) {
  std::array<std::int64_t, 4> s{};
  std::int64_t stride = 1;
  for (int i = 3, k = in.rank() - 1; i >= 0; --i, --k) {
    const std::int64_t d = k >= 0 ? in[k] : 1;
    s[static_cast<std::size_t>(i)] = (d == 1 && dims[static_cast<std::size_t>(i)] != 1) ? 0 : stride;
    stride *= d;
  }
  return s;
}

Broadcast4 broadcast4(const Shape& a, const Shape& b, const Shape& y) {
  Broadcast4 bc;
  for (int i = 0; i < y.rank(); ++i) bc.dims[static_cast<std::size_t>(4 - y.rank() + i)] = y[i];
  bc.a = strides_in(a, bc.dims);
  bc.b = strides_in(b, bc.dims);
  return bc;
}

// Visits every element of the broadcast shape as (flat index in y, offset in a, offset in b).
// The outer two dimensions may run in parallel only when no two visits write the same place.
template <typename F>
void for_each_broadcast(const Broadcast4& bc, bool parallel, F&& f) {
  const auto& d = bc.dims;
  const std::int64_t outer = d[0] * d[1], per_outer = d[2] * d[3];
  parallel_for(outer, parallel ? outer * per_outer : 0, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t o = begin; o < end; ++o) {
      const std::int64_t i0 = o / d[1], i1 = o % d[1];
      std::int64_t iy = o * per_outer;
      for (std::int64_t i2 = 0; i2 < d[2]; ++i2) {
        const std::int64_t ra = i0 * bc.a[0] + i1 * bc.a[1] + i2 * bc.a[2];
        const std::int64_t rb = i0 * bc.b[0] + i1 * bc.b[1] + i2 * bc.b[2];
        for (std::int64_t i3 = 0; i3 < d[3]; ++i3, ++iy)
          f(iy, ra + i3 * bc.a[3], rb + i3 * bc.b[3]);
      }
    }
  });
}

}  // namespace

void CpuBackend::unary(Unary op, UnaryParams p, const Tensor& x, Tensor& y) {
  const std::int64_t n = x.numel();
  if (x.dtype() == DType::f32 && has_vectorised_forward(op)) {
    const float* in = x.data<float>();
    float* out = y.data<float>();
    parallel_for(n, n, [&](std::int64_t begin, std::int64_t end) {
      unary_vectorised(op, p, ConstArrayMap(in + begin, end - begin),
                       ArrayMap(out + begin, end - begin));
    });
    return;
  }
  with_dtype(x.dtype(), [&]<typename T>() {
    with_unary(op, [&]<Unary Op>() {
      const T* in = x.data<T>();
      T* out = y.data<T>();
      parallel_for(n, n, [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t i = begin; i < end; ++i) out[i] = scalar::unary_value<T>(Op, p, in[i]);
      });
    });
  });
}

void CpuBackend::unary_backward(Unary op, UnaryParams p, const Tensor& x, const Tensor& y,
                                const Tensor& dy, Tensor& dx) {
  const std::int64_t n = x.numel();
  if (x.dtype() == DType::f32 && has_vectorised_backward(op)) {
    const float* in = x.data<float>();
    const float* g = dy.data<float>();
    float* gx = dx.data<float>();
    parallel_for(n, n, [&](std::int64_t begin, std::int64_t end) {
      unary_backward_vectorised<true>(op, ConstArrayMap(in + begin, end - begin),
                                ConstArrayMap(g + begin, end - begin),
                                ArrayMap(gx + begin, end - begin));
    });
    return;
  }
  with_dtype(x.dtype(), [&]<typename T>() {
    with_unary(op, [&]<Unary Op>() {
      const T* in = x.data<T>();
      const T* out = y.data<T>();
      const T* g = dy.data<T>();
      T* gx = dx.data<T>();
      parallel_for(n, n, [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t i = begin; i < end; ++i)
          gx[i] += g[i] * scalar::unary_derivative<T>(Op, p, in[i], out[i]);
      });
    });
  });
}

void CpuBackend::binary(Binary op, const Tensor& a, const Tensor& b, Tensor& y) {
  with_dtype(y.dtype(), [&]<typename T>() {
    with_binary(op, [&]<Binary Op>() {
      const T* pa = a.data<T>();
      const T* pb = b.data<T>();
      T* out = y.data<T>();
      const std::int64_t n = y.numel();
      if (a.numel() == n && b.numel() == n) {  // the common case: no broadcast at all
        parallel_for(n, n, [&](std::int64_t begin, std::int64_t end) {
          for (std::int64_t i = begin; i < end; ++i)
            out[i] = scalar::binary_value(Op, pa[i], pb[i]);
        });
        return;
      }
      for_each_broadcast(broadcast4(a.shape(), b.shape(), y.shape()), true,
                         [&](std::int64_t iy, std::int64_t ia, std::int64_t ib) {
                           out[iy] = scalar::binary_value(Op, pa[ia], pb[ib]);
                         });
    });
  });
}

void CpuBackend::binary_backward(Binary op, const Tensor& a, const Tensor& b, const Tensor& dy,
                                 Tensor* da, Tensor* db) {
  with_dtype(dy.dtype(), [&]<typename T>() {
    with_binary(op, [&]<Binary Op>() {
      const T* pa = a.data<T>();
      const T* pb = b.data<T>();
      const T* g = dy.data<T>();
      T* ga = da ? da->data<T>() : nullptr;
      T* gb = db ? db->data<T>() : nullptr;
      const std::int64_t n = dy.numel();
      if (a.numel() == n && b.numel() == n) {
        parallel_for(n, n, [&](std::int64_t begin, std::int64_t end) {
          if (ga)
            for (std::int64_t i = begin; i < end; ++i)
              ga[i] += g[i] * scalar::binary_da(Op, pa[i], pb[i]);
          if (gb)
            for (std::int64_t i = begin; i < end; ++i)
              gb[i] += g[i] * scalar::binary_db(Op, pa[i], pb[i]);
        });
        return;
      }
      // A broadcast input receives the sum over the dimensions it was stretched along; several
      // visits then write one gradient element, so the visit runs in parallel only when neither
      // gradient that is written is stretched.
      const bool no_reduction = (!ga || a.numel() == n) && (!gb || b.numel() == n);
      for_each_broadcast(broadcast4(a.shape(), b.shape(), dy.shape()), no_reduction,
                         [&](std::int64_t iy, std::int64_t ia, std::int64_t ib) {
                           if (ga) ga[ia] += g[iy] * scalar::binary_da(Op, pa[ia], pb[ib]);
                           if (gb) gb[ib] += g[iy] * scalar::binary_db(Op, pa[ia], pb[ib]);
                         });
    });
  });
}

void CpuBackend::where(const Tensor& cond, const Tensor& a, const Tensor& b, Tensor& y) {
  with_dtype(y.dtype(), [&]<typename T>() {
    const T* c = cond.data<T>();
    const T* pa = a.data<T>();
    const T* pb = b.data<T>();
    T* out = y.data<T>();
    const std::int64_t n = y.numel();
    parallel_for(n, n, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t i = begin; i < end; ++i) out[i] = c[i] != T(0) ? pa[i] : pb[i];
    });
  });
}

void CpuBackend::where_backward(const Tensor& cond, const Tensor& dy, Tensor* da, Tensor* db) {
  with_dtype(dy.dtype(), [&]<typename T>() {
    const T* c = cond.data<T>();
    const T* g = dy.data<T>();
    T* ga = da ? da->data<T>() : nullptr;
    T* gb = db ? db->data<T>() : nullptr;
    const std::int64_t n = dy.numel();
    parallel_for(n, n, [&](std::int64_t begin, std::int64_t end) {
      if (ga)
        for (std::int64_t i = begin; i < end; ++i) ga[i] += c[i] != T(0) ? g[i] : T(0);
      if (gb)
        for (std::int64_t i = begin; i < end; ++i) gb[i] += c[i] != T(0) ? T(0) : g[i];
    });
  });
}

}  // namespace asbi::core::cpu
