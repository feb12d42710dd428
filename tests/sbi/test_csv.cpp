// CSV files in sbibm's layout: a round trip keeps every value and the header, a shipped reference
// file reads as it is, and each kind of bad file is refused with the file, line and column named.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "sbi/csv.hpp"
#include "test_util.hpp"

namespace asbi::sbi {
namespace {

namespace fs = std::filesystem;
using test_util::expect_error_naming;

class CsvTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("asbi_csv_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& text) const {
    const std::string path = (dir_ / name).string();
    std::ofstream(path) << text;
    return path;
  }
  fs::path dir_;
};

TEST_F(CsvTest, RoundTripKeepsValuesAndHeader) {
  const std::vector<double> v{0.1, -2.5e-300, 1.0 / 3.0, 7.0, -0.0, 123456789.123456789};
  const Tensor t = Tensor::from(v, {3, 2}, DType::f64);
  const std::string path = (dir_ / "out.csv").string();
  write_csv(path, t, {"parameter_1", "parameter_2"});
  std::vector<std::string> header;
  const Tensor back = read_csv(path, DType::f64, &header);
  EXPECT_EQ(header, (std::vector<std::string>{"parameter_1", "parameter_2"}));
  ASSERT_EQ(back.dim(0), 3);
  ASSERT_EQ(back.dim(1), 2);
  EXPECT_EQ(back.to_vector(), t.to_vector());             // bit-exact with max_digits10
  for (const auto& entry : fs::directory_iterator(dir_))  // no temporary file left behind
    EXPECT_EQ(entry.path().filename(), "out.csv");
}

TEST_F(CsvTest, Float32RoundTripAndOverwrite) {
  const Tensor t = Tensor::from({0.1, 0.2, 0.3}, {3, 1}, DType::f32);
  const std::string path = write("f.csv", "old,contents\n1,2\n");
  write_csv(path, t, {"a"});
  const Tensor back = read_csv(path, DType::f32);
  EXPECT_EQ(back.dtype(), DType::f32);
  EXPECT_EQ(back.to_vector(), t.to_vector());
}

TEST_F(CsvTest, HeaderOnlyGivesZeroRows) {
  const Tensor t = read_csv(write("h.csv", "a,b,c\n"));
  EXPECT_EQ(t.dim(0), 0);
  EXPECT_EQ(t.dim(1), 3);
}

TEST_F(CsvTest, ToleratesCrlfSpacesAndTrailingBlankLines) {
  const Tensor t = read_csv(write("w.csv", "a, b\r\n1, +2e1\r\n-3 ,4\r\n\n"));
  EXPECT_EQ(t.to_vector(), (std::vector<double>{1, 20, -3, 4}));
}

TEST_F(CsvTest, MissingFile) {
  const std::string path = (dir_ / "absent.csv").string();
  expect_error_naming<core::IoError>([&] { read_csv(path); }, {"absent.csv", "cannot open"});
}

TEST_F(CsvTest, EmptyFile) {
  const std::string path = write("empty.csv", "");
  expect_error_naming<core::IoError>([&] { read_csv(path); }, {"empty.csv", "empty", "header"});
}

TEST_F(CsvTest, WrongColumnCount) {
  const std::string path = write("cols.csv", "a,b\n1,2\n3,4\n5\n");
  expect_error_naming<core::IoError>([&] { read_csv(path); },
                                     {"cols.csv", "line 4", "expected 2 columns", "found 1"});
}

TEST_F(CsvTest, NonNumericCell) {
  const std::string path = write("text.csv", "a,b,c\n1,2,3\n4,abc,6\n");
  expect_error_naming<core::IoError>(
      [&] { read_csv(path); }, {"text.csv", "line 3", "column 2", "\"abc\"", "expected a number"});
  const std::string blank = write("blank.csv", "a,b\n1,\n");
  expect_error_naming<core::IoError>([&] { read_csv(blank); }, {"line 2", "column 2"});
}

TEST_F(CsvTest, NanRefusedUnlessAllowed) {
  const std::string path = write("nan.csv", "a,b\n1,2\nNaN,4\n");
  expect_error_naming<core::IoError>([&] { read_csv(path); },
                                     {"nan.csv", "line 3", "column 1", "NaN"});
  const Tensor t = read_csv(path, DType::f64, nullptr, /*allow_nan=*/true);
  EXPECT_TRUE(std::isnan(t.at(2)));
  EXPECT_EQ(t.at(3), 4.0);
}

TEST_F(CsvTest, WriteRefusesMismatchedHeader) {
  const Tensor t = Tensor::zeros({2, 2}, DType::f64);
  EXPECT_THROW(write_csv((dir_ / "x.csv").string(), t, {"only_one"}), core::ValueError);
  EXPECT_THROW(write_csv((dir_ / "absent_dir" / "x.csv").string(), t, {"a", "b"}), core::IoError);
}

TEST(CsvReference, ReadsShippedSbibmFile) {
  const char* root = std::getenv("ASBI_REFERENCE_DIR");
  const std::string path = std::string(root ? root : "") +
                           "/sbibm/two_moons/num_observation_1/reference_posterior_samples.csv";
  if (!root || !fs::exists(path)) GTEST_SKIP() << "reference samples not found at " << path;
  std::vector<std::string> header;
  const Tensor t = read_csv(path, DType::f64, &header);
  EXPECT_EQ(header, (std::vector<std::string>{"parameter_1", "parameter_2"}));
  EXPECT_EQ(t.dim(0), 10000);
  EXPECT_EQ(t.dim(1), 2);
  EXPECT_DOUBLE_EQ(t.at(0), -0.8059562);
}

}  // namespace
}  // namespace asbi::sbi
