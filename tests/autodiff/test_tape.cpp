// Tape semantics: what persists across tapes, what is refused, what the errors say, and that a
// steady-state training step allocates nothing.
#include <gtest/gtest.h>

#include "test_util.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "autodiff/ops.hpp"
#include "autodiff/parameter.hpp"
#include "autodiff/tape.hpp"
#include "core/backend.hpp"
#include "core/memory.hpp"

namespace asbi::ad {
namespace {

using core::DType;
using core::DtypeError;
using core::ShapeError;
using core::StateError;

using asbi::test_util::expect_error_naming;

Tensor f64(std::initializer_list<double> v, const Shape& s) {
  return Tensor::from(v, s, DType::f64);
}

TEST(Tape, ParameterGradientsAccumulateAcrossTapesUntilZeroGrad) {
  Parameter w("w", f64({1, 2, 3}, {3}));
  const Tensor x = f64({0.5, -1, 2}, {3});
  auto step = [&] {
    Tape tape;
    tape.backward(sum(mul(x, w)));  // ∂/∂w = x
  };
  step();
  EXPECT_EQ(w.grad().to_vector(), (std::vector<double>{0.5, -1, 2}));
  step();
  EXPECT_EQ(w.grad().to_vector(), (std::vector<double>{1, -2, 4}));
  w.zero_grad();
  EXPECT_EQ(w.grad().to_vector(), (std::vector<double>{0, 0, 0}));
  step();
  EXPECT_EQ(w.grad().to_vector(), (std::vector<double>{0.5, -1, 2}));
  // The value itself is untouched by backward.
  EXPECT_EQ(w.value().to_vector(), (std::vector<double>{1, 2, 3}));
}

TEST(Tape, ParameterUsedDirectlyAsLossGetsUnitGradient) {
  Parameter p("p", f64({3}, {1}));
  Tape tape;
  tape.backward(p);
  EXPECT_EQ(p.grad().item(), 1.0);
}

TEST(Tape, OpsOnConstantsRecordNothing) {
  Tape tape;
  Var y = tanh(Var(f64({1, 2}, {2})) * 2.0);
  EXPECT_EQ(tape.size(), 0u);
  EXPECT_FALSE(y.requires_grad());
  EXPECT_NEAR(y.value().at(1), std::tanh(4.0), 1e-15);
}

TEST(Tape, NoGradRecordsNothingAndItsLossCannotBackpropagate) {
  Parameter w("w", f64({1, 2}, {2}));
  Tape tape;
  EXPECT_TRUE(recording());
  {
    NoGrad no_grad;
    EXPECT_FALSE(recording());
    Var loss = sum(tanh(w) * w);
    EXPECT_EQ(tape.size(), 0u);
    EXPECT_FALSE(loss.requires_grad());
    EXPECT_THROW(tape.backward(loss), StateError);
  }
  EXPECT_TRUE(recording());
  EXPECT_EQ(w.grad().to_vector(), (std::vector<double>{0, 0}));
}

TEST(Tape, NothingRecordsWithoutATape) {
  Parameter w("w", f64({1, 2}, {2}));
  EXPECT_FALSE(recording());
  EXPECT_EQ(Tape::current(), nullptr);
  Var y = tanh(w);
  EXPECT_FALSE(y.requires_grad());
}

TEST(Tape, BackwardTwiceOnOneRecordingThrows) {
  Parameter w("w", f64({1, 2}, {2}));
  Tape tape;
  Var loss = sum(square(w));
  tape.backward(loss);
  EXPECT_THROW(tape.backward(loss), StateError);
  // The failed second call must not have added anything.
  EXPECT_EQ(w.grad().to_vector(), (std::vector<double>{2, 4}));
}

TEST(Tape, ResetLetsYouRecordAgain) {
  Parameter w("w", f64({1, 2}, {2}));
  Tape tape;
  EXPECT_EQ(Tape::current(), &tape);
  tape.backward(sum(square(w)));
  EXPECT_GT(tape.size(), 0u);
  tape.reset();
  EXPECT_EQ(tape.size(), 0u);
  Var loss = sum(w * 3.0);
  EXPECT_EQ(tape.size(), 2u);
  tape.backward(loss);
  EXPECT_EQ(w.grad().to_vector(), (std::vector<double>{2 + 3, 4 + 3}));
}

TEST(Tape, VarUsedAfterItsTapeEndedThrowsStateError) {
  Parameter w("w", f64({1, 2}, {2}));
  Var y, scalar;
  {
    Tape tape;
    y = tanh(w);
    scalar = sum(y);
    EXPECT_NO_THROW(y.value());
  }
  EXPECT_THROW(y.value(), StateError);
  EXPECT_THROW(y.item(), StateError);
  EXPECT_THROW(static_cast<void>(exp(y)), StateError);
  EXPECT_THROW(static_cast<void>(add(w, y)), StateError);
  // Even under a new tape, where the stale node's memory may have been reused.
  Tape next;
  Var fresh = sum(square(w));
  EXPECT_THROW(static_cast<void>(y * 2.0), StateError);
  EXPECT_THROW(next.backward(sum(y)), StateError);
  EXPECT_THROW(next.backward(scalar), StateError);  // its node is gone: must not be read
  next.backward(fresh);
  EXPECT_EQ(w.grad().to_vector(), (std::vector<double>{2, 4}));
}

// reshape returns a view: its value shares a parameter's owned storage and so never goes stale by
// itself, but its node lived on the ended tape. Using it must throw, not record a dangling input.
TEST(Tape, ReshapedParameterUsedAfterItsTapeEndedThrowsStateError) {
  Parameter w("w", f64({1, 2}, {2}));
  Var r;
  {
    Tape tape;
    r = reshape(w, {2, 1});
  }
  Tape next;
  EXPECT_THROW(static_cast<void>(tanh(r)), StateError);
  EXPECT_THROW(next.backward(sum(r)), StateError);
  EXPECT_EQ(next.size(), 0u);
  EXPECT_EQ(w.grad().to_vector(), (std::vector<double>{0, 0}));
}

TEST(Tape, VarUsedAfterResetThrowsStateError) {
  Parameter w("w", f64({1, 2}, {1, 2}));
  Tape tape;
  Var y = sigmoid(w);
  tape.reset();
  EXPECT_THROW(y.value(), StateError);
  EXPECT_THROW(static_cast<void>(sum(y)), StateError);
  // A parameter's Var stays valid: its value is owned.
  Var p = w;
  EXPECT_NO_THROW(p.value());
}

TEST(Tape, SecondTapeOnTheSameThreadThrows) {
  Parameter w("w", f64({1, 2}, {2}));
  Tape tape;
  Var y = tanh(w);
  EXPECT_THROW(Tape second, StateError);
  // The refused tape must leave the first one working, its temporaries included.
  EXPECT_EQ(Tape::current(), &tape);
  EXPECT_NO_THROW(y.value());
  tape.backward(sum(y));
  EXPECT_NEAR(w.grad().at(0), 1 - std::tanh(1.0) * std::tanh(1.0), 1e-15);
}

TEST(Tape, TapesOnOtherThreadsAreIndependent) {
  Tape tape;
  bool other_ok = false;
  std::thread t([&] {
    Parameter w("w", f64({2}, {1}));
    Tape other;
    other.backward(square(w));
    other_ok = w.grad().item() == 4.0;
  });
  t.join();
  EXPECT_TRUE(other_ok);
}

TEST(Tape, LossWithMoreThanOneElementThrowsShapeError) {
  Parameter w("w", f64({1, 2}, {2}));
  Tape tape;
  expect_error_naming<ShapeError>([&] { tape.backward(square(w)); }, {"[2]"});
}

TEST(Tape, StrListsTheRecordedOps) {
  Parameter w("w", Tensor::zeros({3, 4}, DType::f64));
  Parameter b("b", Tensor::zeros({3}, DType::f64));
  Tape tape;
  Var loss = mean(tanh(linear(Tensor::zeros({2, 4}, DType::f64), w, b)));
  const std::string s = tape.str();
  EXPECT_EQ(tape.size(), 3u);
  for (const char* part : {"linear", "tanh", "mean", "[2, 3]", "const[2, 4]", "[3, 4]", "%2"})
    EXPECT_NE(s.find(part), std::string::npos) << "'" << part << "' missing from:\n" << s;
  EXPECT_LT(s.find("linear"), s.find("tanh"));
}

TEST(Tape, MixingFloat32AndFloat64ThrowsDtypeErrorNamingBothShapes) {
  Parameter w("w", Tensor::zeros({2, 3}, DType::f32));
  const Tensor x = Tensor::zeros({3}, DType::f64);
  Tape tape;
  for (auto op : {add, sub, mul, div})
    expect_error_naming<DtypeError>([&] { op(w, x); }, {"float32", "float64", "[2, 3]", "[3]"});
  const Tensor m = Tensor::zeros({3, 5}, DType::f64);
  expect_error_naming<DtypeError>([&] { matmul(w, m); }, {"[2, 3]", "[3, 5]"});
  expect_error_naming<DtypeError>([&] { linear(m.reshape({5, 3}), w); }, {"[5, 3]", "[2, 3]"});
  expect_error_naming<DtypeError>([&] { concat({w, Tensor::zeros({1, 3}, DType::f64)}, 0); },
                                  {"[2, 3]", "[1, 3]"});
  EXPECT_EQ(tape.size(), 0u);
}

TEST(Tape, ShapeMismatchErrorsNameTheShapes) {
  const Tensor a = Tensor::zeros({2, 3}, DType::f64);
  expect_error_naming<ShapeError>([&] { matmul(a, Tensor::zeros({4, 5}, DType::f64)); },
                                  {"matmul", "[2, 3]", "[4, 5]"});
  expect_error_naming<ShapeError>([&] { linear(a, Tensor::zeros({4, 2}, DType::f64)); },
                                  {"linear", "[2, 3]", "[4, 2]"});
  expect_error_naming<ShapeError>(
      [&] { linear(a, Tensor::zeros({4, 3}, DType::f64), Tensor::zeros({3}, DType::f64)); },
      {"bias", "[4]", "[3]"});
  expect_error_naming<ShapeError>([&] { add(a, Tensor::zeros({4}, DType::f64)); },
                                  {"broadcast", "[2, 3]", "[4]"});
  expect_error_naming<ShapeError>(
      [&] { mul(Tensor::zeros({2, 1, 3}, DType::f64), a.reshape({3, 2})); },
      {"[2, 1, 3]", "[3, 2]"});
  expect_error_naming<ShapeError>([&] { concat({a, Tensor::zeros({2, 4}, DType::f64)}, 0); },
                                  {"[2, 3]", "[2, 4]"});
  expect_error_naming<ShapeError>([&] { slice(a, 1, 2, 4); }, {"[2, 3]"});
  expect_error_naming<ShapeError>([&] { reshape(a, {4, 2}); }, {"[2, 3]", "[4, 2]"});
  const std::vector<std::int64_t> bad_index{0, 2};
  expect_error_naming<ShapeError>([&] { gather_rows(a, bad_index); }, {"[2, 3]"});
  const std::vector<std::int64_t> lengths{1, 2};
  expect_error_naming<ShapeError>(
      [&] { mean_pool(a.reshape({3, 2}), std::span(lengths).first(1)); },
      {"add up to 1", "3 rows"});
  expect_error_naming<ShapeError>([&] { sum(a, 2); }, {"[2, 3]"});
}

// --- float32 against float64 ---------------------------------------------------------------------

struct Mlp {
  Parameter w1, b1, w2, b2;
};

Mlp make_mlp(DType dtype) {
  // Fixed, well-scaled values; the float32 model holds the same numbers rounded once.
  auto t = [&](const Shape& s, double phase) {
    std::vector<double> v(static_cast<std::size_t>(s.numel()));
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = 0.5 * std::sin(1.3 * double(i) + phase);
    return Tensor::from(v, s, DType::f32).to(dtype);
  };
  return {Parameter("w1", t({16, 4}, 0.1)), Parameter("b1", t({16}, 0.2)),
          Parameter("w2", t({3, 16}, 0.3)), Parameter("b2", t({3}, 0.4))};
}

Tensor batch(const Shape& s, double phase, DType dtype) {
  std::vector<double> v(static_cast<std::size_t>(s.numel()));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = std::cos(0.7 * double(i) + phase);
  return Tensor::from(v, s, DType::f32).to(dtype);
}

Var mlp_loss(const Mlp& m, const Tensor& x, const Tensor& y) {
  Var h = layer_norm(silu(linear(x, m.w1, m.b1)));
  return mean(square(linear(tanh(h), m.w2, m.b2) - y)) + 0.01 * sum(square(m.w1));
}

TEST(Tape, Float32TrainingStepMatchesFloat64) {
  Mlp m32 = make_mlp(DType::f32), m64 = make_mlp(DType::f64);
  double loss32 = 0, loss64 = 0;
  for (auto [m, dtype, loss] : {std::tuple{&m32, DType::f32, &loss32},
                                std::tuple{&m64, DType::f64, &loss64}}) {
    Tape tape;
    Var loss_var = mlp_loss(*m, batch({32, 4}, 0.0, dtype), batch({32, 3}, 1.0, dtype));
    *loss = loss_var.item();
    tape.backward(loss_var);
  }
  EXPECT_NEAR(loss32, loss64, 1e-5 * std::abs(loss64));
  for (auto [p32, p64] : {std::pair{&m32.w1, &m64.w1}, std::pair{&m32.b1, &m64.b1},
                          std::pair{&m32.w2, &m64.w2}, std::pair{&m32.b2, &m64.b2}}) {
    const std::vector<double> g32 = p32->grad().to_vector(), g64 = p64->grad().to_vector();
    ASSERT_EQ(g32.size(), g64.size());
    double scale = 0;
    for (double g : g64) scale = std::max(scale, std::abs(g));
    ASSERT_GT(scale, 0) << p64->name();
    for (std::size_t i = 0; i < g64.size(); ++i)
      EXPECT_NEAR(g32[i], g64[i], 1e-4 * std::abs(g64[i]) + 1e-5 * scale)
          << p64->name() << "[" << i << "]";
  }
}

// --- the Eigen-style no-allocation test ---------------------------------------------------------
// Once the arena has grown to the size of one step, forward, backward and the SGD update take no
// memory from the system: every temporary lives in the rewound arena.

TEST(Tape, SteadyStateTrainingStepAllocatesNothing) {
  Mlp m = make_mlp(DType::f32);
  const Tensor x = batch({64, 4}, 0.0, DType::f32);
  const Tensor y = batch({64, 3}, 1.0, DType::f32);
  const std::vector<std::int64_t> lengths{10, 20, 30, 4};
  const std::vector<std::int64_t> index{5, 0, 5, 63};
  Parameter* params[] = {&m.w1, &m.b1, &m.w2, &m.b2};
  // Touches most op families, including the ones that keep integers (ragged pooling, gathers)
  // and the > 3-part concat, whose grouping must not allocate tensors outside the arena.
  auto step = [&] {
    for (Parameter* p : params) p->zero_grad();
    Tape tape;
    Var h = layer_norm(silu(linear(x, m.w1, m.b1)));                        // [64, 16]
    Var wide = concat({tanh(h), relu(h), gelu(h), h, sigmoid(h)}, 1);       // [64, 80]
    Var first_part = slice(wide, 1, 0, 16);                                 // tanh(h)
    Var pooled = log_softmax(mean_pool(first_part, lengths));               // [4, 16]
    Var loss = mean(square(linear(first_part, m.w2, m.b2) - y)) + 0.01 * sum(square(m.w1)) -
               1e-3 * sum(pooled) + 1e-3 * mean(gather_rows(h, index));
    tape.backward(loss);
    for (Parameter* p : params)
      core::backend(p->value().device()).axpy(-0.1, p->grad(), p->value());
    return loss.item();
  };
  const double first = step();
  step();  // warm-up: the arena grows to the size of one step
  step();
  const core::MemoryStats before = core::memory_stats();
  double last = 0;
  for (int i = 0; i < 10; ++i) last = step();
  const core::MemoryStats after = core::memory_stats();
  EXPECT_EQ(after.allocations, before.allocations);
  EXPECT_EQ(after.live_bytes, before.live_bytes);
  EXPECT_LT(last, first) << "the steps must train, or the test measures nothing real";
}

}  // namespace
}  // namespace asbi::ad
