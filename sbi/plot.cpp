#include "sbi/plot.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "core/rng.hpp"

extern char** environ;

namespace asbi::sbi {
namespace {

namespace fs = std::filesystem;
using core::str;

constexpr int kMaxDim = 12;
// matplotlib's "tab10" cycle: distinct on screen and in grey-scale print.
constexpr std::array<const char*, 10> kColours = {"1f77b4", "d62728", "2ca02c", "ff7f0e",
                                                  "9467bd", "8c564b", "e377c2", "7f7f7f",
                                                  "bcbd22", "17becf"};

std::string colour(std::size_t series) { return kColours[series % kColours.size()]; }

// A number for the script with enough digits for narrow ranges far from zero.
std::string num(double x) {
  std::ostringstream s;
  s << std::setprecision(12) << x;
  return s.str();
}

// A gnuplot single-quoted string: no escapes are interpreted except '' for a quote. A line break
// would end the command, so it becomes a space.
std::string quoted(const std::string& s) {
  std::string out = "'";
  for (const char c : s) {
    if (c == '\'')
      out += "''";
    else
      out += c == '\n' || c == '\r' ? ' ' : c;
  }
  return out + "'";
}

// ---- The data: finite rows of each series, per-dimension ranges, histograms. -------------------

struct SeriesRows {
  std::string label;
  std::vector<double> v;  // row-major [n, D], rows with a NaN or Inf dropped
  std::int64_t n = 0;
};

std::vector<SeriesRows> finite_rows(const std::vector<PlotSeries>& series, std::int64_t D) {
  std::vector<SeriesRows> out;
  for (const PlotSeries& s : series) {
    const std::vector<double> all = s.samples.to(core::Device::cpu).to_vector();
    SeriesRows r{s.label, {}, 0};
    for (std::int64_t i = 0; i < s.samples.dim(0); ++i) {
      const auto row = all.begin() + i * D;
      if (!std::all_of(row, row + D, [](double x) { return std::isfinite(x); })) continue;
      r.v.insert(r.v.end(), row, row + D);
      ++r.n;
    }
    if (r.n == 0)
      throw core::ValueError(str("corner_plot: series '", s.label, "' has no finite rows"));
    out.push_back(std::move(r));
  }
  return out;
}

struct Range {
  double lo, hi;
};

// The span of all series (and the truth) in each dimension, padded by 5% so that the extreme
// points are not drawn on the frame; a constant column gets a unit-wide window.
std::vector<Range> axis_ranges(const std::vector<SeriesRows>& series, std::int64_t D,
                               const std::vector<double>& truth) {
  std::vector<Range> ranges;
  for (std::int64_t d = 0; d < D; ++d) {
    double lo = INFINITY, hi = -INFINITY;
    for (const SeriesRows& s : series)
      for (std::int64_t i = 0; i < s.n; ++i) {
        lo = std::min(lo, s.v[static_cast<std::size_t>(i * D + d)]);
        hi = std::max(hi, s.v[static_cast<std::size_t>(i * D + d)]);
      }
    if (!truth.empty() && std::isfinite(truth[static_cast<std::size_t>(d)])) {
      lo = std::min(lo, truth[static_cast<std::size_t>(d)]);
      hi = std::max(hi, truth[static_cast<std::size_t>(d)]);
    }
    const double pad = hi > lo ? 0.05 * (hi - lo) : 0.5;
    ranges.push_back({lo - pad, hi + pad});
  }
  return ranges;
}

// Densities (count / (n · width)) of dimension d of every series on the same bins, as rows
// "x y_1 … y_S" that gnuplot's `steps` style draws as step outlines: (lo, 0), then each bin's
// left edge with its density, then (hi, last density) and (hi, 0) to close the outline.
void write_histograms(const fs::path& file, const std::vector<SeriesRows>& series,
                      std::int64_t D, std::int64_t d, const Range& range, int bins) {
  const double width = (range.hi - range.lo) / bins;
  std::vector<std::vector<double>> density(series.size(), std::vector<double>(bins, 0.0));
  for (std::size_t s = 0; s < series.size(); ++s) {
    for (std::int64_t i = 0; i < series[s].n; ++i) {
      const double x = series[s].v[static_cast<std::size_t>(i * D + d)];
      const int b = std::clamp(static_cast<int>((x - range.lo) / width), 0, bins - 1);
      density[s][static_cast<std::size_t>(b)] += 1;
    }
    for (double& c : density[s]) c /= static_cast<double>(series[s].n) * width;
  }
  std::ofstream out(file);
  out << std::setprecision(10);
  const auto row = [&](double x, int bin) {
    out << x;
    for (const auto& h : density) out << ' ' << (bin < 0 ? 0.0 : h[static_cast<std::size_t>(bin)]);
    out << '\n';
  };
  row(range.lo, -1);
  for (int b = 0; b < bins; ++b) row(range.lo + b * width, b);
  row(range.hi, bins - 1);
  row(range.hi, -1);
  if (!out) throw core::IoError(str("corner_plot: cannot write ", file.string()));
}

// At most max_points rows of a series, a seeded subsample in their original order, for the
// scatter panels (all of its D columns, so every pair panel reads the same file).
void write_points(const fs::path& file, const SeriesRows& s, std::int64_t D, int max_points,
                  std::uint64_t stream) {
  std::vector<std::int64_t> keep;
  if (s.n > max_points) {
    keep = core::Rng(1, stream).permutation(s.n);
    keep.resize(static_cast<std::size_t>(max_points));
    std::sort(keep.begin(), keep.end());
  } else {
    for (std::int64_t i = 0; i < s.n; ++i) keep.push_back(i);
  }
  std::ofstream out(file);
  out << std::setprecision(10);
  for (const std::int64_t i : keep) {
    for (std::int64_t d = 0; d < D; ++d)
      out << (d ? " " : "") << s.v[static_cast<std::size_t>(i * D + d)];
    out << '\n';
  }
  if (!out) throw core::IoError(str("corner_plot: cannot write ", file.string()));
}

// ---- The gnuplot script, one small builder per part. ------------------------------------------

// Screen coordinates (0…1) of the D×D grid's cells: fixed pixel margins for tic labels and axis
// labels outside the grid, a small gap between cells.
struct Grid {
  int pixels, dim;
  bool titled;
  double left = 70, right = 12, bottom = 60, gap = 8;
  double top() const { return titled ? 40 : 12; }
  double cell() const { return (pixels - left - right) / dim; }
  // "set lmargin at screen …" lines placing the plot area of cell (row, col), row 0 at the top.
  std::string place(int row, int col) const {
    const double p = pixels;
    const double l = (left + col * cell() + gap / 2) / p;
    const double r = (left + (col + 1) * cell() - gap / 2) / p;
    const double t = 1 - (top() + row * cell() + gap / 2) / p;
    const double b = 1 - (top() + (row + 1) * cell() - gap / 2) / p;
    return str("set lmargin at screen ", l, "; set rmargin at screen ", r,
               "\nset tmargin at screen ", t, "; set bmargin at screen ", b, "\n");
  }
};

// Builds the gnuplot program: a header (terminal, output, multiplot), one block per panel
// (placement, axes, truth lines, plot command), the legend.
struct Script {
  const std::vector<SeriesRows>& series;
  const std::vector<Range>& ranges;
  const CornerOptions& options;
  const std::vector<std::string>& labels;
  const fs::path& dir;
  Grid grid;

  int dim() const { return grid.dim; }
  const Range& range(int d) const { return ranges[static_cast<std::size_t>(d)]; }
  const std::string& label(int d) const { return labels[static_cast<std::size_t>(d)]; }
  std::string truth(int d) const { return num(options.truth[static_cast<std::size_t>(d)]); }

  std::string header(const fs::path& image) const {
    std::ostringstream s;
    s << std::setprecision(10);
    s << "set terminal pngcairo size " << grid.pixels << ',' << grid.pixels
      << " noenhanced font ',9'\n";
    s << "set output " << quoted(image.string()) << '\n';
    s << "set multiplot";
    if (!options.title.empty()) s << " title " << quoted(options.title) << " font ',12'";
    s << "\nset tics font ',7' nomirror out scale 0.5\nset border 3\n";
    return s.str();
  }

  // Tic labels and axis labels only on the outer panels: x on the bottom row, y on the left
  // column (not on the diagonal, whose y axis is a density).
  std::string axes(int row, int col, bool diagonal) const {
    std::string s = "unset arrow; unset key; unset xlabel; unset ylabel\n";
    s += "set xrange [" + num(range(col).lo) + ":" + num(range(col).hi) + "]\nset xtics autofreq\n";
    if (row == dim() - 1)
      s += "set format x '%g'\nset xlabel " + quoted(label(col)) + "\n";
    else
      s += "set format x ''\n";
    if (diagonal) {
      s += "set border 1\nset yrange [0:*]\nunset ytics\n";
    } else {
      s += "set border 3\n";
      s += "set yrange [" + num(range(row).lo) + ":" + num(range(row).hi) + "]\nset ytics autofreq\n";
      s += col == 0 ? "set format y '%g'\nset ylabel " + quoted(label(row)) + "\n"
                    : std::string("set format y ''\n");
    }
    return s;
  }

  std::string truth_lines(int row, int col, bool diagonal) const {
    if (options.truth.empty()) return {};
    const char* style = " nohead front lc rgb 'black' dt 2 lw 1.5\n";
    std::string s = str("set arrow from first ", truth(col), ", graph 0 to first ", truth(col),
                        ", graph 1", style);
    if (!diagonal)
      s += str("set arrow from graph 0, first ", truth(row), " to graph 1, first ", truth(row),
               style);
    return s;
  }

  std::string diagonal_panel(int d, bool with_key) const {
    std::string s = grid.place(d, d) + axes(d, d, true) + truth_lines(d, d, true);
    if (with_key) s += "set key top right font ',8'\n";
    const std::string file = quoted((dir / str("hist_", d, ".dat")).string());
    s += "plot ";
    for (std::size_t k = 0; k < series.size(); ++k)
      s += str(k ? ", \\\n     " : "", file, " using 1:", k + 2, " with steps lw 1.5 lc rgb '#",
               colour(k), "' title ", quoted(series[k].label));
    return s + "\n";
  }

  // Small transparent points ('#AARRGGBB', AA = transparency) so that dense regions show.
  std::string scatter_panel(int row, int col) const {
    std::string s = grid.place(row, col) + axes(row, col, false) + truth_lines(row, col, false);
    s += "plot ";
    for (std::size_t k = 0; k < series.size(); ++k)
      s += str(k ? ", \\\n     " : "", quoted((dir / str("points_", k, ".dat")).string()),
               " using ", col + 1, ":", row + 1, " with points pt 7 ps 0.3 lc rgb '#A0",
               colour(k), "' notitle");
    return s + "\n";
  }

  // The legend alone in the empty top-right cell: lines drawn outside a [0, 1] frame.
  std::string legend_panel() const {
    std::string s = grid.place(0, dim() - 1);
    s += "unset arrow; unset xlabel; unset ylabel; unset border; unset tics\n"
         "set xrange [0:1]; set yrange [0:1]\nset key center center font ',11'\nplot ";
    for (std::size_t k = 0; k < series.size(); ++k)
      s += str(k ? ", " : "", "2 with lines lw 3 lc rgb '#", colour(k), "' title ",
               quoted(series[k].label));
    return s + "\nset border 3\n";
  }

  std::string build(const fs::path& image) const {
    std::string s = header(image);
    for (int d = 0; d < dim(); ++d) s += diagonal_panel(d, dim() == 1);
    for (int row = 1; row < dim(); ++row)
      for (int col = 0; col < row; ++col) s += scatter_panel(row, col);
    if (dim() > 1) s += legend_panel();
    return s + "unset multiplot\nset output\n";
  }
};

// ---- Files and the gnuplot process. -----------------------------------------------------------

// A private folder under the system's temp directory, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "asbi-plot-XXXXXX").string();
    if (!mkdtemp(pattern.data()))
      throw core::IoError(str("corner_plot: cannot create a temporary folder ", pattern, ": ",
                              std::strerror(errno)));
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// The image's temporary name beside `out` (same folder, so the final rename is atomic); removed
// unless commit() renamed it.
class PendingFile {
 public:
  explicit PendingFile(const fs::path& out) {
    const fs::path folder = out.has_parent_path() ? out.parent_path() : fs::path(".");
    // str(), not operator+: GCC 12 warns (-Wrestrict, a false positive) on "." + std::string.
    std::string pattern = (folder / str(".", out.filename().string(), ".tmp-XXXXXX")).string();
    const int fd = mkstemp(pattern.data());
    if (fd < 0)
      throw core::IoError(str("corner_plot: cannot create a file in ", folder.string(),
                              " to write ", out.string(), ": ", std::strerror(errno)));
    // mkstemp creates the file private (0600); the image is meant to be shared like any other.
    fchmod(fd, 0644);
    close(fd);
    path_ = pattern;
  }
  ~PendingFile() {
    if (!path_.empty()) {
      std::error_code ignored;
      fs::remove(path_, ignored);
    }
  }
  PendingFile(const PendingFile&) = delete;
  PendingFile& operator=(const PendingFile&) = delete;
  const fs::path& path() const { return path_; }
  void commit(const fs::path& out) {
    std::error_code ec;
    fs::rename(path_, out, ec);
    if (ec)
      throw core::IoError(str("corner_plot: cannot rename ", path_.string(), " to ",
                              out.string(), ": ", ec.message()));
    path_.clear();
  }

 private:
  fs::path path_;
};

std::string read_text(const fs::path& file) {
  std::ifstream in(file);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

bool is_png(const fs::path& file) {
  static constexpr char kSignature[8] = {'\x89', 'P', 'N', 'G', '\r', '\n', '\x1a', '\n'};
  std::ifstream in(file, std::ios::binary);
  char head[8] = {};
  return in.read(head, 8) && std::equal(head, head + 8, kSignature);
}

constexpr const char* kInstallHint =
    "install gnuplot with the pngcairo terminal (Debian/Ubuntu: apt-get install gnuplot-nox) "
    "and make sure it is on PATH";

// Runs `gnuplot script` with stdin and stdout on /dev/null and stderr into a file (no pipe that
// could fill up), waits for it, and throws IoError with its stderr when it fails.
void run_gnuplot(const fs::path& script, const fs::path& stderr_file) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, stderr_file.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  std::string program = "gnuplot", script_arg = script.string();
  char* argv[] = {program.data(), script_arg.data(), nullptr};
  pid_t pid = 0;
  const int spawn_error = posix_spawnp(&pid, "gnuplot", &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawn_error == ENOENT)
    throw core::IoError(str("corner_plot: gnuplot was not found; ", kInstallHint));
  if (spawn_error != 0)
    throw core::IoError(str("corner_plot: cannot start gnuplot: ", std::strerror(spawn_error)));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR)
      throw core::IoError(str("corner_plot: waiting for gnuplot: ", std::strerror(errno)));
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
    throw core::IoError(str("corner_plot: gnuplot could not be run; ", kInstallHint));
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw core::IoError(str("corner_plot: gnuplot failed (",
                            WIFEXITED(status) ? str("exit status ", WEXITSTATUS(status))
                                              : str("signal ", WTERMSIG(status)),
                            "): ", read_text(stderr_file)));
}

std::int64_t check_series(const std::vector<PlotSeries>& series, const CornerOptions& o) {
  if (series.empty()) throw core::ValueError("corner_plot: expected at least one series, got none");
  const std::int64_t D = series.front().samples.defined() && series.front().samples.rank() == 2
                             ? series.front().samples.dim(1)
                             : -1;
  for (const PlotSeries& s : series)
    if (!s.samples.defined() || s.samples.rank() != 2 || s.samples.dim(1) != D)
      throw core::ShapeError(str(
          "corner_plot: expected every series as [n, D] with the D of the first series (", D,
          "), got '", s.label, "' ",
          s.samples.defined() ? str(s.samples.shape()) : std::string("undefined")));
  if (D < 1 || D > kMaxDim)
    throw core::ShapeError(str("corner_plot: expected 1 ≤ D ≤ ", kMaxDim, " columns, got ", D));
  if (!o.labels.empty() && static_cast<std::int64_t>(o.labels.size()) != D)
    throw core::ShapeError(str("corner_plot: expected labels empty or one per dimension (", D,
                               "), got ", o.labels.size()));
  if (!o.truth.empty() && static_cast<std::int64_t>(o.truth.size()) != D)
    throw core::ShapeError(str("corner_plot: expected truth empty or one value per dimension (",
                               D, "), got ", o.truth.size()));
  if (o.bins < 1 || o.max_points < 1 || o.pixels < 0)
    throw core::ValueError(str("corner_plot: expected bins ≥ 1, max_points ≥ 1 and pixels ≥ 0, "
                               "got ", o.bins, ", ", o.max_points, ", ", o.pixels));
  return D;
}

}  // namespace

bool gnuplot_available() {
  const char* path = std::getenv("PATH");
  if (!path) return false;
  std::istringstream dirs(path);
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    const fs::path candidate = fs::path(dir.empty() ? "." : dir) / "gnuplot";
    if (access(candidate.c_str(), X_OK) == 0 && !fs::is_directory(candidate)) return true;
  }
  return false;
}

void corner_plot(const std::vector<PlotSeries>& series, const fs::path& out,
                 const CornerOptions& options) {
  const std::int64_t D = check_series(series, options);
  if (!gnuplot_available())
    throw core::IoError(str("corner_plot: gnuplot was not found on PATH; ", kInstallHint));
  std::vector<std::string> labels = options.labels;
  for (std::int64_t d = static_cast<std::int64_t>(labels.size()); d < D; ++d)
    labels.push_back(str("theta_", d + 1));

  const std::vector<SeriesRows> rows = finite_rows(series, D);
  const std::vector<Range> ranges = axis_ranges(rows, D, options.truth);
  TempDir dir;
  for (std::int64_t d = 0; d < D; ++d)
    write_histograms(dir.path() / str("hist_", d, ".dat"), rows, D, d,
                     ranges[static_cast<std::size_t>(d)], options.bins);
  for (std::size_t k = 0; k < rows.size(); ++k)
    write_points(dir.path() / str("points_", k, ".dat"), rows[k], D, options.max_points, k);

  const int pixels = options.pixels > 0 ? options.pixels
                                        : std::max(600, 300 * static_cast<int>(D));
  const Script script{rows, ranges, options, labels, dir.path(),
                      Grid{pixels, static_cast<int>(D), !options.title.empty()}};
  PendingFile image(out);
  const fs::path script_file = dir.path() / "corner.gp";
  {
    std::ofstream f(script_file);
    f << script.build(image.path());
    if (!f) throw core::IoError(str("corner_plot: cannot write ", script_file.string()));
  }
  run_gnuplot(script_file, dir.path() / "stderr.txt");
  if (!is_png(image.path()))
    throw core::IoError(str("corner_plot: gnuplot exited normally but wrote no PNG image; its "
                            "messages: ",
                            read_text(dir.path() / "stderr.txt")));
  image.commit(out);
}

}  // namespace asbi::sbi
