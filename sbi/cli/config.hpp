#pragma once
// The job description shared by `asbi train` (written to DIR/config.toml), `asbi sample` (read
// back for the task) and `asbi run` (read from CONFIG.toml): one struct, one TOML layout, so that
// a model folder's config.toml is itself a config `asbi run` accepts.
//
//   [task]        name, observation (sbibm index; 0: none) or observation_file
//   [method]      name (npe | nle | nre | nre_a | nre_b | nre_c), flow (nsf | maf)
//   [simulation]  count (total over all rounds), rounds, seed
//   [training]    batch_size, learning_rate, validation_fraction, patience, max_epochs, clip_norm
//   [network]     transforms, hidden, blocks, embedding_hidden, embedding_features
//   [sampling]    num_samples, sampler (slice | mh | hmc: NLE/NRE), chains, warmup
//   [output]      dir, plot, c2st
//   [set]         set tasks only: training (pairs | end_to_end), set_size (N or "MIN:MAX"),
//                 encoder (mlp | conv), encoder_hidden, encoder_channels, embedding_features,
//                 encoder_set_size, head_simulations, fine_tune_head, observation_size
//   [compute]     device (cpu | cuda: where the network trains and samples)
//
// Training defaults are the library's (sbi's); unknown sections and keys are errors naming the
// file and the key.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "sbi/cli/sets.hpp"
#include "sbi/estimator.hpp"

namespace asbi::cli {

struct RunConfig {
  // [task]
  std::string task = "two_moons";
  int observation_index = 1;  // sbibm's num_observation_k; 0: none (or observation_file)
  std::string observation_file{};
  // [method]
  std::string method = "npe";
  std::string flow{};  // empty: the method's default (NPE: nsf, NLE: maf)
  // [simulation]
  std::int64_t simulations = 10'000;
  int rounds = 1;
  std::uint64_t seed = 1;
  // [training], [network]: the library's defaults unless set.
  nn::TrainOptions train = sbi::EstimatorOptions{}.train;
  std::optional<int> transforms{};
  std::optional<std::int64_t> hidden{};
  std::optional<int> blocks{};
  std::vector<std::int64_t> embedding_hidden{};
  std::int64_t embedding_features = 0;
  // [sampling]
  std::int64_t num_samples = 10'000;
  std::string sampler = sbi::name(sbi::McmcOptions{}.sampler);
  int chains = sbi::McmcOptions{}.chains;
  int warmup = sbi::McmcOptions{}.warmup;
  // [output]
  std::string dir = "asbi-run";
  bool plot = true;
  bool c2st = true;
  // [set]: the DeepSet pipeline of a set task (set_encoder is always "deepset" there).
  SetTrainFlags set{.set_encoder = "deepset", .set_size = "100"};
  std::int64_t observation_size = 0;  // elements of observation k; 0: the largest set size
  // [compute]
  std::string device = "cpu";
};

// Reads a TOML config; IoError naming the file (and line) for bad TOML, unknown keys or values
// of the wrong type, ValueError naming the key for out-of-range values.
RunConfig read_config(const std::string& path);
// The TOML text of a config (every key, so the file reproduces the job).
std::string config_to_toml(const RunConfig& config);
// Range checks and name checks (task, method, flow, sampler); errors name the key, prefixed by
// `source`.
void validate(const RunConfig& config, const std::string& source);

// The estimator options a config asks for (seeded from config.seed).
sbi::EstimatorOptions estimator_options(const RunConfig& config);

}  // namespace asbi::cli
