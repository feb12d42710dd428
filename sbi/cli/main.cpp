// asbi: the command-line front end of the sbi library.
//
//   asbi tasks | simulate | train | sample | reference | c2st | mmd | plot | run
//
// Results go to stdout (a table, or JSON with --json); progress and logs go to stderr. Every
// failure ends in exactly one stderr line, `asbi <subcommand>: error: <message>`, and a non-zero
// exit code: 2 for a command line CLI11 rejects, 1 for everything else (bad files, unknown
// tasks, …). The subcommands themselves live in cmd_data.cpp, cmd_train.cpp and cmd_run.cpp.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>

#include "core/error.hpp"
#include "sbi/cli/common.hpp"

namespace {

using asbi::cli::commands;

// The subcommand named on the command line, for the error prefix (also when parsing failed).
std::string subcommand_name(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    for (const auto& command : commands())
      if (command.app->get_name() == argv[i]) return " " + command.app->get_name();
  return "";
}

int fail(const std::string& prefix, std::string message, int code) {
  // One line whatever the message holds (external programs' output, parser diagnostics).
  std::replace(message.begin(), message.end(), '\n', ' ');
  while (!message.empty() && (message.back() == ' ' || message.back() == '\r'))
    message.pop_back();
  std::cerr << "asbi" << prefix << ": error: " << message << '\n';
  return code;
}

// Reference data: $ASBI_REFERENCE_DIR, else ../shared/reference from the current folder (the
// layout of a checkout next to the shared data), so that --observation-index and the C2ST of
// `asbi run` work without setting anything there.
void default_reference_dir() {
  const char* env = std::getenv("ASBI_REFERENCE_DIR");
  if (env != nullptr && *env != '\0') return;
  std::error_code ec;
  const std::filesystem::path candidate = std::filesystem::path("..") / "shared" / "reference";
  if (std::filesystem::is_directory(candidate / "sbibm", ec)) {
    const auto absolute = std::filesystem::absolute(candidate, ec);
    if (!ec) setenv("ASBI_REFERENCE_DIR", absolute.c_str(), 0);
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "asbi: amortized simulation-based inference. Train a neural posterior, likelihood or "
      "ratio estimator on simulations of an sbibm task, then sample posteriors for any "
      "observation and compare them with reference posteriors.",
      "asbi"};
  app.require_subcommand(1);
  app.footer(
      "Start with `asbi run` (two_moons, NPE, 10 000 simulations, C2ST and a corner plot), "
      "or see `asbi <subcommand> --help`.\n"
      "Reference data (sbibm observations and posteriors) is read from $ASBI_REFERENCE_DIR/sbibm, "
      "or ../shared/reference/sbibm when the variable is unset.");
  asbi::cli::register_data_commands(app);
  asbi::cli::register_train_commands(app);
  asbi::cli::register_run_command(app);
  asbi::cli::register_sbc_command(app);

  const std::string prefix = subcommand_name(argc, argv);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    const std::string hint = prefix.empty() ? " (asbi --help lists the subcommands)"
                                            : " (asbi" + prefix + " --help shows the options)";
    return fail(prefix, std::string(e.what()) + hint, 2);
  }

  default_reference_dir();
  for (const auto& command : commands()) {
    if (!command.app->parsed()) continue;
    try {
      return command.run();
    } catch (const CLI::ParseError& e) {
      return fail(prefix, e.what(), 2);
    } catch (const std::exception& e) {
      return fail(prefix, e.what(), 1);
    }
  }
  return fail(prefix, "no subcommand ran", 1);
}
