#include "sbi/estimator.hpp"

#include <cmath>
#include <utility>

#include "core/backend.hpp"
#include "core/error.hpp"
#include "nn/checkpoint.hpp"
#include "sbi/methods.hpp"
#include "sbi/options_json.hpp"

namespace asbi::sbi {

using detail::json;

namespace {

constexpr int kConfigVersion = 1;

struct MethodName {
  const char* name;
  Method method;
};
constexpr MethodName kMethods[] = {{"npe", Method::npe},     {"nle", Method::nle},
                                   {"nre", Method::nre_b},   {"nre_a", Method::nre_a},
                                   {"nre_b", Method::nre_b}, {"nre_c", Method::nre_c}};

}  // namespace

const char* name(Method method) {
  switch (method) {
    case Method::npe: return "npe";
    case Method::nle: return "nle";
    case Method::nre_a: return "nre_a";
    case Method::nre_b: return "nre_b";
    case Method::nre_c: return "nre_c";
  }
  return "?";
}

Method method_from_name(const std::string& name) {
  for (const auto& m : kMethods)
    if (name == m.name) return m.method;
  std::string known;
  for (const auto& m : kMethods) known += std::string(known.empty() ? "" : ", ") + m.name;
  throw core::ValueError(core::str("unknown method '", name, "'; expected one of ", known));
}

void check_observation(const char* who, std::span<const double> x_o, std::int64_t x_dim) {
  if (static_cast<std::int64_t>(x_o.size()) != x_dim)
    throw core::ValueError(core::str(who, ": expected an observation of ", x_dim,
                                     " values, got ", x_o.size()));
  for (std::size_t j = 0; j < x_o.size(); ++j)
    if (!std::isfinite(x_o[j]))
      throw core::ValueError(core::str(who, ": observation value ", j + 1, " (data_", j + 1,
                                       ") is ", x_o[j], "; expected a finite number"));
}

namespace detail {
void check_device(const std::string& who, core::Device device) {
  if (core::device_available(device)) return;
  throw core::DeviceError(core::str(who, ": device ", device,
                                    " was asked for but is not available (",
                                    nn::device_unavailable_reason(device), ")"));
}
}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Estimator: the rows appended so far and the checkpoint file.

Estimator::Estimator(std::shared_ptr<const Prior> prior, std::int64_t x_dim,
                     EstimatorOptions options)
    : prior_(std::move(prior)), x_dim_(x_dim), options_(std::move(options)) {
  if (!prior_) throw core::ValueError("estimator: expected a prior, got null");
  if (x_dim_ <= 0) throw core::ValueError(core::str("estimator: expected x_dim > 0, got ", x_dim_));
  detail::check_device("estimator (EstimatorOptions::device)", options_.device);
}

void Estimator::append_simulations(const Tensor& theta, const Tensor& x, int round) {
  if (theta.rank() != 2 || x.rank() != 2 || theta.dim(0) != x.dim(0) ||
      theta.dim(1) != theta_dim() || x.dim(1) != x_dim_)
    throw core::ShapeError(core::str("append_simulations: expected theta [n, ", theta_dim(),
                                     "] and x [n, ", x_dim_, "], got ", theta.shape(), " and ",
                                     x.shape()));
  if (round < 0)
    throw core::ValueError(core::str("append_simulations: expected round >= 0, got ", round));
  const std::int64_t n = theta.dim(0);
  if (n == 0) return;
  const std::vector<double> tv = theta.to_vector(), xv = x.to_vector();
  for (std::size_t i = 0; i < tv.size(); ++i)
    if (!std::isfinite(tv[i]))
      throw core::ValueError(core::str("append_simulations: theta row ",
                                       static_cast<std::int64_t>(i) / theta_dim(),
                                       " is not finite"));
  for (std::size_t i = 0; i < xv.size(); ++i)
    if (!std::isfinite(xv[i]))
      throw core::ValueError(core::str("append_simulations: x row ",
                                       static_cast<std::int64_t>(i) / x_dim_,
                                       " is not finite (drop such rows first: simulate_dataset "
                                       "does)"));
  theta_chunks_.push_back(theta.to(DType::f32).clone());
  x_chunks_.push_back(x.to(DType::f32).clone());
  row_rounds_.insert(row_rounds_.end(), static_cast<std::size_t>(n), round);
}

std::int64_t Estimator::simulations() const {
  return static_cast<std::int64_t>(row_rounds_.size());
}

namespace {
Tensor stack_rows(const std::vector<Tensor>& chunks, std::int64_t width) {
  std::int64_t rows = 0;
  for (const Tensor& c : chunks) rows += c.dim(0);
  Tensor out = Tensor::empty({rows, width}, DType::f32);
  std::int64_t at = 0;
  for (const Tensor& c : chunks) {
    Tensor dst = out.rows(at, at + c.dim(0));
    dst.copy_from(c);
    at += c.dim(0);
  }
  return out;
}
}  // namespace

Tensor Estimator::theta_data() const { return stack_rows(theta_chunks_, theta_dim()); }
Tensor Estimator::x_data() const { return stack_rows(x_chunks_, x_dim_); }

nn::Checkpoint Estimator::checkpoint() const {
  nn::Checkpoint checkpoint{.config = to_json(options_, theta_dim(), x_dim_)};
  add_state(checkpoint);
  return checkpoint;
}

void Estimator::save(const std::filesystem::path& path) const {
  nn::save_checkpoint(path, checkpoint());
}

std::unique_ptr<Estimator> make_estimator(std::shared_ptr<const Prior> prior, std::int64_t x_dim,
                                          const EstimatorOptions& options) {
  switch (options.method) {
    case Method::npe: return detail::make_npe(std::move(prior), x_dim, options);
    case Method::nle: return detail::make_nle(std::move(prior), x_dim, options);
    case Method::nre_a:
    case Method::nre_b:
    case Method::nre_c: return detail::make_nre(std::move(prior), x_dim, options);
  }
  throw core::ValueError("make_estimator: unknown method");
}

// ---------------------------------------------------------------------------------------------
// Options as JSON: every field that changes the network or how the posterior samples.

std::string to_json(const EstimatorOptions& o, std::int64_t theta_dim, std::int64_t x_dim) {
  const auto flow_name = [](flows::FlowKind k) { return k == flows::FlowKind::nsf ? "nsf" : "maf"; };
  json j;
  j["format"] = "asbi-estimator";
  j["version"] = kConfigVersion;
  j["method"] = name(o.method);
  j["theta_dim"] = theta_dim;
  j["x_dim"] = x_dim;
  j["seed"] = o.seed;
  if (o.flow) j["flow"] = flow_name(*o.flow);
  j["nsf"] = {{"transforms", o.nsf.transforms}, {"hidden", o.nsf.hidden},
              {"blocks", o.nsf.blocks},         {"bins", o.nsf.bins},
              {"tail_bound", o.nsf.tail_bound}, {"context_hidden_layers", o.nsf.context_hidden_layers},
              {"dropout", o.nsf.dropout},       {"activation", nn::name(o.nsf.activation)}};
  j["maf"] = {{"transforms", o.maf.transforms},
              {"hidden", o.maf.hidden},
              {"blocks", o.maf.blocks},
              {"residual", o.maf.residual},
              {"activation", nn::name(o.maf.activation)}};
  j["classifier"] = {{"hidden", o.classifier_hidden}, {"blocks", o.classifier_blocks}};
  j["num_atoms"] = o.num_atoms;
  j["nre_c"] = {{"classes", o.nre_c_classes}, {"gamma", o.nre_c_gamma}};
  j["z_score"] = {{"theta", o.z_score_theta}, {"x", o.z_score_x}};
  j["embedding"] = {{"hidden", o.embedding.hidden}, {"features", o.embedding.features}};
  j["train"] = detail::train_options_json(o.train);
  j["mcmc"] = {{"sampler", name(o.mcmc.sampler)},
               {"chains", o.mcmc.chains},
               {"warmup", o.mcmc.warmup},
               {"thin", o.mcmc.thin},
               {"init", o.mcmc.init == ChainInit::sir ? "sir" : "proposal"},
               {"init_candidates", o.mcmc.init_candidates}};
  return j.dump(2);
}

using detail::read_field;
using detail::read_named;
using detail::section;

EstimatorOptions estimator_options_from_json(const std::string& text, const std::string& source,
                                             std::int64_t* theta_dim, std::int64_t* x_dim) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    throw core::IoError(core::str(source, ": the estimator configuration is not valid JSON (",
                                  e.what(), ")"));
  }
  if (!j.is_object() || j.value("format", "") != "asbi-estimator")
    throw core::IoError(core::str(source, ": field 'format': expected \"asbi-estimator\""));
  const int version = j.value("version", 0);
  if (version != kConfigVersion)
    throw core::IoError(core::str(source, ": field 'version': expected ", kConfigVersion,
                                  ", got ", version));
  for (const char* required : {"method", "theta_dim", "x_dim"})
    if (!j.contains(required))
      throw core::IoError(core::str(source, ": field '", required, "' is missing"));
  EstimatorOptions o;
  o.method = read_named(j, "method", source, "", method_from_name);
  std::int64_t td = 0, xd = 0;
  read_field(j, "theta_dim", td, source, "");
  read_field(j, "x_dim", xd, source, "");
  if (td <= 0 || xd <= 0)
    throw core::IoError(core::str(source, ": fields 'theta_dim' and 'x_dim': expected positive "
                                  "integers, got ", td, " and ", xd));
  if (theta_dim) *theta_dim = td;
  if (x_dim) *x_dim = xd;
  read_field(j, "seed", o.seed, source, "");
  if (j.contains("flow")) {
    const std::string f = j.value("flow", "");
    if (f != "nsf" && f != "maf")
      throw core::IoError(core::str(source, ": field 'flow': expected \"nsf\" or \"maf\", got \"",
                                    f, "\""));
    o.flow = f == "nsf" ? flows::FlowKind::nsf : flows::FlowKind::maf;
  }
  const json& nsf = section(j, "nsf");
  read_field(nsf, "transforms", o.nsf.transforms, source, "nsf.");
  read_field(nsf, "hidden", o.nsf.hidden, source, "nsf.");
  read_field(nsf, "blocks", o.nsf.blocks, source, "nsf.");
  read_field(nsf, "bins", o.nsf.bins, source, "nsf.");
  read_field(nsf, "tail_bound", o.nsf.tail_bound, source, "nsf.");
  read_field(nsf, "context_hidden_layers", o.nsf.context_hidden_layers, source, "nsf.");
  read_field(nsf, "dropout", o.nsf.dropout, source, "nsf.");
  if (nsf.contains("activation"))
    o.nsf.activation = read_named(nsf, "activation", source, "nsf.", nn::activation_from_name);
  const json& maf = section(j, "maf");
  read_field(maf, "transforms", o.maf.transforms, source, "maf.");
  read_field(maf, "hidden", o.maf.hidden, source, "maf.");
  read_field(maf, "blocks", o.maf.blocks, source, "maf.");
  read_field(maf, "residual", o.maf.residual, source, "maf.");
  if (maf.contains("activation"))
    o.maf.activation = read_named(maf, "activation", source, "maf.", nn::activation_from_name);
  const json& cls = section(j, "classifier");
  read_field(cls, "hidden", o.classifier_hidden, source, "classifier.");
  read_field(cls, "blocks", o.classifier_blocks, source, "classifier.");
  read_field(j, "num_atoms", o.num_atoms, source, "");
  const json& c = section(j, "nre_c");
  read_field(c, "classes", o.nre_c_classes, source, "nre_c.");
  read_field(c, "gamma", o.nre_c_gamma, source, "nre_c.");
  const json& z = section(j, "z_score");
  read_field(z, "theta", o.z_score_theta, source, "z_score.");
  read_field(z, "x", o.z_score_x, source, "z_score.");
  const json& e = section(j, "embedding");
  read_field(e, "hidden", o.embedding.hidden, source, "embedding.");
  read_field(e, "features", o.embedding.features, source, "embedding.");
  detail::read_train_options(section(j, "train"), o.train, source, "train.");
  const json& m = section(j, "mcmc");
  if (m.contains("sampler"))
    o.mcmc.sampler = read_named(m, "sampler", source, "mcmc.", sampler_from_name);
  read_field(m, "chains", o.mcmc.chains, source, "mcmc.");
  read_field(m, "warmup", o.mcmc.warmup, source, "mcmc.");
  read_field(m, "thin", o.mcmc.thin, source, "mcmc.");
  read_field(m, "init_candidates", o.mcmc.init_candidates, source, "mcmc.");
  if (m.contains("init")) {
    const std::string init = m.value("init", "");
    if (init != "sir" && init != "proposal")
      throw core::IoError(core::str(source, ": field 'mcmc.init': expected \"sir\" or "
                                    "\"proposal\", got \"", init, "\""));
    o.mcmc.init = init == "sir" ? ChainInit::sir : ChainInit::proposal;
  }
  return o;
}

EstimatorOptions load_estimator_options(const std::filesystem::path& path) {
  const nn::Checkpoint checkpoint = nn::load_checkpoint(path);
  return estimator_options_from_json(checkpoint.config, path.string());
}

std::shared_ptr<Posterior> load_posterior(const std::filesystem::path& path,
                                          std::shared_ptr<const Prior> prior, core::Device device) {
  const nn::Checkpoint checkpoint = nn::load_checkpoint(path);
  std::int64_t theta_dim = 0, x_dim = 0;
  EstimatorOptions options =
      estimator_options_from_json(checkpoint.config, path.string(), &theta_dim, &x_dim);
  options.device = device;
  if (!prior) throw core::ValueError("load_posterior: expected a prior, got null");
  if (prior->dim() != theta_dim)
    throw core::IoError(core::str(path.string(), ": field 'theta_dim' is ", theta_dim,
                                  " but the prior has dimension ", prior->dim()));
  // The estimator is rebuilt only to own the network; the posterior keeps it alive.
  std::shared_ptr<Estimator> estimator = make_estimator(std::move(prior), x_dim, options);
  estimator->restore_state(checkpoint);
  return estimator->posterior();
}

// ---------------------------------------------------------------------------------------------
// Sequential rounds.

std::shared_ptr<Posterior> train_sequential(Estimator& estimator, const Simulator& simulator,
                                            std::span<const double> x_o,
                                            const SequentialOptions& options) {
  if (options.rounds < 1)
    throw core::ValueError(core::str("train_sequential: expected rounds >= 1, got ",
                                     options.rounds));
  if (options.simulations_per_round < 1)
    throw core::ValueError(core::str("train_sequential: expected simulations_per_round >= 1, "
                                     "got ", options.simulations_per_round));
  if (options.rounds > 1) check_observation("train_sequential", x_o, estimator.x_dim());
  std::shared_ptr<Posterior> posterior;
  for (int round = 0; round < options.rounds; ++round) {
    const std::uint64_t seed = options.seed + static_cast<std::uint64_t>(round);
    Tensor theta;
    if (round == 0) {
      core::Rng rng(seed, /*stream=*/0);
      theta = estimator.prior().sample(options.simulations_per_round, rng, DType::f64);
    } else {
      theta = posterior->sample(options.simulations_per_round, x_o, seed);
    }
    const Dataset data =
        simulate_at(theta, simulator, simulator_seed(seed), DType::f32, options.simulation_batch);
    estimator.append_simulations(data.theta, data.x, round);
    const nn::TrainResult result = estimator.train();
    posterior = estimator.posterior();
    if (options.on_round) options.on_round(round, data.theta.dim(0), result);
  }
  return posterior;
}

}  // namespace asbi::sbi
