#pragma once
// Sample sets as CSV files, in the layout of sbibm's reference posteriors: one header row of
// column names, then one sample per row of comma-separated numbers.
//
//   std::vector<std::string> names;
//   Tensor ref = sbi::read_csv(dir + "/reference_posterior_samples.csv", DType::f64, &names);
//   sbi::write_csv("samples.csv", samples, names);
#include <string>
#include <vector>

#include "core/tensor.hpp"

namespace asbi::sbi {

using core::DType;
using core::Tensor;

// Reads a [rows, columns] tensor. Every failure is a core::IoError naming the file and, for bad
// data, the line (1-based, the header is line 1) and column: a missing or empty file, a row with
// the wrong number of cells, a cell that is not a number, and a NaN cell unless allow_nan. A file
// with a header and no rows gives a [0, columns] tensor.
Tensor read_csv(const std::string& path, DType dtype = DType::f64,
                std::vector<std::string>* header = nullptr, bool allow_nan = false);

// Writes a rank-2 CPU tensor with `header` as the first row (one name per column), with enough
// digits to read back the same values. Written to a temporary file in the same folder and then
// renamed over `path`, so that a reader never sees a half-written file.
void write_csv(const std::string& path, const Tensor& values,
               const std::vector<std::string>& header);

}  // namespace asbi::sbi
