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
  device_ = p.defined() ? p.device() : Device::cpu;
  // A one-row dry run: the encoder must map [1, X] to [1, E].
  ad::NoGrad no_grad;
  core::ArenaScope scope;
  Tensor probe = Tensor::scratch({1, element_features}, dtype_, device_);
  core::backend(device_).fill(probe, 0.0);
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
  if (device_ != Device::cpu)
    throw core::DeviceError(
        str("DeepSet::aggregate: runs CPU encoders; the encoder is on ", device_));
  const ChunkPlan plan(set_sizes, options.chunk_elements);
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
            const void* where = out.raw();
            source(s, b - plan.offsets[s], e - plan.offsets[s], out);
            if (out.raw() != where || out.shape() != Shape({e - b, X}))
              throw core::StateError(
                  "DeepSet::aggregate: the element source must write into "
                  "the tensor it is given, not replace it");
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

  // [mean, log N] per set, rounded to float32 once at the end.
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
