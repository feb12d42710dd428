// corner_plot: a PNG for D = 1, 2, 4 with two series; ShapeError for mismatched dimensions before
// anything is written; on a gnuplot failure an IoError carrying its stderr and no file left
// behind (an existing image untouched); a clear message when gnuplot is missing.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "sbi/plot.hpp"

namespace asbi::sbi {
namespace {

namespace fs = std::filesystem;
using core::Tensor;

Tensor normals(std::int64_t n, std::int64_t d, double shift, std::uint64_t stream) {
  std::vector<double> v(static_cast<std::size_t>(n * d));
  core::fill_normal(5, stream, 0, std::span<double>(v));
  for (double& x : v) x += shift;
  return Tensor::from(v, {n, d}, core::DType::f64);
}

// A fresh empty folder per test, removed afterwards.
class CornerPlot : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "asbi-test-plot-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::vector<fs::path> files() const {
    std::vector<fs::path> out;
    for (const auto& e : fs::directory_iterator(dir_)) out.push_back(e.path().filename());
    return out;
  }
  fs::path dir_;
};

bool has_png_signature(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::string head(8, '\0');
  in.read(head.data(), 8);
  return in && head == std::string("\x89PNG\r\n\x1a\n", 8);
}

// Sets PATH for the lifetime of the object (to hide gnuplot or put a fake one first).
class ScopedPath {
 public:
  explicit ScopedPath(const std::string& path) : old_(std::getenv("PATH") ? std::getenv("PATH") : "") {
    setenv("PATH", path.c_str(), 1);
  }
  ~ScopedPath() { setenv("PATH", old_.c_str(), 1); }

 private:
  std::string old_;
};

TEST_F(CornerPlot, WritesPngForOneTwoAndFourDimensions) {
  if (!gnuplot_available()) GTEST_SKIP() << "gnuplot is not installed (apt-get install gnuplot-nox)";
  for (const std::int64_t d : {1, 2, 4}) {
    const fs::path out = dir_ / ("corner_" + std::to_string(d) + ".png");
    CornerOptions options{.truth = std::vector<double>(static_cast<std::size_t>(d), 0.2),
                          .max_points = 1000,
                          .title = "d = " + std::to_string(d) + ", it's a test"};
    corner_plot({{"asbi", normals(2000, d, 0.0, 1)}, {"reference", normals(1500, d, 0.5, 2)}},
                out, options);
    ASSERT_TRUE(fs::exists(out)) << out;
    EXPECT_GT(fs::file_size(out), 1000u);
    EXPECT_TRUE(has_png_signature(out));
  }
  EXPECT_EQ(files().size(), 3u);  // no temporary files left beside the images
}

TEST_F(CornerPlot, MismatchedDimensionsAreShapeErrors) {
  const fs::path out = dir_ / "bad.png";
  EXPECT_THROW(corner_plot({{"a", normals(10, 2, 0, 1)}, {"b", normals(10, 3, 0, 2)}}, out),
               core::ShapeError);
  EXPECT_THROW(corner_plot({{"a", normals(10, 2, 0, 1)}}, out, {.labels = {"only one"}}),
               core::ShapeError);
  EXPECT_THROW(corner_plot({{"a", normals(10, 2, 0, 1)}}, out, {.truth = {1, 2, 3}}),
               core::ShapeError);
  EXPECT_THROW(corner_plot({{"a", normals(10, 13, 0, 1)}}, out), core::ShapeError);
  EXPECT_THROW(corner_plot({}, out), core::ValueError);
  EXPECT_TRUE(files().empty());
}

TEST_F(CornerPlot, GnuplotFailureLeavesNoPartialFile) {
  // A fake gnuplot that writes half an image into the file named in the script, complains and
  // fails.
  const fs::path bin = dir_ / "bin";
  fs::create_directory(bin);
  {
    std::ofstream fake(bin / "gnuplot");
    fake << "#!/bin/sh\n"
            "out=$(sed -n \"s/^set output '\\(.*\\)'$/\\1/p\" \"$1\")\n"
            "printf 'half' > \"$out\"\n"
            "echo 'fake gnuplot: line 7: unknown terminal' >&2\n"
            "exit 1\n";
  }
  fs::permissions(bin / "gnuplot", fs::perms::owner_all);
  const fs::path out = dir_ / "corner.png";
  {
    std::ofstream old(out);
    old << "previous image";
  }
  {
    const ScopedPath path(bin.string() + ":/usr/bin:/bin");
    try {
      corner_plot({{"a", normals(100, 2, 0, 1)}}, out);
      ADD_FAILURE() << "expected an IoError";
    } catch (const core::IoError& e) {
      EXPECT_NE(std::string(e.what()).find("unknown terminal"), std::string::npos) << e.what();
    }
  }
  std::ifstream old(out);
  std::string content;
  std::getline(old, content);
  EXPECT_EQ(content, "previous image");
  EXPECT_EQ(files().size(), 2u);  // bin/ and the untouched corner.png, no temporary image
}

TEST_F(CornerPlot, MissingGnuplotSaysToInstallIt) {
  const ScopedPath path((dir_ / "empty").string());
  EXPECT_FALSE(gnuplot_available());
  try {
    corner_plot({{"a", normals(100, 2, 0, 1)}}, dir_ / "corner.png");
    ADD_FAILURE() << "expected an IoError";
  } catch (const core::IoError& e) {
    EXPECT_NE(std::string(e.what()).find("install gnuplot"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(files().empty());
}

}  // namespace
}  // namespace asbi::sbi
