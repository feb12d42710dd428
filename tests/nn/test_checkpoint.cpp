// Checkpoints: the round trip is bit-exact, every kind of damage gives an IoError that names the
// file and what is wrong, restoring checks names, shapes and dtypes, and a failed write never
// touches the file already there.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include "core/backend.hpp"
#include "nn/checkpoint.hpp"
#include "nn/layers.hpp"
#include "nn/optim.hpp"

namespace asbi::nn {
namespace {

namespace fs = std::filesystem;
using core::IoError;

// A fresh directory per test under the system's temp directory, removed afterwards.
class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<int> counter{0};
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           core::str("asbi_checkpoint_", info->name(), "_", ::getpid(), "_", counter++);
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::permissions(dir_, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(dir_, ec);
  }
  fs::path path(const std::string& name) const { return dir_ / name; }

  fs::path dir_;
};

std::vector<char> read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const fs::path& p, const std::vector<char>& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::memcmp(a.raw(), b.raw(), a.bytes()) == 0;
}

// The IoError's message, so that tests can check what it says; fails when nothing is thrown.
template <typename F>
std::string io_error(F&& f) {
  try {
    f();
  } catch (const IoError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an IoError";
  return "";
}

Checkpoint sample() {
  Checkpoint c;
  c.config = "{\"kind\": \"npe\", \"hidden\": [50, 50],\n \"note\": \"θ ∈ ℝ²\"}";
  const float special[] = {1.5f,
                           -0.0f,
                           std::numeric_limits<float>::quiet_NaN(),
                           std::numeric_limits<float>::infinity(),
                           1e-40f,
                           -3.25f};
  Tensor a = Tensor::empty({2, 3});
  std::memcpy(a.raw(), special, sizeof special);
  c.add("model/net.0.weight", a);
  c.add("model/net.0.bias", Tensor::from({0.1, 0.2, 1e300, -1e-300}, {4}, DType::f64));
  c.add("standardize/mean", Tensor::full({}, 7.0));                        // rank 0
  c.add("trainer/history", Tensor::zeros({0, 2}, DType::f64));             // no elements
  c.add("optim/exp_avg/x", Tensor::full({2, 1, 3, 2}, -2.5, DType::f32));  // rank 4
  return c;
}

// --- format pieces ---------------------------------------------------------------------------

TEST(Fnv1a64, KnownAnswers) {
  // Published test vectors of FNV-1a, 64 bit.
  auto h = [](const std::string& s) {
    return fnv1a64({reinterpret_cast<const std::byte*>(s.data()), s.size()});
  };
  EXPECT_EQ(h(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(h("a"), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(h("foobar"), 0x85944171f73967e8ull);
  // A running checksum over pieces equals the checksum of the whole.
  const std::string s = "foobar";
  const auto* p = reinterpret_cast<const std::byte*>(s.data());
  EXPECT_EQ(fnv1a64({p + 3, 3}, fnv1a64({p, 3})), h("foobar"));
}

// --- round trip ------------------------------------------------------------------------------

TEST_F(CheckpointTest, RoundTripIsBitExact) {
  const Checkpoint c = sample();
  save_checkpoint(path("a.ckpt"), c);
  const Checkpoint back = load_checkpoint(path("a.ckpt"));
  EXPECT_EQ(back.config, c.config);
  ASSERT_EQ(back.tensors.size(), c.tensors.size());
  for (std::size_t i = 0; i < c.tensors.size(); ++i) {
    EXPECT_EQ(back.tensors[i].first, c.tensors[i].first);
    EXPECT_EQ(back.tensors[i].second.device(), Device::cpu);
    EXPECT_TRUE(same_bits(back.tensors[i].second, c.tensors[i].second)) << c.tensors[i].first;
  }
  EXPECT_NE(back.source.find(path("a.ckpt").string()), std::string::npos);
  EXPECT_EQ(back.at("standardize/mean").item(), 7.0);
  EXPECT_EQ(back.find("nope"), nullptr);
  EXPECT_THROW(back.at("nope"), IoError);
}

TEST_F(CheckpointTest, EmptyCheckpointRoundTrips) {
  save_checkpoint(path("e.ckpt"), Checkpoint{});
  EXPECT_EQ(fs::file_size(path("e.ckpt")), 44u);  // magic, version, lengths, count, checksum
  const Checkpoint back = load_checkpoint(path("e.ckpt"));
  EXPECT_TRUE(back.config.empty());
  EXPECT_TRUE(back.tensors.empty());
}

TEST_F(CheckpointTest, HeaderLayoutIsAsDocumented) {
  save_checkpoint(path("a.ckpt"), sample());
  const std::vector<char> b = read_bytes(path("a.ckpt"));
  ASSERT_GE(b.size(), 28u);
  EXPECT_EQ(std::string(b.data(), 8), "ASBICKPT");
  std::uint32_t version;
  std::uint64_t length;
  std::memcpy(&version, b.data() + 8, 4);
  std::memcpy(&length, b.data() + 12, 8);
  EXPECT_EQ(version, kCheckpointVersion);
  EXPECT_EQ(length, b.size());
}

TEST_F(CheckpointTest, SaveReplacesAndLeavesNoTemporaryFile) {
  Checkpoint first;
  first.config = "first";
  save_checkpoint(path("m.ckpt"), first);
  save_checkpoint(path("m.ckpt"), sample());
  EXPECT_EQ(load_checkpoint(path("m.ckpt")).config, sample().config);
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename());
  EXPECT_EQ(names, std::vector<std::string>{"m.ckpt"});
}

TEST_F(CheckpointTest, InvalidContentIsRefusedBeforeWriting) {
  Checkpoint c;
  EXPECT_NO_THROW(c.add("x", Tensor::zeros({1})));
  EXPECT_THROW(c.add("x", Tensor::zeros({1})), core::ValueError);
  EXPECT_THROW(c.add("", Tensor::zeros({1})), core::ValueError);
  EXPECT_THROW(c.add("y", Tensor()), core::ValueError);
  c.tensors.emplace_back("x", Tensor::zeros({2}));  // bypassing add()
  EXPECT_THROW(save_checkpoint(path("d.ckpt"), c), core::ValueError);
  EXPECT_FALSE(fs::exists(path("d.ckpt")));
  EXPECT_TRUE(fs::is_empty(dir_));
}

// --- damage ----------------------------------------------------------------------------------

TEST_F(CheckpointTest, FlippedByteIsAChecksumMismatch) {
  save_checkpoint(path("a.ckpt"), sample());
  std::vector<char> b = read_bytes(path("a.ckpt"));
  for (std::size_t at : {b.size() / 2, b.size() - 20, std::size_t{40}}) {
    std::vector<char> damaged = b;
    damaged[at] = static_cast<char>(damaged[at] ^ 0x10);
    write_bytes(path("bad.ckpt"), damaged);
    const std::string message = io_error([&] { load_checkpoint(path("bad.ckpt")); });
    EXPECT_NE(message.find("checksum mismatch"), std::string::npos) << "byte " << at << message;
    EXPECT_NE(message.find(path("bad.ckpt").string()), std::string::npos) << message;
  }
}

TEST_F(CheckpointTest, TruncatedFilesSayHowLongTheyShouldBe) {
  save_checkpoint(path("a.ckpt"), sample());
  const std::vector<char> b = read_bytes(path("a.ckpt"));
  // Inside the magic, inside the version, inside the length fields, inside the config, inside a
  // tensor's data, and one byte short of the checksum.
  for (std::size_t keep : {std::size_t{0}, std::size_t{5}, std::size_t{10}, std::size_t{16},
                           std::size_t{27}, std::size_t{40}, b.size() / 2, b.size() - 1}) {
    write_bytes(path("short.ckpt"), std::vector<char>(b.begin(), b.begin() + keep));
    const std::string message = io_error([&] { load_checkpoint(path("short.ckpt")); });
    EXPECT_NE(message.find("truncated"), std::string::npos) << keep << ": " << message;
    EXPECT_NE(message.find(path("short.ckpt").string()), std::string::npos) << message;
    if (keep >= 20) {
      EXPECT_NE(message.find(core::str("expected ", b.size(), " bytes, the file has ", keep)),
                std::string::npos)
          << message;
    }
  }
}

TEST_F(CheckpointTest, TrailingBytesAreReported) {
  save_checkpoint(path("a.ckpt"), sample());
  std::vector<char> b = read_bytes(path("a.ckpt"));
  b.push_back('x');
  write_bytes(path("long.ckpt"), b);
  const std::string message = io_error([&] { load_checkpoint(path("long.ckpt")); });
  EXPECT_NE(message.find("1 trailing bytes"), std::string::npos) << message;
}

TEST_F(CheckpointTest, WrongMagicIsNotACheckpoint) {
  save_checkpoint(path("a.ckpt"), sample());
  std::vector<char> b = read_bytes(path("a.ckpt"));
  b[0] = 'X';
  write_bytes(path("bad.ckpt"), b);
  EXPECT_NE(io_error([&] { load_checkpoint(path("bad.ckpt")); }).find("not an asbi checkpoint"),
            std::string::npos);
  write_bytes(path("text.ckpt"), {'h', 'e', 'l', 'l', 'o'});
  EXPECT_NE(io_error([&] { load_checkpoint(path("text.ckpt")); }).find("not an asbi checkpoint"),
            std::string::npos);
}

TEST_F(CheckpointTest, FutureVersionIsUnsupported) {
  save_checkpoint(path("a.ckpt"), sample());
  std::vector<char> b = read_bytes(path("a.ckpt"));
  const std::uint32_t future = kCheckpointVersion + 1;
  std::memcpy(b.data() + 8, &future, 4);
  write_bytes(path("v2.ckpt"), b);
  const std::string message = io_error([&] { load_checkpoint(path("v2.ckpt")); });
  EXPECT_NE(message.find(core::str("unsupported format version ", future)), std::string::npos)
      << message;
  EXPECT_NE(message.find("reads version 1"), std::string::npos) << message;
}

TEST_F(CheckpointTest, MissingFileOrDirectoryCannotBeOpened) {
  EXPECT_NE(io_error([&] { load_checkpoint(path("absent.ckpt")); }).find("cannot open"),
            std::string::npos);
  EXPECT_NE(io_error([&] { load_checkpoint(dir_); }).find("not a regular file"), std::string::npos);
}

// Files with a valid checksum but bad records, as a buggy writer would make them.
class RecordWriter {
 public:
  RecordWriter() {
    put_bytes("ASBICKPT", 8);
    put<std::uint32_t>(1);
    put<std::uint64_t>(0);  // file length, patched in finish()
    put<std::uint64_t>(0);  // no config
  }
  template <typename T>
  void put(T v) {
    put_bytes(&v, sizeof v);
  }
  void put_bytes(const void* p, std::size_t n) {
    const std::size_t at = bytes_.size();
    bytes_.resize(at + n);
    std::memcpy(bytes_.data() + at, p, n);
  }
  void tensor(const std::string& name, std::uint8_t dtype, std::vector<std::int64_t> dims,
              std::size_t data_bytes) {
    put<std::uint32_t>(static_cast<std::uint32_t>(name.size()));
    put_bytes(name.data(), name.size());
    put<std::uint8_t>(dtype);
    put<std::uint8_t>(static_cast<std::uint8_t>(dims.size()));
    for (std::int64_t d : dims) put<std::int64_t>(d);
    bytes_.resize(bytes_.size() + data_bytes, 0);
  }
  std::vector<char> finish() {
    std::vector<char> b = bytes_;
    const std::uint64_t length = b.size() + 8;
    std::memcpy(b.data() + 12, &length, 8);
    const std::uint64_t h = fnv1a64({reinterpret_cast<const std::byte*>(b.data()), b.size()});
    b.resize(b.size() + 8);
    std::memcpy(b.data() + b.size() - 8, &h, 8);
    return b;
  }

 private:
  std::vector<char> bytes_;
};

TEST_F(CheckpointTest, BadRecordsAreNamed) {
  struct Case {
    const char* expect;
    std::function<void(RecordWriter&)> build;
  };
  const std::vector<Case> cases = {
      {"unknown dtype code 7",
       [](RecordWriter& w) {
         w.put<std::uint64_t>(1);
         w.tensor("w", 7, {2}, 8);
       }},
      {"rank 5 (expected at most 4)",
       [](RecordWriter& w) {
         w.put<std::uint64_t>(1);
         w.tensor("w", 0, {1, 1, 1, 1, 1}, 4);
       }},
      {"dimension 1 is -3 (expected >= 0)",
       [](RecordWriter& w) {
         w.put<std::uint64_t>(1);
         w.tensor("w", 0, {2, -3}, 0);
       }},
      {"duplicate tensor name 'w'",
       [](RecordWriter& w) {
         w.put<std::uint64_t>(2);
         w.tensor("w", 0, {1}, 4);
         w.tensor("w", 1, {1}, 8);
       }},
      {"tensor 0 ('w'): data",  // the data runs into the checksum
       [](RecordWriter& w) {
         w.put<std::uint64_t>(1);
         w.tensor("w", 1, {3}, 8);
       }},
      {"the records end at byte",  // bytes left between the last record and the checksum
       [](RecordWriter& w) {
         w.put<std::uint64_t>(1);
         w.tensor("w", 0, {1}, 12);
       }},
  };
  for (const Case& c : cases) {
    RecordWriter w;
    c.build(w);
    write_bytes(path("r.ckpt"), w.finish());
    const std::string message = io_error([&] { load_checkpoint(path("r.ckpt")); });
    EXPECT_NE(message.find(c.expect), std::string::npos) << c.expect << " | " << message;
    EXPECT_NE(message.find(path("r.ckpt").string()), std::string::npos) << message;
  }
}

// --- atomic writes ---------------------------------------------------------------------------

TEST_F(CheckpointTest, FailedWriteInReadOnlyDirectoryKeepsTheOldFile) {
  save_checkpoint(path("m.ckpt"), sample());
  const std::vector<char> before = read_bytes(path("m.ckpt"));
  fs::permissions(dir_, fs::perms::owner_read | fs::perms::owner_exec);
  // root ignores directory permissions; then there is nothing to observe here (the test below
  // makes the same failure another way).
  if (::access(dir_.c_str(), W_OK) == 0) GTEST_SKIP() << "directory permissions not enforced";
  Checkpoint other;
  other.config = "other";
  const std::string message = io_error([&] { save_checkpoint(path("m.ckpt"), other); });
  EXPECT_NE(message.find(path("m.ckpt").string()), std::string::npos) << message;
  EXPECT_NE(message.find("ermission denied"), std::string::npos) << message;
  EXPECT_EQ(read_bytes(path("m.ckpt")), before);
}

TEST_F(CheckpointTest, FailedTemporaryFileKeepsTheOldFile) {
  save_checkpoint(path("m.ckpt"), sample());
  const std::vector<char> before = read_bytes(path("m.ckpt"));
  // A directory where the temporary file would go: creating it fails.
  const fs::path blocker = path(core::str("m.ckpt.tmp.", ::getpid()));
  fs::create_directory(blocker);
  fs::create_directory(blocker / "inside");
  Checkpoint other;
  other.config = "other";
  const std::string message = io_error([&] { save_checkpoint(path("m.ckpt"), other); });
  EXPECT_NE(message.find("temporary file"), std::string::npos) << message;
  EXPECT_EQ(read_bytes(path("m.ckpt")), before);
  fs::remove_all(blocker);
}

TEST_F(CheckpointTest, FailedRenameRemovesTheTemporaryFile) {
  // The target is a non-empty directory: everything but the rename succeeds.
  fs::create_directories(path("m.ckpt") / "inside");
  const std::string message = io_error([&] { save_checkpoint(path("m.ckpt"), sample()); });
  EXPECT_NE(message.find("cannot rename"), std::string::npos) << message;
  EXPECT_TRUE(fs::is_directory(path("m.ckpt")));
  std::size_t entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir_)) ++entries;
  EXPECT_EQ(entries, 1u);  // the directory itself, no temporary file
}

TEST_F(CheckpointTest, DiskFullIsAnIoError) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  // Writing through a symlink to /dev/full fails as a full disk does, but only at the rename
  // step can a file be replaced; so point the temporary file at it instead.
  const fs::path link = path(core::str("m.ckpt.tmp.", ::getpid()));
  fs::create_symlink("/dev/full", link);
  const std::string message = io_error([&] { save_checkpoint(path("m.ckpt"), sample()); });
  EXPECT_NE(message.find("No space left on device"), std::string::npos) << message;
  EXPECT_FALSE(fs::exists(path("m.ckpt")));
}

// --- modules and optimizers ------------------------------------------------------------------

TEST_F(CheckpointTest, ModuleRoundTripAndMismatches) {
  core::Rng rng(1);
  Mlp model(3, {8}, 2, rng);
  Checkpoint c;
  add_module(c, "model", model);
  ASSERT_NE(c.find("model/0.weight"), nullptr);
  EXPECT_EQ(c.tensors.size(), 4u);
  save_checkpoint(path("m.ckpt"), c);
  Checkpoint loaded = load_checkpoint(path("m.ckpt"));

  core::Rng other_rng(2);
  Mlp fresh(3, {8}, 2, other_rng);
  restore_module(loaded, "model", fresh);
  for (std::size_t i = 0; i < 4; ++i)
    EXPECT_TRUE(same_bits(model.parameters()[i].parameter->value(),
                          fresh.parameters()[i].parameter->value()));

  core::Rng r3(3);
  Mlp wider(3, {9}, 2, r3);
  const Tensor untouched = wider.parameters()[0].parameter->value().clone();
  std::string message = io_error([&] { restore_module(loaded, "model", wider); });
  EXPECT_NE(message.find("tensor 'model/0.weight'"), std::string::npos) << message;
  EXPECT_NE(message.find("expects float32 [9, 3]"), std::string::npos) << message;
  EXPECT_NE(message.find("has float32 [8, 3]"), std::string::npos) << message;
  EXPECT_NE(message.find(path("m.ckpt").string()), std::string::npos) << message;
  EXPECT_TRUE(same_bits(wider.parameters()[0].parameter->value(), untouched));

  Mlp doubles(3, {8}, 2, r3, Activation::relu, DType::f64);
  message = io_error([&] { restore_module(loaded, "model", doubles); });
  EXPECT_NE(message.find("expects float64 [8, 3], the checkpoint has float32 [8, 3]"),
            std::string::npos)
      << message;

  Linear no_bias(3, 2, r3, /*bias=*/false);
  Checkpoint bare;
  add_module(bare, "model", no_bias);
  Linear with_bias(3, 2, r3);
  message = io_error([&] { restore_module(bare, "model", with_bias); });
  EXPECT_NE(message.find("tensor 'model/bias' (float32 [2]) is missing"), std::string::npos)
      << message;

  Mlp shallower(3, {}, 2, r3);
  Checkpoint shallow_ckpt;
  add_module(shallow_ckpt, "model", shallower);
  shallow_ckpt.add("model/extra", Tensor::zeros({1}));
  message = io_error([&] { restore_module(shallow_ckpt, "model", shallower); });
  EXPECT_NE(message.find("'model/extra'"), std::string::npos) << message;
  EXPECT_NE(message.find("not part of the module"), std::string::npos) << message;
}

TEST_F(CheckpointTest, EmptyPrefixUsesBareNames) {
  core::Rng rng(1);
  Linear layer(2, 3, rng);
  Checkpoint c;
  add_module(c, "", layer);
  c.add("optim/step", Tensor::zeros({1}, DType::f64));  // other namespaces are not "extra"
  EXPECT_NE(c.find("weight"), nullptr);
  Linear fresh(2, 3, rng);
  restore_module(c, "", fresh);
  EXPECT_TRUE(same_bits(fresh.weight().value(), layer.weight().value()));
}

TEST_F(CheckpointTest, OptimizerStateRoundTrips) {
  core::Rng rng(4);
  Linear layer(2, 2, rng);
  auto opt = adam(layer.parameters());
  for (int step = 0; step < 3; ++step) {
    for (const NamedParameter& p : layer.parameters())
      core::backend(Device::cpu).fill(p.parameter->grad(), 0.25 * (step + 1));
    opt->step();
  }
  Checkpoint c;
  add_optimizer(c, "optim", *opt);
  save_checkpoint(path("o.ckpt"), c);
  const Checkpoint loaded = load_checkpoint(path("o.ckpt"));
  EXPECT_EQ(loaded.at("optim/step").item(), 3.0);

  auto fresh = adam(layer.parameters());
  restore_optimizer(loaded, "optim", *fresh);
  auto a = opt->state(), b = fresh->state();
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    EXPECT_TRUE(same_bits(*a[i].second, *b[i].second)) << a[i].first;
  }

  auto momentum = sgd(layer.parameters(), {.momentum = 0.9});
  const std::string message = io_error([&] { restore_optimizer(loaded, "optim", *momentum); });
  EXPECT_NE(message.find("optimizer"), std::string::npos) << message;
}

TEST_F(CheckpointTest, CudaTensorsAreSavedFromTheHostCopy) {
  if (!core::device_available(Device::cuda)) GTEST_SKIP() << "no CUDA device";
  Checkpoint c;
  const Tensor host = Tensor::from({1, 2, 3, 4, 5, 6}, {2, 3});
  c.add("x", host.to(Device::cuda));
  save_checkpoint(path("g.ckpt"), c);
  const Checkpoint back = load_checkpoint(path("g.ckpt"));
  EXPECT_EQ(back.at("x").device(), Device::cpu);
  EXPECT_TRUE(same_bits(back.at("x"), host));

  core::Rng rng(5);
  Linear gpu_layer(3, 2, rng);
  gpu_layer.weight().value() = gpu_layer.weight().value().to(Device::cuda);
  Checkpoint w;
  w.add("weight", Tensor::full({2, 3}, 0.5));
  w.add("bias", Tensor::full({2}, 0.5));
  restore_module(w, "", gpu_layer);
  EXPECT_EQ(gpu_layer.weight().value().device(), Device::cuda);
  EXPECT_EQ(gpu_layer.weight().value().to_vector(), std::vector<double>(6, 0.5));
}

// A module trained on the GPU is saved from there and restored into a CPU module with the same
// bits; a CPU checkpoint restores into a module on the GPU, which stays there.
TEST_F(CheckpointTest, ModulesMoveBetweenDevicesThroughACheckpoint) {
  if (!core::device_available(Device::cuda)) GTEST_SKIP() << "no CUDA device";
  core::Rng rng(6);
  Mlp gpu(3, {8}, 2, rng);
  gpu.to(Device::cuda);
  Checkpoint saved;
  add_module(saved, "model", gpu);
  save_checkpoint(path("gpu.ckpt"), saved);
  core::Rng other(7);
  Mlp cpu(3, {8}, 2, other);
  restore_module(load_checkpoint(path("gpu.ckpt")), "model", cpu);
  EXPECT_EQ(cpu.device(), Device::cpu);
  const std::vector<NamedParameter> a = gpu.parameters(), b = cpu.parameters();
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i)
    EXPECT_TRUE(same_bits(a[i].parameter->value().to(Device::cpu), b[i].parameter->value()))
        << a[i].name;

  Checkpoint host;
  add_module(host, "model", cpu);
  save_checkpoint(path("cpu.ckpt"), host);
  core::Rng third(8);
  Mlp back(3, {8}, 2, third);
  back.to(Device::cuda);
  restore_module(load_checkpoint(path("cpu.ckpt")), "model", back);
  EXPECT_EQ(back.device(), Device::cuda);
  const std::vector<NamedParameter> c = back.parameters();
  for (std::size_t i = 0; i < c.size(); ++i)
    EXPECT_TRUE(same_bits(c[i].parameter->value().to(Device::cpu), b[i].parameter->value()))
        << c[i].name;
}

}  // namespace
}  // namespace asbi::nn
