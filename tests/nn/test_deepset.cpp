// DeepSet: the pooled features (permutation invariance, dense against ragged, the log N column),
// gradients against finite differences, the errors; and the streaming aggregate(): equal to
// forward() for sets of every size around the chunk boundaries, bit-identical for 1, 2 and 4
// threads, and memory that does not grow with the set size.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <thread>
#include <vector>

#include "autodiff/gradcheck.hpp"
#include "autodiff/ops.hpp"
#include "autodiff/tape.hpp"
#include "core/backend.hpp"
#include "nn/conv.hpp"
#include "nn/deepset.hpp"
#include "test_util.hpp"

namespace asbi::nn {
namespace {

using asbi::test_util::expect_error_naming;

std::unique_ptr<DeepSet> mlp_deepset(std::int64_t X, std::int64_t E, std::uint64_t seed,
                                     DType dtype = DType::f64,
                                     Activation activation = Activation::tanh) {
  core::Rng rng(seed);
  return std::make_unique<DeepSet>(
      std::make_unique<Mlp>(X, std::vector<std::int64_t>{8, 8}, E, rng, activation, dtype), X, E);
}

// Element i of set s: a smooth deterministic function of (s, i, feature), as a simulator would
// make it on demand.
float element(std::int64_t s, std::int64_t i, std::int64_t d) {
  return static_cast<float>(std::sin(0.37 * double(i) + 1.3 * double(s) + 0.71 * double(d)) +
                            0.25 * std::cos(0.011 * double(i) * double(d + 1)));
}

SetElementSource generated(std::int64_t X) {
  return [X](std::int64_t s, std::int64_t begin, std::int64_t end, Tensor& out) {
    float* p = out.data<float>();
    for (std::int64_t i = begin; i < end; ++i)
      for (std::int64_t d = 0; d < X; ++d) *p++ = element(s, i, d);
  };
}

// Elements 0, 1, … of the generated set `s`, as float64 in any shape whose last dimension is X.
Tensor set_values(const Shape& shape, std::int64_t s) {
  Tensor rows = Tensor::empty({shape.numel() / shape.last(), shape.last()});
  generated(shape.last())(s, 0, rows.dim(0), rows);
  return rows.to(DType::f64).reshape(shape);
}

// The generated sets packed one after another, [Σ n_b, X] float32.
Tensor packed(std::span<const std::int64_t> sizes, std::int64_t X) {
  const std::int64_t total = std::accumulate(sizes.begin(), sizes.end(), std::int64_t{0});
  Tensor all = Tensor::empty({total, X});
  const SetElementSource source = generated(X);
  std::int64_t row = 0;
  for (std::size_t s = 0; s < sizes.size(); ++s) {
    Tensor rows = all.rows(row, row + sizes[s]);
    source(static_cast<std::int64_t>(s), 0, sizes[s], rows);
    row += sizes[s];
  }
  return all;
}

// |a − b| ≤ tol · max(1, |b|) elementwise.
void expect_close(const std::vector<double>& a, const std::vector<double>& b, double tol) {
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i)
    ASSERT_NEAR(a[i], b[i], tol * std::max(1.0, std::abs(b[i]))) << "entry " << i;
}

// --- forward -------------------------------------------------------------------------------------

TEST(DeepSet, ShapesAndParameterNames) {
  auto net = mlp_deepset(2, 4, 1);
  EXPECT_EQ(net->element_features(), 2);
  EXPECT_EQ(net->embedding_features(), 4);
  EXPECT_EQ(net->output_features(), 5);
  std::vector<std::string> names;
  for (const NamedParameter& p : net->parameters()) names.push_back(p.name);
  EXPECT_EQ(names,
            (std::vector<std::string>{"encoder.0.weight", "encoder.0.bias", "encoder.1.weight",
                                      "encoder.1.bias", "encoder.2.weight", "encoder.2.bias"}));
  ad::NoGrad no_grad;
  EXPECT_EQ((*net)(set_values({3, 5, 2}, 2)).shape(), Shape({3, 5}));
  EXPECT_EQ(net->encode(set_values({7, 2}, 3)).shape(), Shape({7, 4}));
}

TEST(DeepSet, PermutingElementsLeavesTheFeaturesUnchanged) {
  auto net = mlp_deepset(2, 3, 2);
  const Tensor sets = set_values({3, 6, 2}, 4);
  // The same sets with the elements of each in another order: row r of set b moves to 5 − r
  // (reversed) and then rotated by b.
  Tensor permuted = Tensor::empty(sets.shape(), DType::f64);
  const double* src = sets.data<double>();
  double* dst = permuted.data<double>();
  for (std::int64_t b = 0; b < 3; ++b)
    for (std::int64_t r = 0; r < 6; ++r)
      for (std::int64_t d = 0; d < 2; ++d)
        dst[(b * 6 + (5 - r + b) % 6) * 2 + d] = src[(b * 6 + r) * 2 + d];
  ASSERT_NE(permuted.to_vector(), sets.to_vector());
  ad::NoGrad no_grad;
  expect_close((*net)(permuted).value().to_vector(), (*net)(sets).value().to_vector(), 1e-14);
}

TEST(DeepSet, MeanOfTheEmbeddingsAndTheLogSizeColumn) {
  auto net = mlp_deepset(2, 3, 3);
  const std::vector<std::int64_t> lengths = {1, 3, 7};
  const Tensor elements = set_values({11, 2}, 5);
  ad::NoGrad no_grad;
  const std::vector<double> h = net->forward(elements, lengths).value().to_vector();
  const std::vector<double> e = net->encode(elements).value().to_vector();
  std::int64_t row = 0;
  for (std::size_t b = 0; b < lengths.size(); ++b) {
    for (std::int64_t k = 0; k < 3; ++k) {
      double mean = 0;
      for (std::int64_t i = row; i < row + lengths[b]; ++i) mean += e[i * 3 + k] / lengths[b];
      EXPECT_NEAR(h[b * 4 + k], mean, 1e-14) << "set " << b << ", feature " << k;
    }
    EXPECT_DOUBLE_EQ(h[b * 4 + 3], std::log(double(lengths[b]))) << "set " << b;
    row += lengths[b];
  }
}

TEST(DeepSet, DenseEqualsRaggedForEqualSizes) {
  auto net = mlp_deepset(3, 4, 4);
  const Tensor sets = set_values({4, 5, 3}, 6);
  const std::vector<std::int64_t> lengths(4, 5);
  ad::NoGrad no_grad;
  expect_close(net->forward(sets.reshape({20, 3}), lengths).value().to_vector(),
               net->forward(sets).value().to_vector(), 1e-14);
}

TEST(DeepSet, DenseGradcheck) {
  auto net = mlp_deepset(2, 3, 5);
  auto r = ad::gradcheck([&](std::span<const Var> v) { return (*net)(v[0]); },
                         {set_values({2, 4, 2}, 7)});
  EXPECT_TRUE(r.passed) << r.str();
}

TEST(DeepSet, RaggedGradcheck) {
  auto net = mlp_deepset(2, 3, 6);
  const std::vector<std::int64_t> lengths = {2, 1, 4};
  auto r = ad::gradcheck([&](std::span<const Var> v) { return net->forward(v[0], lengths); },
                         {set_values({7, 2}, 8)});
  EXPECT_TRUE(r.passed) << r.str();
}

TEST(DeepSet, WithConvEncoderGradcheck) {
  core::Rng rng(7);
  DeepSet net(std::make_unique<ConvEncoder>(4, 5, std::vector<std::int64_t>{2}, 3, rng,
                                            Activation::tanh, DType::f64),
              20, 3);
  auto r =
      ad::gradcheck([&](std::span<const Var> v) { return net(v[0]); }, {set_values({2, 3, 20}, 9)});
  EXPECT_TRUE(r.passed) << r.str();
}

TEST(DeepSet, TrainingStepReachesTheEncoderParameters) {
  auto net = mlp_deepset(2, 3, 8);
  net->zero_grad();
  {
    ad::Tape tape;
    tape.backward(ad::sum(ad::square((*net)(set_values({2, 3, 2}, 10)))));
  }
  for (const NamedParameter& p : net->parameters()) {
    double norm = 0;
    for (double g : p.parameter->grad().to_vector()) norm += g * g;
    EXPECT_GT(norm, 0) << p.name;
  }
}

TEST(DeepSet, ErrorsNameWhatWasExpected) {
  auto net = mlp_deepset(2, 3, 9);
  ad::NoGrad no_grad;
  expect_error_naming<core::ShapeError>(
      [&] {
        (*net)(Tensor::zeros({2, 3, 4}, DType::f64));
      },
      {"[B, S, 2]", "[2, 3, 4]"});
  expect_error_naming<core::ShapeError>(
      [&] {
        (*net)(Tensor::zeros({6, 2}, DType::f64));
      },
      {"[B, S, 2]", "[6, 2]"});
  expect_error_naming<core::ValueError>(
      [&] {
        (*net)(Tensor::zeros({2, 0, 2}, DType::f64));
      },
      {"set 0", "0 elements"});
  const std::vector<std::int64_t> with_empty = {2, 0, 1}, three = {1, 1, 1};
  expect_error_naming<core::ValueError>(
      [&] {
        net->forward(Tensor::zeros({3, 2}, DType::f64), with_empty);
      },
      {"set 1", "0 elements"});
  expect_error_naming<core::ShapeError>(
      [&] {
        net->forward(Tensor::zeros({4, 2}, DType::f64), three);
      },
      {"add up to 3", "[3, 2]", "[4, 2]"});
  expect_error_naming<core::ShapeError>(
      [&] {
        net->encode(Tensor::zeros({4, 3}, DType::f64));
      },
      {"[M, 2]", "[4, 3]"});
  // The encoder must map X to E.
  core::Rng rng(1);
  expect_error_naming<core::ShapeError>(
      [&] { DeepSet(std::make_unique<Mlp>(3, std::vector<std::int64_t>{4}, 5, rng), 2, 5); },
      {"does not accept elements of width 2"});
  expect_error_naming<core::ShapeError>(
      [&] { DeepSet(std::make_unique<Mlp>(2, std::vector<std::int64_t>{4}, 5, rng), 2, 6); },
      {"[1, 5]", "[1, 6]"});
  expect_error_naming<core::ValueError>([&] { DeepSet(nullptr, 2, 3); }, {"null"});
}

// --- aggregate -----------------------------------------------------------------------------------

// Sizes around the chunk boundaries of chunk = 16: sets of 1, chunk − 1, chunk, chunk + 1 and
// several chunks, packed so that chunks start inside sets, at set starts, and hold many sets.
const std::vector<std::int64_t> mixed_sizes = {1, 15, 16, 17, 1, 1, 50, 3, 16, 2, 33, 1, 5};

TEST(Aggregate, EqualsForwardOnSetsOfMixedSizes) {
  for (DType dtype : {DType::f32, DType::f64}) {
    auto net = mlp_deepset(2, 4, 11, dtype, Activation::relu);
    AggregateOptions options;
    options.chunk_elements = 16;
    const Tensor h = net->aggregate(mixed_sizes, generated(2), options);
    ASSERT_EQ(h.shape(), Shape({13, 5}));
    EXPECT_EQ(h.dtype(), DType::f32);
    ad::NoGrad no_grad;
    const Var expected = net->forward(packed(mixed_sizes, 2).to(dtype), mixed_sizes);
    expect_close(h.to_vector(), expected.value().to_vector(), 2e-6);
  }
}

TEST(Aggregate, DefaultChunkEqualsForwardAndOneSetInMemory) {
  auto net = mlp_deepset(3, 4, 12, DType::f32);
  const std::vector<std::int64_t> sizes = {5000};  // more than one default chunk of 4096
  const Tensor set = packed(sizes, 3);
  const Tensor streamed = net->aggregate(sizes, generated(3));
  const Tensor in_memory = net->aggregate(set);
  EXPECT_EQ(streamed.to_vector(), in_memory.to_vector());
  ad::NoGrad no_grad;
  expect_close(in_memory.to_vector(), (*net)(set.reshape({1, 5000, 3})).value().to_vector(), 1e-5);
}

TEST(Aggregate, ConvEncoderEqualsForward) {
  core::Rng rng(13);
  DeepSet net(std::make_unique<ConvEncoder>(6, 6, std::vector<std::int64_t>{3, 4}, 5, rng), 36, 5);
  AggregateOptions options;
  options.chunk_elements = 16;
  const Tensor h = net.aggregate(mixed_sizes, generated(36), options);
  ad::NoGrad no_grad;
  expect_close(h.to_vector(), net.forward(packed(mixed_sizes, 36), mixed_sizes).value().to_vector(),
               1e-5);
}

TEST(Aggregate, BitIdenticalForOneTwoAndFourThreads) {
  // Many small sets (stage 2's shape) and a few large ones, chunks of 7 rows.
  std::vector<std::int64_t> sizes;
  for (int s = 0; s < 300; ++s) sizes.push_back(1 + (s * 7) % 12);
  sizes.insert(sizes.end(), {100, 1, 57});
  AggregateOptions options;
  options.chunk_elements = 7;
  auto mlp = mlp_deepset(2, 6, 14, DType::f32, Activation::relu);
  core::Rng rng(15);
  DeepSet conv(std::make_unique<ConvEncoder>(4, 4, std::vector<std::int64_t>{2}, 3, rng), 16, 3);
  // Sums of a few float32 embeddings are exact in double whatever their order. These elements are
  // not: +2⁶⁰, a value near 1, −2⁶⁰, repeated (values near 1 fill an unfinished triple). A double
  // sum holding 2⁶⁰ drops a value near 1 that a sum holding 0 keeps, so the result depends on the
  // order of the additions, and the mean, O(1), shows it even in float32.
  DeepSet linear(std::make_unique<Linear>(1, 2, rng, false), 1, 2);
  const SetElementSource cancelling = [&sizes](std::int64_t s, std::int64_t begin, std::int64_t end,
                                               Tensor& out) {
    const std::int64_t n = sizes[static_cast<std::size_t>(s)];
    float* p = out.data<float>();
    for (std::int64_t i = begin; i < end; ++i) {
      const std::int64_t triple = i - i % 3;
      const bool whole = triple + 2 < n;
      const float small = 1.0f + 0.1f * static_cast<float>((i * 7 + s) % 10);
      p[i - begin] = !whole || i % 3 == 1 ? small : i % 3 == 0 ? 0x1p60f : -0x1p60f;
    }
  };
  const int saved = omp_get_max_threads();
  std::vector<std::vector<double>> mlp_features, conv_features, linear_features;
  for (int threads : {1, 2, 4}) {
    omp_set_num_threads(threads);
    mlp_features.push_back(mlp->aggregate(sizes, generated(2), options).to_vector());
    conv_features.push_back(conv.aggregate(sizes, generated(16), options).to_vector());
    linear_features.push_back(linear.aggregate(sizes, cancelling, options).to_vector());
  }
  omp_set_num_threads(saved);
  for (std::size_t k : {1, 2}) {
    EXPECT_EQ(mlp_features[k], mlp_features[0]);
    EXPECT_EQ(conv_features[k], conv_features[0]);
    EXPECT_EQ(linear_features[k], linear_features[0]);
  }
}

// The peak of the allocator's live bytes while one set of n one-dimensional elements is
// aggregated with a width-64 MLP on `threads` threads. Runs on a fresh thread, whose OpenMP team
// and arenas start empty, so that every byte aggregate() needs is counted.
// Peak tensor bytes above `baseline` while aggregating one set of n 1-D elements on `threads`
// OpenMP threads of this thread's team. The team's arenas persist between calls (libgomp keeps
// its workers), so both calls of the test below are measured against the live bytes from before
// the first one: blocks a call adds to the arenas count, blocks it reuses count too.
std::int64_t aggregate_peak_bytes(std::int64_t n, int threads, std::int64_t baseline,
                                  std::vector<double>& features) {
  core::Rng rng(16);
  const DeepSet net(std::make_unique<Mlp>(1, std::vector<std::int64_t>{64, 64}, 64, rng), 1, 64);
  const int previous_threads = omp_get_max_threads();
  omp_set_num_threads(threads);
  const std::vector<std::int64_t> sizes = {n};
  core::reset_peak_memory();
  features = net.aggregate(sizes,
                           [](std::int64_t, std::int64_t begin, std::int64_t end, Tensor& out) {
                             float* p = out.data<float>();
                             for (std::int64_t i = begin; i < end; ++i)
                               p[i - begin] = static_cast<float>(std::sin(1e-3 * double(i)));
                           })
                 .to_vector();
  omp_set_num_threads(previous_threads);
  return core::memory_stats().peak_bytes - baseline;
}

// The encoder on the GPU (the same weights): chunks of few sets (summed on the device) and of
// many small sets (summed on the host after one copy back) both give the CPU's features up to
// the encoder's rounding, and the device path is bit-identical for 1 and 4 filling threads.
TEST(Aggregate, CudaEqualsCpu) {
  if (!core::device_available(Device::cuda)) GTEST_SKIP() << "no CUDA device";
  std::vector<std::int64_t> small;
  for (int s = 0; s < 200; ++s) small.push_back(1 + (s * 5) % 9);
  struct Case {
    const std::vector<std::int64_t>* sizes;
    std::int64_t chunk;
  };
  for (DType dtype : {DType::f64, DType::f32}) {
    for (const Case& c : {Case{&mixed_sizes, 16}, Case{&small, 64}, Case{&mixed_sizes, 4096}}) {
      auto cpu = mlp_deepset(2, 4, 21, dtype, Activation::relu);
      auto gpu = mlp_deepset(2, 4, 21, dtype, Activation::relu);
      gpu->to(Device::cuda);
      AggregateOptions options;
      options.chunk_elements = c.chunk;
      const Tensor expected = cpu->aggregate(*c.sizes, generated(2), options);
      const int threads = omp_get_max_threads();
      omp_set_num_threads(1);
      const Tensor one = gpu->aggregate(*c.sizes, generated(2), options);
      omp_set_num_threads(4);
      const Tensor four = gpu->aggregate(*c.sizes, generated(2), options);
      omp_set_num_threads(threads);
      EXPECT_EQ(one.device(), Device::cpu);
      EXPECT_EQ(one.shape(), expected.shape());
      EXPECT_EQ(one.to_vector(), four.to_vector()) << "chunk " << c.chunk;
      expect_close(one.to_vector(), expected.to_vector(), dtype == DType::f64 ? 1e-6 : 1e-5);
    }
  }
}

TEST(Aggregate, MemoryDoesNotGrowWithTheSetSize) {
  // 10⁵ and 10⁶ elements; 10⁴ and 10⁵ under ASBI_FAST_TESTS, where the sanitizers make 10⁶
  // elements take ten seconds.
  const std::int64_t n = test_util::fast_tests() ? 100'000 : 1'000'000;
  std::vector<double> small_features, large_features;
  const std::int64_t baseline = core::memory_stats().live_bytes;
  const std::int64_t small = aggregate_peak_bytes(n / 10, 2, baseline, small_features);
  const std::int64_t large = aggregate_peak_bytes(n, 2, baseline, large_features);
  constexpr std::int64_t MB = 1 << 20;
  // Held whole, 10⁶ elements' first activations alone would be 10⁶ × 64 × 4 bytes = 244 MB.
  EXPECT_LT(large, 32 * MB) << "peak above the baseline: " << large / MB << " MB";
  // Ten times the elements, no more memory (less is possible: a worker of the first call may
  // have ended, freeing its arena, and the second call's worker started with fresh blocks).
  EXPECT_LE(large, small + MB / 4) << "N/10: " << small << " bytes, N: " << large;
  EXPECT_GT(small, 0);
  // Means of sin(10⁻³ i) over i < N/10 and i < N differ: the features saw every element.
  ASSERT_EQ(large_features.size(), 65u);
  EXPECT_NE(small_features, large_features);
  EXPECT_NEAR(large_features[64], std::log(double(n)), 1e-6);
}

TEST(Aggregate, ErrorsAndFailingSources) {
  auto net = mlp_deepset(2, 3, 17, DType::f32);
  const std::vector<std::int64_t> with_empty = {3, 4, 0, 2}, sizes = {40, 3};
  expect_error_naming<core::ValueError>([&] { net->aggregate(with_empty, generated(2)); },
                                        {"set 2", "0 elements"});
  AggregateOptions zero_chunk;
  zero_chunk.chunk_elements = 0;
  expect_error_naming<core::ValueError>([&] { net->aggregate(sizes, generated(2), zero_chunk); },
                                        {"chunk_elements", "0"});
  expect_error_naming<core::ValueError>([&] { net->aggregate(sizes, SetElementSource()); },
                                        {"source"});
  expect_error_naming<core::ShapeError>(
      [&] {
        net->aggregate(Tensor::zeros({5, 3}));
      },
      {"[N, 2]", "[5, 3]"});
  // An exception in the source (or the encoder) on any thread reaches the caller.
  AggregateOptions small_chunks;
  small_chunks.chunk_elements = 4;
  expect_error_naming<std::runtime_error>(
      [&] {
        net->aggregate(
            sizes,
            [](std::int64_t s, std::int64_t begin, std::int64_t, Tensor&) {
              if (s == 0 && begin >= 20) throw std::runtime_error("simulator failed at 20");
            },
            small_chunks);
      },
      {"simulator failed at 20"});
  expect_error_naming<core::StateError>(
      [&] {
        net->aggregate(sizes, [](std::int64_t, std::int64_t b, std::int64_t e, Tensor& out) {
          out = Tensor::zeros({e - b, 2});
        });
      },
      {"write into the tensor it is given"});
}

}  // namespace
}  // namespace asbi::nn
