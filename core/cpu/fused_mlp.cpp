// The fused MLP's layer-by-layer path, inherited by every backend: the CPU runs it, and CUDA falls
// back to it (cuBLAS GEMMs + fused epilogues) for float64 and for layers wider than its
// single-launch kernel takes. Each layer is the GEMM and epilogue of ad::linear_act, so the
// numbers are those of the same network written with linear_act per layer.
//
// Forward, for l < L:   z_l = h_l W_lᵀ + b_l,   h_{l+1} = f(z_l)   (y = z_{L-1}, no f)
// Backward, for l = L-1 … 0, from dz_{L-1} = dy:
//   dW_l += dz_lᵀ h_l,   db_l += Σ_rows dz_l,
//   dh_l = dz_l W_l,     dz_{l-1} = dh_l ⊙ f'(z_{l-1})   (dx += dh_0 at the bottom)
// where h_l = f(z_{l-1}) is recomputed from the saved z_{l-1}, which costs an elementwise pass
// and saves storing every hidden layer twice.
#include <vector>

#include "core/backend.hpp"
#include "core/tensor.hpp"

namespace asbi::core {

std::int64_t fused_mlp_parameter_count(std::span<const std::int64_t> widths) {
  std::int64_t count = 0;
  for (std::size_t l = 0; l + 1 < widths.size(); ++l) count += widths[l + 1] * (widths[l] + 1);
  return count;
}

std::int64_t fused_mlp_hidden_width(std::span<const std::int64_t> widths) {
  std::int64_t sum = 0;
  for (std::size_t l = 1; l + 1 < widths.size(); ++l) sum += widths[l];
  return sum;
}

namespace {

// Views of layer l's weight [out, in] and bias [out] inside the flat parameter buffer (or its
// gradient), which starts them at `at`.
struct LayerView {
  Tensor weight, bias;
};

LayerView layer_view(const Tensor& flat, std::int64_t at, std::int64_t in, std::int64_t out) {
  return {flat.rows(at, at + out * in).reshape({out, in}),
          flat.rows(at + out * in, at + out * (in + 1))};
}

// Where each layer's parameters start in the flat buffer.
std::vector<std::int64_t> parameter_offsets(std::span<const std::int64_t> widths) {
  std::vector<std::int64_t> at(widths.size() - 1);
  std::int64_t offset = 0;
  for (std::size_t l = 0; l < at.size(); ++l) {
    at[l] = offset;
    offset += widths[l + 1] * (widths[l] + 1);
  }
  return at;
}

}  // namespace

void Backend::fused_mlp_forward(const Tensor& x, const Tensor& parameters,
                                std::span<const std::int64_t> widths, Unary f, UnaryParams p,
                                Tensor& y, Tensor* hidden) {
  const std::size_t layers = widths.size() - 1;
  const std::int64_t rows = x.numel() / widths[0];
  const std::vector<std::int64_t> param_at = parameter_offsets(widths);
  Tensor h = x.reshape({rows, widths[0]});
  std::int64_t hidden_at = 0;
  for (std::size_t l = 0; l < layers; ++l) {
    const std::int64_t in = widths[l], out = widths[l + 1];
    const LayerView layer = layer_view(parameters, param_at[l], in, out);
    if (l + 1 == layers) {
      Tensor y2 = y.reshape({rows, out});
      gemm(false, true, 1.0, h, layer.weight, 0.0, y2);
      linear_epilogue(layer.bias, Unary::identity, {}, Tensor(), y2, y2);
      return;
    }
    Tensor z = hidden ? hidden->rows(hidden_at, hidden_at + rows * out).reshape({rows, out})
                      : Tensor::scratch({rows, out}, x.dtype(), x.device());
    hidden_at += rows * out;
    gemm(false, true, 1.0, h, layer.weight, 0.0, z);
    Tensor next = Tensor::scratch({rows, out}, x.dtype(), x.device());
    linear_epilogue(layer.bias, f, p, Tensor(), z, next);
    h = next;
  }
}

void Backend::fused_mlp_backward(const Tensor& x, const Tensor& parameters,
                                 std::span<const std::int64_t> widths, Unary f, UnaryParams p,
                                 const Tensor& hidden, const Tensor& dy, Tensor* dx,
                                 Tensor* dparameters) {
  const std::size_t layers = widths.size() - 1;
  const std::int64_t rows = x.numel() / widths[0];
  const std::vector<std::int64_t> param_at = parameter_offsets(widths);
  // z_l inside the hidden buffer.
  auto saved_z = [&](std::size_t l) {
    std::int64_t at = 0;
    for (std::size_t k = 0; k < l; ++k) at += rows * widths[k + 1];
    return hidden.rows(at, at + rows * widths[l + 1]).reshape({rows, widths[l + 1]});
  };
  Tensor dz = dy.reshape({rows, widths[layers]});
  if (dparameters) {  // the output layer's bias gradient; the others come with each f'
    Tensor dbias_out =
        layer_view(*dparameters, param_at[layers - 1], widths[layers - 1], widths[layers]).bias;
    sum_axis(dz, 0, 1.0, true, dbias_out);
  }
  for (std::size_t l = layers; l-- > 0;) {
    const std::int64_t in = widths[l], out = widths[l + 1];
    const LayerView layer = layer_view(parameters, param_at[l], in, out);
    Tensor h;        // this layer's input: x, or f(z_{l-1})
    Tensor z_below;  // z_{l-1}
    if (l == 0) {
      h = x.reshape({rows, in});
    } else {
      z_below = saved_z(l - 1);
      if (f == Unary::identity) {
        h = z_below;
      } else {
        h = Tensor::scratch({rows, in}, x.dtype(), x.device());
        unary(f, p, z_below, h);
      }
    }
    if (dparameters) {
      Tensor dweight = layer_view(*dparameters, param_at[l], in, out).weight;
      gemm(true, false, 1.0, dz, h, 1.0, dweight);
    }
    if (l == 0) {
      if (dx) {
        Tensor dx2 = dx->reshape({rows, in});
        gemm(false, false, 1.0, dz, layer.weight, 1.0, dx2);
      }
      return;
    }
    Tensor dh = Tensor::scratch({rows, in}, x.dtype(), x.device());
    gemm(false, false, 1.0, dz, layer.weight, 0.0, dh);
    // dz_{l-1} = dh ⊙ f'(z_{l-1}), with layer l-1's bias gradient summed in the same pass.
    Tensor dz_below = Tensor::scratch({rows, in}, x.dtype(), x.device());
    Tensor dbias_below;
    if (dparameters)
      dbias_below = layer_view(*dparameters, param_at[l - 1], widths[l - 1], in).bias;
    linear_epilogue_backward(f, p, z_below, h, dh, dz_below,
                             dparameters ? &dbias_below : nullptr);
    dz = dz_below;
  }
}

}  // namespace asbi::core
