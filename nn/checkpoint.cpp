#include "nn/checkpoint.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <set>
#include <unordered_set>

#include "core/error.hpp"
#include "nn/optim.hpp"

namespace asbi::nn {
namespace {

static_assert(std::endian::native == std::endian::little,
              "checkpoints are little-endian and written from memory as is; a big-endian port "
              "must byte-swap every field and element");

using core::IoError;
using core::str;

// magic + version + file length + config length, then the tensor count and the checksum: the
// size of a checkpoint with no config and no tensors.
constexpr std::uint64_t kPreambleBytes = 8 + 4 + 8 + 8;
constexpr std::uint64_t kMinimumBytes = kPreambleBytes + 8 + 8;

std::string quoted(const std::filesystem::path& path) {
  return str("checkpoint '", path.string(), "'");
}

std::string errno_text() { return std::strerror(errno); }

std::uint8_t dtype_code(core::DType t) { return t == core::DType::f32 ? 0 : 1; }

std::string describe(const Tensor& t) { return str(t.dtype(), " ", t.shape()); }

std::string full_name(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "/" + name;
}

// Whether a checkpoint tensor name belongs under `prefix` (see restore_module).
bool under_prefix(const std::string& prefix, const std::string& name) {
  if (prefix.empty()) return name.find('/') == std::string::npos;
  return name.size() > prefix.size() + 1 && name.compare(0, prefix.size(), prefix) == 0 &&
         name[prefix.size()] == '/';
}

// --- writing ---------------------------------------------------------------------------------

// A temporary file that is removed unless commit() renamed it over the target.
class AtomicWriter {
 public:
  explicit AtomicWriter(const std::filesystem::path& target)
      : target_(target),
        temp_(target.string() + ".tmp." + std::to_string(static_cast<long>(::getpid()))) {
    const int fd = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) fail("cannot create the temporary file '" + temp_.string() + "'");
    file_ = ::fdopen(fd, "wb");
    if (!file_) {
      const int saved = errno;
      ::close(fd);
      errno = saved;
      fail("cannot open the temporary file '" + temp_.string() + "'");
    }
  }
  AtomicWriter(const AtomicWriter&) = delete;
  AtomicWriter& operator=(const AtomicWriter&) = delete;
  ~AtomicWriter() {
    if (file_) std::fclose(file_);
    if (!committed_) ::unlink(temp_.c_str());
  }

  void write(const void* data, std::size_t bytes) {
    if (bytes == 0) return;
    hash_ = fnv1a64({static_cast<const std::byte*>(data), bytes}, hash_);
    if (std::fwrite(data, 1, bytes, file_) != bytes) fail("cannot write");
  }
  template <typename T>
  void put(T value) {
    write(&value, sizeof value);
  }
  std::uint64_t hash() const { return hash_; }

  // Flush, fsync, close, rename over the target, fsync the directory.
  void commit() {
    if (std::fflush(file_) != 0) fail("cannot write");
    if (::fsync(::fileno(file_)) != 0) fail("cannot fsync");
    const int closed = std::fclose(file_);
    file_ = nullptr;
    if (closed != 0) fail("cannot close");
    if (std::rename(temp_.c_str(), target_.c_str()) != 0)
      fail("cannot rename '" + temp_.string() + "' over it");
    committed_ = true;
    // Without this the rename itself may be lost in a crash, leaving the old file in place.
    const std::filesystem::path dir =
        target_.parent_path().empty() ? std::filesystem::path(".") : target_.parent_path();
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) fail("cannot open its directory to fsync it");
    // Some file systems cannot fsync a directory (EINVAL); the data itself is safe by then.
    const bool synced = ::fsync(dfd) == 0 || errno == EINVAL;
    const int saved = errno;
    ::close(dfd);
    errno = saved;
    if (!synced) fail("cannot fsync its directory");
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw IoError(str("saving ", quoted(target_), ": ", what, ": ", errno_text()));
  }

  std::filesystem::path target_;
  std::filesystem::path temp_;
  std::FILE* file_ = nullptr;
  std::uint64_t hash_ = kFnv1aBasis;
  bool committed_ = false;
};

// --- reading ---------------------------------------------------------------------------------

class Reader {
 public:
  explicit Reader(const std::filesystem::path& path) : path_(path) {
    file_ = std::fopen(path.c_str(), "rb");
    if (!file_) throw IoError(str("cannot open ", quoted(path), ": ", errno_text()));
    struct stat st {};
    if (::fstat(::fileno(file_), &st) != 0) fail(str("cannot stat: ", errno_text()));
    if (!S_ISREG(st.st_mode)) fail("not a regular file");
    size_ = static_cast<std::uint64_t>(st.st_size);
  }
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;
  ~Reader() { std::fclose(file_); }

  std::uint64_t size() const { return size_; }
  std::uint64_t offset() const { return offset_; }
  void set_limit(std::uint64_t limit) { limit_ = limit; }

  [[noreturn]] void fail(const std::string& what) const {
    throw IoError(str(quoted(path_), ": ", what));
  }

  void seek(std::uint64_t offset) {
    if (std::fseek(file_, static_cast<long>(offset), SEEK_SET) != 0)
      fail(str("cannot seek to byte ", offset, ": ", errno_text()));
    offset_ = offset;
  }

  // Reads exactly `bytes` bytes, which must lie below the limit; `what` names the field.
  void read(void* out, std::uint64_t bytes, const std::string& what) {
    if (bytes > limit_ - std::min(offset_, limit_))
      fail(str("malformed: ", what, " needs ", bytes, " bytes at offset ", offset_,
               " but the records end at byte ", limit_));
    if (bytes > 0 && std::fread(out, 1, bytes, file_) != bytes)
      fail(str("cannot read ", what, " at offset ", offset_, ": ",
               std::ferror(file_) ? errno_text() : std::string("unexpected end of file")));
    offset_ += bytes;
  }
  template <typename T>
  T get(const std::string& what) {
    T value{};
    read(&value, sizeof value, what);
    return value;
  }

  // FNV-1a over bytes [0, end).
  std::uint64_t hash_prefix(std::uint64_t end) {
    seek(0);
    std::vector<std::byte> buffer(std::size_t{1} << 20);
    std::uint64_t hash = kFnv1aBasis;
    for (std::uint64_t done = 0; done < end;) {
      const std::size_t n =
          static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), end - done));
      if (std::fread(buffer.data(), 1, n, file_) != n)
        fail(str("cannot read bytes ", done, "…", done + n, ": ",
                 std::ferror(file_) ? errno_text() : std::string("unexpected end of file")));
      hash = fnv1a64({buffer.data(), n}, hash);
      done += n;
    }
    offset_ = end;
    return hash;
  }

 private:
  std::filesystem::path path_;
  std::FILE* file_ = nullptr;
  std::uint64_t size_ = 0;
  std::uint64_t offset_ = 0;
  std::uint64_t limit_ = std::numeric_limits<std::uint64_t>::max();
};

std::string hex(std::uint64_t v) {
  char buf[19];
  std::snprintf(buf, sizeof buf, "0x%016llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

std::uint64_t fnv1a64(std::span<const std::byte> bytes, std::uint64_t hash) {
  constexpr std::uint64_t prime = 1099511628211ull;
  for (std::byte b : bytes) hash = (hash ^ static_cast<std::uint64_t>(b)) * prime;
  return hash;
}

// --- Checkpoint --------------------------------------------------------------------------------

const Tensor* Checkpoint::find(const std::string& name) const {
  for (const auto& [n, t] : tensors)
    if (n == name) return &t;
  return nullptr;
}

const Tensor& Checkpoint::at(const std::string& name) const {
  if (const Tensor* t = find(name)) return *t;
  throw IoError(str(source, ": no tensor named '", name, "'"));
}

void Checkpoint::add(std::string name, Tensor value) {
  if (name.empty()) throw core::ValueError("Checkpoint::add: tensor names must not be empty");
  if (!value.defined())
    throw core::ValueError(str("Checkpoint::add: tensor '", name, "' is undefined"));
  if (find(name))
    throw core::ValueError(str("Checkpoint::add: a tensor named '", name, "' is already there"));
  tensors.emplace_back(std::move(name), std::move(value));
}

// --- save ---------------------------------------------------------------------------------------

void save_checkpoint(const std::filesystem::path& path, const Checkpoint& checkpoint) {
  // Check everything before the first byte is written, so a bad checkpoint leaves no trace.
  std::unordered_set<std::string> names;
  std::uint64_t length = kMinimumBytes + checkpoint.config.size();
  for (const auto& [name, t] : checkpoint.tensors) {
    if (name.empty() || name.size() > std::numeric_limits<std::uint32_t>::max())
      throw core::ValueError(str("saving ", quoted(path), ": a tensor name has ", name.size(),
                                 " bytes (expected 1 to 2^32 - 1)"));
    if (!t.defined())
      throw core::ValueError(str("saving ", quoted(path), ": tensor '", name, "' is undefined"));
    if (!names.insert(name).second)
      throw core::ValueError(str("saving ", quoted(path), ": duplicate tensor name '", name, "'"));
    length += 4 + name.size() + 1 + 1 + 8 * static_cast<std::uint64_t>(t.rank()) + t.bytes();
  }

  AtomicWriter out(path);
  out.write(kCheckpointMagic, sizeof kCheckpointMagic);
  out.put<std::uint32_t>(kCheckpointVersion);
  out.put<std::uint64_t>(length);
  out.put<std::uint64_t>(checkpoint.config.size());
  out.write(checkpoint.config.data(), checkpoint.config.size());
  out.put<std::uint64_t>(checkpoint.tensors.size());
  for (const auto& [name, t] : checkpoint.tensors) {
    out.put<std::uint32_t>(static_cast<std::uint32_t>(name.size()));
    out.write(name.data(), name.size());
    out.put<std::uint8_t>(dtype_code(t.dtype()));
    out.put<std::uint8_t>(static_cast<std::uint8_t>(t.rank()));
    for (std::int64_t d : t.shape()) out.put<std::int64_t>(d);
    const Tensor host = t.to(Device::cpu);  // a device tensor is copied; a host one is not
    out.write(host.raw(), host.bytes());
  }
  out.put<std::uint64_t>(out.hash());
  out.commit();
}

// --- load ---------------------------------------------------------------------------------------

Checkpoint load_checkpoint(const std::filesystem::path& path) {
  Reader in(path);
  const std::uint64_t size = in.size();

  // The magic first (a file of another kind should be called that, not "truncated").
  char magic[sizeof kCheckpointMagic] = {};
  const std::uint64_t magic_bytes = std::min<std::uint64_t>(size, sizeof magic);
  in.read(magic, magic_bytes, "the magic number");
  if (std::memcmp(magic, kCheckpointMagic, magic_bytes) != 0)
    in.fail("not an asbi checkpoint (the file does not start with \"ASBICKPT\")");
  // Each field is read as soon as the file holds it, so that a file cut anywhere after the
  // length field still says exactly how long it should be.
  auto too_short = [&] {
    in.fail(str("truncated: expected at least ", kMinimumBytes, " bytes, the file has ", size));
  };
  if (size < 12) too_short();
  const auto version = in.get<std::uint32_t>("the format version");
  if (version != kCheckpointVersion)
    in.fail(str("unsupported format version ", version, " (this build reads version ",
                kCheckpointVersion, ")"));
  if (size < 20) too_short();
  const auto length = in.get<std::uint64_t>("the file length");
  if (length < kMinimumBytes)
    in.fail(str("malformed: the header records a file length of ", length,
                " bytes, less than the smallest checkpoint (", kMinimumBytes, ")"));
  if (size < length) in.fail(str("truncated: expected ", length, " bytes, the file has ", size));
  if (size > length)
    in.fail(str("expected ", length, " bytes, the file has ", size, " (", size - length,
                " trailing bytes)"));

  const std::uint64_t computed = in.hash_prefix(size - 8);
  in.set_limit(size);
  const auto stored = in.get<std::uint64_t>("the checksum");
  if (stored != computed)
    in.fail(str("checksum mismatch (stored ", hex(stored), ", computed ", hex(computed),
                "): the file is corrupted"));

  // The bytes are what was written; what follows guards against a writer that wrote nonsense.
  in.seek(kPreambleBytes - 8);
  in.set_limit(size - 8);
  Checkpoint checkpoint;
  checkpoint.source = quoted(path);
  const auto config_bytes = in.get<std::uint64_t>("the config length");
  if (config_bytes > size) in.fail(str("malformed: config length ", config_bytes));
  checkpoint.config.resize(static_cast<std::size_t>(config_bytes));
  in.read(checkpoint.config.data(), config_bytes, "the config");

  const auto count = in.get<std::uint64_t>("the tensor count");
  // Each record takes at least 6 bytes (name length, one name byte, dtype, rank).
  if (count > (size - in.offset()) / 6)
    in.fail(str("malformed: ", count, " tensors cannot fit in ", size - in.offset(), " bytes"));
  checkpoint.tensors.reserve(static_cast<std::size_t>(count));
  std::unordered_set<std::string> names;
  for (std::uint64_t i = 0; i < count; ++i) {
    const std::string record = str("tensor ", i);
    const auto name_bytes = in.get<std::uint32_t>(record + ": name length");
    if (name_bytes == 0) in.fail(str(record, ": empty name"));
    std::string name(name_bytes, '\0');
    in.read(name.data(), name_bytes, record + ": name");
    const std::string label = str(record, " ('", name, "')");
    if (!names.insert(name).second) in.fail(str("duplicate tensor name '", name, "'"));

    const auto code = in.get<std::uint8_t>(label + ": dtype");
    if (code > 1)
      in.fail(
          str(label, ": unknown dtype code ", int(code), " (expected 0 = float32 or 1 = float64)"));
    const core::DType dtype = code == 0 ? core::DType::f32 : core::DType::f64;
    const auto rank = in.get<std::uint8_t>(label + ": rank");
    if (rank > Shape::max_rank)
      in.fail(str(label, ": rank ", int(rank), " (expected at most ", Shape::max_rank, ")"));
    Shape shape;
    std::uint64_t bytes = core::size_of(dtype);
    for (int d = 0; d < rank; ++d) {
      const auto dim = in.get<std::int64_t>(str(label, ": dimension ", d));
      if (dim < 0) in.fail(str(label, ": dimension ", d, " is ", dim, " (expected >= 0)"));
      // Bound each factor by the file size so that the product cannot overflow.
      const auto udim = static_cast<std::uint64_t>(dim);
      if (udim > size || (udim > 0 && bytes > size / udim))
        in.fail(str(label, ": dimension ", d, " = ", dim, " makes the data larger than the file"));
      bytes *= udim;
      shape.push_back(dim);
    }
    Tensor t = Tensor::empty(shape, dtype);
    in.read(t.raw(), t.bytes(), label + ": data");
    checkpoint.tensors.emplace_back(std::move(name), std::move(t));
  }
  if (in.offset() != size - 8)
    in.fail(str("malformed: the records end at byte ", in.offset(), ", the checksum starts at ",
                size - 8));
  return checkpoint;
}

// --- modules and optimizers ---------------------------------------------------------------------

void add_tensors(Checkpoint& checkpoint, const std::string& prefix,
                 const std::vector<std::pair<std::string, const Tensor*>>& tensors) {
  for (const auto& [name, t] : tensors) {
    // A host copy: the checkpoint must not change when training goes on.
    Tensor copy = t->device() == Device::cpu ? t->clone() : t->to(Device::cpu);
    checkpoint.add(full_name(prefix, name), std::move(copy));
  }
}

void add_tensors(Checkpoint& checkpoint, const std::string& prefix,
                 const std::vector<std::pair<std::string, Tensor*>>& tensors) {
  std::vector<std::pair<std::string, const Tensor*>> view(tensors.begin(), tensors.end());
  add_tensors(checkpoint, prefix, view);
}

void restore_tensors(const Checkpoint& checkpoint, const std::string& prefix,
                     const std::vector<std::pair<std::string, Tensor*>>& tensors,
                     const char* what) {
  std::set<std::string> expected;
  std::vector<std::string> missing;
  for (const auto& [name, t] : tensors) {
    const std::string key = full_name(prefix, name);
    expected.insert(key);
    const Tensor* found = checkpoint.find(key);
    if (!found) {
      missing.push_back(str("'", key, "' (", describe(*t), ")"));
      continue;
    }
    if (found->shape() != t->shape() || found->dtype() != t->dtype())
      throw IoError(str(checkpoint.source, ": tensor '", key, "': the ", what, " expects ",
                        describe(*t), ", the checkpoint has ", describe(*found)));
  }
  if (!missing.empty()) {
    std::string list;
    for (std::size_t i = 0; i < missing.size() && i < 5; ++i) list += (i ? ", " : "") + missing[i];
    if (missing.size() > 5) list += str(" and ", missing.size() - 5, " more");
    throw IoError(str(checkpoint.source, ": ", missing.size() == 1 ? "tensor " : "tensors ", list,
                      missing.size() == 1 ? " is" : " are", " missing (the ", what,
                      " expects it under prefix '", prefix, "')"));
  }
  for (const auto& [name, t] : checkpoint.tensors)
    if (under_prefix(prefix, name) && !expected.count(name))
      throw IoError(str(checkpoint.source, ": tensor '", name, "' (", describe(t),
                        ") is not part of the ", what, " (", expected.size(),
                        " tensors expected under prefix '", prefix, "')"));
  for (const auto& [name, t] : tensors) t->copy_from(*checkpoint.find(full_name(prefix, name)));
}

void add_module(Checkpoint& checkpoint, const std::string& prefix, const Module& module) {
  std::vector<std::pair<std::string, const Tensor*>> tensors;
  for (const NamedParameter& p : module.parameters())
    tensors.emplace_back(p.name, &p.parameter->value());
  add_tensors(checkpoint, prefix, tensors);
}

void restore_module(const Checkpoint& checkpoint, const std::string& prefix, Module& module) {
  std::vector<std::pair<std::string, Tensor*>> tensors;
  for (const NamedParameter& p : module.parameters())
    tensors.emplace_back(p.name, &p.parameter->value());
  restore_tensors(checkpoint, prefix, tensors, "module");
}

void add_optimizer(Checkpoint& checkpoint, const std::string& prefix, Optimizer& optimizer) {
  add_tensors(checkpoint, prefix, optimizer.state());
}

void restore_optimizer(const Checkpoint& checkpoint, const std::string& prefix,
                       Optimizer& optimizer) {
  restore_tensors(checkpoint, prefix, optimizer.state(), "optimizer");
}

}  // namespace asbi::nn
