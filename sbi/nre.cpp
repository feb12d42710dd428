// Neural ratio estimation: a classifier d(θ, x) whose logit approximates the log ratio
// log r(θ, x) = log p(x | θ) − log p(x) (up to a constant for NRE-B), so that the posterior
// potential is logit(θ, x_o) + log p(θ), sampled by MCMC (sbi/potential_posterior.hpp).
//
// The classifier is sbi's build_resnet_classifier: θ and x z-scored with the training data's
// statistics (x optionally through an MLP embedding), concatenated [B, D + X], a ResidualNet
// (50 hidden, 2 blocks, relu) and one logit.
//
// Contrasting pairs follow sbi's _classifier_logits: for each x_i of a batch of B rows, the
// "atoms" are θ_i (the jointly drawn one, at position 0) and atoms − 1 distinct θ_j, j ≠ i,
// drawn uniformly from the rest of the batch, i.e. marginal pairs. The losses, per row i with
// l_ik = logit(θ_(atom k of i), x_i):
//
//   NRE-A (Hermans, Begy & Louppe 2020, AALR; sbi's SNRE_A): atoms = 2, binary cross-entropy
//     with label 1 for the joint pair and 0 for the marginal one:
//       L_i = ½ [softplus(−l_i0) + softplus(l_i1)].
//     At the optimum σ(l) = p(θ, x) / (p(θ, x) + p(θ) p(x)), so l = log r exactly.
//   NRE-B (Durkan, Murray & Papamakarios 2020; sbi's SNRE_B): atoms = num_atoms = K,
//     1-out-of-K cross-entropy of the joint atom:
//       L_i = logsumexp_k l_ik − l_i0.
//     The optimum is log r + c(x): the posterior potential is unaffected for a fixed x_o.
//   NRE-C (Miller, Weniger & Forré 2022, "Contrastive neural ratio estimation"; sbi's
//     SNRE_C): K = nre_c_classes, γ = nre_c_gamma. Two independent atom sets per row: K + 1
//     atoms whose joint one is dropped (K marginal logits m_ik) and K atoms with the joint one
//     first (joint logits j_ik). Class 0 ("all θ marginal") has prior weight p_0 = 1 / (1 + γ),
//     the K classes "θ_k is the joint one" share K p_K = γ / (1 + γ); with the unnormalised
//     class scores K (class 0) and γ e^{l_k},
//       log P_0 = log K − logsumexp(log γ + m_i1, …, log γ + m_iK, log K)
//       log P_1 = log γ + j_i0 − logsumexp(log γ + j_i0, …, log γ + j_i(K−1), log K)
//       L_i = −[p_0 log P_0 + K p_K log P_1].
//     Its optimum is l = log r exactly (no constant), for any γ and K.
//
// Randomness: the atoms of training step s come from Philox stream (train.seed, kTrainStream +
// s); validation batch v (counted from 0 in every validation pass) from (train.seed,
// kValidationStream + v), so that each validation pass scores the same contrasts and the
// early-stopping signal is not noise from fresh atoms. Runs are reproducible for a given seed
// and thread count.
#include <cmath>
#include <optional>
#include <utility>
#include <vector>

#include "autodiff/ops.hpp"
#include "autodiff/tape.hpp"
#include "core/error.hpp"
#include "nn/checkpoint.hpp"
#include "nn/layers.hpp"
#include "nn/standardize.hpp"
#include "sbi/methods.hpp"
#include "sbi/potential_posterior.hpp"

namespace asbi::sbi::detail {

namespace {

// Stream families of the contrast draws, far from the trainer's per-epoch shuffle streams.
constexpr std::uint64_t kTrainStream = std::uint64_t{0x4E5245} << 40;  // "NRE"
constexpr std::uint64_t kValidationStream = kTrainStream + (std::uint64_t{1} << 39);

// d(θ, x) → logit, sbi's build_resnet_classifier.
class RatioClassifier final : public nn::Module, public PotentialNetwork {
 public:
  RatioClassifier(std::int64_t theta_dim, std::int64_t x_dim, const EstimatorOptions& options,
                  std::optional<nn::Standardizer> theta_z, std::optional<nn::Standardizer> x_z)
      : theta_dim_(theta_dim), x_dim_(x_dim), theta_z_(std::move(theta_z)), x_z_(std::move(x_z)) {
    core::Rng rng(options.seed, /*stream=*/0);
    std::int64_t x_features = x_dim;
    if (options.embedding.features > 0) {
      embedding_ = &child("embedding", std::make_unique<nn::Mlp>(x_dim, options.embedding.hidden,
                                                                 options.embedding.features, rng));
      x_features = options.embedding.features;
    }
    net_ = &child("net", std::make_unique<nn::ResidualNet>(
                             theta_dim + x_features, /*out=*/1, options.classifier_hidden,
                             /*context_features=*/0, options.classifier_blocks,
                             nn::Activation::relu, /*dropout=*/0.0, rng));
    for (auto& [name, tensor] : buffers()) register_buffer(name, *tensor);
  }

  std::int64_t theta_dim() const override { return theta_dim_; }
  std::int64_t x_dim() const override { return x_dim_; }
  nn::Module& module() override { return *this; }

  // theta [B, D], x [B, X] → logits [B].
  ad::Var term(const ad::Var& theta, const ad::Var& x) const override {
    const ad::Var t = theta_z_ ? theta_z_->apply(theta) : theta;
    ad::Var e = x_z_ ? x_z_->apply(x) : x;
    if (embedding_) e = embedding_->forward(e);
    const ad::Var logits = net_->forward(ad::concat({t, e}, 1));
    return ad::reshape(logits, {logits.dim(0)});
  }

  // "theta/mean", "theta/std", "x/mean", "x/std" for the z-scorings in use.
  std::vector<std::pair<std::string, Tensor*>> buffers() {
    std::vector<std::pair<std::string, Tensor*>> out;
    if (theta_z_)
      for (auto& [name, t] : theta_z_->state()) out.emplace_back("theta/" + name, t);
    if (x_z_)
      for (auto& [name, t] : x_z_->state()) out.emplace_back("x/" + name, t);
    return out;
  }

 private:
  std::int64_t theta_dim_, x_dim_;
  std::optional<nn::Standardizer> theta_z_, x_z_;
  nn::Mlp* embedding_ = nullptr;
  nn::ResidualNet* net_ = nullptr;
};

class NreEstimator final : public Estimator {
 public:
  NreEstimator(std::shared_ptr<const Prior> prior, std::int64_t x_dim,
               const EstimatorOptions& options)
      : Estimator(std::move(prior), x_dim, options) {
    const char* who = name(options_.method);
    if (options_.classifier_hidden < 1 || options_.classifier_blocks < 0)
      throw core::ValueError(core::str(who, ": expected classifier_hidden >= 1 and "
                                       "classifier_blocks >= 0, got ", options_.classifier_hidden,
                                       " and ", options_.classifier_blocks));
    if (options_.method == Method::nre_b && options_.num_atoms < 2)
      throw core::ValueError(core::str(who, ": expected num_atoms >= 2 (the joint pair and at "
                                       "least one contrast), got ", options_.num_atoms));
    if (options_.method == Method::nre_c &&
        (options_.nre_c_classes < 1 || !(options_.nre_c_gamma > 0) ||
         !std::isfinite(options_.nre_c_gamma)))
      throw core::ValueError(core::str(who, ": expected nre_c_classes >= 1 and a finite "
                                       "nre_c_gamma > 0, got ", options_.nre_c_classes, " and ",
                                       options_.nre_c_gamma));
  }

  nn::TrainResult train() override {
    const Tensor theta = theta_data(), x = x_data();
    if (theta.dim(0) == 0)
      throw core::StateError(core::str(name(options_.method), ": train: no simulations yet; call "
                                       "append_simulations first"));
    if (!classifier_)
      classifier_ = build(
          options_.z_score_theta ? std::optional(nn::Standardizer::fit(theta)) : std::nullopt,
          options_.z_score_x ? std::optional(nn::Standardizer::fit(x)) : std::nullopt);
    nn::Trainer trainer(
        *classifier_, {theta, x},
        [this](std::span<const Tensor> batch) { return loss(batch[0], batch[1]); },
        options_.train);
    history_.push_back(trainer.train());
    return history_.back();
  }

  std::shared_ptr<Posterior> posterior() const override {
    if (!classifier_)
      throw core::StateError(core::str(name(options_.method), ": posterior: the classifier is not "
                                       "trained yet; call train() (or load_posterior) first"));
    return std::make_shared<PotentialPosterior>(prior_, classifier_, options_.mcmc,
                                                name(options_.method));
  }

  void restore_state(const nn::Checkpoint& checkpoint) override {
    classifier_ = build(options_.z_score_theta
                            ? std::optional(nn::Standardizer::identity(theta_dim()))
                            : std::nullopt,
                        options_.z_score_x ? std::optional(nn::Standardizer::identity(x_dim_))
                                           : std::nullopt);
    nn::restore_module(checkpoint, "model", *classifier_);
    nn::restore_tensors(checkpoint, "buffers", classifier_->buffers(), "ratio classifier");
  }

 protected:
  void add_state(nn::Checkpoint& checkpoint) const override {
    if (!classifier_)
      throw core::StateError(core::str(name(options_.method), ": save: nothing to save before "
                                       "train()"));
    nn::add_module(checkpoint, "model", *classifier_);
    nn::add_tensors(checkpoint, "buffers", classifier_->buffers());
  }

 private:
  std::shared_ptr<RatioClassifier> build(std::optional<nn::Standardizer> theta_z,
                                         std::optional<nn::Standardizer> x_z) const {
    // Built on the host (the same initial weights on every device), then moved.
    auto classifier = std::make_shared<RatioClassifier>(theta_dim(), x_dim_, options_,
                                                        std::move(theta_z), std::move(x_z));
    classifier->to(options_.device);
    return classifier;
  }

  // The Philox stream of this call's atoms (see the top of the file).
  core::Rng contrast_rng() {
    const bool training = ad::recording();
    std::uint64_t stream = 0;
    if (training) {
      stream = kTrainStream + train_steps_++;
    } else {
      if (last_call_trained_) validation_batch_ = 0;  // a new validation pass starts
      stream = kValidationStream + validation_batch_++;
    }
    last_call_trained_ = training;
    return core::Rng(options_.train.seed, stream);
  }

  // Logits [B, atoms] of the atoms of every row (atom 0: the joint pair), atoms ≤ B.
  ad::Var atom_logits(const Tensor& theta, const Tensor& x, std::int64_t atoms, core::Rng& rng) {
    const std::int64_t batch = theta.dim(0);
    const auto total = static_cast<std::size_t>(batch * atoms);
    theta_index_.resize(total);
    x_index_.resize(total);
    for (std::int64_t i = 0; i < batch; ++i) {
      std::int64_t* row = theta_index_.data() + i * atoms;
      row[0] = i;
      // atoms − 1 distinct j ≠ i, uniform without replacement (sbi: torch.multinomial over the
      // off-diagonal, replacement=False): rejection of repeats, cheap for atoms ≪ B.
      for (std::int64_t k = 1; k < atoms; ++k) {
        std::int64_t j = 0;
        bool repeated = true;
        while (repeated) {
          j = rng.uniform_int(batch - 1);
          if (j >= i) ++j;
          repeated = false;
          for (std::int64_t q = 1; q < k; ++q) repeated = repeated || row[q] == j;
        }
        row[k] = j;
      }
      for (std::int64_t k = 0; k < atoms; ++k) x_index_[static_cast<std::size_t>(i * atoms + k)] = i;
    }
    const ad::Var logits = classifier_->term(ad::gather_rows(theta, theta_index_),
                                             ad::gather_rows(x, x_index_));
    return ad::reshape(logits, {batch, atoms});
  }

  // Per-row losses [B] (see the top of the file).
  ad::Var loss(const Tensor& theta, const Tensor& x) {
    const std::int64_t batch = theta.dim(0);
    core::Rng rng = contrast_rng();
    if (batch < 2) {
      // One row has nothing to contrast with; only a validation remainder can be this small.
      if (ad::recording())
        throw core::ValueError(core::str(name(options_.method), ": expected training batches "
                                         "of at least 2 rows to contrast, got ", batch));
      return ad::Var(Tensor::zeros({batch}, theta.dtype(), theta.device()));
    }
    const auto column = [batch](const ad::Var& l, std::int64_t k) {
      return ad::reshape(ad::slice(l, 1, k, k + 1), {batch});
    };
    switch (options_.method) {
      case Method::nre_a: {
        const ad::Var l = atom_logits(theta, x, 2, rng);
        return 0.5 * (ad::softplus(-column(l, 0)) + ad::softplus(column(l, 1)));
      }
      case Method::nre_b: {
        const ad::Var l =
            atom_logits(theta, x, std::min<std::int64_t>(options_.num_atoms, batch), rng);
        return ad::logsumexp(l) - column(l, 0);
      }
      case Method::nre_c: {
        // K marginal atoms need K + 1 ≤ B rows; smaller (validation) batches use K = B − 1.
        const std::int64_t classes = std::min<std::int64_t>(options_.nre_c_classes, batch - 1);
        const double gamma = options_.nre_c_gamma;
        const double log_gamma = std::log(gamma), log_classes = std::log(double(classes));
        const ad::Var marginal =
            ad::slice(atom_logits(theta, x, classes + 1, rng), 1, 1, classes + 1);
        const ad::Var joint = atom_logits(theta, x, classes, rng);
        const ad::Var log_k_column(
            Tensor::full({batch, 1}, log_classes, theta.dtype(), theta.device()));
        const ad::Var log_p_marginal = ad::shift(
            -ad::logsumexp(ad::concat({marginal + log_gamma, log_k_column}, 1)), log_classes);
        const ad::Var log_p_joint =
            (column(joint, 0) + log_gamma) -
            ad::logsumexp(ad::concat({joint + log_gamma, log_k_column}, 1));
        const double p_marginal = 1.0 / (1.0 + gamma), p_joint = gamma / (1.0 + gamma);
        return -(p_marginal * log_p_marginal + p_joint * log_p_joint);
      }
      case Method::npe:
      case Method::nle: break;
    }
    throw core::ValueError("nre: not a ratio method");
  }

  std::shared_ptr<RatioClassifier> classifier_;
  std::vector<std::int64_t> theta_index_, x_index_;  // reused by every step
  std::uint64_t train_steps_ = 0;  // across train() calls: every step draws fresh atoms
  std::uint64_t validation_batch_ = 0;
  bool last_call_trained_ = true;
};

}  // namespace

std::unique_ptr<Estimator> make_nre(std::shared_ptr<const Prior> prior, std::int64_t x_dim,
                                    const EstimatorOptions& options) {
  return std::make_unique<NreEstimator>(std::move(prior), x_dim, options);
}

}  // namespace asbi::sbi::detail
