// Neural posterior estimation: a conditional flow q(θ | x) trained on simulations (θ_i, x_i),
// evaluated directly at an observation x_o (Papamakarios & Murray 2016; Greenberg et al. 2019).
//
// Training (NpeEstimator::train):
//   round 0 only   loss_i = −log q(θ_i | x_i): with θ_i ~ p(θ), the minimiser of the expected loss
//                  is the posterior p(θ | x) (standard NPE).
//   any round > 0  SNPE-C / APT's atomic loss on every row (Greenberg et al. 2019, sec. 3.2, as
//                  sbi's SNPE_C._loss_atomic): for x_i, a set of A atoms Θ_i = {θ_i} ∪ (A − 1
//                  other θ of the batch, without θ_i, drawn uniformly without replacement), and
//                    logit_j = log q(θ_j | x_i) − log p(θ_j),     θ_j ∈ Θ_i,
//                    loss_i  = −(logit_{θ_i} − logsumexp_j logit_j),
//                  i.e. −log q̃(θ_i | x_i) with the proposal posterior q̃ normalised over the atoms
//                  (their eq. 5 with a uniform proposal over the atoms). Whatever proposal drew
//                  the θ, q then converges to the posterior, so no importance weights are needed.
//                  The atoms come from a Philox stream keyed by (seed, train() call, epoch), so a
//                  run is reproducible step for step.
//
// Posterior (NpePosterior): samples of q(θ | x_o) outside the prior's support are rejected
// (leakage: a flow on ℝ^D puts some mass outside a bounded prior), so the samples follow
// q(θ | x_o) 1[θ ∈ supp p] / Z with Z = P_q(θ ∈ supp p | x_o), the acceptance. log_prob returns
// log q(θ | x_o) − log Z (sbi's leakage correction; −inf outside the support), Z estimated once
// per observation from 10 000 draws with a fixed seed. For a prior with unbounded support every
// draw is inside and Z = 1 exactly, so the correction vanishes without a special case.
//
// Shapes: B batch, A atoms, D θ-dimension, X x-dimension.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "autodiff/ops.hpp"
#include "autodiff/tape.hpp"
#include "core/error.hpp"
#include "nn/checkpoint.hpp"
#include "nn/layers.hpp"
#include "nn/standardize.hpp"
#include "sbi/methods.hpp"

namespace asbi::sbi::detail {

flows::FlowKind npe_flow_kind(const EstimatorOptions& options) {
  return options.flow.value_or(flows::FlowKind::nsf);
}

DType npe_flow_dtype(const EstimatorOptions& options) {
  return npe_flow_kind(options) == flows::FlowKind::nsf ? options.nsf.dtype : options.maf.dtype;
}

// The flow, its initial weights from Rng(seed, stream 0): the embedding's first (when any), then
// the flow's. z-scoring statistics from theta and x (sbi's z_score "independent"), or identity
// statistics, overwritten by a restore, when they are null.
std::unique_ptr<flows::ConditionalFlow> build_npe_flow(std::int64_t theta_dim, std::int64_t x_dim,
                                                       const EstimatorOptions& options,
                                                       const Tensor* theta, const Tensor* x) {
  const DType dtype = npe_flow_dtype(options);
  core::Rng init(options.seed, 0);
  flows::FlowInputs inputs;
  if (options.z_score_theta)
    inputs.target = theta ? nn::Standardizer::fit(theta->to(core::Device::cpu))
                          : nn::Standardizer::identity(theta_dim, dtype);
  if (options.z_score_x)
    inputs.context = x ? nn::Standardizer::fit(x->to(core::Device::cpu))
                       : nn::Standardizer::identity(x_dim, dtype);
  if (options.embedding.features > 0)
    inputs.embedding =
        std::make_unique<nn::Mlp>(x_dim, options.embedding.hidden, options.embedding.features,
                                  init, nn::Activation::relu, dtype);
  // Built on the host (the weights drawn there, so every device starts from the same ones), then
  // moved.
  std::unique_ptr<flows::ConditionalFlow> flow =
      npe_flow_kind(options) == flows::FlowKind::nsf
          ? flows::nsf(theta_dim, x_dim, init, options.nsf, std::move(inputs))
          : flows::maf(theta_dim, x_dim, init, options.maf, std::move(inputs));
  flow->to(options.device);
  return flow;
}
namespace {

using ad::Var;
using core::str;
using Clock = std::chrono::steady_clock;

// Philox streams of this file, far from the small ids priors and simulators take ("NPE" in
// ASCII, then a purpose byte): the atoms of the atomic loss (one stream per train() call and
// epoch), the posterior's draws, the draws that estimate the acceptance.
constexpr std::uint64_t kAtomStream = 0x4E50'4501'0000'0000ull;
constexpr std::uint64_t kSampleStream = 0x4E50'4502'0000'0000ull;
constexpr std::uint64_t kAcceptanceStream = 0x4E50'4503'0000'0000ull;

std::uint64_t atom_stream(std::size_t train_call, int epoch) {
  return kAtomStream + (static_cast<std::uint64_t>(train_call) << 24) +
         static_cast<std::uint64_t>(epoch);
}

// Rows per flow pass when sampling or scoring: bounds the arena (every temporary of a pass lives
// until its chunk is done) while keeping the matrix products large.
constexpr std::int64_t kChunkRows = 8192;
// Draws that estimate the acceptance Z for log_prob's normalisation (sbi: 10 000).
constexpr std::int64_t kAcceptanceDraws = 10'000;
// sample() gives up when fewer than this fraction of at least kHopelessAfter draws fell inside
// the support: the flow has then learnt (almost) nothing about where the prior lives.
constexpr double kHopelessAcceptance = 1e-4;
constexpr std::int64_t kHopelessAfter = 100'000;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// The network, shared by the estimator and every posterior it hands out (later training changes
// what those posteriors see). `version` changes with every train() and restore, so cached
// acceptances are recomputed for the new weights.
struct NpeModel {
  std::unique_ptr<flows::ConditionalFlow> flow;
  DType dtype = DType::f32;
  core::Device device = core::Device::cpu;  // the flow's
  std::uint64_t version = 0;
};

class NpePosterior : public Posterior {
 public:
  NpePosterior(std::shared_ptr<NpeModel> model, std::shared_ptr<const Prior> prior,
               std::int64_t x_dim, std::uint64_t seed)
      : model_(std::move(model)), prior_(std::move(prior)), x_dim_(x_dim), seed_(seed) {}

  std::int64_t theta_dim() const override { return prior_->dim(); }
  std::int64_t x_dim() const override { return x_dim_; }
  bool normalized() const override { return true; }
  McmcResult last_sampling() const override { return last_; }

  Tensor sample(std::int64_t n, std::span<const double> x_o, std::uint64_t seed) const override {
    check_observation("npe posterior sample", x_o, x_dim_);
    if (n < 0) throw core::ValueError(str("npe posterior sample: expected n >= 0, got ", n));
    const Clock::time_point t0 = Clock::now();
    core::Rng rng(seed, kSampleStream);
    std::int64_t drawn = 0;
    std::int64_t inside = 0;
    Tensor out = draw_in_support(n, x_o, rng, drawn, inside);
    last_ = McmcResult{};
    last_.samples = out;
    last_.acceptance_rate = drawn ? static_cast<double>(inside) / drawn : 1.0;
    last_.evaluations = drawn;
    last_.seconds = seconds_since(t0);
    return out;
  }

  std::vector<double> log_prob(const Tensor& theta, std::span<const double> x_o) const override {
    check_observation("npe posterior log_prob", x_o, x_dim_);
    const std::int64_t d = theta_dim();
    if (theta.rank() != 2 || theta.dim(1) != d)
      throw core::ShapeError(
          str("npe posterior log_prob: expected theta of shape [n, ", d, "], got ", theta.shape()));
    const std::int64_t n = theta.dim(0);
    std::vector<double> out(static_cast<std::size_t>(n));
    if (n == 0) return out;
    const std::vector<double> prior_lp = prior_->log_prob(theta);
    const double log_z = std::log(acceptance(x_o));
    const Tensor context = observation(x_o);
    const Tensor theta_f = theta.to(model_->dtype).to(model_->device);
    ad::NoGrad no_grad;
    core::ArenaScope scope;
    for (std::int64_t begin = 0; begin < n; begin += kChunkRows) {
      const std::int64_t end = std::min(n, begin + kChunkRows);
      const Var lp = model_->flow->log_prob(Var(theta_f.rows(begin, end)), Var(context));
      const std::vector<double> v = lp.value().to_vector();
      for (std::int64_t i = begin; i < end; ++i) {
        const auto k = static_cast<std::size_t>(i);
        out[k] = std::isinf(prior_lp[k]) && prior_lp[k] < 0
                     ? -std::numeric_limits<double>::infinity()
                     : v[static_cast<std::size_t>(i - begin)] - log_z;
      }
      scope.rewind();
    }
    return out;
  }

  // Z = P_q(θ ∈ supp p | x_o) from kAcceptanceDraws draws with a fixed seed, cached per x_o and
  // weights.
  double acceptance(std::span<const double> x_o) const {
    std::vector<double> key(x_o.begin(), x_o.end());
    auto it = acceptance_.find(key);
    if (it != acceptance_.end() && it->second.first == model_->version) return it->second.second;
    core::Rng rng(seed_, kAcceptanceStream);
    std::int64_t accepted = 0;
    const Tensor context = observation(x_o);
    for (std::int64_t begin = 0; begin < kAcceptanceDraws; begin += kChunkRows) {
      const std::int64_t rows = std::min(kChunkRows, kAcceptanceDraws - begin);
      const Tensor draws = model_->flow->sample(rows, context, rng).to(core::Device::cpu);
      for (bool inside : prior_->in_support(draws)) accepted += inside;
    }
    if (accepted == 0)
      throw core::ValueError(str("npe posterior log_prob: none of ", kAcceptanceDraws,
                                 " draws of q(theta | x_o) fell inside the prior's support, so "
                                 "the leakage correction -log(acceptance) is infinite; train "
                                 "longer or on more simulations"));
    const double z = static_cast<double>(accepted) / kAcceptanceDraws;
    acceptance_[std::move(key)] = {model_->version, z};
    return z;
  }

 private:
  // x_o as the flow's context [1, X], on its device.
  Tensor observation(std::span<const double> x_o) const {
    return Tensor::from(x_o, {1, x_dim_}, model_->dtype).to(model_->device);
  }

  // n draws of q(θ | x_o) inside the prior's support [n, D] float64; `drawn` counts the
  // proposals, `inside` those inside the support (the last chunk's surplus included). Chunks of
  // at most kChunkRows, each sized by the acceptance seen so far.
  Tensor draw_in_support(std::int64_t n, std::span<const double> x_o, core::Rng& rng,
                         std::int64_t& drawn, std::int64_t& inside) const {
    const std::int64_t d = theta_dim();
    Tensor out = Tensor::empty({n, d}, DType::f64);
    double* dst = n > 0 ? out.data<double>() : nullptr;
    const Tensor context = observation(x_o);
    std::int64_t accepted = 0;
    while (accepted < n) {
      const double rate = drawn ? std::max(static_cast<double>(accepted) / drawn, 1e-3) : 1.0;
      const auto wanted = static_cast<std::int64_t>(std::ceil((n - accepted) / rate * 1.05));
      const std::int64_t rows = std::clamp<std::int64_t>(wanted, 64, kChunkRows);
      const Tensor draws =
          model_->flow->sample(rows, context, rng).to(core::Device::cpu).to(DType::f64);
      const std::vector<bool> in_support = prior_->in_support(draws);
      const double* src = draws.data<double>();
      for (std::int64_t i = 0; i < rows; ++i) {
        if (!in_support[static_cast<std::size_t>(i)]) continue;
        ++inside;
        if (accepted < n) std::copy_n(src + i * d, d, dst + (accepted++) * d);
      }
      drawn += rows;
      if (drawn >= kHopelessAfter && inside < kHopelessAcceptance * drawn)
        throw core::ValueError(
            str("npe posterior sample: only ", inside, " of ", drawn,
                " draws of q(theta | x_o) fell inside the prior's support (acceptance rate ",
                static_cast<double>(inside) / drawn, ", expected at least ", kHopelessAcceptance,
                "); the estimator puts almost all its mass outside the prior: train longer or on "
                "more simulations, or check that x_o resembles the simulations"));
    }
    return out;
  }

  std::shared_ptr<NpeModel> model_;
  std::shared_ptr<const Prior> prior_;
  std::int64_t x_dim_;
  std::uint64_t seed_;  // the acceptance draws
  // Not thread-safe: one call at a time per posterior object.
  mutable McmcResult last_;
  mutable std::map<std::vector<double>, std::pair<std::uint64_t, double>> acceptance_;
};

class NpeEstimator : public Estimator {
 public:
  NpeEstimator(std::shared_ptr<const Prior> prior, std::int64_t x_dim,
               const EstimatorOptions& options)
      : Estimator(std::move(prior), x_dim, options), model_(std::make_shared<NpeModel>()) {
    if (options_.num_atoms < 2)
      throw core::ValueError(
          str("npe: expected num_atoms >= 2 (the true θ and at least one "
              "contrasting atom), got ",
              options_.num_atoms));
    if (options_.embedding.features < 0)
      throw core::ValueError(
          str("npe: expected embedding.features >= 0, got ", options_.embedding.features));
    for (std::int64_t h : options_.embedding.hidden)
      if (h < 1)
        throw core::ValueError(str("npe: expected every embedding.hidden width >= 1, got ", h));
    if (options_.embedding.features == 0 && !options_.embedding.hidden.empty())
      throw core::ValueError(
          "npe: embedding.hidden is set but embedding.features is 0 (no "
          "embedding); set embedding.features > 0");
    model_->dtype = npe_flow_dtype(options_);
    model_->device = options_.device;
  }

  // Adopts a flow built by build_npe_flow for the same options (and trained elsewhere).
  void adopt(std::unique_ptr<flows::ConditionalFlow> flow) {
    flow->to(model_->device);
    model_->flow = std::move(flow);
    ++model_->version;
  }

  nn::TrainResult train() override {
    if (simulations() == 0)
      throw core::StateError("npe train: no simulations; call append_simulations first");
    const Tensor theta = theta_data().to(model_->dtype);
    const Tensor x = x_data().to(model_->dtype);
    if (!model_->flow) model_->flow = build_npe_flow(theta_dim(), x_dim_, options_, &theta, &x);
    const std::vector<int>& rounds = row_rounds();
    const bool atomic = std::any_of(rounds.begin(), rounds.end(), [](int r) { return r > 0; });

    nn::TrainOptions train_options = options_.train;
    nn::TrainResult result;
    if (!atomic) {
      const flows::ConditionalFlow& flow = *model_->flow;
      result = nn::train(
          *model_->flow, {theta, x},
          [&flow](std::span<const Tensor> batch) {
            return ad::neg(flow.log_prob(batch[0], batch[1]));  // −log q(θ_i | x_i)
          },
          train_options);
    } else {
      // log p(θ) of every row, a constant of the loss, gathered with the batch by the trainer.
      const std::vector<double> prior_lp = prior_->log_prob(theta);
      for (std::size_t i = 0; i < prior_lp.size(); ++i)
        if (!std::isfinite(prior_lp[i]))
          throw core::ValueError(str("npe train: theta row ", i, " has prior log density ",
                                     prior_lp[i],
                                     "; SNPE-C's atomic loss needs every simulated "
                                     "theta inside the prior's support"));
      const Tensor lp = Tensor::from(prior_lp, {theta.dim(0), 1}, model_->dtype);
      const std::size_t call = history_.size();
      auto atoms = std::make_shared<core::Rng>(options_.seed, atom_stream(call, 0));
      train_options.on_epoch = [atoms, call, seed = options_.seed,
                                user = options_.train.on_epoch](const nn::EpochInfo& info) {
        *atoms = core::Rng(seed, atom_stream(call, info.epoch));  // the next epoch's atoms
        return user ? user(info) : true;
      };
      result = nn::train(
          *model_->flow, {theta, x, lp},
          [this, atoms](std::span<const Tensor> batch) {
            return atomic_loss(batch[0], batch[1], batch[2], *atoms);
          },
          train_options);
    }
    ++model_->version;
    history_.push_back(result);
    return result;
  }

  std::shared_ptr<Posterior> posterior() const override {
    if (!model_->flow)
      throw core::StateError(
          "npe posterior: the estimator has no network yet; call train() "
          "or load a saved estimator first");
    return std::make_shared<NpePosterior>(model_, prior_, x_dim_, options_.seed);
  }

  // A fresh network of the configured shape, then the checkpoint's weights and z-scoring
  // statistics; the current network is replaced only once everything matched.
  void restore_state(const nn::Checkpoint& checkpoint) override {
    std::unique_ptr<flows::ConditionalFlow> flow =
        build_npe_flow(theta_dim(), x_dim_, options_, nullptr, nullptr);
    nn::restore_module(checkpoint, "model", *flow);
    nn::restore_tensors(checkpoint, "buffers", flow->buffers(), "npe flow buffers");
    model_->flow = std::move(flow);
    ++model_->version;
  }

 protected:
  void add_state(nn::Checkpoint& checkpoint) const override {
    if (!model_->flow)
      throw core::StateError("npe save: the estimator has no network yet; call train() first");
    nn::add_module(checkpoint, "model", *model_->flow);
    nn::add_tensors(checkpoint, "buffers", model_->flow->buffers());
  }

 private:
  // SNPE-C's atomic loss (see the top of this file) for a batch θ [B, D], x [B, X], log p(θ)
  // [B, 1] → [B]. Row i·A of the atom set is θ_i itself, rows i·A + 1 … i·A + A − 1 the
  // contrasting atoms; all A rows are scored against x_i.
  Var atomic_loss(const Tensor& theta, const Tensor& x, const Tensor& prior_lp,
                  core::Rng& rng) const {
    const std::int64_t b = theta.dim(0);
    // sbi clamps the atoms to the batch (a short validation chunk).
    const std::int64_t a = std::min<std::int64_t>(options_.num_atoms, b);
    if (a < 2) return ad::scale(ad::reshape(Var(prior_lp), {b}), 0.0);  // one row: log 1 = 0
    atom_index_.resize(static_cast<std::size_t>(b * a));
    context_index_.resize(static_cast<std::size_t>(b * a));
    for (std::int64_t i = 0; i < b; ++i) {
      std::int64_t* row = atom_index_.data() + i * a;
      row[0] = i;
      // A − 1 distinct indices of the batch other than i: draws from [0, B − 1) shifted past i,
      // redrawn on a repeat (A ≪ B in practice, so repeats are rare).
      for (std::int64_t k = 1; k < a;) {
        std::int64_t j = rng.uniform_int(b - 1);
        if (j >= i) ++j;
        if (std::find(row + 1, row + k, j) == row + k) row[k++] = j;
      }
      std::fill_n(context_index_.data() + i * a, a, i);
    }
    const Var atoms = ad::gather_rows(Var(theta), atom_index_);    // [B·A, D]
    const Var contexts = ad::gather_rows(Var(x), context_index_);  // [B·A, X]
    const Var log_prior = ad::reshape(ad::gather_rows(Var(prior_lp), atom_index_), {b * a});
    const Var logits =
        ad::reshape(ad::sub(model_->flow->log_prob(atoms, contexts), log_prior), {b, a});
    const Var truth = ad::reshape(ad::slice(logits, 1, 0, 1), {b});
    return ad::sub(ad::logsumexp(logits), truth);  // −(logit_true − logsumexp logits)
  }

  std::shared_ptr<NpeModel> model_;
  // Index buffers of the atomic loss, reused every step.
  mutable std::vector<std::int64_t> atom_index_, context_index_;
};

}  // namespace

std::unique_ptr<Estimator> make_npe(std::shared_ptr<const Prior> prior, std::int64_t x_dim,
                                    const EstimatorOptions& options,
                                    std::unique_ptr<flows::ConditionalFlow> trained_flow) {
  auto estimator = std::make_unique<NpeEstimator>(std::move(prior), x_dim, options);
  if (trained_flow) estimator->adopt(std::move(trained_flow));
  return estimator;
}

}  // namespace asbi::sbi::detail
