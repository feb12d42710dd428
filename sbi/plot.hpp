#pragma once
// Corner (pair) plots of posterior samples, drawn by gnuplot (a separate program, found on PATH):
// step histograms of each marginal on the diagonal (density-normalised, the same bins for every
// series), a scatter of small transparent points for each pair below it, one colour per sample
// set (e.g. asbi's samples over the reference), the legend in the empty top-right cell.
//
//   sbi::corner_plot({{"asbi NPE", samples}, {"reference", ref}}, "corner.png",
//                    {.labels = {"theta_1", "theta_2"}});
#include <filesystem>
#include <string>
#include <vector>

#include "core/tensor.hpp"

namespace asbi::sbi {

struct PlotSeries {
  std::string label;
  core::Tensor samples;  // [n, D], any float dtype
};

struct CornerOptions {
  std::vector<std::string> labels{};  // one per dimension; "theta_i" when empty
  std::vector<double> truth{};        // optional dashed lines at θ*, one value per dimension
  int bins = 40;
  int max_points = 5000;  // scatter points per series and panel (a seeded subsample)
  int pixels = 0;         // image width and height; 0: 300 per dimension, at least 600
  std::string title{};
};

// Writes a PNG (pngcairo terminal) atomically: gnuplot renders into a temporary file beside `out`,
// renamed over it only once it holds a PNG, so a failure leaves no partial file and an existing
// `out` untouched. The data go to gnuplot through files in a private temporary folder, removed
// afterwards. Rows holding NaN or Inf are left out. The series must share D (1 ≤ D ≤ 12). Throws
// ShapeError for mismatched series, labels or truth; ValueError for no series, a series without
// finite rows, bins or max_points < 1; IoError when gnuplot is missing or fails (its stderr
// included) or the file cannot be written.
void corner_plot(const std::vector<PlotSeries>& series, const std::filesystem::path& out,
                 const CornerOptions& options = {});

// True when `gnuplot` can be run (tests skip the drawing otherwise).
bool gnuplot_available();

}  // namespace asbi::sbi
