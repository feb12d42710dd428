#include "flows/flow.hpp"

#include "autodiff/ops.hpp"
#include "autodiff/tape.hpp"

namespace asbi::flows {
namespace {

using core::ShapeError;
using core::str;
using core::ValueError;

// One row of `x` repeated `rows` times (a context shared by a batch).
Var repeat_row(const Var& x, std::int64_t rows) {
  if (x.dim(0) == rows) return x;
  return ad::gather_rows(x, std::vector<std::int64_t>(static_cast<std::size_t>(rows), 0));
}

// The embedded context width: C without an embedding, else the embedding's output width, found
// by one pass on a zero context (as sbi does).
std::int64_t embedded_width(const nn::Layer* embedding, std::int64_t context, DType dtype) {
  if (!embedding || context == 0) return context;
  ad::NoGrad no_grad;
  core::ArenaScope scope;
  const Var e = embedding->forward(Tensor::zeros({1, context}, dtype, embedding->device()));
  if (e.shape().rank() != 2 || e.dim(0) != 1)
    throw ShapeError(str("flows: expected the embedding net to map [1, ", context,
                         "] to [1, E], got ", e.shape()));
  return e.dim(1);
}

// The dtype of a module's parameters (float32 for a module without any).
DType dtype_of(const nn::Module& m) {
  const auto params = m.parameters();
  return params.empty() ? DType::f32 : params.front().parameter->value().dtype();
}

}  // namespace

ConditionalFlow::ConditionalFlow(std::unique_ptr<Distribution> base,
                                 std::vector<std::unique_ptr<Bijector>> transforms,
                                 std::int64_t context_features,
                                 std::unique_ptr<nn::Layer> embedding,
                                 std::optional<nn::Standardizer> context_standardizer)
    : context_features_(context_features),
      embedded_features_(context_features),
      context_standardizer_(std::move(context_standardizer)) {
  if (!base) throw ValueError("ConditionalFlow: expected a base distribution, got none");
  if (context_features < 0)
    throw ValueError(str("ConditionalFlow: expected context_features >= 0, got ",
                         context_features));
  if (context_features == 0 && (embedding || context_standardizer_))
    throw ValueError("ConditionalFlow: an embedding or a context standardizer needs "
                     "context_features > 0, got 0");
  if (context_standardizer_ && context_standardizer_->features() != context_features)
    throw ShapeError(str("ConditionalFlow: expected a context standardizer over ",
                         context_features, " features, got ", context_standardizer_->features()));
  for (std::size_t i = 0; i < transforms.size(); ++i) {
    if (!transforms[i]) throw ValueError(str("ConditionalFlow: transform ", i, " is empty"));
    if (transforms[i]->features() != base->features())
      throw ShapeError(str("ConditionalFlow: expected every transform to act on ",
                           base->features(), " features (the base's), transform ", i, " acts on ",
                           transforms[i]->features()));
  }
  // Parameter names as nflows': "_transform._transforms.<i>.…", "_distribution.…",
  // "_embedding_net.…".
  for (std::size_t i = 0; i < transforms.size(); ++i)
    transforms_.push_back(&child(str("_transform._transforms.", i), std::move(transforms[i])));
  base_ = &child("_distribution", std::move(base));
  if (context_standardizer_)
    for (auto& [name, tensor] : context_standardizer_->state())
      register_buffer("context_standardizer." + name, *tensor);
  if (embedding) {
    embedding_ = &child("_embedding_net", std::move(embedding));
    embedded_features_ = embedded_width(embedding_, context_features, dtype_of(*embedding_));
  }
}

Var ConditionalFlow::embed(const Var& context) const {
  if (!context.defined()) return context;
  Var c = context_standardizer_ ? context_standardizer_->apply(context) : context;
  return embedding_ ? embedding_->forward(c) : c;
}

// A context of shape [rows, C] or [1, C] when conditional, none otherwise.
Var ConditionalFlow::check_context(const char* who, const Var& context, std::int64_t rows) const {
  if (context_features_ == 0) {
    if (context.defined())
      throw ShapeError(str(who, ": this flow is unconditional, expected no context, got ",
                           context.shape()));
    return context;
  }
  if (!context.defined() || context.shape().rank() != 2 || context.dim(1) != context_features_ ||
      (context.dim(0) != rows && context.dim(0) != 1))
    throw ShapeError(str(who, ": expected a context of shape [", rows, ", ", context_features_,
                         "] or [1, ", context_features_, "], got ",
                         context.defined() ? context.shape().str() : "none"));
  return context;
}

// log q(a | b) = log p(z_T | e) + Σ_k log|det ∂z_k/∂z_{k-1}|
Var ConditionalFlow::log_prob(const Var& a, const Var& context) const {
  if (a.shape().rank() != 2 || a.dim(1) != features())
    throw ShapeError(str("ConditionalFlow::log_prob: expected a of shape [B, ", features(),
                         "], got ", a.shape()));
  const std::int64_t rows = a.dim(0);
  check_context("ConditionalFlow::log_prob", context, rows);
  // Embedding one shared row costs one row; repeat after embedding.
  const Var e = context.defined() ? repeat_row(embed(context), rows) : Var();
  Var z = a, log_det;
  for (const Bijector* t : transforms_) {
    Transformed r = t->forward(z, e);
    z = r.value;
    log_det = log_det.defined() ? ad::add(log_det, r.log_det) : r.log_det;
  }
  const Var lp = base_->log_prob(z, e);
  return log_det.defined() ? ad::add(lp, log_det) : lp;
}

// z_T ~ p(· | e);  z_{k-1} = f_k⁻¹(z_k);
// log q(a | b) = log p(z_T | e) - Σ_k log|det ∂z_{k-1}/∂z_k|
FlowSamples ConditionalFlow::draw(std::int64_t n, const Var& context, core::Rng& rng,
                                  bool with_log_prob) const {
  check_sample_context("ConditionalFlow::sample", n, context.defined() ? context.value()
                                                                       : Tensor());
  check_context("ConditionalFlow::sample", context, n);
  const Var e = context.defined() ? repeat_row(embed(context), n) : Var();
  // A base without a context cannot tell where the flow lives and may draw on the host: the noise
  // is then copied to the flow's device here, the one host-to-device edge of sampling.
  const Tensor noise = base_->sample(n, e.defined() ? e.value() : Tensor(), rng);
  Var z = noise.to(e.defined() ? e.device() : device());
  Var lp = with_log_prob ? base_->log_prob(z, e) : Var();
  for (auto it = transforms_.rbegin(); it != transforms_.rend(); ++it) {
    Transformed r = (*it)->inverse(z, e);
    z = r.value;
    if (with_log_prob) lp = ad::sub(lp, r.log_det);
  }
  return {z, lp};
}

Tensor ConditionalFlow::sample(std::int64_t n, const Tensor& context, core::Rng& rng) const {
  ad::NoGrad no_grad;
  core::ArenaScope scope;  // the inverse passes' temporaries go when the draws are copied out
  return draw(n, context.defined() ? Var(context) : Var(), rng, false).value.value().clone();
}

FlowSamples ConditionalFlow::sample_and_log_prob(std::int64_t n, const Var& context,
                                                 core::Rng& rng) const {
  return draw(n, context, rng, true);
}

std::vector<std::pair<std::string, Tensor*>> ConditionalFlow::buffers() {
  std::vector<std::pair<std::string, Tensor*>> out;
  if (!transforms_.empty())
    if (auto* s = dynamic_cast<Standardize*>(transforms_.front()))
      for (auto& [name, t] : s->standardizer().state()) out.emplace_back("target/" + name, t);
  if (context_standardizer_)
    for (auto& [name, t] : context_standardizer_->state()) out.emplace_back("context/" + name, t);
  return out;
}

// --- builders ------------------------------------------------------------------------------------

namespace {

void check_sizes(const char* who, std::int64_t features, std::int64_t context, int transforms) {
  if (features < 1 || context < 0 || transforms < 1)
    throw ValueError(str(who, ": expected features >= 1, context_features >= 0 and transforms "
                         ">= 1, got ", features, ", ", context, ", ", transforms));
}

std::unique_ptr<ConditionalFlow> assemble(std::int64_t features, std::int64_t context,
                                          DType dtype,
                                          std::vector<std::unique_ptr<Bijector>> transforms,
                                          FlowInputs inputs) {
  for (const auto* s : {&inputs.target, &inputs.context})
    if (*s && (*s)->mean().dtype() != dtype)
      throw core::DtypeError(str("flows: expected standardizer statistics of dtype ", dtype,
                                 " (the flow's), got ", (*s)->mean().dtype()));
  if (inputs.target) {
    if (inputs.target->features() != features)
      throw ShapeError(str("flows: expected a target standardizer over ", features,
                           " features, got ", inputs.target->features()));
    transforms.insert(transforms.begin(), std::make_unique<Standardize>(*inputs.target));
  }
  return std::make_unique<ConditionalFlow>(std::make_unique<StandardNormal>(features, dtype),
                                           std::move(transforms), context,
                                           std::move(inputs.embedding), inputs.context);
}

}  // namespace

std::unique_ptr<ConditionalFlow> nsf(std::int64_t features, std::int64_t context_features,
                                     core::Rng& rng, const NsfOptions& options,
                                     FlowInputs inputs) {
  check_sizes("nsf", features, context_features, options.transforms);
  const DType dtype = options.dtype;
  const std::int64_t e = embedded_width(inputs.embedding.get(), context_features, dtype);
  const SplineOptions spline{.bins = options.bins, .tail_bound = options.tail_bound};
  std::vector<std::unique_ptr<Bijector>> transforms;
  for (int i = 0; i < options.transforms; ++i) {
    if (features == 1) {
      // One feature: nothing to condition on but the context (sbi's ContextSplineMap).
      transforms.push_back(std::make_unique<SplineCoupling>(
          std::vector<bool>{true},
          context_map(options.hidden, e, options.context_hidden_layers, rng, dtype), spline));
      continue;
    }
    transforms.push_back(std::make_unique<SplineCoupling>(
        alternating_mask(features, i % 2 == 0),
        residual_conditioner(options.hidden, e, options.blocks, options.activation,
                             options.dropout, rng, dtype),
        spline));
    transforms.push_back(std::make_unique<LULinear>(features, rng, true, dtype));
  }
  return assemble(features, context_features, dtype, std::move(transforms), std::move(inputs));
}

std::unique_ptr<ConditionalFlow> maf(std::int64_t features, std::int64_t context_features,
                                     core::Rng& rng, const MafOptions& options,
                                     FlowInputs inputs) {
  check_sizes("maf", features, context_features, options.transforms);
  const DType dtype = options.dtype;
  const std::int64_t e = embedded_width(inputs.embedding.get(), context_features, dtype);
  const MadeOptions made{.hidden = options.hidden, .blocks = options.blocks,
                         .residual = options.residual, .activation = options.activation,
                         .dtype = dtype};
  std::vector<std::unique_ptr<Bijector>> transforms;
  for (int i = 0; i < options.transforms; ++i) {
    transforms.push_back(std::make_unique<AffineAutoregressive>(features, e, made, rng));
    transforms.push_back(std::make_unique<RandomPermutation>(features, rng));
  }
  return assemble(features, context_features, dtype, std::move(transforms), std::move(inputs));
}

}  // namespace asbi::flows
