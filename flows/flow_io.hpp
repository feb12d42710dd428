#pragma once
// Saving and loading a trained conditional flow as one checkpoint file (nn/checkpoint.hpp): the
// flow's configuration as text, its parameters under "model/", its standardisation statistics
// under "buffers/". Loading rebuilds the flow from the configuration and checks every tensor.
//
//   flows::FlowSpec spec{.kind = flows::FlowKind::nsf, .features = 2, .context_features = 3};
//   auto flow = flows::build_flow(spec, std::move(inputs));      // … train it …
//   flows::save_flow("posterior.asbi", spec, *flow);
//   flows::LoadedFlow back = flows::load_flow("posterior.asbi");  // back.flow->log_prob(a, b)
//
// Flows with a custom embedding net cannot be rebuilt from text: build the same architecture,
// then restore its parameters with nn::restore_module(load_checkpoint(path), "model", flow).
#include <filesystem>
#include <memory>
#include <string>

#include "flows/flow.hpp"

namespace asbi::flows {

enum class FlowKind { nsf, maf };

struct FlowSpec {
  FlowKind kind = FlowKind::nsf;
  std::int64_t features = 1;
  std::int64_t context_features = 0;
  NsfOptions nsf{};
  MafOptions maf{};
  bool standardize_target = false;  // the FlowInputs given to build_flow must then hold them
  bool standardize_context = false;
  std::uint64_t seed = 0;  // initial weights
};

// nsf() or maf() as the spec says, drawing the initial weights from Rng(seed, stream 0).
std::unique_ptr<ConditionalFlow> build_flow(const FlowSpec& spec, FlowInputs inputs = {});

// "key = value" lines; parsing names the source and the offending line or field.
std::string to_config(const FlowSpec& spec);
FlowSpec flow_spec_from_config(const std::string& text, const std::string& source);

void save_flow(const std::filesystem::path& path, const FlowSpec& spec, ConditionalFlow& flow);

struct LoadedFlow {
  FlowSpec spec;
  std::unique_ptr<ConditionalFlow> flow;
};
// The flow comes back on `device`, whatever device it was saved from.
LoadedFlow load_flow(const std::filesystem::path& path, core::Device device = core::Device::cpu);

}  // namespace asbi::flows
