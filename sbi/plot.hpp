#pragma once
// Corner (pair) plots of posterior samples, drawn by gnuplot (a separate program, found on PATH):
// histograms of each marginal on the diagonal, 2-D scatter/density of each pair below it, one
// colour per sample set (e.g. asbi's samples over the reference).
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
  std::vector<double> truth{};        // optional marker (e.g. θ*), one value per dimension
  int bins = 40;
  int max_points = 5000;  // scatter points per series and panel (a seeded subsample)
  int pixels = 0;         // image width and height; 0: 300 per dimension, at least 600
  std::string title{};
};

// Writes a PNG (pngcairo terminal) atomically. The series must share D (1 ≤ D ≤ 12). Throws
// ShapeError for mismatched series, IoError when gnuplot is missing or fails (its message
// included) or the file cannot be written.
void corner_plot(const std::vector<PlotSeries>& series, const std::filesystem::path& out,
                 const CornerOptions& options = {});

// True when `gnuplot` can be run (tests skip the drawing otherwise).
bool gnuplot_available();

}  // namespace asbi::sbi
