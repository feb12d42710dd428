#include "nn/deepset.hpp"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <vector>

#include "autodiff/ops.hpp"
#include "autodiff/tape.hpp"
#include "core/backend.hpp"

namespace asbi::nn {
namespace {

using core::ShapeError;
using core::str;
using core::ValueError;

std::unique_ptr<Layer> non_null(std::unique_ptr<Layer> encoder) {
  if (!encoder) throw ValueError("DeepSet: the encoder is null");
  return encoder;
}

// A module's first parameter (undefined when it has none): its dtype and device are the module's.
Tensor first_parameter(const Module& m) {
  const std::vector<NamedParameter> params = m.parameters();
  return params.empty() ? Tensor() : params.front().parameter->value();
}

// Every one of `sets` sets, of sizes size_of(0), size_of(1), …, has an element.
template <typename SizeOf>
void check_set_sizes(std::int64_t sets, const SizeOf& size_of) {
  if (sets < 1) throw ValueError("DeepSet: expected at least one set, got none");
  for (std::int64_t b = 0; b < sets; ++b)
    if (size_of(b) < 1)
      throw ValueError(
          str("DeepSet: set ", b, " has ", size_of(b), " elements; every set needs at least one"));
}

void check_set_sizes(std::span<const std::int64_t> sizes) {
  check_set_sizes(static_cast<std::int64_t>(sizes.size()),
                  [&](std::int64_t b) { return sizes[static_cast<std::size_t>(b)]; });
}

// pooled [B, E] ⊕ the column log n_b → [B, E + 1]; the column is a constant (no gradient).
template <typename SizeOf>
Var append_log_size(const Var& pooled, const SizeOf& size_of) {
  const std::int64_t batch = pooled.dim(0);
  Tensor logs = Tensor::scratch({batch, 1}, DType::f64, Device::cpu);
  double* p = logs.data<double>();
  for (std::int64_t b = 0; b < batch; ++b) p[b] = std::log(static_cast<double>(size_of(b)));
  if (pooled.dtype() != DType::f64) {
    Tensor cast = Tensor::scratch({batch, 1}, pooled.dtype(), Device::cpu);
    core::backend(Device::cpu).cast(logs, cast);
    logs = cast;
  }
  return ad::concat({pooled, Var(logs.to(pooled.device()))}, 1);
}

// How aggregate() cuts the concatenated elements of all sets: chunk c holds rows
// [c·chunk, min((c + 1)·chunk, total)), where set s occupies rows [offsets[s], offsets[s + 1]).
// Depends on the sizes and chunk_elements only, never on the thread count.
struct ChunkPlan {
  std::vector<std::int64_t> offsets;
  std::int64_t chunk = 0, total = 0, chunks = 0;

  ChunkPlan(std::span<const std::int64_t> sizes, std::int64_t chunk_elements)
      : offsets(sizes.size() + 1, 0), chunk(chunk_elements) {
    for (std::size_t s = 0; s < sizes.size(); ++s) offsets[s + 1] = offsets[s] + sizes[s];
    total = offsets.back();
    chunks = (total + chunk - 1) / chunk;
  }
  std::int64_t begin(std::int64_t c) const { return c * chunk; }
  std::int64_t end(std::int64_t c) const { return std::min(total, (c + 1) * chunk); }
  // The set that holds concatenated row r.
  std::int64_t set_of(std::int64_t r) const {
    return std::upper_bound(offsets.begin(), offsets.end(), r) - offsets.begin() - 1;
  }
  bool inside(std::int64_t s, std::int64_t c) const {
    return offsets[s] >= begin(c) && offsets[s + 1] <= end(c);
  }
};

// target[k] += Σ_{r<rows} e[r, k], in row order, in double.
template <typename T>
void add_rows(const T* e, std::int64_t rows, std::int64_t width, double* target) {
  for (std::int64_t r = 0; r < rows; ++r, e += width)
    for (std::int64_t k = 0; k < width; ++k) target[k] += static_cast<double>(e[k]);
}

// Asks the source for elements [begin, end) of set `set` into `out`, which it must fill in place.
void request(const SetElementSource& source, std::int64_t set, std::int64_t begin, std::int64_t end,
             Tensor& out) {
  const void* where = out.raw();
  const Shape shape = out.shape();
  source(set, begin, end, out);
  if (out.raw() != where || out.shape() != shape)
    throw core::StateError(
        "DeepSet::aggregate: the element source must write into the tensor it is given, not "
        "replace it");
}

// Rows [row0, row0 + rows) of the concatenated sets into buffer rows [0, rows): each OpenMP
// thread takes a contiguous slice and asks the source once per (set, range) inside it.
void fill_rows(const ChunkPlan& plan, const SetElementSource& source, std::int64_t row0,
               std::int64_t rows, Tensor& buffer) {
  const int threads = omp_get_max_threads();
  const auto sets = static_cast<std::int64_t>(plan.offsets.size()) - 1;
  std::exception_ptr error;
#pragma omp parallel for num_threads(threads) schedule(static, 1)
  for (int t = 0; t < threads; ++t) {
    const std::int64_t lo = row0 + rows * t / threads, hi = row0 + rows * (t + 1) / threads;
    try {
      for (std::int64_t s = lo < hi ? plan.set_of(lo) : sets; s < sets && plan.offsets[s] < hi;
           ++s) {
        const std::int64_t b = std::max(plan.offsets[s], lo);
        const std::int64_t e = std::min(plan.offsets[s + 1], hi);
        Tensor out = buffer.rows(b - row0, e - row0);
        request(source, s, b - plan.offsets[s], e - plan.offsets[s], out);
      }
    } catch (...) {
#pragma omp critical(asbi_deepset_fill_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

// [mean, log N] per set from the sums [M, E] float64, rounded to float32 once at the end.
Tensor features_of(std::span<const std::int64_t> set_sizes, const Tensor& sums) {
  const std::int64_t sets = static_cast<std::int64_t>(set_sizes.size());
  const std::int64_t E = sums.dim(1);
  const double* sum = sums.data<double>();
  Tensor features = Tensor::empty({sets, E + 1});
  float* f = features.data<float>();
  for (std::int64_t s = 0; s < sets; ++s) {
    const double n = static_cast<double>(set_sizes[static_cast<std::size_t>(s)]);
    for (std::int64_t k = 0; k < E; ++k)
      f[s * (E + 1) + k] = static_cast<float>(sum[s * E + k] / n);
    f[s * (E + 1) + E] = static_cast<float>(std::log(n));
  }
  return features;
}

// On a device the chunks go one after another: the OpenMP threads fill the chunk's host buffer
// (each thread a contiguous slice of its rows, asking the source per (set, range) in the slice),
// one copy takes it in, φ encodes it there, and each set's rows of the chunk are summed in
// float64 in row order — on the device (one sum_axis per set, whose kernel adds in row order in
// double) when the chunk holds few sets, else on the host after one copy back. Both make the same
// additions in the same order as the CPU path, and the chunk sums are added to their sets in
// chunk order, so the result depends on φ's values only, not on threads or on the route taken.
// Memory: one [chunk, X] host buffer and one chunk of activations on the device.
Tensor aggregate_on_device(const Layer& encoder, DType dtype, std::int64_t X, std::int64_t E,
                           const ChunkPlan& plan, const SetElementSource& source, Device device) {
  const std::int64_t sets = static_cast<std::int64_t>(plan.offsets.size()) - 1;
  // Up to this many sets in a chunk are summed on the device; a chunk of many small sets would
  // take one launch per set, so it is summed on the host instead.
  constexpr std::int64_t kDeviceSums = 8;
  core::Backend& k = core::backend(device);
  Tensor sums = Tensor::zeros({sets, E}, DType::f64);
  double* const sum = sums.data<double>();
  Tensor buffer = Tensor::empty({std::min(plan.chunk, plan.total), X});
  Tensor chunk_sums = Tensor::empty({kDeviceSums, E}, DType::f64, device);
  for (std::int64_t c = 0; c < plan.chunks; ++c) {
    const std::int64_t row0 = plan.begin(c), rows = plan.end(c) - row0;
    const std::int64_t first = plan.set_of(row0), last = plan.set_of(row0 + rows - 1);
    fill_rows(plan, source, row0, rows, buffer);
    core::ArenaScope scope;
    ad::NoGrad no_grad;
    const Tensor x = buffer.rows(0, rows).to(dtype).to(device);
    const Tensor embeddings = encoder.forward(x).value();
    core::check_shape("DeepSet::aggregate", "embeddings", embeddings, {rows, E});
    Tensor wide = Tensor::scratch({rows, E}, DType::f64, device);
    if (embeddings.dtype() == DType::f64)
      wide.copy_from(embeddings);
    else
      k.cast(embeddings, wide);
    const std::int64_t count = last - first + 1;
    if (count <= kDeviceSums) {
      for (std::int64_t s = first; s <= last; ++s) {
        const std::int64_t b = std::max(plan.offsets[s], row0) - row0;
        const std::int64_t e = std::min(plan.offsets[s + 1], row0 + rows) - row0;
        Tensor target = chunk_sums.rows(s - first, s - first + 1).reshape({E});
        k.sum_axis(wide.rows(b, e), 0, 1.0, false, target);
      }
      const std::vector<double> host = chunk_sums.rows(0, count).to_vector();
      for (std::int64_t s = first; s <= last; ++s)
        for (std::int64_t j = 0; j < E; ++j)
          sum[s * E + j] += host[static_cast<std::size_t>((s - first) * E + j)];
    } else {
      const Tensor host = wide.to(Device::cpu);
      for (std::int64_t s = first; s <= last; ++s) {
        const std::int64_t b = std::max(plan.offsets[s], row0) - row0;
        const std::int64_t e = std::min(plan.offsets[s + 1], row0 + rows) - row0;
        std::vector<double> part(static_cast<std::size_t>(E), 0.0);
        add_rows(host.data<double>() + b * E, e - b, E, part.data());
        for (std::int64_t j = 0; j < E; ++j) sum[s * E + j] += part[static_cast<std::size_t>(j)];
      }
    }
  }
  return sums;
}

}  // namespace

DeepSet::DeepSet(std::unique_ptr<Layer> encoder, std::int64_t element_features,
                 std::int64_t embedding_features)
    : encoder_(child("encoder", non_null(std::move(encoder)))),
      element_features_(element_features),
      embedding_features_(embedding_features) {
  if (element_features < 1 || embedding_features < 1)
    throw ValueError(str("DeepSet: element_features and embedding_features must be >= 1, got ",
                         element_features, " and ", embedding_features));
  const Tensor p = first_parameter(encoder_);
  dtype_ = p.defined() ? p.dtype() : DType::f32;
  const Device device = encoder_.device();
  // A one-row dry run: the encoder must map [1, X] to [1, E].
  ad::NoGrad no_grad;
  core::ArenaScope scope;
  Tensor probe = Tensor::scratch({1, element_features}, dtype_, device);
  core::backend(device).fill(probe, 0.0);
  Shape got;
  try {
    got = encoder_.forward(probe).shape();
  } catch (const ShapeError& e) {
    throw ShapeError(str("DeepSet: the encoder does not accept elements of width ",
                         element_features, ": ", e.what()));
  }
  if (got != Shape({1, embedding_features}))
    throw ShapeError(str("DeepSet: the encoder maps an element of width ", element_features,
                         " to shape ", got, ", expected [1, ", embedding_features,
                         "] (embedding_features)"));
}

Var DeepSet::encode(const Var& elements) const {
  if (elements.shape().rank() != 2 || elements.dim(1) != element_features_)
    throw ShapeError(str("DeepSet: expected elements of shape [M, ", element_features_, "], got ",
                         elements.shape()));
  return encoder_.forward(elements);
}

// h_b = [ (1/S) Σ_i φ(x_bi), log S ]; ad::mean_pool's backward spreads ∂L/∂h_b over the S rows.
Var DeepSet::forward(const Var& sets) const {
  if (sets.shape().rank() != 3 || sets.dim(2) != element_features_)
    throw ShapeError(
        str("DeepSet: expected sets of shape [B, S, ", element_features_, "], got ", sets.shape()));
  const std::int64_t batch = sets.dim(0), size = sets.dim(1);
  const auto size_of = [size](std::int64_t) { return size; };
  check_set_sizes(batch, size_of);
  const Var embeddings = encode(ad::reshape(sets, {batch * size, element_features_}));
  return append_log_size(ad::mean_pool(ad::reshape(embeddings, {batch, size, embedding_features_})),
                         size_of);
}

// h_b = [ (1/n_b) Σ_{i<n_b} φ(x_{first_b + i}), log n_b ] over sets packed one after another.
Var DeepSet::forward(const Var& elements, std::span<const std::int64_t> lengths) const {
  check_set_sizes(lengths);
  std::int64_t total = 0;
  for (std::int64_t n : lengths) total += n;
  if (elements.shape().rank() != 2 || elements.dim(0) != total)
    throw ShapeError(str("DeepSet: the ", lengths.size(), " set lengths add up to ", total,
                         " elements, expected packed elements of shape [", total, ", ",
                         element_features_, "], got ", elements.shape()));
  return append_log_size(ad::mean_pool(encode(elements), lengths),
                         [&](std::int64_t b) { return lengths[static_cast<std::size_t>(b)]; });
}

// Each chunk's rows are encoded together; the rows of a set that lies wholly inside the chunk are
// summed straight into its accumulator (no other chunk touches it), those of a set that crosses a
// chunk boundary into a spill slot of the chunk (at most two: the set it starts in and the set it
// ends in). After each wave of chunks the spill slots are added to their sets in chunk order, so
// every accumulator sees the same additions in the same order whatever thread ran which chunk.
// Memory: one [chunk, X] float buffer per thread, one chunk of φ's activations per thread (in its
// arena), M·E doubles of accumulators and 2·wave·E of spill slots, never anything of size N.
Tensor DeepSet::aggregate(std::span<const std::int64_t> set_sizes, const SetElementSource& source,
                          const AggregateOptions& options) const {
  check_set_sizes(set_sizes);
  if (options.chunk_elements < 1)
    throw ValueError(
        str("DeepSet::aggregate: chunk_elements must be >= 1, got ", options.chunk_elements));
  if (!source) throw ValueError("DeepSet::aggregate: the element source is empty");
  const ChunkPlan plan(set_sizes, options.chunk_elements);
  const Device device = encoder_.device();
  if (device != Device::cpu)
    return features_of(set_sizes, aggregate_on_device(encoder_, dtype_, element_features_,
                                                      embedding_features_, plan, source, device));
  const std::int64_t sets = static_cast<std::int64_t>(set_sizes.size());
  const std::int64_t X = element_features_, E = embedding_features_;
  const int threads = omp_get_max_threads();
  // Chunks between two spill reductions: enough to keep the barriers rare and the threads busy.
  const std::int64_t wave = std::max<std::int64_t>(256, 16 * std::int64_t{threads});

  Tensor sums = Tensor::zeros({sets, E}, DType::f64);
  Tensor spill = Tensor::empty({2 * wave, E}, DType::f64);
  std::vector<std::int64_t> spill_set(static_cast<std::size_t>(2 * wave), -1);
  double* const sum = sums.data<double>();
  double* const slots = spill.data<double>();

  std::exception_ptr error;
  std::atomic<bool> failed{false};
#pragma omp parallel num_threads(threads)
  {
    Tensor buffer;  // this thread's elements, [chunk, X], allocated on its first chunk
    for (std::int64_t w0 = 0; w0 < plan.chunks; w0 += wave) {
      const std::int64_t w1 = std::min(plan.chunks, w0 + wave);
#pragma omp for schedule(dynamic, 1)
      for (std::int64_t c = w0; c < w1; ++c) {
        if (failed.load()) continue;
        try {
          const std::int64_t row0 = plan.begin(c), rows = plan.end(c) - row0;
          if (!buffer.defined()) buffer = Tensor::empty({std::min(plan.chunk, plan.total), X});
          const std::int64_t first = plan.set_of(row0), last = plan.set_of(row0 + rows - 1);
          for (std::int64_t s = first; s <= last; ++s) {
            const std::int64_t b = std::max(plan.offsets[s], row0);
            const std::int64_t e = std::min(plan.offsets[s + 1], row0 + rows);
            Tensor out = buffer.rows(b - row0, e - row0);
            request(source, s, b - plan.offsets[s], e - plan.offsets[s], out);
          }
          core::ArenaScope scope;
          ad::NoGrad no_grad;
          const Tensor x = buffer.rows(0, rows).to(dtype_);
          const Tensor embeddings = encoder_.forward(x).value();
          core::check_shape("DeepSet::aggregate", "embeddings", embeddings, {rows, E});
          for (std::int64_t s = first; s <= last; ++s) {
            const std::int64_t b = std::max(plan.offsets[s], row0) - row0;
            const std::int64_t e = std::min(plan.offsets[s + 1], row0 + rows) - row0;
            double* target = sum + s * E;
            if (!plan.inside(s, c)) {
              const std::int64_t slot = 2 * (c - w0) + (s == first ? 0 : 1);
              spill_set[static_cast<std::size_t>(slot)] = s;
              target = slots + slot * E;
              std::fill(target, target + E, 0.0);
            }
            if (embeddings.dtype() == DType::f64)
              add_rows(embeddings.data<double>() + b * E, e - b, E, target);
            else
              add_rows(embeddings.data<float>() + b * E, e - b, E, target);
          }
        } catch (...) {
#pragma omp critical(asbi_deepset_aggregate_error)
          if (!error) error = std::current_exception();
          failed.store(true);
        }
      }
#pragma omp single
      for (std::size_t slot = 0; slot < spill_set.size(); ++slot) {
        const std::int64_t s = spill_set[slot];
        if (s < 0) continue;
        for (std::int64_t k = 0; k < E; ++k)
          sum[s * E + k] += slots[static_cast<std::int64_t>(slot) * E + k];
        spill_set[slot] = -1;
      }
    }
  }
  if (error) std::rethrow_exception(error);
  return features_of(set_sizes, sums);
}

Tensor DeepSet::aggregate(const Tensor& set, const AggregateOptions& options) const {
  if (set.rank() != 2 || set.dim(1) != element_features_ || set.device() != Device::cpu)
    throw ShapeError(str("DeepSet::aggregate: expected one set of shape [N, ", element_features_,
                         "] on the CPU, got ", set.shape(), " on ", set.device()));
  const std::int64_t size = set.dim(0);
  return aggregate(
      std::span<const std::int64_t>(&size, 1),
      [&](std::int64_t, std::int64_t begin, std::int64_t end, Tensor& out) {
        core::backend(Device::cpu).cast(set.rows(begin, end), out);
      },
      options);
}

}  // namespace asbi::nn
