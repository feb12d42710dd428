#pragma once
// Options ↔ JSON helpers shared by the checkpoint configs of sbi/ (estimator.cpp,
// set_estimator.cpp). Internal: nlohmann-json is a private dependency of the sbi library, so only
// its .cpp files include this header.
#include <nlohmann/json.hpp>
#include <string>

#include "core/error.hpp"
#include "nn/trainer.hpp"

namespace asbi::sbi::detail {

using nlohmann::json;

// Reads j[key] (when present) into `out`, naming source and field on a type mismatch.
template <class T>
void read_field(const json& j, const char* key, T& out, const std::string& source,
                const std::string& path) {
  if (!j.contains(key)) return;
  try {
    out = j.at(key).get<T>();
  } catch (const json::exception&) {
    throw core::IoError(core::str(source, ": field '", path, key, "' has the wrong type (",
                                  j.at(key).type_name(), ")"));
  }
}

// j[key] parsed by `parse` (a name → enum function that throws core::Error), errors named.
template <class Parse>
auto read_named(const json& j, const char* key, const std::string& source,
                const std::string& path, Parse parse) -> decltype(parse(std::string())) {
  std::string value;
  read_field(j, key, value, source, path);
  try {
    return parse(value);
  } catch (const core::Error& e) {
    throw core::IoError(core::str(source, ": field '", path, key, "': ", e.what()));
  }
}

// j[key], or an empty object when absent (optional sections).
inline const json& section(const json& j, const char* key) {
  static const json empty = json::object();
  return j.contains(key) ? j.at(key) : empty;
}

inline json train_options_json(const nn::TrainOptions& t) {
  return {{"batch_size", t.batch_size},
          {"learning_rate", t.learning_rate},
          {"validation_fraction", t.validation_fraction},
          {"patience", t.patience},
          {"max_epochs", t.max_epochs},
          {"clip_norm", t.clip_norm},
          {"seed", t.seed},
          {"schedule", nn::name(t.schedule.kind)}};
}

// Fields of train_options_json under `path` ("train.") into `t`; absent fields keep their value.
inline void read_train_options(const json& j, nn::TrainOptions& t, const std::string& source,
                               const std::string& path) {
  read_field(j, "batch_size", t.batch_size, source, path);
  read_field(j, "learning_rate", t.learning_rate, source, path);
  read_field(j, "validation_fraction", t.validation_fraction, source, path);
  read_field(j, "patience", t.patience, source, path);
  read_field(j, "max_epochs", t.max_epochs, source, path);
  read_field(j, "clip_norm", t.clip_norm, source, path);
  read_field(j, "seed", t.seed, source, path);
  if (j.contains("schedule"))
    t.schedule.kind = read_named(j, "schedule", source, path, nn::schedule_kind_from_name);
}

}  // namespace asbi::sbi::detail
