// The rational-quadratic spline, elementwise: each element normalises its own K bins on the stack
// (core/spline_math.hpp), so there is nothing to allocate and nothing shared between elements; the
// backward recomputes the same normalisation instead of saving it. Elements go in blocks of 16 so
// that the exponentials of a block's parameters take one vectorised pass.
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <type_traits>

#include "core/cpu/cpu_backend.hpp"
#include "core/spline_math.hpp"

namespace asbi::core::cpu {

namespace {

// One element (float32 forward, K = 10: ~65 ns) costs about what 16K elements of a plain
// elementwise kernel do: weighed so, parallel_for splits calls from ~200 elements at K = 10, where
// two threads already halve the time (bench_spline, D = 2).
std::int64_t spline_work(std::int64_t elements, int bins) { return elements * bins * 16; }

// Elements whose transformed parameters are computed together, in stack buffers.
constexpr std::int64_t block = 16;
// Vectorised passes cover a multiple of this many values (one AVX-512 float packet), padded, so
// that every value takes Eigen's packet path: its scalar path for a leftover tail rounds
// differently, and the numbers would then depend on where a thread's chunk began.
constexpr std::int64_t packet = 16;

constexpr std::int64_t padded(std::int64_t n) { return (n + packet - 1) / packet * packet; }

// The elementwise transforms of `count` consecutive elements' raw parameters: the softmax
// numerators exp(u - max u) of widths and heights, and the interior knot derivatives
// m + softplus(u_δ). As scalar libm calls these 3K - 1 exponentials were most of an element's
// cost; for float32 Eigen's vectorised exp and log make them several times cheaper (1.6-1.8× on
// the whole op, docs/benchmarks.md). float64 keeps the scalar formulas, the definition (as in
// elementwise.cpp).
template <typename T>
struct Block {
  static constexpr std::int64_t sizes = block * spline::max_bins;  // a multiple of packet
  static constexpr std::int64_t derivatives = padded(block * (spline::max_bins - 1));
  alignas(64) T width_prob[sizes];
  alignas(64) T height_prob[sizes];
  alignas(64) T interior_derivative[derivatives];
  alignas(64) T exp_neg_abs[derivatives];  // softplus's e^{-|u|}

  void prepare(const T* uw, const T* uh, const T* ud, std::int64_t count, int bins,
               T min_derivative) {
    shift_by_row_max(uw, count, bins, width_prob);
    shift_by_row_max(uh, count, bins, height_prob);
    const std::int64_t n_sizes = count * bins, n_derivatives = count * (bins - 1);
    if constexpr (std::is_same_v<T, float>) {
      using Map = Eigen::Map<Eigen::ArrayXf, Eigen::Aligned64>;
      const std::int64_t n = padded(n_sizes), m = padded(n_derivatives);
      std::fill(width_prob + n_sizes, width_prob + n, 0.0f);
      std::fill(height_prob + n_sizes, height_prob + n, 0.0f);
      std::copy(ud, ud + n_derivatives, interior_derivative);
      std::fill(interior_derivative + n_derivatives, interior_derivative + m, 0.0f);
      Map widths(width_prob, n), heights(height_prob, n);
      Map u(interior_derivative, m), e(exp_neg_abs, m);
      widths = widths.exp();
      heights = heights.exp();
      // m + softplus(u) = m + max(u, 0) + log1p(e), e = e^{-|u|}. Eigen 3.4 calls scalar log1pf
      // (and evaluates select() scalar), so log1p(e) is log(v) for v = fl(1 + e) plus the
      // first-order correction (e - (v - 1)) / v for the rounding of v: float32-exact.
      e = (-u.abs()).exp();
      u = min_derivative + u.max(0.0f) + (e + 1.0f).log() + (e - ((e + 1.0f) - 1.0f)) / (e + 1.0f);
    } else {
      for (std::int64_t j = 0; j < n_sizes; ++j) {
        width_prob[j] = std::exp(width_prob[j]);
        height_prob[j] = std::exp(height_prob[j]);
      }
      for (std::int64_t j = 0; j < n_derivatives; ++j)
        interior_derivative[j] = min_derivative + scalar::softplus(ud[j]);
    }
  }

  // shifted[i, j] = u[i, j] - max_j u[i, j] (spline::shift_by_max for `count` rows at once): the
  // maxima are taken column by column, so that the rows' comparisons are independent instead of
  // one chain of K dependent max operations per row.
  static void shift_by_row_max(const T* u, std::int64_t count, int bins, T* shifted) {
    T largest[block];
    for (std::int64_t i = 0; i < count; ++i) largest[i] = u[i * bins];
    for (int j = 1; j < bins; ++j)
      for (std::int64_t i = 0; i < count; ++i)
        largest[i] = u[i * bins + j] > largest[i] ? u[i * bins + j] : largest[i];
    for (std::int64_t i = 0; i < count; ++i)
      for (int j = 0; j < bins; ++j) shifted[i * bins + j] = u[i * bins + j] - largest[i];
  }

  spline::Element<T> element(std::int64_t i, int bins, const T* ud) {
    return {width_prob + i * bins, height_prob + i * bins, interior_derivative + i * (bins - 1),
            ud + i * (bins - 1)};
  }
};

// Calls f(i, element) for every element i in [begin, end), a block at a time.
template <typename T, typename F>
void for_each_element(const T* uw, const T* uh, const T* ud, const RqSplineParams& p,
                      std::int64_t begin, std::int64_t end, F&& f) {
  const int bins = p.bins;
  Block<T> b;
  for (std::int64_t first = begin; first < end; first += block) {
    const std::int64_t count = std::min(block, end - first);
    const std::int64_t d_first = first * (bins - 1);
    b.prepare(uw + first * bins, uh + first * bins, ud + d_first, count, bins,
              static_cast<T>(p.min_derivative));
    for (std::int64_t i = 0; i < count; ++i) f(first + i, b.element(i, bins, ud + d_first));
  }
}

}  // namespace

// y = s(x), log_det = log s'(x)  (or the inverse), elementwise: docs/spline.md §2-4
void CpuBackend::rq_spline(const Tensor& x, const Tensor& widths, const Tensor& heights,
                           const Tensor& derivatives, const RqSplineParams& p, bool inverse,
                           Tensor& y, Tensor& log_det) {
  spline::check_bins("rq_spline", p.bins);
  const std::int64_t n = x.numel();
  with_dtype(x.dtype(), [&]<typename T>() {
    // Every data() before parallel_for: its liveness check reads this thread's arena state.
    const T* in = x.data<T>();
    const T* uw = widths.data<T>();
    const T* uh = heights.data<T>();
    const T* ud = derivatives.data<T>();
    T* out = y.data<T>();
    T* ld = log_det.data<T>();
    parallel_for(n, spline_work(n, p.bins), [&](std::int64_t begin, std::int64_t end) {
      for_each_element(uw, uh, ud, p, begin, end, [&](std::int64_t i, const spline::Element<T>& e) {
        spline::rq_spline_element<T>(in[i], e, p, inverse, out[i], ld[i]);
      });
    });
  });
}

// dx, du_w, du_h, du_δ += the gradient of Σ dy ⊙ y + dlog_det ⊙ log_det: docs/spline.md §5.
// Every element writes only its own rows of the gradients, so the chunks never collide.
void CpuBackend::rq_spline_backward(const Tensor& x, const Tensor& widths, const Tensor& heights,
                                    const Tensor& derivatives, const RqSplineParams& p,
                                    bool inverse, const Tensor& dy, const Tensor& dlog_det,
                                    Tensor* dx, Tensor* dwidths, Tensor* dheights,
                                    Tensor* dderivatives) {
  spline::check_bins("rq_spline_backward", p.bins);
  const std::int64_t n = x.numel(), bins = p.bins;
  with_dtype(x.dtype(), [&]<typename T>() {
    const T* in = x.data<T>();
    const T* uw = widths.data<T>();
    const T* uh = heights.data<T>();
    const T* ud = derivatives.data<T>();
    const T* g_out = dy.defined() ? dy.data<T>() : nullptr;
    const T* g_log_det = dlog_det.defined() ? dlog_det.data<T>() : nullptr;
    T* gx = dx ? dx->data<T>() : nullptr;
    T* gw = dwidths ? dwidths->data<T>() : nullptr;
    T* gh = dheights ? dheights->data<T>() : nullptr;
    T* gd = dderivatives ? dderivatives->data<T>() : nullptr;
    parallel_for(n, 2 * spline_work(n, p.bins), [&](std::int64_t begin, std::int64_t end) {
      for_each_element(uw, uh, ud, p, begin, end, [&](std::int64_t i, const spline::Element<T>& e) {
        spline::rq_spline_element_backward<T>(
            in[i], e, p, inverse, g_out ? g_out[i] : T(0), g_log_det ? g_log_det[i] : T(0),
            gx ? gx + i : nullptr, gw ? gw + i * bins : nullptr, gh ? gh + i * bins : nullptr,
            gd ? gd + i * (bins - 1) : nullptr);
      });
    });
  });
}

}  // namespace asbi::core::cpu
