#include "nn/conv.hpp"

#include <algorithm>

#include "autodiff/ops.hpp"
#include "core/backend.hpp"

namespace asbi::nn {
namespace {

constexpr std::size_t kCachedIndices = 4;  // batch sizes remembered per Conv2d

std::int64_t at_least_one(std::int64_t value, const char* what) {
  if (value < 1) throw core::ValueError(core::str("Conv2d: ", what, " must be >= 1, got ", value));
  return value;
}

// ⌊(n + 2p − K)/s⌋ + 1 output positions along an axis of n pixels.
std::int64_t output_size(std::int64_t n, int kernel, int stride, int padding, const char* axis) {
  at_least_one(n, axis);
  at_least_one(kernel, "kernel_size");
  at_least_one(stride, "stride");
  if (padding < 0) throw core::ValueError(core::str("Conv2d: padding must be >= 0, got ", padding));
  if (n + 2 * padding < kernel)
    throw core::ValueError(core::str("Conv2d: a ", kernel, "×", kernel, " kernel with padding ",
                                     padding, " does not fit a field of ", axis, " ", n));
  return (n + 2 * padding - kernel) / stride + 1;
}

}  // namespace

Conv2d::Conv2d(std::int64_t height, std::int64_t width, std::int64_t in_channels,
               std::int64_t out_channels, int kernel_size, int stride, int padding, core::Rng& rng,
               DType dtype)
    : height_(height),
      width_(width),
      in_channels_(at_least_one(in_channels, "in_channels")),
      out_channels_(at_least_one(out_channels, "out_channels")),
      kernel_(kernel_size),
      stride_(stride),
      padding_(padding),
      out_height_(output_size(height, kernel_size, stride, padding, "height")),
      out_width_(output_size(width, kernel_size, stride, padding, "width")),
      weight_(
          param("weight", kaiming_uniform({out_channels, kernel_size * kernel_size * in_channels},
                                          kernel_size * kernel_size * in_channels, rng, dtype))),
      bias_(param("bias", kaiming_uniform({out_channels}, kernel_size * kernel_size * in_channels,
                                          rng, dtype))) {
  // Output position q = (i, j) reads pixels (i·s − p + k_i, j·s − p + k_j), k_i, k_j < K.
  field_index_.reserve(static_cast<std::size_t>(out_height_ * out_width_ * kernel_ * kernel_));
  for (std::int64_t i = 0; i < out_height_; ++i)
    for (std::int64_t j = 0; j < out_width_; ++j)
      for (int ki = 0; ki < kernel_; ++ki)
        for (int kj = 0; kj < kernel_; ++kj) {
          const std::int64_t pi = i * stride_ - padding_ + ki, pj = j * stride_ - padding_ + kj;
          const bool inside = pi >= 0 && pi < height_ && pj >= 0 && pj < width_;
          field_index_.push_back(inside ? pi * width_ + pj : -1);
        }
}

std::shared_ptr<const std::vector<std::int64_t>> Conv2d::gather_index(std::int64_t fields) const {
  std::lock_guard<std::mutex> lock(cache_mutex_);
  auto hit = std::find_if(index_cache_.begin(), index_cache_.end(),
                          [&](const auto& entry) { return entry.first == fields; });
  if (hit != index_cache_.end()) {
    std::rotate(index_cache_.begin(), hit, hit + 1);  // newest first
    return index_cache_.front().second;
  }
  // Field m's pixel r is input row m·H·W + r; the padding reads the zero row after all fields.
  const std::int64_t pixels = height_ * width_, zero_row = fields * pixels;
  const std::size_t per_field = field_index_.size();
  auto index =
      std::make_shared<std::vector<std::int64_t>>(static_cast<std::size_t>(fields) * per_field);
  std::int64_t* out = index->data();
  for (std::int64_t m = 0; m < fields; ++m, out += per_field)
    for (std::size_t t = 0; t < per_field; ++t)
      out[t] = field_index_[t] < 0 ? zero_row : m * pixels + field_index_[t];
  index_cache_.insert(index_cache_.begin(), {fields, index});
  if (index_cache_.size() > kCachedIndices) index_cache_.pop_back();
  return index;
}

// im2col: the K·K·C_in inputs of every output position gathered into one row, then one GEMM.
//   rows  = x viewed as [M·H·W, C_in] (one pixel per row), plus one zero row when padding is read
//   cols  = gather_rows(rows, index)         [M·P·K², C_in] viewed as [M·P, K²·C_in]
//   y     = cols Wᵀ + b                      [M·P, C_out] viewed as [M, P·C_out]
// Memory traffic of a forward: the copy that appends the zero row (M·H·W·C_in values), the
// gathered columns (M·P·K²·C_in values, about K²/s² times the input) and the int64 index
// (M·P·K² entries: for C_in = 1 it is twice the bytes of the columns it gathers), then the GEMM
// (2·M·P·K²·C_in·C_out flops). The backward scatters the column gradient back, the same traffic.
Var Conv2d::convolve(const Var& x, const Var& weight, const Var& bias) const {
  if (x.shape().rank() != 2 || x.dim(1) != in_features())
    throw core::ShapeError(core::str("Conv2d: expected fields of shape [M, ", in_features(), "] (",
                                     height_, "×", width_, " pixels × ", in_channels_,
                                     " channels), got ", x.shape()));
  const std::int64_t window = kernel_ * kernel_ * in_channels_;
  core::check_shape("Conv2d", "weight", weight.value(), {out_channels_, window});
  core::check_shape("Conv2d", "bias", bias.value(), {out_channels_});
  const std::int64_t fields = x.dim(0), positions = out_height_ * out_width_;
  Var rows = ad::reshape(x, {fields * height_ * width_, in_channels_});
  if (padding_ > 0) {
    Tensor zero = Tensor::scratch({1, in_channels_}, x.dtype(), x.device());
    core::backend(x.device()).fill(zero, 0.0);
    rows = ad::concat({rows, Var(zero)}, 0);
  }
  const std::shared_ptr<const std::vector<std::int64_t>> index = gather_index(fields);
  Var cols = ad::reshape(ad::gather_rows(rows, *index), {fields * positions, window});
  return ad::reshape(ad::linear(cols, weight, bias), {fields, positions * out_channels_});
}

Var Conv2d::forward(const Var& x) const { return convolve(x, weight_, bias_); }

ConvEncoder::ConvEncoder(std::int64_t height, std::int64_t width,
                         std::vector<std::int64_t> channels, std::int64_t out_features,
                         core::Rng& rng, Activation activation, DType dtype)
    : in_features_(height * width), activation_(activation) {
  std::int64_t h = height, w = width, c = 1;
  for (std::size_t k = 0; k < channels.size(); ++k) {
    Conv2d& conv = child(core::str("convs.", k),
                         std::make_unique<Conv2d>(h, w, c, channels[k], 3, 2, 1, rng, dtype));
    convs_.push_back(&conv);
    h = conv.out_height();
    w = conv.out_width();
    c = conv.out_channels();
  }
  linear_ = &child("linear", std::make_unique<Linear>(h * w * c, out_features, rng, true, dtype));
}

Var ConvEncoder::forward(const Var& x) const {
  if (x.shape().rank() != 2 || x.dim(1) != in_features_)
    throw core::ShapeError(core::str("ConvEncoder: expected one-channel fields of shape [M, ",
                                     in_features_, "], got ", x.shape()));
  Var h = x;
  for (const Conv2d* conv : convs_) h = activate(activation_, conv->forward(h));
  return linear_->forward(h);
}

}  // namespace asbi::nn
