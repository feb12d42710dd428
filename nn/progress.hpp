#pragma once
// Training progress for people watching: on a terminal, one live line rewritten in place after
// every epoch,
//
//   epoch 12 | train 1.2345 | val 1.3456 | since best 3/20 | 45,000 samples/s | ETA >= 34s
//
// and in a log (stderr redirected to a file, a batch job) one plain line every N epochs. With
// early stopping the end is unknown: training stops after `patience` epochs without improvement,
// or at max_epochs. So the ETA shown is a lower bound, (patience - since best) epochs × the time
// of one epoch, capped by the epochs left to max_epochs, and labelled ">=".
//
// Progress writes to any std::ostream and is told whether that stream is a terminal, so tests
// can check what a terminal would show.
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <string>

namespace asbi::nn {

// What the trainer knows after each epoch; also what the per-epoch callback receives.
struct EpochInfo {
  int epoch = 0;  // epochs done, counting from 1 (and across a resume)
  int max_epochs = 0;
  double train_loss = 0;             // mean over the epoch's training examples
  double validation_loss = 0;        // mean over the validation examples
  double best_validation_loss = 0;   // lowest so far, this epoch's included
  int epochs_since_improvement = 0;  // 0: this epoch is the best so far
  int patience = 0;                  // training stops when epochs_since_improvement reaches it
  double learning_rate = 0;
  double samples_per_second = 0;  // training examples per second of this epoch's wall time
  double epoch_seconds = 0;       // wall time of this epoch, validation included
  double elapsed_seconds = 0;     // wall time of training so far, resumed runs included
};

enum class ProgressMode {
  automatic,  // live line when stderr is a terminal, log lines otherwise
  live,       // live line
  lines,      // a plain line every `every` epochs
  silent,
};

class Progress {
 public:
  // `every`: with log lines, one line per `every` epochs (and the first); the live line is
  // redrawn at most ten times a second whatever `every` is.
  Progress(std::ostream& out, bool is_terminal, int every = 10);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // For stderr in the given mode; null for silent.
  static std::unique_ptr<Progress> to_stderr(ProgressMode mode, int every = 10);

  void epoch(const EpochInfo& info);
  // Clears the live line and writes `summary` on a line of its own.
  void finish(const std::string& summary);

  // The text of one status line (no '\r', no newline).
  static std::string format(const EpochInfo& info);
  // "1h02m", "3m05s", "12s", "0.4s".
  static std::string format_duration(double seconds);
  // 45000 -> "45,000".
  static std::string format_count(double value);

 private:
  void clear_live();

  std::ostream& out_;
  bool terminal_;
  int every_;
  std::size_t live_width_ = 0;  // characters of the live line now shown (0: none)
  double last_draw_ = -1;       // elapsed seconds at the last live redraw
};

}  // namespace asbi::nn
