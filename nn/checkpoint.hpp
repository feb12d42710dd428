#pragma once
// Checkpoints: one binary file per model holding its configuration (text, usually JSON written by
// the model) and named tensors: parameters, standardisation statistics ("standardize/…"),
// optimizer state ("optim/…"), schedule state ("schedule/…") and trainer state ("trainer/…").
//
//   nn::Checkpoint ckpt{.config = model.config_json()};
//   nn::add_module(ckpt, "model", model);              // "model/net.0.weight", …
//   nn::add_optimizer(ckpt, "optim", *optimizer);      // "optim/step", "optim/exp_avg/…", …
//   nn::save_checkpoint("posterior.asbi", ckpt);       // atomic: temp file, fsync, rename
//   …
//   nn::Checkpoint back = nn::load_checkpoint("posterior.asbi");   // validated, CPU tensors
//   nn::restore_module(back, "model", model);          // names, shapes and dtypes must match
//
// File format (version 1), little-endian, no padding:
//
//   offset  size   field
//   0       8      magic "ASBICKPT"
//   8       4      u32 format version (1)
//   12      8      u64 file length in bytes, checksum included (truncation is told exactly)
//   20      8      u64 config length C
//   28      C      config bytes (UTF-8 text, not NUL-terminated)
//           8      u64 tensor count T
//   T times:       u32 name length L, L name bytes, u8 dtype (0 = float32, 1 = float64),
//                  u8 rank R (0…4), R × i64 dims (each >= 0), numel × size-of-dtype data bytes
//           8      u64 FNV-1a 64 checksum of every byte before it
//
// Loading checks, in this order, and names the file and the field in every error (IoError): the
// magic, the version, the length against the file's size (truncated or trailing bytes), the
// checksum, then each record (dtype code, rank <= 4, dims >= 0, data within the file, unique
// names) and that the records end exactly at the checksum.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.hpp"
#include "nn/module.hpp"

namespace asbi::nn {

class Optimizer;

inline constexpr char kCheckpointMagic[8] = {'A', 'S', 'B', 'I', 'C', 'K', 'P', 'T'};
inline constexpr std::uint32_t kCheckpointVersion = 1;

struct Checkpoint {
  std::string config{};  // the model's configuration as text (JSON written by the model)
  // In file order. Names are unique; "/" separates the namespaces listed at the top of this file.
  std::vector<std::pair<std::string, Tensor>> tensors{};
  // Where it came from, for error messages: the path for a loaded checkpoint.
  std::string source = "(checkpoint in memory)";

  // The tensor with this name, or null.
  const Tensor* find(const std::string& name) const;
  // The tensor with this name; throws IoError naming the source and the tensor when absent.
  const Tensor& at(const std::string& name) const;
  // Appends a tensor under a new name (ValueError if the name is taken). The tensor is stored as
  // given (shared, not copied): clone() what may still change before the checkpoint is saved.
  void add(std::string name, Tensor value);
};

// Writes atomically: the bytes go to "<path>.tmp.<pid>" in the same directory, which is flushed,
// fsync'ed and renamed over `path`, and the directory is fsync'ed, so a crash leaves either the
// old file or the new one, never a partial one. CUDA tensors are copied to the host. Throws
// IoError naming the path and the system's reason (cannot open, disk full, …), after removing
// the temporary file; ValueError for duplicate or empty names.
void save_checkpoint(const std::filesystem::path& path, const Checkpoint& checkpoint);

// Reads and validates a whole checkpoint (see the format above); tensors come back on the CPU.
Checkpoint load_checkpoint(const std::filesystem::path& path);

// Copies (clones, on the host) every parameter of `module` into the checkpoint as
// "<prefix>/<parameter name>" (just the parameter name when the prefix is empty).
void add_module(Checkpoint& checkpoint, const std::string& prefix, const Module& module);

// Copies the checkpoint's "<prefix>/…" tensors into the module's parameters, in place (to the
// parameters' device). Every parameter must be present with its shape and dtype, and no other
// tensor may sit under the prefix (with an empty prefix: no other name without a "/"); otherwise
// IoError naming the source, the tensor, what the module expects and what was found. Nothing is
// copied unless everything matches.
void restore_module(const Checkpoint& checkpoint, const std::string& prefix, Module& module);

// The same for an optimizer's state (Optimizer::state(): "step", "exp_avg/<parameter>", …).
void add_optimizer(Checkpoint& checkpoint, const std::string& prefix, Optimizer& optimizer);
void restore_optimizer(const Checkpoint& checkpoint, const std::string& prefix,
                       Optimizer& optimizer);

// Generic form of the two above: named tensors owned elsewhere (a module's parameters, an
// optimizer's buffers, standardisation statistics: Standardizer::state()), added as host clones
// / restored in place with the same checks. `what` names the owner in messages ("module", …).
void add_tensors(Checkpoint& checkpoint, const std::string& prefix,
                 const std::vector<std::pair<std::string, const Tensor*>>& tensors);
// The same for the (name, Tensor*) lists that state() functions return.
void add_tensors(Checkpoint& checkpoint, const std::string& prefix,
                 const std::vector<std::pair<std::string, Tensor*>>& tensors);
void restore_tensors(const Checkpoint& checkpoint, const std::string& prefix,
                     const std::vector<std::pair<std::string, Tensor*>>& tensors, const char* what);

// FNV-1a, 64-bit (Fowler, Noll, Vo; offset basis 14695981039346656037, prime 1099511628211):
// h = (h ^ byte) * prime for each byte. Pass the previous result as `hash` to continue a running
// checksum over several pieces.
inline constexpr std::uint64_t kFnv1aBasis = 14695981039346656037ull;
std::uint64_t fnv1a64(std::span<const std::byte> bytes, std::uint64_t hash = kFnv1aBasis);

}  // namespace asbi::nn
