// Saving and loading conditional flows: the loaded flow computes the same densities, and bad
// configurations are reported with the file and the field.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "autodiff/tape.hpp"
#include "core/backend.hpp"
#include "flows/flow_io.hpp"
#include "nn/checkpoint.hpp"

namespace asbi::flows {
namespace {

namespace fs = std::filesystem;

Tensor random_rows(std::int64_t rows, std::int64_t cols, std::uint64_t stream, double shift) {
  std::vector<double> v(static_cast<std::size_t>(rows * cols));
  core::Rng rng(7, stream);
  for (double& x : v) x = 2.0 * rng.normal() + shift;
  return Tensor::from(v, {rows, cols});
}

fs::path temp_file(const std::string& name) {
  return fs::temp_directory_path() / ("asbi_flow_io_" + std::to_string(::getpid()) + name);
}

void expect_same_log_prob(ConditionalFlow& a, ConditionalFlow& b, const Tensor& x,
                          const Tensor& context) {
  ad::NoGrad no_grad;
  const std::vector<double> lp_a = a.log_prob(x, context).value().to_vector();
  const std::vector<double> lp_b = b.log_prob(x, context).value().to_vector();
  ASSERT_EQ(lp_a.size(), lp_b.size());
  for (std::size_t i = 0; i < lp_a.size(); ++i) EXPECT_EQ(lp_a[i], lp_b[i]) << "row " << i;
}

TEST(FlowIo, StandardizedNsfRoundTripsExactly) {
  const Tensor theta = random_rows(64, 2, 1, 3.0), x = random_rows(64, 3, 2, -1.0);
  FlowSpec spec{.kind = FlowKind::nsf,
                .features = 2,
                .context_features = 3,
                .standardize_target = true,
                .standardize_context = true,
                .seed = 11};
  spec.nsf.transforms = 2;
  spec.nsf.hidden = 16;
  FlowInputs inputs;
  inputs.target = nn::Standardizer::fit(theta);
  inputs.context = nn::Standardizer::fit(x);
  auto flow = build_flow(spec, std::move(inputs));
  // Move the weights away from their seeded values, so that loading cannot pass by rebuilding.
  for (const nn::NamedParameter& p : flow->parameters())
    core::backend(core::Device::cpu)
        .axpy(0.01,
              random_rows(1, p.parameter->value().numel(), 3, 0)
                  .reshape(p.parameter->value().shape()),
              p.parameter->value());
  const fs::path path = temp_file("nsf.asbi");
  save_flow(path, spec, *flow);
  LoadedFlow back = load_flow(path);
  EXPECT_EQ(back.spec.kind, FlowKind::nsf);
  EXPECT_EQ(back.spec.nsf.hidden, 16);
  EXPECT_TRUE(back.spec.standardize_context);
  expect_same_log_prob(*flow, *back.flow, theta, x);
  fs::remove(path);
}

TEST(FlowIo, MafRoundTripsExactly) {
  FlowSpec spec{.kind = FlowKind::maf, .features = 3, .context_features = 2, .seed = 5};
  spec.maf.transforms = 2;
  spec.maf.hidden = 8;
  auto flow = build_flow(spec);
  const fs::path path = temp_file("maf.asbi");
  save_flow(path, spec, *flow);
  LoadedFlow back = load_flow(path);
  expect_same_log_prob(*flow, *back.flow, random_rows(16, 3, 4, 0), random_rows(16, 2, 5, 0));
  fs::remove(path);
}

TEST(FlowIo, ConfigurationRoundTripsEveryField) {
  FlowSpec spec{.kind = FlowKind::maf,
                .features = 4,
                .context_features = 7,
                .standardize_target = true,
                .seed = 99};
  spec.nsf.tail_bound = 2.5;
  spec.maf.activation = nn::Activation::elu;
  spec.maf.dtype = DType::f64;
  const FlowSpec back = flow_spec_from_config(to_config(spec), "test");
  EXPECT_EQ(to_config(back), to_config(spec));
}

TEST(FlowIo, BadConfigurationNamesTheField) {
  const std::string good = to_config(FlowSpec{});
  auto message = [](const std::string& text) {
    try {
      flow_spec_from_config(text, "model.asbi");
    } catch (const core::IoError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  std::string bad = good;
  bad.replace(bad.find("nsf.bins = 10"), 13, "nsf.bins = ten");
  EXPECT_NE(message(bad).find("model.asbi: configuration field 'nsf.bins' has the value 'ten'"),
            std::string::npos)
      << message(bad);
  std::string missing = good;
  missing.erase(missing.find("seed = 0\n"), 9);
  EXPECT_NE(message(missing).find("'seed' is missing"), std::string::npos) << message(missing);
  EXPECT_NE(message("kind = nsf\n").find("not an asbi flow configuration"), std::string::npos);
  EXPECT_NE(message(good + "colour = blue\n").find("unknown configuration field 'colour'"),
            std::string::npos);
}

TEST(FlowIo, SpecAndInputsMustAgree) {
  FlowSpec spec{.features = 2, .standardize_target = true};
  EXPECT_THROW(build_flow(spec), core::ValueError);
}

}  // namespace
}  // namespace asbi::flows
