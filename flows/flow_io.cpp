#include "flows/flow_io.hpp"

#include <algorithm>
#include <functional>
#include <map>
#include <sstream>

#include "nn/checkpoint.hpp"

namespace asbi::flows {
namespace {

using core::IoError;
using core::str;

const char* kind_name(FlowKind k) { return k == FlowKind::nsf ? "nsf" : "maf"; }
const char* dtype_name(DType t) { return t == DType::f32 ? "float32" : "float64"; }

// One table of fields serves both directions, so writing and reading cannot drift apart.
struct Field {
  const char* key;
  std::function<std::string(const FlowSpec&)> write;
  std::function<void(FlowSpec&, const std::string&)> read;  // throws std::exception on bad text
};

long long to_integer(const std::string& v) {
  std::size_t used = 0;
  const long long n = std::stoll(v, &used);
  if (used != v.size()) throw std::invalid_argument("not an integer");
  return n;
}

double to_number(const std::string& v) {
  std::size_t used = 0;
  const double x = std::stod(v, &used);
  if (used != v.size()) throw std::invalid_argument("not a number");
  return x;
}

bool to_bool(const std::string& v) {
  if (v == "true") return true;
  if (v == "false") return false;
  throw std::invalid_argument("expected true or false");
}

DType to_dtype(const std::string& v) {
  if (v == "float32") return DType::f32;
  if (v == "float64") return DType::f64;
  throw std::invalid_argument("expected float32 or float64");
}

const std::vector<Field>& fields() {
  auto num = [](auto x) {
    std::ostringstream o;
    o.precision(17);
    o << x;
    return o.str();
  };
  static const std::vector<Field> table = {
      {"kind", [](const FlowSpec& s) { return std::string(kind_name(s.kind)); },
       [](FlowSpec& s, const std::string& v) {
         if (v != "nsf" && v != "maf") throw std::invalid_argument("expected nsf or maf");
         s.kind = v == "nsf" ? FlowKind::nsf : FlowKind::maf;
       }},
      {"features", [=](const FlowSpec& s) { return num(s.features); },
       [](FlowSpec& s, const std::string& v) { s.features = to_integer(v); }},
      {"context_features", [=](const FlowSpec& s) { return num(s.context_features); },
       [](FlowSpec& s, const std::string& v) { s.context_features = to_integer(v); }},
      {"standardize_target",
       [](const FlowSpec& s) { return std::string(s.standardize_target ? "true" : "false"); },
       [](FlowSpec& s, const std::string& v) { s.standardize_target = to_bool(v); }},
      {"standardize_context",
       [](const FlowSpec& s) { return std::string(s.standardize_context ? "true" : "false"); },
       [](FlowSpec& s, const std::string& v) { s.standardize_context = to_bool(v); }},
      {"seed", [=](const FlowSpec& s) { return num(s.seed); },
       [](FlowSpec& s, const std::string& v) {
         s.seed = static_cast<std::uint64_t>(to_integer(v));
       }},
      {"nsf.transforms", [=](const FlowSpec& s) { return num(s.nsf.transforms); },
       [](FlowSpec& s, const std::string& v) {
         s.nsf.transforms = static_cast<int>(to_integer(v));
       }},
      {"nsf.hidden", [=](const FlowSpec& s) { return num(s.nsf.hidden); },
       [](FlowSpec& s, const std::string& v) { s.nsf.hidden = to_integer(v); }},
      {"nsf.blocks", [=](const FlowSpec& s) { return num(s.nsf.blocks); },
       [](FlowSpec& s, const std::string& v) { s.nsf.blocks = static_cast<int>(to_integer(v)); }},
      {"nsf.bins", [=](const FlowSpec& s) { return num(s.nsf.bins); },
       [](FlowSpec& s, const std::string& v) { s.nsf.bins = static_cast<int>(to_integer(v)); }},
      {"nsf.tail_bound", [=](const FlowSpec& s) { return num(s.nsf.tail_bound); },
       [](FlowSpec& s, const std::string& v) { s.nsf.tail_bound = to_number(v); }},
      {"nsf.context_hidden_layers",
       [=](const FlowSpec& s) { return num(s.nsf.context_hidden_layers); },
       [](FlowSpec& s, const std::string& v) {
         s.nsf.context_hidden_layers = static_cast<int>(to_integer(v));
       }},
      {"nsf.dropout", [=](const FlowSpec& s) { return num(s.nsf.dropout); },
       [](FlowSpec& s, const std::string& v) { s.nsf.dropout = to_number(v); }},
      {"nsf.activation", [](const FlowSpec& s) { return std::string(nn::name(s.nsf.activation)); },
       [](FlowSpec& s, const std::string& v) { s.nsf.activation = nn::activation_from_name(v); }},
      {"nsf.dtype", [](const FlowSpec& s) { return std::string(dtype_name(s.nsf.dtype)); },
       [](FlowSpec& s, const std::string& v) { s.nsf.dtype = to_dtype(v); }},
      {"maf.transforms", [=](const FlowSpec& s) { return num(s.maf.transforms); },
       [](FlowSpec& s, const std::string& v) {
         s.maf.transforms = static_cast<int>(to_integer(v));
       }},
      {"maf.hidden", [=](const FlowSpec& s) { return num(s.maf.hidden); },
       [](FlowSpec& s, const std::string& v) { s.maf.hidden = to_integer(v); }},
      {"maf.blocks", [=](const FlowSpec& s) { return num(s.maf.blocks); },
       [](FlowSpec& s, const std::string& v) { s.maf.blocks = static_cast<int>(to_integer(v)); }},
      {"maf.residual",
       [](const FlowSpec& s) { return std::string(s.maf.residual ? "true" : "false"); },
       [](FlowSpec& s, const std::string& v) { s.maf.residual = to_bool(v); }},
      {"maf.activation", [](const FlowSpec& s) { return std::string(nn::name(s.maf.activation)); },
       [](FlowSpec& s, const std::string& v) { s.maf.activation = nn::activation_from_name(v); }},
      {"maf.dtype", [](const FlowSpec& s) { return std::string(dtype_name(s.maf.dtype)); },
       [](FlowSpec& s, const std::string& v) { s.maf.dtype = to_dtype(v); }},
  };
  return table;
}

constexpr const char* kHeader = "# asbi conditional flow v1";

DType spec_dtype(const FlowSpec& s) { return s.kind == FlowKind::nsf ? s.nsf.dtype : s.maf.dtype; }

}  // namespace

std::unique_ptr<ConditionalFlow> build_flow(const FlowSpec& spec, FlowInputs inputs) {
  if (spec.standardize_target != inputs.target.has_value() ||
      spec.standardize_context != inputs.context.has_value())
    throw core::ValueError(
        str("build_flow: the spec says standardize_target = ", spec.standardize_target,
            ", standardize_context = ", spec.standardize_context, " but the inputs hold ",
            inputs.target ? "a" : "no", " target and ", inputs.context ? "a" : "no",
            " context standardizer"));
  core::Rng rng(spec.seed, 0);
  if (spec.kind == FlowKind::nsf)
    return nsf(spec.features, spec.context_features, rng, spec.nsf, std::move(inputs));
  return maf(spec.features, spec.context_features, rng, spec.maf, std::move(inputs));
}

std::string to_config(const FlowSpec& spec) {
  std::string text = std::string(kHeader) + "\n";
  for (const Field& f : fields()) text += std::string(f.key) + " = " + f.write(spec) + "\n";
  return text;
}

FlowSpec flow_spec_from_config(const std::string& text, const std::string& source) {
  std::istringstream in(text);
  std::string line;
  if (!std::getline(in, line) || line != kHeader)
    throw IoError(str(source, ": not an asbi flow configuration (expected the first line '",
                      kHeader, "', got '", line, "')"));
  FlowSpec spec;
  std::map<std::string, bool> seen;
  for (int number = 2; std::getline(in, line); ++number) {
    if (line.empty()) continue;
    const auto eq = line.find(" = ");
    if (eq == std::string::npos)
      throw IoError(
          str(source, ": configuration line ", number, " is not 'key = value': '", line, "'"));
    const std::string key = line.substr(0, eq), value = line.substr(eq + 3);
    const auto it = std::find_if(fields().begin(), fields().end(),
                                 [&](const Field& f) { return key == f.key; });
    if (it == fields().end())
      throw IoError(str(source, ": unknown configuration field '", key, "' on line ", number));
    try {
      it->read(spec, value);
    } catch (const std::exception& e) {
      throw IoError(
          str(source, ": configuration field '", key, "' has the value '", value, "': ", e.what()));
    }
    seen[key] = true;
  }
  for (const Field& f : fields())
    if (!seen[f.key]) throw IoError(str(source, ": configuration field '", f.key, "' is missing"));
  if (spec.features < 1 || spec.context_features < 0)
    throw IoError(str(source, ": expected features >= 1 and context_features >= 0, got ",
                      spec.features, " and ", spec.context_features));
  return spec;
}

void save_flow(const std::filesystem::path& path, const FlowSpec& spec, ConditionalFlow& flow) {
  nn::Checkpoint checkpoint;
  checkpoint.config = to_config(spec);
  nn::add_module(checkpoint, "model", flow);
  nn::add_tensors(checkpoint, "buffers", flow.buffers());
  nn::save_checkpoint(path, checkpoint);
}

LoadedFlow load_flow(const std::filesystem::path& path, core::Device device) {
  const nn::Checkpoint checkpoint = nn::load_checkpoint(path);
  LoadedFlow loaded;
  loaded.spec = flow_spec_from_config(checkpoint.config, path.string());
  // Identity standardizers give the flow its shape; their statistics come from the file.
  FlowInputs inputs;
  const DType dtype = spec_dtype(loaded.spec);
  if (loaded.spec.standardize_target)
    inputs.target = nn::Standardizer::identity(loaded.spec.features, dtype);
  if (loaded.spec.standardize_context)
    inputs.context = nn::Standardizer::identity(loaded.spec.context_features, dtype);
  loaded.flow = build_flow(loaded.spec, std::move(inputs));
  nn::restore_module(checkpoint, "model", *loaded.flow);
  nn::restore_tensors(checkpoint, "buffers", loaded.flow->buffers(), "flow buffers");
  loaded.flow->to(device);
  return loaded;
}

}  // namespace asbi::flows
