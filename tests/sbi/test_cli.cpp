// The asbi command, run as a separate program: every subcommand's help, the happy paths on small
// inputs, and every kind of bad input ending in exactly one stderr line that names the file or
// field, with a non-zero exit code.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "core/backend.hpp"
#include "sbi/csv.hpp"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct CliResult {
  int code = -1;
  std::string out, err;
  // stderr's lines (a trailing newline does not start another).
  std::vector<std::string> err_lines() const {
    std::vector<std::string> lines;
    std::istringstream in(err);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
  }
};

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

bool reference_data_available() {
  const char* dir = std::getenv("ASBI_REFERENCE_DIR");
  return dir != nullptr && fs::is_directory(fs::path(dir) / "sbibm" / "two_moons");
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
#ifndef ASBI_CLI_PATH
    GTEST_SKIP() << "the asbi command is not built (ASBI_BUILD_APPS=OFF)";
#endif
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("asbi_cli_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  // Runs `asbi <args>` in the test's folder.
  CliResult run(const std::string& args) const {
#ifdef ASBI_CLI_PATH
    const fs::path out = dir_ / "stdout.txt", err = dir_ / "stderr.txt";
    const std::string command = "cd '" + dir_.string() + "' && '" + std::string(ASBI_CLI_PATH) +
                                "' " + args + " >'" + out.string() + "' 2>'" + err.string() + "'";
    const int status = std::system(command.c_str());
    CliResult r;
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = read_file(out);
    r.err = read_file(err);
    return r;
#else
    (void)args;
    return {};
#endif
  }

  fs::path path(const std::string& name) const { return dir_ / name; }
  fs::path file(const std::string& name, const std::string& text) const {
    write_file(path(name), text);
    return path(name);
  }

  // A failure: non-zero code, one stderr line "asbi <sub>: error: …" holding every `needle`.
  static void expect_one_line_error(const CliResult& r, const std::string& subcommand,
                                    const std::vector<std::string>& needles, int code = 1) {
    EXPECT_EQ(r.code, code) << r.err;
    const auto lines = r.err_lines();
    ASSERT_EQ(lines.size(), 1u) << r.err;
    EXPECT_EQ(lines[0].rfind("asbi " + subcommand + ": error: ", 0), 0u) << lines[0];
    for (const auto& needle : needles)
      EXPECT_NE(lines[0].find(needle), std::string::npos) << "'" << needle << "' not in: "
                                                          << lines[0];
  }

  // A small trained NPE model in the test's folder.
  fs::path trained_model() const {
    const CliResult r = run(
        "train --task two_moons --method npe --simulations 500 --max-epochs 3 --transforms 1 "
        "--hidden 16 --seed 2 --progress none --out model --json");
    EXPECT_EQ(r.code, 0) << r.err;
    return path("model");
  }

  fs::path dir_;
};

// ---------------------------------------------------------------------------------------------
// Help and happy paths.

TEST_F(CliTest, EverySubcommandHelpShowsAnExample) {
  for (const std::string sub :
       {"tasks", "simulate", "train", "sample", "reference", "c2st", "mmd", "plot", "run", "sbc"}) {
    const CliResult r = run(sub + " --help");
    EXPECT_EQ(r.code, 0) << sub << ": " << r.err;
    EXPECT_NE(r.out.find("Example:\n  asbi " + sub), std::string::npos) << sub << ":\n" << r.out;
  }
}

TEST_F(CliTest, NoSubcommandIsAUsageError) {
  const CliResult r = run("");
  EXPECT_EQ(r.code, 2);
  ASSERT_EQ(r.err_lines().size(), 1u) << r.err;
  EXPECT_EQ(r.err_lines()[0].rfind("asbi: error: ", 0), 0u) << r.err;
}

TEST_F(CliTest, TasksListsDimensionsAndPriorsAsJson) {
  const CliResult r = run("tasks --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const json tasks = json::parse(r.out);
  ASSERT_TRUE(tasks.is_array());
  bool found = false, found_set = false;
  for (const json& t : tasks) {
    if (t["name"] == "two_moons") {
      found = true;
      EXPECT_EQ(t["kind"], "benchmark");
      EXPECT_EQ(t["theta_dim"], 2);
      EXPECT_EQ(t["x_dim"], 2);
      EXPECT_EQ(t["prior"], "U(-1, 1)^2");
    }
    if (t["name"] == "gaussian_nuisance") {
      found_set = true;
      EXPECT_EQ(t["kind"], "set");
      EXPECT_EQ(t["targets"], json::array({"mu"}));
      EXPECT_EQ(t["nuisance"], json::array({"sigma2"}));
      EXPECT_EQ(t["element_dim"], 1);
    }
  }
  EXPECT_TRUE(found) << r.out;
  EXPECT_TRUE(found_set) << r.out;
  const CliResult table = run("tasks");
  EXPECT_EQ(table.code, 0);
  EXPECT_NE(table.out.find("gaussian_linear"), std::string::npos);
  EXPECT_NE(table.out.find("gp_replicates"), std::string::npos);
}

TEST_F(CliTest, SimulateWritesHeaderAndRowsReproducibly) {
  const CliResult r = run("simulate --task two_moons --num 50 --seed 3 --out a.csv --json");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["simulations"], 50);
  std::vector<std::string> header;
  const auto rows = asbi::sbi::read_csv(path("a.csv").string(), asbi::core::DType::f64, &header);
  EXPECT_EQ(rows.dim(0), 50);
  EXPECT_EQ(header, (std::vector<std::string>{"parameter_1", "parameter_2", "data_1", "data_2"}));
  ASSERT_EQ(run("simulate --task two_moons --num 50 --seed 3 --threads 1 --out b.csv").code, 0);
  EXPECT_EQ(read_file(path("a.csv")), read_file(path("b.csv")));
}

TEST_F(CliTest, C2stAndMmdOfASetAgainstItselfShowNoDifference) {
  ASSERT_EQ(run("simulate --task two_moons --num 100 --seed 1 --out a.csv").code, 0);
  ASSERT_EQ(run("simulate --task two_moons --num 300 --seed 2 --out b.csv").code, 0);
  const CliResult c2st = run("c2st --samples a.csv --reference b.csv --json");
  ASSERT_EQ(c2st.code, 0) << c2st.err;
  // The larger set is subsampled, so that 0.5 still means "indistinguishable".
  EXPECT_EQ(json::parse(c2st.out)["reference"], 100);
  const double accuracy = json::parse(c2st.out)["c2st"];
  EXPECT_GT(accuracy, 0.3);
  EXPECT_LT(accuracy, 0.7);
  const CliResult mmd = run("mmd --samples a.csv --reference b.csv");
  ASSERT_EQ(mmd.code, 0) << mmd.err;
  EXPECT_EQ(mmd.out.rfind("mmd ", 0), 0u) << mmd.out;
  EXPECT_LT(std::abs(std::stod(mmd.out.substr(4))), 0.05);
}

TEST_F(CliTest, PlotWritesACornerPlot) {
  if (std::system("command -v gnuplot > /dev/null 2>&1") != 0) GTEST_SKIP() << "no gnuplot";
  ASSERT_EQ(run("simulate --task two_moons --num 200 --seed 1 --out a.csv").code, 0);
  ASSERT_EQ(run("simulate --task two_moons --num 200 --seed 2 --out b.csv").code, 0);
  const CliResult r = run("plot --samples a.csv --reference b.csv --out corner.png");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(read_file(path("corner.png")).substr(1, 3), "PNG");
}

TEST_F(CliTest, PrintDefaultConfigReadsBackAsAConfig) {
  const CliResult r = run("run --print-default-config");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("name = 'two_moons'"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("count = 10000"), std::string::npos) << r.out;
  // Read back, it is the same job.
  file("default.toml", r.out);
  const CliResult back = run("run default.toml --dry-run");
  ASSERT_EQ(back.code, 0) << back.err;
  EXPECT_EQ(back.out, r.out);
  // The example config is the default job with comments.
  const CliResult example = run("run '" + std::string(ASBI_SOURCE_DIR) +
                                "/examples/configs/two_moons_npe.toml' --dry-run --out asbi-run");
  ASSERT_EQ(example.code, 0) << example.err;
  EXPECT_EQ(example.out, r.out);
  // The set-task example is a valid job too.
  const CliResult set_example =
      run("run '" + std::string(ASBI_SOURCE_DIR) +
          "/examples/configs/gaussian_nuisance_pairs.toml' --dry-run");
  ASSERT_EQ(set_example.code, 0) << set_example.err;
  EXPECT_NE(set_example.out.find("fine_tune_head = true"), std::string::npos) << set_example.out;
}

TEST_F(CliTest, TrainThenSampleRoundTrip) {
  const fs::path model = trained_model();
  for (const char* f : {"model.asbi", "config.toml", "training_log.csv"})
    EXPECT_TRUE(fs::is_regular_file(model / f)) << f;
  std::vector<std::string> header;
  const auto log = asbi::sbi::read_csv((model / "training_log.csv").string(),
                                       asbi::core::DType::f64, &header);
  EXPECT_EQ(header,
            (std::vector<std::string>{"round", "epoch", "train_loss", "validation_loss"}));
  EXPECT_EQ(log.dim(0), 3);

  file("x.csv", "data_1,data_2\n-0.6396706,0.16234657\n");
  const CliResult r =
      run("sample --model model --observation x.csv --num-samples 300 --out s.csv --json");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["samples"], 300);
  const auto samples = asbi::sbi::read_csv(path("s.csv").string());
  EXPECT_EQ(samples.dim(0), 300);
  EXPECT_EQ(samples.dim(1), 2);
  // Trained without an observation, the model needs one to sample.
  expect_one_line_error(run("sample --model model --out u.csv"), "sample",
                        {"--observation", "config.toml"});
  // Same seed, same samples.
  ASSERT_EQ(run("sample --model model --observation x.csv --num-samples 300 --out t.csv").code, 0);
  EXPECT_EQ(read_file(path("s.csv")), read_file(path("t.csv")));

  // The folder's config.toml is a config `asbi run` accepts, and the same job.
  const CliResult again = run("run model/config.toml --dry-run");
  ASSERT_EQ(again.code, 0) << again.err;
  EXPECT_EQ(again.out, read_file(model / "config.toml"));
  EXPECT_NE(again.out.find("seed = 2"), std::string::npos) << again.out;
}

TEST_F(CliTest, RunsASmallJobFromAConfig) {
  file("job.toml",
       "[task]\nname = \"two_moons\"\nobservation_file = \"x.csv\"\n"
       "[simulation]\ncount = 400\n[training]\nmax_epochs = 2\n"
       "[network]\ntransforms = 1\nhidden = 16\n"
       "[sampling]\nnum_samples = 200\n[output]\ndir = \"job\"\nplot = false\n");
  file("x.csv", "data_1,data_2\n-0.6396706,0.16234657\n");
  const CliResult r = run("run job.toml --json --progress none");
  ASSERT_EQ(r.code, 0) << r.err;
  const json summary = json::parse(r.out);
  EXPECT_EQ(summary["sampling"]["samples"], 200);
  EXPECT_TRUE(summary["c2st"].is_null());  // not an sbibm observation: no reference
  EXPECT_TRUE(fs::is_regular_file(path("job") / "samples.csv"));
  EXPECT_TRUE(fs::is_regular_file(path("job") / "summary.json"));
}

TEST_F(CliTest, SbcWritesRanksAndUniformityTests) {
  trained_model();
  const CliResult r =
      run("sbc --model model --datasets 40 --posterior-samples 19 --seed 3 --out ranks.csv --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const json summary = json::parse(r.out);
  EXPECT_EQ(summary["datasets"], 40);
  EXPECT_EQ(summary["posterior_samples"], 19);
  ASSERT_EQ(summary["ks_pvalue"].size(), 2u);
  for (const json& p : summary["ks_pvalue"]) {
    EXPECT_GE(p.get<double>(), 0.0);
    EXPECT_LE(p.get<double>(), 1.0);
  }
  EXPECT_FALSE(summary["max_coverage_gap"].is_null());
  std::vector<std::string> header;
  const auto rows = asbi::sbi::read_csv(path("ranks.csv").string(), asbi::core::DType::f64, &header);
  EXPECT_EQ(header, (std::vector<std::string>{"parameter_1", "parameter_2", "rank_1", "rank_2",
                                              "hpd_rank", "credibility"}));
  ASSERT_EQ(rows.dim(0), 40);
  for (std::int64_t i = 0; i < 40; ++i)
    for (std::int64_t j = 2; j < 5; ++j) {
      const double rank = rows.data<double>()[i * 6 + j];
      EXPECT_TRUE(rank >= 0 && rank <= 19 && rank == std::floor(rank)) << rank;
    }
  // Same seed, same ranks.
  ASSERT_EQ(run("sbc --model model --datasets 40 --posterior-samples 19 --seed 3 --out again.csv").code, 0);
  EXPECT_EQ(read_file(path("ranks.csv")), read_file(path("again.csv")));
  expect_one_line_error(run("sbc --model nowhere --datasets 5"), "sbc", {"nowhere"});
}

TEST_F(CliTest, RunsASetTaskJobFromAConfig) {
  file("set.toml",
       "[task]\nname = \"gaussian_nuisance\"\nobservation = 3\n"
       "[simulation]\ncount = 300\n[training]\nmax_epochs = 2\n"
       "[set]\nset_size = \"10:30\"\nencoder_hidden = [16]\nembedding_features = 4\n"
       "fine_tune_head = true\nobservation_size = 25\n"
       "[sampling]\nnum_samples = 300\n[output]\ndir = \"setjob\"\nplot = false\n");
  const CliResult r = run("run set.toml --json --progress none");
  ASSERT_EQ(r.code, 0) << r.err;
  const json summary = json::parse(r.out);
  EXPECT_EQ(summary["set_size"], 25);
  EXPECT_EQ(summary["sampling"]["samples"], 300);
  EXPECT_EQ(summary["reference"]["exact"], true);  // the analytic Student-t
  EXPECT_GE(summary["c2st"].get<double>(), 0.0);
  EXPECT_LE(summary["c2st"].get<double>(), 1.0);
  EXPECT_EQ(summary["training"]["min_set_size"], 10);
  EXPECT_EQ(summary["training"]["max_set_size"], 30);
  for (const char* name : {"model.asbi", "observation.csv", "samples.csv", "summary.json"})
    EXPECT_TRUE(fs::is_regular_file(path("setjob") / name)) << name;
  // --dry-run prints the [set] section, which reads back as the same job.
  const CliResult dry = run("run set.toml --dry-run");
  ASSERT_EQ(dry.code, 0) << dry.err;
  EXPECT_NE(dry.out.find("[set]"), std::string::npos) << dry.out;
  EXPECT_NE(dry.out.find("set_size = '10:30'"), std::string::npos) << dry.out;
  file("again.toml", dry.out);
  EXPECT_EQ(run("run again.toml --dry-run").out, dry.out);
}

TEST_F(CliTest, SetSectionErrorsNameTheKey) {
  file("a.toml", "[task]\nname = \"two_moons\"\n[set]\nset_size = 10\n");
  expect_one_line_error(run("run a.toml"), "run", {"a.toml", "[set]", "set tasks only", "two_moons"});
  file("b.toml", "[task]\nname = \"gaussian_nuisance\"\n[set]\nset_size = \"30:10\"\n");
  expect_one_line_error(run("run b.toml"), "run", {"b.toml", "set.set_size", "30:10"});
  file("c.toml", "[task]\nname = \"gaussian_nuisance\"\n[method]\nname = \"nle\"\n");
  expect_one_line_error(run("run c.toml"), "run", {"c.toml", "method.name", "npe", "nle"});
  file("d.toml", "[task]\nname = \"gaussian_nuisance\"\n[set]\ntraining = \"joint\"\n");
  expect_one_line_error(run("run d.toml"), "run", {"d.toml", "set.training", "joint"});
}

// ---------------------------------------------------------------------------------------------
// Bad input: one line naming the file or field, non-zero exit.

TEST_F(CliTest, WrongNumberOfColumnsNamesFileAndLine) {
  file("a.csv", "parameter_1,parameter_2\n0.1,0.2\n0.3,0.4,0.5\n");
  file("b.csv", "parameter_1,parameter_2\n0.1,0.2\n0.3,0.4\n");
  expect_one_line_error(run("c2st --samples a.csv --reference b.csv"), "c2st",
                        {"a.csv", "line 3", "columns"});
  // An observation with the wrong width for its task.
  file("x.csv", "data_1,data_2,data_3\n0.1,0.2,0.3\n");
  expect_one_line_error(run("reference --task two_moons --observation x.csv --out r.csv"),
                        "reference", {"x.csv", "expected 2 columns", "found 3"});
  // Sample files whose widths differ.
  file("c.csv", "parameter_1\n0.1\n0.3\n");
  expect_one_line_error(run("mmd --samples c.csv --reference b.csv"), "mmd",
                        {"c.csv", "b.csv", "columns"});
}

TEST_F(CliTest, NonNumericCellNamesFileLineAndColumn) {
  file("a.csv", "parameter_1,parameter_2\n0.1,0.2\n0.3,abc\n");
  file("b.csv", "parameter_1,parameter_2\n0.1,0.2\n0.3,0.4\n");
  expect_one_line_error(run("mmd --samples a.csv --reference b.csv"), "mmd",
                        {"a.csv", "line 3", "column 2", "abc"});
}

TEST_F(CliTest, EmptyFilesAreErrors) {
  file("empty.csv", "");
  file("b.csv", "parameter_1,parameter_2\n0.1,0.2\n0.3,0.4\n");
  expect_one_line_error(run("c2st --samples empty.csv --reference b.csv"), "c2st",
                        {"empty.csv", "empty"});
  file("header_only.csv", "parameter_1,parameter_2\n");
  expect_one_line_error(run("c2st --samples header_only.csv --reference b.csv"), "c2st",
                        {"header_only.csv", "no data rows"});
  file("obs.csv", "data_1,data_2\n");
  expect_one_line_error(run("reference --task two_moons --observation obs.csv --out r.csv"),
                        "reference", {"obs.csv", "one data row"});
  expect_one_line_error(run("plot --samples missing.csv --out p.png"), "plot", {"missing.csv"});
}

TEST_F(CliTest, NanInAnObservationNamesTheColumn) {
  file("x.csv", "data_1,data_2\n0.1,nan\n");
  expect_one_line_error(run("reference --task two_moons --observation x.csv --out r.csv"),
                        "reference", {"x.csv", "line 2", "data_2"});
  expect_one_line_error(
      run("train --task two_moons --method npe --simulations 100 --observation x.csv --out m"),
      "train", {"x.csv", "data_2"});
  EXPECT_FALSE(fs::exists(path("m")));  // nothing written before the input was checked
}

TEST_F(CliTest, MissingModelFolderOrFileIsNamed) {
  file("x.csv", "data_1,data_2\n0.1,0.2\n");
  expect_one_line_error(run("sample --model nowhere --observation x.csv --out s.csv"), "sample",
                        {"nowhere", "no such folder"});
  fs::create_directories(path("half"));
  file("half/config.toml", "[task]\nname = \"two_moons\"\n");
  expect_one_line_error(run("sample --model half --observation x.csv --out s.csv"), "sample",
                        {"model.asbi"});
  EXPECT_FALSE(fs::exists(path("s.csv")));
}

TEST_F(CliTest, CorruptModelFileIsNamed) {
  file("x.csv", "data_1,data_2\n0.1,0.2\n");
  // Not a checkpoint at all.
  fs::create_directories(path("junk"));
  file("junk/config.toml", "[task]\nname = \"two_moons\"\n");
  file("junk/model.asbi", "this is not a checkpoint\n");
  expect_one_line_error(run("sample --model junk --observation x.csv --out s.csv"), "sample",
                        {"junk/model.asbi"});
  // A real checkpoint with flipped bytes.
  const fs::path model = trained_model();
  std::string bytes = read_file(model / "model.asbi");
  ASSERT_GT(bytes.size(), 200u);
  for (std::size_t i = bytes.size() / 2; i < bytes.size() / 2 + 8; ++i) bytes[i] = ~bytes[i];
  write_file(model / "model.asbi", bytes);
  expect_one_line_error(run("sample --model model --observation x.csv --out s.csv"), "sample",
                        {"model.asbi"});
}

TEST_F(CliTest, UnknownTaskOrMethodIsNamed) {
  expect_one_line_error(run("simulate --task moons --num 10 --out a.csv"), "simulate",
                        {"--task", "moons", "two_moons"});
  expect_one_line_error(run("train --task two_moons --method xyz --simulations 100 --out m"),
                        "train", {"--method", "xyz", "npe"});
  expect_one_line_error(run("train --task nope --method npe --simulations 100 --out m"), "train",
                        {"--task", "nope"});
  file("t.toml", "[task]\nname = \"nope\"\n");
  expect_one_line_error(run("run t.toml"), "run", {"t.toml", "task.name", "nope"});
  file("m.toml", "[method]\nname = \"xyz\"\n");
  expect_one_line_error(run("run m.toml"), "run", {"m.toml", "method.name", "xyz"});
}

TEST_F(CliTest, UnknownTomlKeyOrBadValueIsNamed) {
  file("k.toml", "[training]\nbatch_size = 100\nbatchsize = 3\n");
  expect_one_line_error(run("run k.toml"), "run", {"k.toml", "line 3", "training.batchsize"});
  file("s.toml", "[trainnig]\nbatch_size = 100\n");
  expect_one_line_error(run("run s.toml"), "run", {"s.toml", "trainnig"});
  file("v.toml", "[simulation]\ncount = \"many\"\n");
  expect_one_line_error(run("run v.toml"), "run", {"v.toml", "simulation.count", "integer"});
  file("p.toml", "[simulation\ncount = 3\n");
  expect_one_line_error(run("run p.toml"), "run", {"p.toml", "line 1"});
}

TEST_F(CliTest, UsageErrorsExitWithTwo) {
  expect_one_line_error(run("simulate --task two_moons --num abc --out a.csv"), "simulate",
                        {"--num", "abc"}, 2);
  expect_one_line_error(run("simulate --task two_moons --out a.csv"), "simulate", {"--num"}, 2);
  expect_one_line_error(run("train --task two_moons --method npe --simulations 100 --flow xyz "
                            "--out m"),
                        "train", {"--flow"}, 2);
}

// --device: checked while parsing, so a GPU job on a machine without one fails at once (exit 2,
// nothing written); config key compute.device likewise before any simulation.
TEST_F(CliTest, DeviceFlagAndConfigKeyAreChecked) {
  expect_one_line_error(run("train --task two_moons --method npe --simulations 100 --device tpu "
                            "--out m"),
                        "train", {"--device", "tpu"}, 2);
  expect_one_line_error(run("sample --model m --device tpu --out s.csv"), "sample",
                        {"--device", "tpu"}, 2);
  file("bad.toml", "[compute]\ndevice = \"tpu\"\n");
  expect_one_line_error(run("run bad.toml"), "run", {"bad.toml", "compute.device", "tpu"});
  if (asbi::core::device_available(asbi::core::Device::cuda)) return;  // the rest needs no GPU
  expect_one_line_error(run("train --task two_moons --method npe --simulations 100 --device cuda "
                            "--out m"),
                        "train", {"--device", "cuda", "--device cpu"}, 2);
  EXPECT_FALSE(fs::exists(path("m")));
  expect_one_line_error(run("sample --model m --device cuda --out s.csv"), "sample",
                        {"--device", "cuda"}, 2);
  file("gpu.toml", "[output]\ndir = \"job\"\n[compute]\ndevice = \"cuda\"\n");
  expect_one_line_error(run("run gpu.toml"), "run", {"gpu.toml", "compute.device", "cuda"});
  EXPECT_FALSE(fs::exists(path("job")));
}

TEST_F(CliTest, ConfigRecordsTheDevice) {
  const CliResult r = run("run --print-default-config");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("[compute]\ndevice = 'cpu'"), std::string::npos) << r.out;
}

// With a GPU: a model trained with --device cuda samples on either device. The draws start from
// the same noise, but a draw near the prior's edge may be kept on one device and rejected on the
// other, shifting the rows after it: the columns' means and spreads are compared.
TEST_F(CliTest, TrainAndSampleOnCuda) {
  if (!asbi::core::device_available(asbi::core::Device::cuda)) GTEST_SKIP() << "no CUDA device";
  const CliResult t =
      run("train --task two_moons --method npe --simulations 500 --max-epochs 3 --transforms 1 "
          "--hidden 16 --seed 2 --progress none --device cuda --out model --json");
  ASSERT_EQ(t.code, 0) << t.err;
  EXPECT_NE(read_file(path("model") / "config.toml").find("device = 'cuda'"), std::string::npos);
  file("x.csv", "data_1,data_2\n-0.6396706,0.16234657\n");
  for (const char* device : {"cuda", "cpu"}) {
    const CliResult r = run(std::string("sample --model model --observation x.csv --num-samples "
                                        "300 --device ") +
                            device + " --out " + device + ".csv");
    ASSERT_EQ(r.code, 0) << device << ": " << r.err;
  }
  const auto a = asbi::sbi::read_csv(path("cuda.csv").string());
  const auto b = asbi::sbi::read_csv(path("cpu.csv").string());
  ASSERT_EQ(a.shape(), b.shape());
  const std::vector<double> av = a.to_vector(), bv = b.to_vector();
  for (std::size_t j = 0; j < 2; ++j) {
    double mean_a = 0, mean_b = 0, var_a = 0, var_b = 0;
    for (std::size_t i = j; i < av.size(); i += 2) {
      mean_a += av[i] / 300;
      mean_b += bv[i] / 300;
    }
    for (std::size_t i = j; i < av.size(); i += 2) {
      var_a += (av[i] - mean_a) * (av[i] - mean_a) / 299;
      var_b += (bv[i] - mean_b) * (bv[i] - mean_b) / 299;
    }
    EXPECT_NEAR(mean_a, mean_b, 0.02) << "column " << j + 1;
    EXPECT_NEAR(std::sqrt(var_a), std::sqrt(var_b), 0.05 * std::sqrt(var_b)) << "column " << j + 1;
  }
}

TEST_F(CliTest, MissingReferenceObservationIsNamed) {
  if (!reference_data_available()) GTEST_SKIP() << "ASBI_REFERENCE_DIR has no sbibm data";
  expect_one_line_error(run("train --task two_moons --method npe --simulations 100 "
                            "--observation-index 99 --out m"),
                        "train", {"--observation-index 99", "num_observation_99"});
}

TEST_F(CliTest, SequentialTrainingNeedsAnObservation) {
  expect_one_line_error(
      run("train --task two_moons --method npe --simulations 100 --rounds 2 --out m"), "train",
      {"--rounds", "--observation"});
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Set tasks: the whole pipeline through the command line.

TEST_F(CliTest, SetTaskPipelineSimulateTrainSampleReference) {
  const CliResult sim = run(
      "simulate --task gaussian_nuisance --observation-index 3 --set-size 25 --out set.csv --json");
  ASSERT_EQ(sim.code, 0) << sim.err;
  EXPECT_EQ(json::parse(sim.out)["set_size"], 25);
  std::vector<std::string> header;
  const auto set = asbi::sbi::read_csv(path("set.csv").string(), asbi::core::DType::f64, &header);
  EXPECT_EQ(set.dim(0), 25);
  EXPECT_EQ(header, (std::vector<std::string>{"data_1"}));

  const CliResult train = run(
      "train --task gaussian_nuisance --method npe --set-encoder deepset --pair-training "
      "--set-size 10:40 --simulations 300 --max-epochs 2 --transforms 1 --hidden 16 "
      "--set-embedding-features 4 --encoder-hidden 16 --seed 2 --progress none --out model --json");
  ASSERT_EQ(train.code, 0) << train.err;
  const json s = json::parse(train.out);
  EXPECT_EQ(s["training"], "pairs");
  EXPECT_LE(s["encoder_elements"].get<std::int64_t>(), 600);  // sets of one or two elements
  for (const char* f : {"model.asbi", "config.json", "training_log.csv"})
    EXPECT_TRUE(fs::is_regular_file(path("model") / f)) << f;

  const CliResult sample =
      run("sample --model model --observation set.csv --num-samples 200 --out s.csv --json");
  ASSERT_EQ(sample.code, 0) << sample.err;
  EXPECT_EQ(json::parse(sample.out)["set_size"], 25);
  EXPECT_EQ(asbi::sbi::read_csv(path("s.csv").string()).dim(0), 200);

  const CliResult ref = run(
      "reference --task gaussian_nuisance --observation set.csv --num-samples 200 --out r.csv");
  ASSERT_EQ(ref.code, 0) << ref.err;
  EXPECT_EQ(asbi::sbi::read_csv(path("r.csv").string()).dim(1), 1);

  // Bad set observations: wrong width, NaN, no elements.
  file("wide.csv", "data_1,data_2\n1,2\n");
  expect_one_line_error(run("sample --model model --observation wide.csv --out u.csv"), "sample",
                        {"wide.csv", "1 columns"});
  file("nan.csv", "data_1\n0.5\nnan\n");
  expect_one_line_error(run("sample --model model --observation nan.csv --out u.csv"), "sample",
                        {"nan.csv", "line 3", "column 1"});
  file("none.csv", "data_1\n");
  expect_one_line_error(run("sample --model model --observation none.csv --out u.csv"), "sample",
                        {"none.csv"});
}

TEST_F(CliTest, SetFlagsNeedASetTaskAndASetSize) {
  expect_one_line_error(run("train --task two_moons --method npe --simulations 100 "
                            "--set-encoder deepset --set-size 10 --out m"),
                        "train", {"two_moons", "not a set task"});
  expect_one_line_error(run("train --task gaussian_nuisance --method npe --simulations 100 "
                            "--set-encoder deepset --out m"),
                        "train", {"--set-size"});
  expect_one_line_error(run("train --task gaussian_nuisance --method npe --simulations 100 "
                            "--set-encoder deepset --set-size 20:5 --out m"),
                        "train", {"--set-size", "20:5"});
  expect_one_line_error(run("train --task gaussian_nuisance --method npe --simulations 100 "
                            "--set-size 20 --out m"),
                        "train", {"--set-encoder deepset"});
}
