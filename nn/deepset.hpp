#pragma once
// The mean-pool DeepSet (Zaheer et al. 2017): a permutation-invariant summary of a set of i.i.d.
// observations, trained on small sets and applied to sets of any size.
//
//   core::Rng rng(0);
//   nn::DeepSet net(std::make_unique<nn::Mlp>(1, std::vector<std::int64_t>{64, 64}, 16, rng),
//                   1, 16);
//   ad::Var h = net(sets);                        // training: sets [B, S, 1] → [B, 17]
//
//   const std::vector<std::int64_t> sizes = {1'000'000};   // inference: one set of 10⁶ elements,
//   core::Tensor big = net.aggregate(sizes,                 // made chunk by chunk on demand
//       [&](std::int64_t set, std::int64_t begin, std::int64_t end, core::Tensor& out) {
//         simulate_elements(set, begin, end, out.data<float>());
//       });                                       // → [1, 17], in a few MB of memory
//
// Letters: B sets, S elements per set in the dense form, n_b the size of set b in the ragged
// form, N a set's size, X the element width, E the embedding width, M sets to aggregate.
#include <cstdint>
#include <functional>
#include <memory>
#include <span>

#include "nn/module.hpp"

namespace asbi::nn {

// Writes elements [begin, end) of set `set` into out [end − begin, X] (float32, CPU). Called
// concurrently from several threads with arbitrary ranges: the values must depend only on
// (set, element index).
using SetElementSource =
    std::function<void(std::int64_t set, std::int64_t begin, std::int64_t end, Tensor& out)>;

struct AggregateOptions {
  // Rows encoded per forward of φ. The memory of aggregate() is about threads × chunk_elements ×
  // (X + the widths of φ's activations) × 4 bytes, whatever the set sizes.
  std::int64_t chunk_elements = 4096;
};

// φ applied to every element, the embeddings averaged, and log N appended — what the inference
// head conditions on: h(S) = [ (1/N) Σ_i φ(x_i), log N ]. The encoder is registered as child
// "encoder" (parameters "encoder.<…>").
class DeepSet : public Module {
 public:
  // encoder: φ, mapping [M, X] to [M, E]; checked by a one-row forward.
  DeepSet(std::unique_ptr<Layer> encoder, std::int64_t element_features,
          std::int64_t embedding_features);

  Var encode(const Var& elements) const;  // φ: [M, X] → [M, E]
  Var forward(const Var& sets) const;     // dense: [B, S, X] → [B, E + 1]
  // Ragged sets packed one after another: elements [Σ n_b, X], lengths n_b ≥ 1 → [B, E + 1].
  Var forward(const Var& elements, std::span<const std::int64_t> lengths) const;
  Var operator()(const Var& sets) const { return forward(sets); }

  std::int64_t element_features() const { return element_features_; }
  std::int64_t embedding_features() const { return embedding_features_; }
  std::int64_t output_features() const { return embedding_features_ + 1; }
  const Layer& encoder() const { return encoder_; }

  // Streaming aggregation: the features forward() gives, [M, E + 1] float32 for M sets of the
  // given sizes, for sets of any size. No tape is recorded and no set is ever held whole:
  // - the sets' elements, concatenated, are cut into chunks of chunk_elements rows (a chunk may
  //   hold the end of one set and the start of the next); the source is asked once per
  //   (set, range) inside a chunk, and φ encodes the chunk in one forward;
  // - chunks run in parallel on the OpenMP threads, each in its own ArenaScope with one element
  //   buffer per thread; each set's rows are summed in double, and the partial sums of a set that
  //   spans chunks are added in chunk order, so the output is bit-identical for every thread
  //   count.
  // The encoder must be thread-safe (every layer of nn/ is, except Dropout while training).
  // With the encoder on a device (Module::to), the source still writes host buffers, filled by
  // the threads a chunk at a time; each chunk is copied in and encoded there, and each set's rows
  // are summed with the same float64 additions in the same order, so the sums differ from the
  // CPU's only by φ's own rounding on the device.
  Tensor aggregate(std::span<const std::int64_t> set_sizes, const SetElementSource& source,
                   const AggregateOptions& options = {}) const;
  // One set held in host memory, [N, X] → [1, E + 1].
  Tensor aggregate(const Tensor& set, const AggregateOptions& options = {}) const;

 private:
  Layer& encoder_;
  std::int64_t element_features_, embedding_features_;
  DType dtype_;  // the encoder's parameters' (float32 when it has none)
};

}  // namespace asbi::nn
