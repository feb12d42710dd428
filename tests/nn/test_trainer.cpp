// The trainer: it fits, it stops early and restores the best weights, example weights move the
// optimum, the callback can stop it, a resumed run is bit-identical to an uninterrupted one, and
// bad datasets or options are refused with clear messages. Also the progress display.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "autodiff/ops.hpp"
#include "autodiff/tape.hpp"
#include "core/memory.hpp"
#include "core/rng.hpp"
#include "nn/checkpoint.hpp"
#include "nn/layers.hpp"
#include "nn/progress.hpp"
#include "nn/trainer.hpp"

namespace asbi::nn {
namespace {

namespace fs = std::filesystem;

Tensor normal(const Shape& shape, std::uint64_t seed, std::uint64_t stream) {
  Tensor t = Tensor::empty(shape);
  core::fill_normal(seed, stream, 0,
                    std::span<float>(t.data<float>(), static_cast<std::size_t>(t.numel())));
  return t;
}

// y = x · w + b + σ ε for x [N, 3].
struct Regression {
  Tensor x, y;
  std::vector<double> w{1.5, -2.0, 0.5};
  double b = 0.3;
};

Regression regression(std::int64_t n, double noise, std::uint64_t seed) {
  Regression r;
  r.x = normal({n, 3}, seed, 0);
  const Tensor eps = normal({n, 1}, seed, 1);
  r.y = Tensor::empty({n, 1});
  const float* x = r.x.data<float>();
  float* y = r.y.data<float>();
  for (std::int64_t i = 0; i < n; ++i)
    y[i] = static_cast<float>(r.w[0] * x[3 * i] + r.w[1] * x[3 * i + 1] + r.w[2] * x[3 * i + 2] +
                              r.b + noise * eps.data<float>()[i]);
  return r;
}

// Per-example squared error of a layer's prediction: batch = {x [B, X], y [B, 1]} → [B].
LossFn squared_error(const Layer& model) {
  return [&model](std::span<const Tensor> batch) {
    const Var e = ad::square(ad::sub(model(batch[0]), batch[1]));
    return ad::reshape(e, {e.dim(0)});
  };
}

TrainOptions quiet(TrainOptions o = {}) {
  o.progress = std::getenv("TRAIN_DEBUG") ? ProgressMode::lines : ProgressMode::silent;
  o.log_every = 1;
  return o;
}

std::vector<Tensor> values(const Module& m) {
  std::vector<Tensor> out;
  for (const NamedParameter& p : m.parameters()) out.push_back(p.parameter->value().clone());
  return out;
}

bool same_bits(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i].shape() != b[i].shape() || std::memcmp(a[i].raw(), b[i].raw(), a[i].bytes()) != 0)
      return false;
  return true;
}

fs::path temp_path(const std::string& stem) {
  static std::atomic<int> counter{0};
  return fs::temp_directory_path() /
         core::str("asbi_trainer_", stem, "_", ::getpid(), "_", counter++, ".ckpt");
}

// --- fitting -----------------------------------------------------------------------------------

TEST(Trainer, RecoversLinearRegressionCoefficients) {
  const Regression data = regression(2000, 0.1, 7);
  core::Rng rng(1);
  Linear model(3, 1, rng);
  TrainOptions o = quiet();
  o.batch_size = 50;
  o.learning_rate = 2e-2;
  o.max_epochs = 60;
  Trainer trainer(model, {data.x, data.y}, squared_error(model), o);
  EXPECT_EQ(trainer.validation_size(), 200);
  EXPECT_EQ(trainer.train_size(), 1800);
  const TrainResult r = trainer.train();
  const std::vector<double> w = model.weight().value().to_vector();
  for (int j = 0; j < 3; ++j) EXPECT_NEAR(w[static_cast<std::size_t>(j)], data.w[j], 0.03);
  EXPECT_NEAR(model.bias()->value().item(), data.b, 0.03);
  // The noise variance is the floor of the validation loss.
  EXPECT_NEAR(r.best_validation_loss, 0.01, 0.005);
  EXPECT_EQ(r.train_loss.size(), static_cast<std::size_t>(r.epochs));
  EXPECT_LT(r.train_loss.back(), r.train_loss.front());
}

TEST(Trainer, SplitIsADisjointSeededPermutation) {
  const Regression data = regression(100, 0.1, 1);
  core::Rng rng(1);
  Linear model(3, 1, rng);
  TrainOptions o = quiet();
  o.validation_fraction = 0.25;
  o.seed = 11;
  Trainer a(model, {data.x, data.y}, squared_error(model), o);
  Trainer b(model, {data.x, data.y}, squared_error(model), o);
  ASSERT_EQ(a.validation_size(), 25);
  std::vector<bool> seen(100, false);
  for (auto i : a.train_indices()) seen[static_cast<std::size_t>(i)] = true;
  for (auto i : a.validation_indices()) {
    EXPECT_FALSE(seen[static_cast<std::size_t>(i)]);
    seen[static_cast<std::size_t>(i)] = true;
  }
  EXPECT_EQ(std::count(seen.begin(), seen.end(), true), 100);
  EXPECT_TRUE(std::equal(a.validation_indices().begin(), a.validation_indices().end(),
                         b.validation_indices().begin()));
  o.seed = 12;
  Trainer c(model, {data.x, data.y}, squared_error(model), o);
  EXPECT_FALSE(std::equal(a.validation_indices().begin(), a.validation_indices().end(),
                          c.validation_indices().begin()));
}

// --- early stopping ----------------------------------------------------------------------------

// A few noisy samples of a smooth function and a wide network: the validation loss first falls
// with the training loss, then rises as the network starts to fit the noise.
TEST(Trainer, EarlyStoppingRestoresTheBestWeights) {
  const std::int64_t n = 40;
  const Tensor x = normal({n, 1}, 3, 0);
  Tensor y = normal({n, 1}, 3, 1);
  for (std::int64_t i = 0; i < n; ++i)
    y.data<float>()[i] = std::sin(2 * x.data<float>()[i]) + 0.5f * y.data<float>()[i];
  core::Rng rng(2);
  Mlp model(1, {128, 128}, 1, rng, Activation::tanh);
  TrainOptions o = quiet();
  o.batch_size = 8;
  o.learning_rate = 3e-3;
  o.validation_fraction = 0.25;
  o.patience = 10;
  o.max_epochs = 500;
  std::vector<Tensor> last_epoch_weights;
  int calls = 0;
  o.on_epoch = [&](const EpochInfo&) {
    last_epoch_weights = values(model);
    ++calls;
    return true;
  };
  Trainer trainer(model, {x, y}, squared_error(model), o);
  const TrainResult r = trainer.train();

  ASSERT_EQ(r.stop_reason, StopReason::converged);
  EXPECT_EQ(calls, r.epochs);  // the last epoch's callback included
  EXPECT_LT(r.epochs, o.max_epochs);
  EXPECT_GT(r.best_epoch, 1);
  EXPECT_EQ(r.best_epoch, r.epochs - o.patience);
  EXPECT_EQ(r.validation_loss[static_cast<std::size_t>(r.best_epoch - 1)], r.best_validation_loss);
  EXPECT_EQ(*std::min_element(r.validation_loss.begin(), r.validation_loss.end()),
            r.best_validation_loss);
  EXPECT_GT(r.validation_loss.back(), r.best_validation_loss);
  EXPECT_FALSE(same_bits(values(model), last_epoch_weights));

  // The model now holds the best epoch's weights: its validation loss is the best one.
  double total = 0;
  {
    ad::NoGrad no_grad;
    for (std::int64_t i : trainer.validation_indices()) {
      const Var pred = model(x.rows(i, i + 1));
      const double d = pred.item() - y.rows(i, i + 1).item();
      total += d * d;
    }
  }
  EXPECT_NEAR(total / static_cast<double>(trainer.validation_size()), r.best_validation_loss,
              1e-5 * r.best_validation_loss);
}

// --- example weights ---------------------------------------------------------------------------

// One scalar c fitted by (y - c)²: the optimum is the (weighted) mean of the training targets.
class Constant : public Layer {
 public:
  Constant() : c_(param("c", Tensor::zeros({1}))) {}
  Var forward(const Var& x) const override {
    return ad::add(ad::scale(x, 0.0), Var(c_));  // c broadcast over the batch
  }

 private:
  Parameter& c_;
};

TEST(Trainer, ExampleWeightsGiveTheWeightedMean) {
  const std::int64_t n = 200;
  std::vector<double> y(n), w(n);
  for (std::int64_t i = 0; i < n; ++i) {
    y[static_cast<std::size_t>(i)] = i % 2;              // half 0, half 1
    w[static_cast<std::size_t>(i)] = i % 2 ? 3.0 : 1.0;  // ones weigh three times more
  }
  const Tensor x = Tensor::zeros({n, 1});
  const Tensor targets = Tensor::from(y, {n, 1});
  TrainOptions o = quiet();
  o.batch_size = 1000;  // full batch: a smooth path to the optimum
  o.learning_rate = 5e-2;
  o.max_epochs = 300;
  o.patience = 1000;
  o.restore_best = false;

  auto fit = [&](Tensor weights) {
    Constant model;
    Trainer trainer(model, {x, targets}, squared_error(model), o, weights);
    trainer.train();
    double num = 0, den = 0;
    for (std::int64_t i : trainer.train_indices()) {
      const double wi = weights.defined() ? w[static_cast<std::size_t>(i)] : 1.0;
      num += wi * y[static_cast<std::size_t>(i)];
      den += wi;
    }
    return std::pair{model.parameter("c").value().item(), num / den};
  };
  const auto [plain, mean] = fit(Tensor());
  EXPECT_NEAR(plain, mean, 1e-2);
  EXPECT_NEAR(mean, 0.5, 0.1);
  const auto [weighted, weighted_mean] = fit(Tensor::from(w, {n}, DType::f64));
  EXPECT_NEAR(weighted, weighted_mean, 1e-2);
  EXPECT_NEAR(weighted_mean, 0.75, 0.1);
}

// --- callback and progress ------------------------------------------------------------------

TEST(Trainer, CallbackSeesEveryEpochAndCanStop) {
  const Regression data = regression(300, 0.1, 2);
  core::Rng rng(1);
  Linear model(3, 1, rng);
  TrainOptions o = quiet();
  o.batch_size = 64;
  std::vector<EpochInfo> seen;
  o.on_epoch = [&](const EpochInfo& info) {
    seen.push_back(info);
    return info.epoch < 3;
  };
  const TrainResult r = train(model, {data.x, data.y}, squared_error(model), o);
  EXPECT_EQ(r.stop_reason, StopReason::callback);
  EXPECT_EQ(r.epochs, 3);
  ASSERT_EQ(seen.size(), 3u);
  for (int e = 0; e < 3; ++e) {
    const EpochInfo& info = seen[static_cast<std::size_t>(e)];
    EXPECT_EQ(info.epoch, e + 1);
    EXPECT_EQ(info.patience, 20);
    EXPECT_EQ(info.max_epochs, 2000);
    EXPECT_EQ(info.train_loss, r.train_loss[static_cast<std::size_t>(e)]);
    EXPECT_EQ(info.validation_loss, r.validation_loss[static_cast<std::size_t>(e)]);
    EXPECT_LE(info.best_validation_loss, info.validation_loss);
    EXPECT_EQ(info.epochs_since_improvement == 0,
              info.best_validation_loss == info.validation_loss);
    EXPECT_DOUBLE_EQ(info.learning_rate, 5e-4);
    EXPECT_GT(info.samples_per_second, 0);
    EXPECT_GE(info.elapsed_seconds, info.epoch_seconds);
  }
}

TEST(Trainer, SteadyStateEpochsAllocateNoTensorMemory) {
  const Regression data = regression(400, 0.1, 3);
  core::Rng rng(1);
  Mlp model(3, {16}, 1, rng);
  TrainOptions o = quiet();
  o.batch_size = 32;
  o.max_epochs = 5;
  std::vector<std::int64_t> allocations;
  o.on_epoch = [&](const EpochInfo&) {
    allocations.push_back(core::memory_stats(Device::cpu).allocations);
    return true;
  };
  train(model, {data.x, data.y}, squared_error(model), o);
  ASSERT_EQ(allocations.size(), 5u);
  // After the first epoch has grown the arena, an epoch takes nothing from the system.
  EXPECT_EQ(allocations[4], allocations[1]);
}

// --- resume ------------------------------------------------------------------------------------

// Trains `total` epochs straight and `split` + (resume) + the rest, and compares.
void expect_exact_resume(int split, int total, const ScheduleOptions& schedule) {
  const Regression data = regression(300, 0.2, 5);
  TrainOptions o = quiet();
  o.batch_size = 32;
  o.learning_rate = 1e-2;
  o.patience = 100;
  o.seed = 42;
  o.schedule = schedule;
  o.restore_best = false;  // compare the live weights of the last epoch

  core::Rng rng_a(9);
  Mlp a(3, {16, 16}, 1, rng_a);
  o.max_epochs = total;
  Trainer straight(a, {data.x, data.y}, squared_error(a), o);
  const TrainResult ra = straight.train();

  const fs::path file = temp_path("resume");
  core::Rng rng_b(9);
  Mlp b(3, {16, 16}, 1, rng_b);
  TrainOptions first = o;
  first.max_epochs = split;
  first.checkpoint = file;
  train(b, {data.x, data.y}, squared_error(b), first);

  core::Rng rng_c(1234);  // another initialisation: everything must come from the checkpoint
  Mlp c(3, {16, 16}, 1, rng_c);
  Trainer resumed(c, {data.x, data.y}, squared_error(c), o);
  resumed.resume(file);
  fs::remove(file);
  EXPECT_EQ(resumed.epoch(), split);
  const TrainResult rc = resumed.train();

  EXPECT_EQ(rc.epochs, total);
  EXPECT_TRUE(same_bits(values(a), values(c)));
  EXPECT_EQ(ra.train_loss, rc.train_loss);
  EXPECT_EQ(ra.validation_loss, rc.validation_loss);
  EXPECT_EQ(ra.best_epoch, rc.best_epoch);
  EXPECT_EQ(ra.best_validation_loss, rc.best_validation_loss);
  EXPECT_EQ(straight.optimizer().learning_rate(), resumed.optimizer().learning_rate());
  if (schedule.kind == ScheduleKind::plateau) {
    EXPECT_LT(resumed.optimizer().learning_rate(), o.learning_rate);  // it did reduce
  }
}

TEST(Trainer, ResumedRunIsBitIdenticalToAnUninterruptedOne) { expect_exact_resume(3, 6, {}); }

TEST(Trainer, ResumeCarriesTheScheduleState) {
  // A plateau schedule that reduces often: its counters must survive the checkpoint.
  ScheduleOptions plateau{.kind = ScheduleKind::plateau};
  plateau.plateau.patience = 0;
  plateau.plateau.factor = 0.5;
  plateau.plateau.threshold = 0.05;
  expect_exact_resume(4, 10, plateau);
}

TEST(Trainer, CheckpointHoldsTheBestWeightsForInference) {
  const Regression data = regression(200, 0.5, 6);
  const fs::path file = temp_path("best");
  core::Rng rng(3);
  Mlp model(3, {8}, 1, rng);
  TrainOptions o = quiet();
  o.batch_size = 20;
  o.max_epochs = 8;
  o.checkpoint = file;
  o.checkpoint_every = 3;
  o.checkpoint_config = "{\"model\": \"mlp\"}";
  o.on_checkpoint = [](Checkpoint& c) { c.add("standardize/mean", Tensor::zeros({3})); };
  train(model, {data.x, data.y}, squared_error(model), o);  // best weights restored

  const Checkpoint c = load_checkpoint(file);
  fs::remove(file);
  EXPECT_EQ(c.config, o.checkpoint_config);
  EXPECT_NE(c.find("standardize/mean"), nullptr);
  EXPECT_EQ(c.at("trainer/history").shape(), (Shape{8, 2}));
  core::Rng other(4);
  Mlp inference(3, {8}, 1, other);
  restore_module(c, "model", inference);
  EXPECT_TRUE(same_bits(values(inference), values(model)));
}

TEST(Trainer, ResumeRefusesAnotherRun) {
  const Regression data = regression(100, 0.1, 1);
  const fs::path file = temp_path("other");
  core::Rng rng(1);
  Linear model(3, 1, rng);
  TrainOptions o = quiet();
  o.max_epochs = 1;
  o.seed = 5;
  o.checkpoint = file;
  train(model, {data.x, data.y}, squared_error(model), o);
  o.seed = 6;
  Trainer other(model, {data.x, data.y}, squared_error(model), o);
  try {
    other.resume(file);
    ADD_FAILURE() << "expected an IoError";
  } catch (const core::IoError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("seed of 5, this trainer has 6"), std::string::npos) << m;
    EXPECT_NE(m.find(file.string()), std::string::npos) << m;
  }
  fs::remove(file);
}

// --- bad input -------------------------------------------------------------------------------

template <typename E, typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an exception";
  return "";
}

TEST(Trainer, RaggedDatasetIsRefused) {
  core::Rng rng(1);
  Linear model(3, 1, rng);
  const std::string m = error_of<core::ShapeError>([&] {
    Trainer t(model, {Tensor::zeros({100, 3}), Tensor::zeros({90, 1})}, squared_error(model),
              quiet());
  });
  EXPECT_NE(m.find("share dimension 0"), std::string::npos) << m;
  EXPECT_NE(m.find("[100, 3]"), std::string::npos) << m;
  EXPECT_NE(m.find("[90, 1]"), std::string::npos) << m;
}

TEST(Trainer, EmptyValidationSetIsRefused) {
  core::Rng rng(1);
  Linear model(3, 1, rng);
  const std::string m = error_of<core::ValueError>([&] {
    Trainer t(model, {Tensor::zeros({5, 3}), Tensor::zeros({5, 1})}, squared_error(model), quiet());
  });
  EXPECT_NE(m.find("leaves the validation set empty"), std::string::npos) << m;
  EXPECT_THROW(Trainer(model, {Tensor::zeros({50, 3}), Tensor::zeros({50, 1})},
                       squared_error(model), quiet({.validation_fraction = 0})),
               core::ValueError);
}

TEST(Trainer, BadLossShapeAndWeightsAreRefused) {
  const Regression data = regression(100, 0.1, 1);
  core::Rng rng(1);
  Linear model(3, 1, rng);
  TrainOptions o = quiet();
  o.max_epochs = 1;
  auto unreduced = [&](std::span<const Tensor> batch) {
    return ad::square(ad::sub(model(batch[0]), batch[1]));  // [B, 1], not [B]
  };
  const std::string m = error_of<core::ShapeError>([&] {
    train(model, {data.x, data.y}, unreduced, o);
  });
  EXPECT_NE(m.find("per-example losses of shape [90]"), std::string::npos) << m;
  EXPECT_THROW(Trainer(model, {data.x, data.y}, squared_error(model), o, Tensor::zeros({99})),
               core::ShapeError);
  EXPECT_THROW(Trainer(model, {data.x, data.y}, squared_error(model), o, Tensor::full({100}, -1.0)),
               core::ValueError);
}

// --- progress --------------------------------------------------------------------------------

EpochInfo sample_info() {
  return {.epoch = 12,
          .max_epochs = 2000,
          .train_loss = 1.2345,
          .validation_loss = 1.3456,
          .best_validation_loss = 1.3,
          .epochs_since_improvement = 3,
          .patience = 20,
          .learning_rate = 5e-4,
          .samples_per_second = 45000,
          .epoch_seconds = 5,
          .elapsed_seconds = 60};
}

TEST(Progress, FormatsOneStatusLine) {
  EXPECT_EQ(Progress::format(sample_info()),
            "epoch 12 | train 1.2345 | val 1.3456 | since best 3/20 | 45,000 samples/s | "
            "ETA >= 1m25s");  // (20 - 3) epochs × 5 s
  EpochInfo near_max = sample_info();
  near_max.max_epochs = 14;  // two epochs left: sooner than patience
  EXPECT_NE(Progress::format(near_max).find("ETA >= 10s"), std::string::npos);
  EXPECT_EQ(Progress::format_count(999), "999");
  EXPECT_EQ(Progress::format_count(1234567), "1,234,567");
  EXPECT_EQ(Progress::format_duration(5.5), "5.5s");
  EXPECT_EQ(Progress::format_duration(80), "1m20s");
  EXPECT_EQ(Progress::format_duration(3725), "1h02m");
}

TEST(Progress, TerminalRewritesOneLine) {
  std::ostringstream out;
  {
    Progress p(out, /*is_terminal=*/true);
    EpochInfo info = sample_info();
    p.epoch(info);
    info.epoch = 13;
    info.elapsed_seconds += 0.01;  // too soon to redraw
    p.epoch(info);
    info.epoch = 14;
    info.elapsed_seconds += 1;
    p.epoch(info);
    p.finish("done");
  }
  const std::string s = out.str();
  EXPECT_EQ(s.find('\n'), s.size() - 1);  // only the summary ends a line
  EXPECT_NE(s.find("\repoch 12 |"), std::string::npos);
  EXPECT_EQ(s.find("epoch 13"), std::string::npos);
  EXPECT_NE(s.find("\repoch 14 |"), std::string::npos);
  EXPECT_NE(s.find("\rdone\n"), std::string::npos);  // the live line was blanked first
}

TEST(Progress, LogWritesEveryNthEpoch) {
  std::ostringstream out;
  Progress p(out, /*is_terminal=*/false, /*every=*/5);
  EpochInfo info = sample_info();
  for (int e = 1; e <= 11; ++e) {
    info.epoch = e;
    p.epoch(info);
  }
  p.finish("done");
  const std::string s = out.str();
  EXPECT_EQ(s.find('\r'), std::string::npos);
  EXPECT_EQ(std::count(s.begin(), s.end(), '\n'), 4);  // epochs 1, 5, 10 and the summary
  EXPECT_EQ(s.rfind("epoch 1 |", 0), 0u);
  EXPECT_NE(s.find("\nepoch 5 |"), std::string::npos);
  EXPECT_NE(s.find("\nepoch 10 |"), std::string::npos);
}

}  // namespace
}  // namespace asbi::nn
