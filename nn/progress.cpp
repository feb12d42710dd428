#include "nn/progress.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>

namespace asbi::nn {
namespace {

// Losses span many magnitudes (a log-density loss may be -3.2 or 12345.6): fixed 4 decimals
// while that stays readable, significant digits beyond.
std::string format_loss(double v) {
  char buf[32];
  if (std::isfinite(v) && std::abs(v) < 1e5 && (v == 0 || std::abs(v) >= 1e-3))
    std::snprintf(buf, sizeof buf, "%.4f", v);
  else
    std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

}  // namespace

Progress::Progress(std::ostream& out, bool is_terminal, int every)
    : out_(out), terminal_(is_terminal), every_(std::max(every, 1)) {}

Progress::~Progress() {
  // A live line left behind would be overwritten by the next output's first characters.
  if (live_width_ > 0) {
    clear_live();
    out_.flush();
  }
}

std::unique_ptr<Progress> Progress::to_stderr(ProgressMode mode, int every) {
  switch (mode) {
    case ProgressMode::silent:
      return nullptr;
    case ProgressMode::live:
      return std::make_unique<Progress>(std::cerr, true, every);
    case ProgressMode::lines:
      return std::make_unique<Progress>(std::cerr, false, every);
    case ProgressMode::automatic:
      break;
  }
  return std::make_unique<Progress>(std::cerr, ::isatty(STDERR_FILENO) == 1, every);
}

std::string Progress::format_duration(double seconds) {
  char buf[32];
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  if (seconds < 10) {
    std::snprintf(buf, sizeof buf, "%.1fs", seconds);
    return buf;
  }
  const auto s = static_cast<long long>(std::llround(seconds));
  if (s < 60)
    std::snprintf(buf, sizeof buf, "%llds", s);
  else if (s < 3600)
    std::snprintf(buf, sizeof buf, "%lldm%02llds", s / 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", s / 3600, (s % 3600) / 60);
  return buf;
}

std::string Progress::format_count(double value) {
  if (!std::isfinite(value) || value < 0) return "?";
  std::string digits = std::to_string(static_cast<long long>(std::llround(value)));
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string Progress::format(const EpochInfo& info) {
  std::string line = "epoch " + std::to_string(info.epoch);
  line += " | train " + format_loss(info.train_loss);
  line += " | val " + format_loss(info.validation_loss);
  line += " | since best " + std::to_string(info.epochs_since_improvement) + "/" +
          std::to_string(info.patience);
  line += " | " + format_count(info.samples_per_second) + " samples/s";
  // Early stopping cannot come sooner than `patience - since best` epochs from now, and
  // max_epochs ends training at the latest; the smaller of the two is a lower bound.
  const int to_patience = std::max(info.patience - info.epochs_since_improvement, 0);
  const int to_max = std::max(info.max_epochs - info.epoch, 0);
  const int left = info.max_epochs > 0 ? std::min(to_patience, to_max) : to_patience;
  line += " | ETA >= " + format_duration(left * info.epoch_seconds);
  return line;
}

void Progress::clear_live() {
  out_ << '\r' << std::string(live_width_, ' ') << '\r';
  live_width_ = 0;
}

void Progress::epoch(const EpochInfo& info) {
  if (terminal_) {
    // Redrawing thousands of times a second (tiny datasets) costs more than the epochs.
    if (last_draw_ >= 0 && info.elapsed_seconds - last_draw_ < 0.1) return;
    last_draw_ = info.elapsed_seconds;
    const std::string line = format(info);
    out_ << '\r' << line;
    // Blank out the rest of a longer previous line rather than rely on terminal escapes.
    if (line.size() < live_width_) out_ << std::string(live_width_ - line.size(), ' ');
    live_width_ = std::max(live_width_, line.size());
    out_.flush();
    return;
  }
  if (info.epoch == 1 || info.epoch % every_ == 0) {
    out_ << format(info) << '\n';
    out_.flush();
  }
}

void Progress::finish(const std::string& summary) {
  if (live_width_ > 0) clear_live();
  out_ << summary << '\n';
  out_.flush();
}

}  // namespace asbi::nn
