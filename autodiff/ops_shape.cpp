// Ops that move data without arithmetic: concatenation, slicing, reshaping, row gathers. Their
// gradients move the same data back, accumulating where the forward pass read twice.
#include <algorithm>

#include "autodiff/ops.hpp"
#include "autodiff/tape.hpp"
#include "core/backend.hpp"

namespace asbi::ad {

using core::ShapeError;
using core::str;

namespace {

// y = [a | b | c] along `axis`:  ∂L/∂part += the part's block of ∂L/∂y
Var concat3(std::span<const Var> parts, int axis) {
  const Var& first = parts[0];
  Shape shape = first.shape();
  std::int64_t total = 0;
  for (const Var& p : parts) {
    core::check_compatible("concat", first.value(), p.value());
    bool fits = p.shape().rank() == shape.rank();
    for (int d = 0; fits && d < shape.rank(); ++d) fits = d == axis || p.shape()[d] == shape[d];
    if (!fits)
      throw ShapeError(str("concat: along axis ", axis, " every part must match ", shape,
                           " outside that axis, got ", p.shape()));
    total += p.shape()[axis];
  }
  Tensor y = Tensor::scratch(shape.with(axis, total), first.dtype(), first.device());
  std::int64_t offset = 0;
  for (const Var& p : parts) {
    kernels(y).copy_axis(p.value(), axis, 0, y, offset, p.shape()[axis], false);
    offset += p.shape()[axis];
  }
  Node spec{.op = "concat", .axis = axis, .backward = [](Node& n) {
              std::int64_t offset = 0;
              for (int i = 0; i < 3 && n.inputs[static_cast<std::size_t>(i)].defined(); ++i) {
                const std::int64_t len = n.input(i).shape()[n.axis];
                if (Tensor* g = n.input_grad(i))
                  kernels(n).copy_axis(n.grad, n.axis, offset, *g, 0, len, true);
                offset += len;
              }
            }};
  std::copy(parts.begin(), parts.end(), spec.inputs.begin());
  return record(y, std::move(spec));
}

}  // namespace

Var concat(std::span<const Var> parts, int axis) {
  if (parts.empty()) throw core::ValueError("concat: expected at least one part, got none");
  axis = parts[0].shape().normalize_axis(axis);
  if (parts.size() <= 3) return concat3(parts, axis);
  // Concatenation records at most three inputs per node; longer lists concatenate in groups,
  // costing one extra copy each.
  std::vector<Var> rest{concat3(parts.first(3), axis)};
  rest.insert(rest.end(), parts.begin() + 3, parts.end());
  return concat(rest, axis);
}

// y = x[begin:end] along `axis`:  ∂L/∂x[begin:end] += ∂L/∂y
Var slice(const Var& x, int axis, std::int64_t begin, std::int64_t end) {
  axis = x.shape().normalize_axis(axis);
  if (begin < 0 || end < begin || end > x.shape()[axis])
    throw ShapeError(str("slice: range [", begin, ", ", end, ") is outside axis ", axis,
                         " of a tensor of shape ", x.shape()));
  Tensor y = Tensor::scratch(x.shape().with(axis, end - begin), x.dtype(), x.device());
  kernels(x).copy_axis(x.value(), axis, begin, y, 0, end - begin, false);
  return record(y, {.op = "slice", .inputs = {x}, .attr = {static_cast<double>(begin)},
                    .axis = axis, .backward = [](Node& n) {
                      kernels(n).copy_axis(n.grad, n.axis, 0, *n.input_grad(0),
                                           static_cast<std::int64_t>(n.attr[0]),
                                           n.value.shape()[n.axis], true);
                    }});
}

// y = x viewed with another shape (no copy):  ∂L/∂x += ∂L/∂y viewed back
Var reshape(const Var& x, const Shape& shape) {
  Tensor y = x.value().reshape(shape);
  return record(y, {.op = "reshape", .inputs = {x}, .backward = [](Node& n) {
                      kernels(n).axpy(1.0, n.grad, *n.input_grad(0));
                    }});
}

// y[i] = x[index[i]]:  ∂L/∂x[index[i]] += ∂L/∂y[i]
Var gather_rows(const Var& x, std::span<const std::int64_t> index) {
  const std::int64_t rows = x.shape().rows();
  for (std::size_t i = 0; i < index.size(); ++i)
    if (index[i] < 0 || index[i] >= rows)
      throw ShapeError(str("gather_rows: index[", i, "] = ", index[i],
                           " is outside the rows [0, ", rows, ") of a tensor of shape ",
                           x.shape()));
  Tensor y = Tensor::scratch(x.shape().with(0, static_cast<std::int64_t>(index.size())),
                             x.dtype(), x.device());
  kernels(x).gather_rows(x.value(), index, y);
  return record(y, {.op = "gather_rows", .inputs = {x}, .index = keep(index),
                    .backward = [](Node& n) {
                      kernels(n).scatter_add_rows(n.grad, n.index, *n.input_grad(0));
                    }});
}

}  // namespace asbi::ad
