#include "sbi/cli/config.hpp"

#include <algorithm>
#include <charconv>
#include <limits>
#include <sstream>
#include <toml++/toml.h>
#include <type_traits>
#include <utility>

#include "core/error.hpp"
#include "sbi/set_task.hpp"
#include "sbi/task.hpp"

namespace asbi::cli {

using core::IoError;
using core::str;

namespace {

// Every section and its keys, in the order config_to_toml writes them.
struct SectionKeys {
  const char* section;
  std::vector<const char*> keys;
};
const std::vector<SectionKeys>& known_keys() {
  static const std::vector<SectionKeys> keys = {
      {"task", {"name", "observation", "observation_file"}},
      {"method", {"name", "flow"}},
      {"simulation", {"count", "rounds", "seed"}},
      {"training",
       {"batch_size", "learning_rate", "validation_fraction", "patience", "max_epochs",
        "clip_norm"}},
      {"network", {"transforms", "hidden", "blocks", "embedding_hidden", "embedding_features"}},
      {"sampling", {"num_samples", "sampler", "chains", "warmup"}},
      {"output", {"dir", "plot", "c2st"}},
      {"set",
       {"training", "set_size", "encoder", "encoder_hidden", "encoder_channels",
        "embedding_features", "encoder_set_size", "head_simulations", "fine_tune_head",
        "observation_size"}},
      {"compute", {"device"}},
  };
  return keys;
}

// The shortest text that reads back as the same double (toml++ prints 17 digits: 0.1 would read
// 0.10000000000000001), with a '.' or exponent so that TOML keeps it a float.
std::string shortest_float(double value) {
  char buffer[64];
  const auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, value);
  std::string text(buffer, ec == std::errc() ? end : buffer);
  if (text.find_first_of(".eEn") == std::string::npos) text += ".0";
  return text;
}

bool is_ratio_method(sbi::Method m) {
  return m == sbi::Method::nre_a || m == sbi::Method::nre_b || m == sbi::Method::nre_c;
}

std::string joined(const std::vector<const char*>& names) {
  std::string out;
  for (const char* n : names) out += std::string(out.empty() ? "" : ", ") + n;
  return out;
}

std::string joined_names(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

std::string where(const std::string& file, const toml::node& node) {
  const auto line = node.source().begin.line;
  return line > 0 ? str(file, " line ", line) : file;
}

// Reads section[key] into out when present, naming file, line and key on a type mismatch.
class SectionReader {
 public:
  SectionReader(const toml::table& section, std::string name, const std::string& file)
      : section_(section), name_(std::move(name)), file_(file) {}

  template <class T>
  void read(const char* key, T& out) const {
    const toml::node* node = section_.get(key);
    if (node == nullptr) return;
    const std::string full = str(name_, ".", key);
    if constexpr (std::is_same_v<T, std::string>) {
      if (!node->is_string()) fail(*node, full, "a string");
      out = node->as_string()->get();
    } else if constexpr (std::is_same_v<T, bool>) {
      if (!node->is_boolean()) fail(*node, full, "true or false");
      out = node->as_boolean()->get();
    } else if constexpr (std::is_floating_point_v<T>) {
      if (node->is_integer())
        out = static_cast<T>(node->as_integer()->get());
      else if (node->is_floating_point())
        out = static_cast<T>(node->as_floating_point()->get());
      else
        fail(*node, full, "a number");
    } else if constexpr (std::is_integral_v<T>) {
      if (!node->is_integer()) fail(*node, full, "an integer");
      const std::int64_t v = node->as_integer()->get();
      if (!std::in_range<T>(v))
        throw IoError(str(where(file_, *node), ": key '", full, "': ", v, " is out of range"));
      out = static_cast<T>(v);
    } else {
      static_assert(std::is_same_v<T, std::vector<std::int64_t>>);
      const toml::array* array = node->as_array();
      if (array == nullptr) fail(*node, full, "an array of integers");
      out.clear();
      for (const toml::node& item : *array) {
        if (!item.is_integer()) fail(item, full, "an array of integers");
        out.push_back(item.as_integer()->get());
      }
    }
  }

  template <class T>
  void read(const char* key, std::optional<T>& out) const {
    if (section_.get(key) == nullptr) return;
    T value{};
    read(key, value);
    out = value;
  }

 private:
  [[noreturn]] void fail(const toml::node& node, const std::string& key,
                         const char* expected) const {
    std::ostringstream found;
    found << node.type();
    throw IoError(str(where(file_, node), ": key '", key, "': expected ", expected, ", found ",
                      found.str()));
  }

  const toml::table& section_;
  std::string name_;
  const std::string& file_;
};

}  // namespace

RunConfig read_config(const std::string& path) {
  toml::table root;
  try {
    root = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    const auto& begin = e.source().begin;
    std::string description(e.description());
    std::replace(description.begin(), description.end(), '\n', ' ');
    if (begin.line == 0) throw IoError(str("config '", path, "': ", description));
    throw IoError(str("config '", path, "' line ", begin.line, " column ", begin.column, ": ",
                      description));
  }
  const std::string file = str("config '", path, "'");

  // Unknown sections and keys first: a misspelt key would otherwise be silently ignored.
  for (const auto& [key, node] : root) {
    const auto section = std::find_if(known_keys().begin(), known_keys().end(),
                                      [&](const SectionKeys& s) { return key.str() == s.section; });
    if (section == known_keys().end()) {
      std::vector<const char*> names;
      for (const auto& s : known_keys()) names.push_back(s.section);
      throw IoError(str(where(file, node), ": unknown section or key '", key.str(),
                        "'; expected sections: ", joined(names)));
    }
    const toml::table* table = node.as_table();
    if (table == nullptr)
      throw IoError(str(where(file, node), ": '", key.str(), "' must be a [", key.str(),
                        "] section"));
    for (const auto& [inner, value] : *table) {
      const bool known = std::any_of(section->keys.begin(), section->keys.end(),
                                     [&](const char* k) { return inner.str() == k; });
      if (!known)
        throw IoError(str(where(file, value), ": unknown key '", key.str(), ".", inner.str(),
                          "'; keys of [", key.str(), "]: ", joined(section->keys)));
    }
  }

  RunConfig c;
  const toml::table empty;
  const auto section = [&](const char* name) {
    const toml::table* t = root[name].as_table();
    return SectionReader(t ? *t : empty, name, file);
  };
  {
    const SectionReader s = section("task");
    s.read("name", c.task);
    s.read("observation", c.observation_index);
    s.read("observation_file", c.observation_file);
    // A file given without an index replaces the default index.
    if (!c.observation_file.empty() && root["task"]["observation"].node() == nullptr)
      c.observation_index = 0;
  }
  {
    const SectionReader s = section("method");
    s.read("name", c.method);
    s.read("flow", c.flow);
  }
  {
    const SectionReader s = section("simulation");
    s.read("count", c.simulations);
    s.read("rounds", c.rounds);
    s.read("seed", c.seed);
  }
  {
    const SectionReader s = section("training");
    s.read("batch_size", c.train.batch_size);
    s.read("learning_rate", c.train.learning_rate);
    s.read("validation_fraction", c.train.validation_fraction);
    s.read("patience", c.train.patience);
    s.read("max_epochs", c.train.max_epochs);
    s.read("clip_norm", c.train.clip_norm);
  }
  {
    const SectionReader s = section("network");
    s.read("transforms", c.transforms);
    s.read("hidden", c.hidden);
    s.read("blocks", c.blocks);
    s.read("embedding_hidden", c.embedding_hidden);
    s.read("embedding_features", c.embedding_features);
  }
  {
    const SectionReader s = section("sampling");
    s.read("num_samples", c.num_samples);
    s.read("sampler", c.sampler);
    s.read("chains", c.chains);
    s.read("warmup", c.warmup);
  }
  {
    const SectionReader s = section("output");
    s.read("dir", c.dir);
    s.read("plot", c.plot);
    s.read("c2st", c.c2st);
  }
  if (const toml::node* set = root.get("set")) {
    if (!is_set_task(c.task))
      throw IoError(str(where(file, *set), ": section [set] applies to set tasks only (",
                        joined_names(sbi::set_task_names()), "), not '", c.task, "'"));
    const SectionReader s = section("set");
    std::string training = c.set.end_to_end ? "end_to_end" : "pairs";
    s.read("training", training);
    c.set.end_to_end = training == "end_to_end";
    c.set.pair_training = !c.set.end_to_end;
    if (training != "pairs" && training != "end_to_end")
      throw IoError(str(where(file, *root["set"]["training"].node()),
                        ": key 'set.training': expected \"pairs\" or \"end_to_end\", got \"",
                        training, "\""));
    // A single size may be written as a number.
    if (const toml::node* size = set->as_table()->get("set_size"); size && size->is_integer())
      c.set.set_size = std::to_string(size->as_integer()->get());
    else
      s.read("set_size", c.set.set_size);
    s.read("encoder", c.set.encoder);
    s.read("encoder_hidden", c.set.encoder_hidden);
    s.read("encoder_channels", c.set.encoder_channels);
    s.read("embedding_features", c.set.embedding_features);
    s.read("encoder_set_size", c.set.encoder_set_size);
    s.read("head_simulations", c.set.head_simulations);
    s.read("fine_tune_head", c.set.fine_tune_head);
    s.read("observation_size", c.observation_size);
  }
  section("compute").read("device", c.device);
  validate(c, file);
  return c;
}

std::string config_to_toml(const RunConfig& c) {
  const sbi::EstimatorOptions options = estimator_options(c);
  // The values in effect, library defaults included: the flow's for NPE/NLE, the classifier's
  // for NRE.
  toml::table network;
  if (is_ratio_method(options.method)) {
    network.insert("hidden", options.classifier_hidden);
    network.insert("blocks", options.classifier_blocks);
  } else {
    const bool nsf = options.flow.value_or(options.method == sbi::Method::npe
                                               ? flows::FlowKind::nsf
                                               : flows::FlowKind::maf) == flows::FlowKind::nsf;
    network.insert("transforms", nsf ? options.nsf.transforms : options.maf.transforms);
    network.insert("hidden", nsf ? options.nsf.hidden : options.maf.hidden);
    network.insert("blocks", nsf ? options.nsf.blocks : options.maf.blocks);
  }
  toml::table task{{"name", c.task}};
  // observation = 0 records "none" (amortized training), which a reader would otherwise take
  // for the default index 1.
  if (c.observation_file.empty() || c.observation_index > 0)
    task.insert("observation", c.observation_index);
  if (!c.observation_file.empty()) task.insert("observation_file", c.observation_file);
  toml::table method{{"name", c.method}};
  if (!is_ratio_method(options.method))  // the flow in effect, the method's default included
    method.insert("flow", options.flow.value_or(options.method == sbi::Method::npe
                                                    ? flows::FlowKind::nsf
                                                    : flows::FlowKind::maf) == flows::FlowKind::nsf
                              ? "nsf"
                              : "maf");
  toml::array embedding_hidden;
  for (std::int64_t w : c.embedding_hidden) embedding_hidden.push_back(w);
  network.insert("embedding_hidden", embedding_hidden);
  network.insert("embedding_features", c.embedding_features);
  // Sections are written one by one to keep the order of the file's documentation.
  const std::vector<std::pair<const char*, toml::table>> sections = {
      {"task", task},
      {"method", method},
      {"simulation",
       toml::table{{"count", c.simulations},
                   {"rounds", c.rounds},
                   {"seed", static_cast<std::int64_t>(c.seed)}}},
      {"training",
       toml::table{{"batch_size", c.train.batch_size},
                   {"learning_rate", c.train.learning_rate},
                   {"validation_fraction", c.train.validation_fraction},
                   {"patience", c.train.patience},
                   {"max_epochs", c.train.max_epochs},
                   {"clip_norm", c.train.clip_norm}}},
      {"network", network},
      {"sampling",
       toml::table{{"num_samples", c.num_samples},
                   {"sampler", c.sampler},
                   {"chains", c.chains},
                   {"warmup", c.warmup}}},
      {"output", toml::table{{"dir", c.dir}, {"plot", c.plot}, {"c2st", c.c2st}}},
      {"compute", toml::table{{"device", c.device}}},
  };
  std::vector<std::pair<const char*, toml::table>> all_sections = sections;
  if (is_set_task(c.task)) {
    const auto array = [](const std::vector<std::int64_t>& values) {
      toml::array out;
      for (std::int64_t v : values) out.push_back(v);
      return out;
    };
    all_sections.emplace_back(
        "set", toml::table{{"training", c.set.end_to_end ? "end_to_end" : "pairs"},
                           {"set_size", c.set.set_size},
                           {"encoder", c.set.encoder},
                           {"encoder_hidden", array(c.set.encoder_hidden)},
                           {"encoder_channels", array(c.set.encoder_channels)},
                           {"embedding_features", c.set.embedding_features},
                           {"encoder_set_size", c.set.encoder_set_size},
                           {"head_simulations", c.set.head_simulations},
                           {"fine_tune_head", c.set.fine_tune_head},
                           {"observation_size", c.observation_size}});
  }
  std::ostringstream out;
  out << "# asbi job configuration: `asbi run <this file>` repeats it.\n";
  for (const auto& [name, table] : all_sections) {
    // toml++ sorts a table's keys; write them in the documented order instead.
    out << "\n[" << name << "]\n";
    const auto& keys = std::find_if(known_keys().begin(), known_keys().end(),
                                    [&](const SectionKeys& s) {
                                      return std::string(s.section) == name;
                                    })->keys;
    for (const char* key : keys) {
      const toml::node* node = table.get(key);
      if (node == nullptr) continue;
      out << key << " = ";
      if (const auto* number = node->as_floating_point())
        out << shortest_float(number->get());
      else
        node->visit([&](const auto& value) { out << value; });
      out << '\n';
    }
  }
  return out.str();
}

void validate(const RunConfig& c, const std::string& source) {
  const auto check = [&](bool ok, const char* key, const auto&... expectation) {
    if (!ok) throw core::ValueError(str(source, ": key '", key, "': ", expectation...));
  };
  std::vector<std::string> tasks = sbi::task_names();
  const bool set_task = is_set_task(c.task);
  if (!set_task && std::find(tasks.begin(), tasks.end(), c.task) == tasks.end()) {
    for (const auto& t : sbi::set_task_names()) tasks.push_back(t);
    check(false, "task.name", "unknown task '", c.task, "'; known tasks: ", joined_names(tasks));
  }
  if (set_task) {
    check(c.method == "npe", "method.name", "set tasks train a DeepSet NPE; expected \"npe\", got \"",
          c.method, "\"");
    check(c.rounds == 1, "simulation.rounds", "set tasks train in one round, got ", c.rounds);
    try {
      parse_set_size(c.set.set_size, "value");
    } catch (const core::Error& e) {
      check(false, "set.set_size", e.what());
    }
    check(c.set.encoder == "mlp" || c.set.encoder == "conv", "set.encoder",
          "expected \"mlp\" or \"conv\", got \"", c.set.encoder, "\"");
    check(c.set.embedding_features >= 1, "set.embedding_features", "expected >= 1, got ",
          c.set.embedding_features);
    check(c.set.encoder_set_size >= 1, "set.encoder_set_size", "expected >= 1, got ",
          c.set.encoder_set_size);
    check(c.set.head_simulations == 0 || c.set.head_simulations >= 10, "set.head_simulations",
          "expected 0 (simulation.count) or >= 10, got ", c.set.head_simulations);
    check(c.observation_size >= 0, "set.observation_size", "expected >= 1 (0: the largest set size), got ",
          c.observation_size);
  }
  check(c.observation_index >= 0, "task.observation", "expected an index >= 1, got ",
        c.observation_index);
  try {
    sbi::method_from_name(c.method);
  } catch (const core::Error& e) {
    check(false, "method.name", e.what());
  }
  check(c.flow.empty() || c.flow == "nsf" || c.flow == "maf", "method.flow",
        "expected \"nsf\" or \"maf\", got \"", c.flow, "\"");
  check(c.simulations >= 2, "simulation.count", "expected at least 2 simulations, got ",
        c.simulations);
  check(c.rounds >= 1, "simulation.rounds", "expected >= 1, got ", c.rounds);
  check(c.simulations >= 2 * c.rounds, "simulation.count",
        "expected at least 2 simulations per round, got ", c.simulations, " for ", c.rounds,
        " rounds");
  check(c.train.batch_size >= 1, "training.batch_size", "expected >= 1, got ",
        c.train.batch_size);
  check(c.train.learning_rate > 0, "training.learning_rate", "expected > 0, got ",
        c.train.learning_rate);
  check(c.train.validation_fraction > 0 && c.train.validation_fraction < 1,
        "training.validation_fraction", "expected a value in (0, 1), got ",
        c.train.validation_fraction);
  check(c.train.patience >= 1, "training.patience", "expected >= 1, got ", c.train.patience);
  check(c.train.max_epochs >= 1, "training.max_epochs", "expected >= 1, got ",
        c.train.max_epochs);
  check(!c.transforms || *c.transforms >= 1, "network.transforms", "expected >= 1");
  check(!c.hidden || *c.hidden >= 1, "network.hidden", "expected >= 1");
  check(!c.blocks || *c.blocks >= 1, "network.blocks", "expected >= 1");
  for (std::int64_t w : c.embedding_hidden)
    check(w >= 1, "network.embedding_hidden", "expected widths >= 1, got ", w);
  check(c.embedding_features >= 0, "network.embedding_features", "expected >= 0, got ",
        c.embedding_features);
  check(c.embedding_hidden.empty() || c.embedding_features > 0, "network.embedding_features",
        "expected > 0 when network.embedding_hidden is set");
  check(c.num_samples >= 1, "sampling.num_samples", "expected >= 1, got ", c.num_samples);
  try {
    sbi::sampler_from_name(c.sampler);
  } catch (const core::Error& e) {
    check(false, "sampling.sampler", e.what());
  }
  check(c.chains >= 1, "sampling.chains", "expected >= 1, got ", c.chains);
  check(c.warmup >= 0, "sampling.warmup", "expected >= 0, got ", c.warmup);
  check(!c.dir.empty(), "output.dir", "expected a folder name");
  // Whether the device is present is checked when the job starts, not here: a model folder's
  // config names the device it was trained on and must stay readable on any machine.
  check(c.device == "cpu" || c.device == "cuda", "compute.device",
        "expected \"cpu\" or \"cuda\", got \"", c.device, "\"");
}

sbi::EstimatorOptions estimator_options(const RunConfig& c) {
  sbi::EstimatorOptions o;
  o.method = sbi::method_from_name(c.method);
  if (c.flow == "nsf") o.flow = flows::FlowKind::nsf;
  if (c.flow == "maf") o.flow = flows::FlowKind::maf;
  if (c.transforms) o.nsf.transforms = o.maf.transforms = *c.transforms;
  if (is_ratio_method(o.method)) {
    if (c.hidden) o.classifier_hidden = *c.hidden;
    if (c.blocks) o.classifier_blocks = *c.blocks;
  } else {
    if (c.hidden) o.nsf.hidden = o.maf.hidden = *c.hidden;
    if (c.blocks) o.nsf.blocks = o.maf.blocks = *c.blocks;
  }
  o.embedding.hidden = c.embedding_hidden;
  o.embedding.features = c.embedding_features;
  const auto progress = o.train.progress;
  o.train = c.train;
  o.train.progress = progress;
  o.train.seed = c.seed;
  o.seed = c.seed;
  o.mcmc.sampler = sbi::sampler_from_name(c.sampler);
  o.mcmc.chains = c.chains;
  o.mcmc.warmup = c.warmup;
  o.mcmc.seed = c.seed;
  o.device = c.device == "cuda" ? core::Device::cuda : core::Device::cpu;
  return o;
}

}  // namespace asbi::cli
