// The three stages of pair training and the end-to-end baseline (see sbi/set_estimator.hpp).
//
// Both trainings of a DeepSet with its head run the same loss over a dataset of padded sets:
//   rows      θ_b [T] (targets), the elements of set b padded to K rows [K · X], N_b [1]
//   features  h_b = [(1/N_b) Σ_{i < N_b} φ(x_bi), log N_b]        (nn::DeepSet)
//   loss_b    −log q(θ_b | h_b)                                     (NPE, Papamakarios & Murray)
// When every set of a batch is full (N_b = K: fixed-size end-to-end training) the batch is pooled
// densely; otherwise only the N_b real elements of each set are gathered and pooled as ragged
// sets, so padding costs memory in the dataset but no encoder work.
#include "sbi/set_estimator.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <utility>

#include "autodiff/ops.hpp"
#include "core/error.hpp"
#include "core/memory.hpp"
#include "nn/checkpoint.hpp"
#include "nn/conv.hpp"
#include "nn/layers.hpp"
#include "sbi/methods.hpp"
#include "sbi/options_json.hpp"

namespace asbi::sbi {

using ad::Var;
using core::str;
using detail::json;
using detail::read_field;
using detail::read_named;
using detail::section;

namespace {

using Clock = std::chrono::steady_clock;
constexpr int kConfigVersion = 1;
constexpr const char* kFormat = "asbi-set-estimator";

// Philox streams of this file ("SEST" in ASCII, then a purpose byte, then the stage): parameter
// draws, set sizes, encoder weights. Simulated elements use the task's own streams, keyed by set
// index under a seed that carries the stage in its top byte, so stage-1 and stage-2 sets are
// independent.
constexpr std::uint64_t kParameterStream = 0x5345'5354'0100'0000ull;
constexpr std::uint64_t kSizeStream = 0x5345'5354'0200'0000ull;
constexpr std::uint64_t kEncoderInitStream = 0x5345'5354'0300'0000ull;
enum Stage : std::uint64_t { kEncoderStage = 1, kHeadStage = 2 };

std::uint64_t simulation_seed(std::uint64_t seed, Stage stage) {
  return seed ^ (static_cast<std::uint64_t>(stage) << 56);
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Wall time and peak tensor memory of one stage: the host's, plus the device's when the stage
// runs on one.
class StageMeter {
 public:
  explicit StageMeter(core::Device device) : start_(Clock::now()), device_(device) {
    core::reset_peak_memory(core::Device::cpu);
    if (device_ != core::Device::cpu) core::reset_peak_memory(device_);
  }
  SetStageCost done() const {
    std::int64_t peak = core::memory_stats(core::Device::cpu).peak_bytes;
    if (device_ != core::Device::cpu) peak += core::memory_stats(device_).peak_bytes;
    return {seconds_since(start_), peak};
  }

 private:
  Clock::time_point start_;
  core::Device device_;
};

// The parameters of n sets (all of them, targets first) and their sizes: uniform in
// {lo, …, hi} (stage 1) or log-uniform in [lo, hi] (deployment sizes: as many sets near 10 as
// near 10 000 when the range spans decades).
struct SetDraws {
  Tensor theta;                     // [n, P] float64
  std::vector<std::int64_t> sizes;  // [n]
};

SetDraws draw_sets(const SetTask& task, std::int64_t n, std::int64_t lo, std::int64_t hi,
                   bool log_uniform, std::uint64_t seed, Stage stage) {
  core::Rng theta_rng(seed, kParameterStream + stage);
  core::Rng size_rng(seed, kSizeStream + stage);
  SetDraws draws{task.prior().sample(n, theta_rng, DType::f64), {}};
  draws.sizes.resize(static_cast<std::size_t>(n));
  for (auto& size : draws.sizes) {
    if (lo == hi) {
      size = lo;
    } else if (log_uniform) {
      const double u = size_rng.uniform();
      const double log_n = std::log(static_cast<double>(lo)) +
                           u * (std::log(static_cast<double>(hi) + 1.0) - std::log(static_cast<double>(lo)));
      size = std::clamp<std::int64_t>(static_cast<std::int64_t>(std::floor(std::exp(log_n))), lo, hi);
    } else {
      size = lo + static_cast<std::int64_t>(size_rng.uniform_int(static_cast<std::uint64_t>(hi - lo + 1)));
    }
  }
  return draws;
}

// The target columns of θ [n, P] → [n, T] float32.
Tensor target_columns(const Tensor& theta, std::int64_t targets) {
  const std::int64_t n = theta.dim(0), p = theta.dim(1);
  Tensor out = Tensor::empty({n, targets}, DType::f32);
  const double* src = theta.data<double>();
  float* dst = out.data<float>();
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t t = 0; t < targets; ++t) dst[i * targets + t] = static_cast<float>(src[i * p + t]);
  return out;
}

std::span<const double> row(const Tensor& theta, std::int64_t i) {
  const std::int64_t p = theta.dim(1);
  return {theta.data<double>() + i * p, static_cast<std::size_t>(p)};
}

// The elements of every set, padded with zeros to `width` rows: [n, width · X] float32. Sets are
// simulated in parallel; each depends only on (seed, its set id), so the thread count does not
// change the data.
Tensor simulate_padded_sets(const SetTask& task, const SetDraws& draws, std::int64_t width,
                            std::uint64_t seed, Stage stage) {
  const auto n = static_cast<std::int64_t>(draws.sizes.size());
  const std::int64_t x = task.element_dim();
  Tensor padded = Tensor::zeros({n, width * x}, DType::f32);
  float* data = padded.data<float>();
  std::exception_ptr error;
#pragma omp parallel for schedule(dynamic, 16)
  for (std::int64_t i = 0; i < n; ++i) {
    try {
      const std::int64_t size = draws.sizes[static_cast<std::size_t>(i)];
      task.sampler(row(draws.theta, i), simulation_seed(seed, stage), static_cast<std::uint64_t>(i))
          ->elements(0, size, {data + i * width * x, static_cast<std::size_t>(size * x)});
    } catch (...) {
#pragma omp critical(asbi_set_simulate_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
  return padded;
}

// The DeepSet and its head as one module, trained jointly (stage 1 or end to end).
class JointModel : public nn::Module {
 public:
  JointModel(std::unique_ptr<nn::DeepSet> encoder, std::unique_ptr<flows::ConditionalFlow> head)
      : encoder_(child("encoder", std::move(encoder))), head_(child("head", std::move(head))) {}
  nn::DeepSet& encoder() const { return encoder_; }
  flows::ConditionalFlow& head() const { return head_; }

  // −log q(θ_b | h(S_b)) for a batch: targets [B, T], padded sets [B, K · X], sizes [B, 1].
  Var loss(const Tensor& targets, const Tensor& padded, const Tensor& sizes) const {
    const std::int64_t b = targets.dim(0), x = encoder_.element_features();
    const std::int64_t k = padded.dim(1) / x;
    lengths_.resize(static_cast<std::size_t>(b));
    bool full = true;
    const Tensor host_sizes = sizes.to(core::Device::cpu);  // one copy off a device
    const float* n = host_sizes.data<float>();
    for (std::int64_t i = 0; i < b; ++i) {
      lengths_[static_cast<std::size_t>(i)] = static_cast<std::int64_t>(n[i]);
      full = full && lengths_[static_cast<std::size_t>(i)] == k;
    }
    Var features;
    if (full) {
      features = encoder_.forward(ad::reshape(Var(padded), {b, k, x}));
    } else {
      index_.clear();
      for (std::int64_t i = 0; i < b; ++i)
        for (std::int64_t e = 0; e < lengths_[static_cast<std::size_t>(i)]; ++e)
          index_.push_back(i * k + e);
      const Var elements = ad::gather_rows(ad::reshape(Var(padded), {b * k, x}), index_);
      features = encoder_.forward(elements, lengths_);
    }
    return ad::neg(head_.log_prob(Var(targets), features));
  }

 private:
  nn::DeepSet& encoder_;
  flows::ConditionalFlow& head_;
  // Buffers of the ragged path, reused every step.
  mutable std::vector<std::int64_t> lengths_, index_;
};

// A copy of a trained head in a fresh flow of the same configuration (what an NPE estimator
// adopts). With `theta` and `features` null it copies the z-scoring statistics too (the
// end-to-end head goes on seeing what it was trained on); otherwise it copies only the weights
// and fits the z-scoring to the new data. That is what fine-tuning on aggregated embeddings
// needs: stage 1's head ran on raw features (identity z-scoring) with log N in {0, log 2},
// while the mean embeddings of large sets spread far less than single elements do, so without
// re-fitted scales the head has to resolve a posterior of width ~1/√N in unscaled inputs (at
// N = 10 000 that costs C2ST 0.53 → 0.70 on gaussian_nuisance).
std::unique_ptr<flows::ConditionalFlow> copy_head(const flows::ConditionalFlow& trained,
                                                  std::int64_t targets, std::int64_t features,
                                                  const EstimatorOptions& options,
                                                  const Tensor* theta = nullptr,
                                                  const Tensor* feature_rows = nullptr) {
  nn::Checkpoint state;
  nn::add_module(state, "model", trained);
  auto copy = detail::build_npe_flow(targets, features, options, theta, feature_rows);
  nn::restore_module(state, "model", *copy);
  if (!theta && !feature_rows) {
    nn::add_tensors(state, "buffers", const_cast<flows::ConditionalFlow&>(trained).buffers());
    nn::restore_tensors(state, "buffers", copy->buffers(), "set head buffers");
  }
  return copy;
}

SetSizeRange trained_sizes(const SetEstimatorOptions& o) {
  return {.min = o.min_set_size, .max = o.max_set_size};
}

void check_set_options(const SetTask& task, const SetEstimatorOptions& o) {
  const auto fail = [](auto... parts) { throw core::ValueError(str("set estimator: ", parts...)); };
  if (o.min_set_size < 1 || o.max_set_size < o.min_set_size)
    fail("expected 1 <= min_set_size <= max_set_size, got ", o.min_set_size, " and ",
         o.max_set_size);
  if (o.encoder_max_set_size < 1)
    fail("expected encoder_max_set_size >= 1, got ", o.encoder_max_set_size);
  if (o.encoder_simulations < 10) fail("expected encoder_simulations >= 10, got ", o.encoder_simulations);
  if (o.training == SetTraining::pairs && o.head_simulations < 10)
    fail("expected head_simulations >= 10, got ", o.head_simulations);
  if (o.encoder.features < 1) fail("expected encoder.features >= 1, got ", o.encoder.features);
  if (o.head.method != Method::npe)
    fail("the head must be method npe, got ", name(o.head.method));
  if (o.head.embedding.features > 0)
    fail("the head takes the DeepSet's features directly; set head.embedding.features to 0");
  if (o.encoder.kind == SetEncoderKind::conv) {
    const std::int64_t x = task.element_dim();
    const std::int64_t h = o.encoder.field_height > 0
                               ? o.encoder.field_height
                               : static_cast<std::int64_t>(std::lround(std::sqrt(static_cast<double>(x))));
    if (h < 1 || x % h != 0 || (o.encoder.field_height == 0 && h * h != x))
      fail("a conv encoder needs elements that are fields of height x width values; task ",
           task.name(), " has ", x, " values per element",
           o.encoder.field_height > 0 ? str(", not a multiple of field_height ", h) : std::string(", not a square"));
    if (o.encoder.channels.empty()) fail("a conv encoder needs at least one entry in encoder.channels");
  }
}

}  // namespace

const char* name(SetTraining training) {
  return training == SetTraining::pairs ? "pairs" : "end_to_end";
}

SetTraining set_training_from_name(const std::string& name) {
  if (name == "pairs") return SetTraining::pairs;
  if (name == "end_to_end") return SetTraining::end_to_end;
  throw core::ValueError(str("unknown set training '", name, "'; expected pairs or end_to_end"));
}

const char* name(SetEncoderKind kind) { return kind == SetEncoderKind::mlp ? "mlp" : "conv"; }

SetEncoderKind set_encoder_from_name(const std::string& name) {
  if (name == "mlp") return SetEncoderKind::mlp;
  if (name == "conv") return SetEncoderKind::conv;
  throw core::ValueError(str("unknown set encoder '", name, "'; expected mlp or conv"));
}

double SetTrainReport::total_seconds() const {
  return simulate_encoder_sets.seconds + train_encoder.seconds + aggregate.seconds +
         train_head.seconds;
}

std::int64_t SetTrainReport::peak_bytes() const {
  return std::max({simulate_encoder_sets.peak_bytes, train_encoder.peak_bytes,
                   aggregate.peak_bytes, train_head.peak_bytes});
}

// ---------------------------------------------------------------------------------------------
// SetPosterior

SetPosterior::SetPosterior(std::shared_ptr<const nn::DeepSet> encoder,
                           std::shared_ptr<Posterior> head, nn::AggregateOptions aggregate,
                           SetSizeRange trained_sizes)
    : encoder_(std::move(encoder)),
      head_(std::move(head)),
      aggregate_(aggregate),
      trained_sizes_(trained_sizes) {
  if (!encoder_ || !head_) throw core::ValueError("set posterior: expected an encoder and a head");
  if (trained_sizes_.min < 1 || trained_sizes_.max < trained_sizes_.min)
    throw core::ValueError(str("set posterior: expected 1 <= min <= max trained set size, got ",
                               trained_sizes_.min, " and ", trained_sizes_.max));
  if (head_->x_dim() != encoder_->output_features())
    throw core::ShapeError(str("set posterior: the head takes ", head_->x_dim(),
                               " features but the encoder gives ", encoder_->output_features()));
}

std::vector<double> SetPosterior::features(const Tensor& set) const {
  const std::int64_t x = element_dim();
  if (set.rank() != 2 || set.dim(1) != x)
    throw core::ShapeError(str("set observation: expected one row per element with ", x,
                               " columns (data_1 … data_", x, "), got shape ", set.shape()));
  if (set.dim(0) < 1) throw core::ValueError("set observation: the set has no elements");
  if (set.dim(0) < trained_sizes_.min || set.dim(0) > trained_sizes_.max)
    throw core::ValueError(str("set observation: the set has ", set.dim(0),
                               " elements, but the head was trained on sets of ",
                               trained_sizes_.min, "…", trained_sizes_.max,
                               " elements; train with a set size range that covers it"));
  const Tensor values = set.to(DType::f32);
  const float* v = values.data<float>();
  for (std::int64_t i = 0; i < values.numel(); ++i)
    if (!std::isfinite(v[i]))
      throw core::ValueError(str("set observation: element ", i / x + 1, ", column data_",
                                 i % x + 1, " is ", v[i], "; expected a finite number"));
  const std::int64_t n = values.dim(0);
  const std::int64_t sizes[] = {n};
  const Tensor h = encoder_->aggregate(
      sizes,
      [&values](std::int64_t, std::int64_t begin, std::int64_t end, Tensor& out) {
        out.copy_from(values.rows(begin, end));
      },
      aggregate_);
  return h.to_vector();
}

Tensor SetPosterior::sample(std::int64_t n, const Tensor& set, std::uint64_t seed) const {
  return head_->sample(n, features(set), seed);
}

std::vector<double> SetPosterior::log_prob(const Tensor& theta, const Tensor& set) const {
  return head_->log_prob(theta, features(set));
}

// ---------------------------------------------------------------------------------------------
// SetEstimator

SetEstimator::SetEstimator(std::shared_ptr<const SetTask> task, SetEstimatorOptions options)
    : task_(std::move(task)), options_(std::move(options)) {
  if (!task_) throw core::ValueError("set estimator: expected a task, got null");
  check_set_options(*task_, options_);
  detail::check_device("set estimator (SetEstimatorOptions::device)", options_.device);
  options_.head.device = options_.device;
}

SetEstimator::~SetEstimator() = default;

std::unique_ptr<nn::DeepSet> SetEstimator::make_encoder() const {
  const SetEncoderOptions& e = options_.encoder;
  const std::int64_t x = task_->element_dim();
  core::Rng init(options_.seed, kEncoderInitStream);
  std::unique_ptr<nn::Layer> phi;
  if (e.kind == SetEncoderKind::mlp) {
    phi = std::make_unique<nn::Mlp>(x, e.hidden, e.features, init);
  } else {
    const std::int64_t h = e.field_height > 0
                               ? e.field_height
                               : static_cast<std::int64_t>(std::lround(std::sqrt(static_cast<double>(x))));
    phi = std::make_unique<nn::ConvEncoder>(h, x / h, e.channels, e.features, init);
  }
  // Built on the host (the same initial weights on every device), then moved.
  auto encoder = std::make_unique<nn::DeepSet>(std::move(phi), x, e.features);
  encoder->to(options_.device);
  return encoder;
}

SetTrainReport SetEstimator::train() {
  const SetEstimatorOptions& o = options_;
  const std::int64_t targets = task_->target_dim();
  const bool pairs = o.training == SetTraining::pairs;
  SetTrainReport report;

  // Stage 1 (or the whole end-to-end training): sets small (pairs) or at the deployment sizes.
  StageMeter simulate_meter(o.device);
  const std::int64_t lo = pairs ? 1 : o.min_set_size;
  const std::int64_t hi = pairs ? o.encoder_max_set_size : o.max_set_size;
  const SetDraws draws =
      draw_sets(*task_, o.encoder_simulations, lo, hi, /*log_uniform=*/!pairs, o.seed, kEncoderStage);
  const Tensor theta = target_columns(draws.theta, targets);
  const Tensor padded = simulate_padded_sets(*task_, draws, hi, o.seed, kEncoderStage);
  Tensor sizes = Tensor::empty({o.encoder_simulations, 1}, DType::f32);
  for (std::int64_t i = 0; i < o.encoder_simulations; ++i) {
    sizes.data<float>()[i] = static_cast<float>(draws.sizes[static_cast<std::size_t>(i)]);
    report.encoder_elements += draws.sizes[static_cast<std::size_t>(i)];
  }
  report.simulate_encoder_sets = simulate_meter.done();

  StageMeter encoder_meter(o.device);
  std::unique_ptr<nn::DeepSet> deepset = make_encoder();
  const std::int64_t features = deepset->output_features();
  auto joint = std::make_shared<JointModel>(
      std::move(deepset), detail::build_npe_flow(targets, features, o.head, &theta, nullptr));
  report.encoder = nn::train(
      *joint, {theta, padded, sizes},
      [&joint](std::span<const Tensor> batch) { return joint->loss(batch[0], batch[1], batch[2]); },
      o.encoder_train);
  // The encoder stays where it was trained (the joint model lives as long as the encoder).
  encoder_ = std::shared_ptr<nn::DeepSet>(joint, &joint->encoder());
  report.train_encoder = encoder_meter.done();

  if (!pairs) {
    head_ = detail::make_npe(task_->target_prior(), features, o.head,
                             copy_head(joint->head(), targets, features, o.head));
    return report;
  }

  // Stage 2: the frozen encoder aggregates sets at the deployment sizes, streaming.
  StageMeter aggregate_meter(o.device);
  const SetDraws deployment =
      draw_sets(*task_, o.head_simulations, o.min_set_size, o.max_set_size, true, o.seed, kHeadStage);
  for (std::int64_t size : deployment.sizes) report.head_elements += size;
  const SetTask& task = *task_;
  const std::uint64_t seed = o.seed;
  const Tensor aggregated = encoder_->aggregate(
      deployment.sizes,
      [&task, &deployment, seed](std::int64_t set, std::int64_t begin, std::int64_t end, Tensor& out) {
        task.sampler(row(deployment.theta, set), simulation_seed(seed, kHeadStage),
                     static_cast<std::uint64_t>(set))
            ->elements(begin, end, {out.data<float>(), static_cast<std::size_t>(out.numel())});
      },
      o.aggregate);
  report.aggregate = aggregate_meter.done();

  // Stage 3: the head alone, an ordinary NPE over the aggregated features: a fresh flow, or
  // stage 1's weights fine-tuned.
  StageMeter head_meter(o.device);
  const Tensor deployment_targets = target_columns(deployment.theta, targets);
  std::unique_ptr<flows::ConditionalFlow> trained_head;
  if (o.fine_tune_head) {
    const Tensor theta_rows = deployment_targets.to(detail::npe_flow_dtype(o.head));
    const Tensor feature_rows = aggregated.to(detail::npe_flow_dtype(o.head));
    trained_head =
        copy_head(joint->head(), targets, features, o.head, &theta_rows, &feature_rows);
  }
  head_ = detail::make_npe(task_->target_prior(), features, o.head, std::move(trained_head));
  head_->append_simulations(deployment_targets, aggregated);
  report.head = head_->train();
  report.train_head = head_meter.done();
  return report;
}

std::shared_ptr<SetPosterior> SetEstimator::posterior() const {
  if (!encoder_ || !head_)
    throw core::StateError("set estimator posterior: not trained; call train() or load a file");
  return std::make_shared<SetPosterior>(encoder_, head_->posterior(), options_.aggregate,
                                        trained_sizes(options_));
}

void SetEstimator::save(const std::filesystem::path& path) const {
  if (!encoder_ || !head_)
    throw core::StateError("set estimator save: not trained; call train() first");
  nn::Checkpoint head = head_->checkpoint();
  json config = json::parse(to_json(options_, *task_));
  config["head"] = json::parse(head.config);
  nn::Checkpoint checkpoint{.config = config.dump(2)};
  nn::add_module(checkpoint, "encoder", *encoder_);
  for (auto& [tensor_name, value] : head.tensors) checkpoint.add("head/" + tensor_name, value);
  nn::save_checkpoint(path, checkpoint);
}

// ---------------------------------------------------------------------------------------------
// Files

namespace {

json parse_config(const std::string& text, const std::string& source) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    throw core::IoError(str(source, ": the configuration is not valid JSON (", e.what(), ")"));
  }
  if (!j.is_object() || j.value("format", "") != kFormat)
    throw core::IoError(str(source, ": field 'format': expected \"", kFormat, "\""));
  const int version = j.value("version", 0);
  if (version != kConfigVersion)
    throw core::IoError(str(source, ": field 'version': expected ", kConfigVersion, ", got ", version));
  return j;
}

}  // namespace

std::string to_json(const SetEstimatorOptions& o, const SetTask& task) {
  json j;
  j["format"] = kFormat;
  j["version"] = kConfigVersion;
  j["task"] = task.name();
  j["parameter_dim"] = task.parameter_dim();
  j["target_dim"] = task.target_dim();
  j["element_dim"] = task.element_dim();
  j["training"] = name(o.training);
  j["encoder"] = {{"kind", name(o.encoder.kind)},
                  {"hidden", o.encoder.hidden},
                  {"channels", o.encoder.channels},
                  {"field_height", o.encoder.field_height},
                  {"features", o.encoder.features}};
  j["encoder_max_set_size"] = o.encoder_max_set_size;
  j["min_set_size"] = o.min_set_size;
  j["max_set_size"] = o.max_set_size;
  j["encoder_simulations"] = o.encoder_simulations;
  j["head_simulations"] = o.head_simulations;
  j["fine_tune_head"] = o.fine_tune_head;
  j["encoder_train"] = detail::train_options_json(o.encoder_train);
  j["aggregate"] = {{"chunk_elements", o.aggregate.chunk_elements}};
  j["seed"] = o.seed;
  j["head"] = json::parse(to_json(o.head, task.target_dim(), o.encoder.features + 1));
  return j.dump(2);
}

SetEstimatorOptions set_estimator_options_from_json(const std::string& text,
                                                    const std::string& source,
                                                    std::string* task_name) {
  const json j = parse_config(text, source);
  for (const char* required : {"task", "encoder", "head"})
    if (!j.contains(required)) throw core::IoError(str(source, ": field '", required, "' is missing"));
  SetEstimatorOptions o;
  if (task_name) read_field(j, "task", *task_name, source, "");
  if (j.contains("training")) o.training = read_named(j, "training", source, "", set_training_from_name);
  const json& e = section(j, "encoder");
  if (e.contains("kind")) o.encoder.kind = read_named(e, "kind", source, "encoder.", set_encoder_from_name);
  read_field(e, "hidden", o.encoder.hidden, source, "encoder.");
  read_field(e, "channels", o.encoder.channels, source, "encoder.");
  read_field(e, "field_height", o.encoder.field_height, source, "encoder.");
  read_field(e, "features", o.encoder.features, source, "encoder.");
  read_field(j, "encoder_max_set_size", o.encoder_max_set_size, source, "");
  read_field(j, "min_set_size", o.min_set_size, source, "");
  read_field(j, "max_set_size", o.max_set_size, source, "");
  read_field(j, "encoder_simulations", o.encoder_simulations, source, "");
  read_field(j, "head_simulations", o.head_simulations, source, "");
  read_field(j, "fine_tune_head", o.fine_tune_head, source, "");
  detail::read_train_options(section(j, "encoder_train"), o.encoder_train, source, "encoder_train.");
  read_field(section(j, "aggregate"), "chunk_elements", o.aggregate.chunk_elements, source, "aggregate.");
  read_field(j, "seed", o.seed, source, "");
  o.head = estimator_options_from_json(j.at("head").dump(), source + " (field 'head')");
  return o;
}

bool is_set_estimator_file(const std::filesystem::path& path) {
  const nn::Checkpoint checkpoint = nn::load_checkpoint(path);
  try {
    return json::parse(checkpoint.config).value("format", "") == kFormat;
  } catch (const json::exception&) {
    return false;
  }
}

SetEstimatorOptions load_set_estimator_options(const std::filesystem::path& path,
                                               std::string* task_name) {
  return set_estimator_options_from_json(nn::load_checkpoint(path).config, path.string(), task_name);
}

std::shared_ptr<SetPosterior> load_set_posterior(const std::filesystem::path& path,
                                                 std::shared_ptr<const SetTask> task,
                                                 core::Device device) {
  if (!task) throw core::ValueError("load_set_posterior: expected a task, got null");
  const nn::Checkpoint checkpoint = nn::load_checkpoint(path);
  const std::string source = path.string();
  std::string task_name;
  SetEstimatorOptions options = set_estimator_options_from_json(checkpoint.config, source, &task_name);
  if (task_name != task->name())
    throw core::IoError(str(source, ": field 'task' is \"", task_name, "\" but the task given is \"",
                            task->name(), "\""));
  const json j = parse_config(checkpoint.config, source);
  for (const auto& [field, expected] : {std::pair{"target_dim", task->target_dim()},
                                        std::pair{"element_dim", task->element_dim()}}) {
    std::int64_t stored = 0;
    read_field(j, field, stored, source, "");
    if (stored != expected)
      throw core::IoError(str(source, ": field '", field, "' is ", stored, " but task ",
                              task->name(), " has ", expected));
  }
  options.device = device;
  SetEstimator estimator(task, options);
  std::shared_ptr<nn::DeepSet> encoder = estimator.make_encoder();
  nn::restore_module(checkpoint, "encoder", *encoder);
  nn::Checkpoint head{.config = j.at("head").dump(), .source = source + " (head)"};
  for (const auto& [tensor_name, value] : checkpoint.tensors)
    if (tensor_name.rfind("head/", 0) == 0) head.add(tensor_name.substr(5), value);
  std::shared_ptr<Estimator> head_estimator =
      make_estimator(task->target_prior(), encoder->output_features(), estimator.options().head);
  head_estimator->restore_state(head);
  return std::make_shared<SetPosterior>(encoder, head_estimator->posterior(), options.aggregate,
                                        trained_sizes(options));
}

}  // namespace asbi::sbi
