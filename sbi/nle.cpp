// Neural likelihood estimation (NLE; Papamakarios, Sterratt & Murray 2019, "Sequential neural
// likelihood"): a conditional flow q(x | θ) fitted by maximum likelihood on the simulations,
//
//   L = -(1/N) Σ_i log q(x_i | θ_i),
//
// and the posterior potential log q(x_o | θ) + log p(θ), sampled by MCMC. As in sbi's SNLE, the
// loss is the same in every round: q(x | θ) is a conditional density, so rows drawn from any
// proposal over θ are valid training data (the proposal only changes where in θ it is accurate).
// Defaults follow sbi's likelihood_nn: MAF (5 transforms, 50 hidden, tanh), x z-scored as the
// flow's first transform, θ z-scored before the conditioners.
#include <optional>
#include <utility>

#include "autodiff/ops.hpp"
#include "core/error.hpp"
#include "flows/flow_io.hpp"
#include "nn/checkpoint.hpp"
#include "sbi/methods.hpp"
#include "sbi/potential_posterior.hpp"

namespace asbi::sbi::detail {

namespace {

// The network term log q(x | θ): the flow's target is x, its context θ.
class LikelihoodFlow final : public PotentialNetwork {
 public:
  LikelihoodFlow(std::unique_ptr<flows::ConditionalFlow> flow, std::int64_t theta_dim)
      : flow_(std::move(flow)), theta_dim_(theta_dim) {}
  std::int64_t theta_dim() const override { return theta_dim_; }
  std::int64_t x_dim() const override { return flow_->features(); }
  ad::Var term(const ad::Var& theta, const ad::Var& x) const override {
    return flow_->log_prob(x, theta);
  }
  nn::Module& module() override { return *flow_; }
  flows::ConditionalFlow& flow() { return *flow_; }

 private:
  std::unique_ptr<flows::ConditionalFlow> flow_;
  std::int64_t theta_dim_;
};

class NleEstimator final : public Estimator {
 public:
  NleEstimator(std::shared_ptr<const Prior> prior, std::int64_t x_dim,
               const EstimatorOptions& options)
      : Estimator(std::move(prior), x_dim, options) {
    if (options_.embedding.features > 0)
      throw core::ValueError(core::str("nle: embedding.features is ", options_.embedding.features,
                                       "; expected 0: x is the flow's target, not its context, so "
                                       "there is nothing to embed"));
  }

  nn::TrainResult train() override {
    const Tensor theta = theta_data(), x = x_data();
    if (theta.dim(0) == 0)
      throw core::StateError("nle: train: no simulations yet; call append_simulations first");
    if (!network_)
      network_ = build(options_.z_score_x ? std::optional(nn::Standardizer::fit(x)) : std::nullopt,
                       options_.z_score_theta ? std::optional(nn::Standardizer::fit(theta))
                                              : std::nullopt);
    flows::ConditionalFlow& flow = network_->flow();
    nn::Trainer trainer(
        flow, {x, theta},
        [&flow](std::span<const Tensor> batch) { return ad::neg(flow.log_prob(batch[0], batch[1])); },
        options_.train);
    history_.push_back(trainer.train());
    return history_.back();
  }

  std::shared_ptr<Posterior> posterior() const override {
    if (!network_)
      throw core::StateError("nle: posterior: the likelihood flow is not trained yet; call "
                             "train() (or load_posterior) first");
    return std::make_shared<PotentialPosterior>(prior_, network_, options_.mcmc, "nle");
  }

  void restore_state(const nn::Checkpoint& checkpoint) override {
    // Statistics of the right shapes, overwritten by the stored ones below.
    network_ = build(options_.z_score_x ? std::optional(nn::Standardizer::identity(x_dim_))
                                        : std::nullopt,
                     options_.z_score_theta ? std::optional(nn::Standardizer::identity(theta_dim()))
                                            : std::nullopt);
    nn::restore_module(checkpoint, "model", network_->flow());
    nn::restore_tensors(checkpoint, "buffers", network_->flow().buffers(), "nle flow");
  }

 protected:
  void add_state(nn::Checkpoint& checkpoint) const override {
    if (!network_)
      throw core::StateError("nle: save: nothing to save before train()");
    nn::add_module(checkpoint, "model", network_->flow());
    nn::add_tensors(checkpoint, "buffers", network_->flow().buffers());
  }

 private:
  std::shared_ptr<LikelihoodFlow> build(std::optional<nn::Standardizer> x_z,
                                        std::optional<nn::Standardizer> theta_z) const {
    const flows::FlowSpec spec{.kind = options_.flow.value_or(flows::FlowKind::maf),
                               .features = x_dim_,
                               .context_features = theta_dim(),
                               .nsf = options_.nsf,
                               .maf = options_.maf,
                               .standardize_target = x_z.has_value(),
                               .standardize_context = theta_z.has_value(),
                               .seed = options_.seed};
    flows::FlowInputs inputs{.target = std::move(x_z), .context = std::move(theta_z),
                             .embedding = nullptr};
    // Built on the host (the same initial weights on every device), then moved.
    std::unique_ptr<flows::ConditionalFlow> flow = flows::build_flow(spec, std::move(inputs));
    flow->to(options_.device);
    return std::make_shared<LikelihoodFlow>(std::move(flow), theta_dim());
  }

  std::shared_ptr<LikelihoodFlow> network_;
};

}  // namespace

std::unique_ptr<Estimator> make_nle(std::shared_ptr<const Prior> prior, std::int64_t x_dim,
                                    const EstimatorOptions& options) {
  return std::make_unique<NleEstimator>(std::move(prior), x_dim, options);
}

}  // namespace asbi::sbi::detail
