#include "sbi/csv.hpp"

#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string_view>
#include <system_error>

#include "core/error.hpp"

namespace asbi::sbi {
namespace {

using core::IoError;
using core::str;

std::vector<std::string_view> split(std::string_view line) {
  std::vector<std::string_view> cells;
  std::size_t start = 0;
  while (true) {
    const std::size_t comma = line.find(',', start);
    cells.push_back(line.substr(start, comma == std::string_view::npos ? comma : comma - start));
    if (comma == std::string_view::npos) return cells;
    start = comma + 1;
  }
}

std::string_view trim(std::string_view s) {
  const auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\r'; };
  while (!s.empty() && blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && blank(s.back())) s.remove_suffix(1);
  return s;
}

// from_chars rejects the leading '+' that some writers emit; it reads nan/inf in any case.
bool parse_number(std::string_view cell, double& out) {
  if (!cell.empty() && cell.front() == '+') cell.remove_prefix(1);
  if (cell.empty()) return false;
  const auto [end, ec] = std::from_chars(cell.data(), cell.data() + cell.size(), out);
  if (ec == std::errc() && end == cell.data() + cell.size()) return true;
  if (ec == std::errc::result_out_of_range && end == cell.data() + cell.size()) {
    // Subnormal underflow or overflow: strtod gives the nearest representable value.
    out = std::strtod(std::string(cell).c_str(), nullptr);
    return true;
  }
  return false;
}

}  // namespace

Tensor read_csv(const std::string& path, DType dtype, std::vector<std::string>* header,
                bool allow_nan) {
  std::ifstream in(path);
  if (!in) throw IoError(str("read_csv: cannot open '", path, "': ", std::strerror(errno)));
  std::string line;
  if (!std::getline(in, line) || trim(line).empty())
    throw IoError(str("read_csv: '", path, "' is empty; expected a header row of column names"));
  std::vector<std::string> names;
  for (std::string_view cell : split(trim(line))) names.emplace_back(trim(cell));
  const std::size_t columns = names.size();

  std::vector<double> values;
  std::int64_t rows = 0;
  std::int64_t line_number = 1;
  while (std::getline(in, line)) {
    ++line_number;
    const std::string_view content = trim(line);
    if (content.empty()) continue;  // a trailing newline or blank line carries no sample
    const std::vector<std::string_view> cells = split(content);
    if (cells.size() != columns)
      throw IoError(str("read_csv: '", path, "' line ", line_number, ": expected ", columns,
                        " columns as in the header, found ", cells.size()));
    for (std::size_t c = 0; c < columns; ++c) {
      const std::string_view cell = trim(cells[c]);
      double v = 0.0;
      if (!parse_number(cell, v))
        throw IoError(str("read_csv: '", path, "' line ", line_number, " column ", c + 1,
                          ": expected a number, found \"", cell, "\""));
      if (std::isnan(v) && !allow_nan)
        throw IoError(str("read_csv: '", path, "' line ", line_number, " column ", c + 1,
                          ": found NaN where a finite number was expected"));
      values.push_back(v);
    }
    ++rows;
  }
  if (in.bad()) throw IoError(str("read_csv: error while reading '", path, "'"));
  if (header) *header = std::move(names);
  return Tensor::from(values, {rows, static_cast<std::int64_t>(columns)}, dtype);
}

void write_csv(const std::string& path, const Tensor& values,
               const std::vector<std::string>& header) {
  if (values.rank() != 2)
    throw core::ShapeError(
        str("write_csv: expected a rank-2 [rows, columns] tensor, got shape ", values.shape()));
  const std::int64_t rows = values.dim(0), columns = values.dim(1);
  if (static_cast<std::int64_t>(header.size()) != columns)
    throw core::ValueError(
        str("write_csv: ", header.size(), " header names for ", columns, " columns"));
  const std::vector<double> data = values.to(core::Device::cpu).to_vector();
  const int digits = values.dtype() == DType::f32 ? std::numeric_limits<float>::max_digits10
                                                  : std::numeric_limits<double>::max_digits10;

  // The pid makes the temporary name unique among processes writing the same target.
  const std::string tmp = str(path, ".tmp.", ::getpid());
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) throw IoError(str("write_csv: cannot create '", tmp, "': ", std::strerror(errno)));
    out.precision(digits);
    for (std::int64_t c = 0; c < columns; ++c)
      out << (c ? "," : "") << header[static_cast<std::size_t>(c)];
    out << '\n';
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t c = 0; c < columns; ++c)
        out << (c ? "," : "") << data[static_cast<std::size_t>(r * columns + c)];
      out << '\n';
    }
    out.flush();
    if (!out) {
      out.close();
      std::remove(tmp.c_str());
      throw IoError(str("write_csv: error while writing '", tmp, "'"));
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    throw IoError(str("write_csv: cannot rename '", tmp, "' to '", path, "': ", ec.message()));
  }
}

}  // namespace asbi::sbi
