// The set estimator (sbi/set_estimator.cpp): pair training, streaming aggregation and a retrained
// head, against gaussian_nuisance's analytic Student-t posterior of μ; the end-to-end baseline;
// files, options and errors.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "core/backend.hpp"
#include "core/error.hpp"
#include "nn/checkpoint.hpp"
#include "sbi/diagnostics.hpp"
#include "sbi/set_estimator.hpp"
#include "sbi/set_task.hpp"
#include "test_util.hpp"

namespace asbi::sbi {
namespace {

using test_util::expect_error_naming;

std::shared_ptr<const SetTask> task(const std::string& name) { return make_set_task(name); }

// A temporary folder removed at the end of the test.
struct TempDir {
  std::filesystem::path path = std::filesystem::temp_directory_path() /
                               ("asbi_set_estimator_" + std::to_string(::getpid()));
  TempDir() { std::filesystem::create_directories(path); }
  ~TempDir() { std::filesystem::remove_all(path); }
};

// A small configuration: N = 50, a few thousand sets per stage, the library's networks.
SetEstimatorOptions small_options(SetTraining training = SetTraining::pairs) {
  SetEstimatorOptions o;
  o.training = training;
  o.min_set_size = o.max_set_size = 50;
  o.encoder_simulations = 4000;
  o.head_simulations = 4000;
  o.encoder_train.progress = nn::ProgressMode::silent;
  o.head.train.progress = nn::ProgressMode::silent;
  o.seed = 3;
  return o;
}

// Exact draws of μ's analytic posterior (Student-t), the task's reference (tested there).
Tensor analytic_draws(const SetTask& t, const Tensor& set, std::int64_t n) {
  return set_reference_posterior(t, set, n, /*seed=*/11).samples;
}

struct Quartiles {
  double lower, median, upper;
  double iqr() const { return upper - lower; }
};

Quartiles quartiles(const Tensor& draws) {
  std::vector<double> v = draws.to_vector();
  std::sort(v.begin(), v.end());
  const auto at = [&v](double p) { return v[static_cast<std::size_t>(p * static_cast<double>(v.size() - 1))]; };
  return {at(0.25), at(0.5), at(0.75)};
}

TEST(SetEstimator, PairTrainedDeepSetRecoversTheStudentTPosteriorOfGaussianNuisance) {
  ASBI_SKIP_STATISTICAL_FIT_IF_FAST();
  const auto t = task("gaussian_nuisance");
  SetEstimator estimator(t, small_options());
  const SetTrainReport report = estimator.train();
  EXPECT_GT(report.encoder.epochs, 0);
  EXPECT_GT(report.head.epochs, 0);
  EXPECT_EQ(report.head_elements, 4000 * 50);
  EXPECT_LE(report.encoder_elements, 4000 * 2);  // pairs only
  const auto posterior = estimator.posterior();
  // Three observations (development indices), each against its analytic posterior.
  for (int k : {1, 2, 3}) {
    const Tensor set = set_observation(*t, k, 50).set;
    const Tensor q = posterior->sample(4000, set, /*seed=*/k);
    const Tensor ref = analytic_draws(*t, set, 4000);
    // Robust summaries (a flow's rare far-tail draws would dominate a standard deviation):
    // the median within a quarter of the reference's interquartile range, the IQR within 20 %.
    const Quartiles qq = quartiles(q), rq = quartiles(ref);
    EXPECT_LT(std::abs(qq.median - rq.median), 0.25 * rq.iqr()) << "observation " << k;
    EXPECT_NEAR(qq.iqr() / rq.iqr(), 1.0, 0.2) << "observation " << k;
    EXPECT_LT(c2st(ref, q), 0.62) << "observation " << k;
  }
}

TEST(SetEstimator, EndToEndBaselineTrainsAtTheDeploymentSize) {
  ASBI_SKIP_STATISTICAL_FIT_IF_FAST();
  const auto t = task("gaussian_nuisance");
  SetEstimatorOptions o = small_options(SetTraining::end_to_end);
  o.min_set_size = o.max_set_size = 20;
  o.encoder_simulations = 2000;
  SetEstimator estimator(t, o);
  const SetTrainReport report = estimator.train();
  EXPECT_EQ(report.encoder_elements, 2000 * 20);  // every set at N = 20
  EXPECT_EQ(report.head.epochs, 0);               // no separate head stage
  const Tensor set = set_observation(*t, 4, 20).set;
  const Tensor q = estimator.posterior()->sample(2000, set, 1);
  const Tensor ref = analytic_draws(*t, set, 2000);
  EXPECT_LT(c2st(ref, q), 0.7);
}

// Quick runs for the mechanics (not the statistics): a few epochs each.
SetEstimatorOptions tiny_options(SetTraining training = SetTraining::pairs) {
  SetEstimatorOptions o = small_options(training);
  o.encoder_simulations = 200;
  o.head_simulations = 200;
  o.min_set_size = 5;
  o.max_set_size = 40;
  o.encoder.hidden = {16, 16};
  o.encoder.features = 8;
  o.head.nsf.transforms = 2;
  o.head.nsf.hidden = 16;
  o.encoder_train.max_epochs = 2;
  o.head.train.max_epochs = 2;
  return o;
}

TEST(SetEstimator, SaveLoadGivesIdenticalSamplesAndTheSameSeedTheSameModel) {
  const auto t = task("mixture_nuisance");
  TempDir dir;
  SetEstimator a(t, tiny_options()), b(t, tiny_options());
  a.train();
  b.train();
  a.save(dir.path / "model.asbi");
  EXPECT_TRUE(is_set_estimator_file(dir.path / "model.asbi"));
  const auto loaded = load_set_posterior(dir.path / "model.asbi", t);
  const Tensor set = set_observation(*t, 1, 37).set;
  const Tensor from_a = a.posterior()->sample(300, set, 5);
  const Tensor from_b = b.posterior()->sample(300, set, 5);
  const Tensor from_file = loaded->sample(300, set, 5);
  EXPECT_EQ(from_a.to_vector(), from_b.to_vector());
  EXPECT_EQ(from_a.to_vector(), from_file.to_vector());
  EXPECT_EQ(a.posterior()->log_prob(from_a, set), loaded->log_prob(from_a, set));
  std::string task_name;
  const SetEstimatorOptions stored = load_set_estimator_options(dir.path / "model.asbi", &task_name);
  EXPECT_EQ(task_name, "mixture_nuisance");
  EXPECT_EQ(stored.min_set_size, 5);
  EXPECT_EQ(stored.max_set_size, 40);
  EXPECT_EQ(stored.encoder.features, 8);
  // Another task of another width is refused, naming the field.
  expect_error_naming<core::IoError>(
      [&] { load_set_posterior(dir.path / "model.asbi", task("gaussian_nuisance")); },
      {"model.asbi", "task", "mixture_nuisance", "gaussian_nuisance"});
}

TEST(SetEstimator, AnAbsentDeviceIsRefused) {
  if (core::device_available(core::Device::cuda)) GTEST_SKIP() << "a CUDA device is present";
  SetEstimatorOptions o = tiny_options();
  o.device = core::Device::cuda;
  expect_error_naming<core::DeviceError>([&] { SetEstimator(task("mixture_nuisance"), o); },
                                         {"SetEstimatorOptions::device", "cuda"});
}

// A CPU-trained set model loaded on the GPU: the streamed features (aggregate on the device) and
// the head's draws agree with the CPU's to float32 rounding.
TEST(SetEstimator, CudaPosteriorMatchesTheCpuForTheSameWeights) {
  if (!core::device_available(core::Device::cuda)) GTEST_SKIP() << "no CUDA device";
  const auto t = task("mixture_nuisance");
  TempDir dir;
  SetEstimator estimator(t, tiny_options());
  estimator.train();
  estimator.save(dir.path / "model.asbi");
  const auto cpu = load_set_posterior(dir.path / "model.asbi", t, core::Device::cpu);
  const auto gpu = load_set_posterior(dir.path / "model.asbi", t, core::Device::cuda);
  EXPECT_EQ(gpu->encoder().device(), core::Device::cuda);
  const Tensor set = set_observation(*t, 1, 5000).set;  // more than one aggregation chunk
  const std::vector<double> h_cpu = cpu->features(set), h_gpu = gpu->features(set);
  ASSERT_EQ(h_cpu.size(), h_gpu.size());
  for (std::size_t k = 0; k < h_cpu.size(); ++k)
    EXPECT_NEAR(h_gpu[k], h_cpu[k], 1e-5 * (1 + std::abs(h_cpu[k]))) << "feature " << k;
  const Tensor a = cpu->sample(500, set, 5), b = gpu->sample(500, set, 5);
  const std::vector<double> av = a.to_vector(), bv = b.to_vector();
  double mean_a = 0, mean_b = 0;
  for (std::size_t i = 0; i < av.size(); ++i) {
    mean_a += av[i] / static_cast<double>(av.size());
    mean_b += bv[i] / static_cast<double>(bv.size());
  }
  EXPECT_NEAR(mean_a, mean_b, 0.02);
}

TEST(SetEstimator, FineTunedHeadAndEndToEndModelsSaveAndLoad) {
  const auto t = task("gaussian_nuisance");
  TempDir dir;
  for (SetTraining training : {SetTraining::pairs, SetTraining::end_to_end}) {
    SetEstimatorOptions o = tiny_options(training);
    o.fine_tune_head = true;
    SetEstimator estimator(t, o);
    estimator.train();
    estimator.save(dir.path / "m.asbi");
    const Tensor set = set_observation(*t, 2, 12).set;
    EXPECT_EQ(estimator.posterior()->sample(100, set, 2).to_vector(),
              load_set_posterior(dir.path / "m.asbi", t)->sample(100, set, 2).to_vector());
  }
}

TEST(SetEstimator, FeaturesAreTheMeanEmbeddingAndLogN) {
  const auto t = task("gaussian_nuisance");
  SetEstimator estimator(t, tiny_options());
  estimator.train();
  const auto posterior = estimator.posterior();
  const Tensor set = set_observation(*t, 1, 30).set;
  const std::vector<double> h = posterior->features(set);
  ASSERT_EQ(h.size(), 9u);  // E = 8, then log N
  EXPECT_NEAR(h.back(), std::log(30.0), 1e-6);
  // Elements in another order: the same features (a mean).
  std::vector<double> reversed = set.to_vector();
  std::reverse(reversed.begin(), reversed.end());
  const std::vector<double> h2 = posterior->features(Tensor::from(reversed, {30, 1}, DType::f64));
  for (std::size_t j = 0; j < h.size(); ++j) EXPECT_NEAR(h[j], h2[j], 1e-5);
}

TEST(SetEstimator, BadOptionsAndObservationsAreClearErrors) {
  const auto t = task("gaussian_nuisance");
  SetEstimatorOptions o = tiny_options();
  o.min_set_size = 50;
  o.max_set_size = 10;
  expect_error_naming<core::ValueError>([&] { SetEstimator(t, o); },
                                        {"min_set_size", "max_set_size", "50", "10"});
  o = tiny_options();
  o.encoder.kind = SetEncoderKind::conv;  // 1 value per element is not a field of height 3
  o.encoder.field_height = 3;
  expect_error_naming<core::ValueError>([&] { SetEstimator(t, o); },
                                        {"conv", "gaussian_nuisance", "field_height 3"});
  o = tiny_options();
  o.head.method = Method::nle;
  expect_error_naming<core::ValueError>([&] { SetEstimator(t, o); }, {"npe", "nle"});
  expect_error_naming<core::StateError>([&] { SetEstimator(t, tiny_options()).posterior(); },
                                        {"train"});

  SetEstimator estimator(t, tiny_options());
  estimator.train();
  const auto posterior = estimator.posterior();
  expect_error_naming<core::ShapeError>(
      [&] { posterior->sample(10, Tensor::zeros({5, 2}, DType::f64), 1); }, {"1 columns", "[5, 2]"});
  expect_error_naming<core::ValueError>(
      [&] { posterior->sample(10, Tensor::zeros({0, 1}, DType::f64), 1); }, {"no elements"});
  expect_error_naming<core::ValueError>(
      [&] {
        posterior->sample(10, Tensor::from({1.0, NAN, 2.0, 0.5, 0.1}, {5, 1}, DType::f64), 1);
      },
      {"element 2", "data_1", "finite"});
  // The head knows sets of 5…40 elements only: no silent extrapolation on either side, and the
  // range survives a save and load.
  for (std::int64_t n : {4, 41})
    expect_error_naming<core::ValueError>(
        [&] { posterior->sample(10, Tensor::zeros({n, 1}, DType::f64), 1); },
        {std::to_string(n) + " elements", "5…40"});
  EXPECT_NO_THROW(posterior->sample(10, Tensor::zeros({40, 1}, DType::f64), 1));
  TempDir dir;
  estimator.save(dir.path / "m.asbi");
  expect_error_naming<core::ValueError>(
      [&] { load_set_posterior(dir.path / "m.asbi", t)->sample(10, Tensor::zeros({41, 1}, DType::f64), 1); },
      {"41 elements", "5…40"});
}

}  // namespace
}  // namespace asbi::sbi
