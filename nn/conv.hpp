#pragma once
// 2-D convolutions for set elements that are fields (images, grids), built from existing ops:
// im2col through ad::gather_rows and one ad::linear, so the gradients are those of two
// gradient-checked ops and no new backward rule exists to get wrong.
//
//   core::Rng rng(0);
//   nn::ConvEncoder phi(16, 16, {8, 16}, 32, rng);   // [M, 16·16] → [M, 32]
//   ad::Var e = phi(fields);                          // fields [M, 256], one field per row
//
// Layout: a field of H × W pixels with C channels is one row of H·W·C numbers stored
// channels-last, row-major over (i, j, c): x[m, (i·W + j)·C + c]. Letters: M fields, H × W
// pixels, C_in → C_out channels, K the kernel size, s the stride, p the zero padding,
// H_out = ⌊(H + 2p − K)/s⌋ + 1 (and W_out likewise), P = H_out·W_out output positions.
#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "nn/layers.hpp"

namespace asbi::nn {

// y[m, (q, o)] = b_o + Σ_{k,c} W[o, (k, c)] · x[m, pixel(q, k), c]: output position q reads the
// K×K neighbourhood k of its input pixel (i_q·s − p + k_i, j_q·s − p + k_j), zero outside the
// field. Parameters "weight" [C_out, K·K·C_in] (columns in (k_i, k_j, c) order) and "bias"
// [C_out], initialised as PyTorch's nn.Conv2d (uniform in ±1/√(K·K·C_in)).
//
// forward is safe to call from several threads at once: the gather index it caches per M is
// guarded by a mutex and shared read-only.
class Conv2d : public Layer {
 public:
  Conv2d(std::int64_t height, std::int64_t width, std::int64_t in_channels,
         std::int64_t out_channels, int kernel_size, int stride, int padding, core::Rng& rng,
         DType dtype = DType::f32);
  // x [M, H·W·C_in] → [M, H_out·W_out·C_out].
  Var forward(const Var& x) const override;
  // The same convolution with a given weight and bias (shapes as the parameters'): forward(x)
  // is convolve(x, weight(), bias()). Lets gradcheck treat the parameters as inputs.
  Var convolve(const Var& x, const Var& weight, const Var& bias) const;

  std::int64_t out_height() const { return out_height_; }
  std::int64_t out_width() const { return out_width_; }
  std::int64_t out_channels() const { return out_channels_; }
  std::int64_t in_features() const { return height_ * width_ * in_channels_; }
  std::int64_t out_features() const { return out_height_ * out_width_ * out_channels_; }
  Parameter& weight() const { return weight_; }
  Parameter& bias() const { return bias_; }

 private:
  // The input row each of the M·P·K² gathered rows reads; padding reads row M·H·W (a zero row).
  std::shared_ptr<const std::vector<std::int64_t>> gather_index(std::int64_t fields) const;

  std::int64_t height_, width_, in_channels_, out_channels_;
  int kernel_, stride_, padding_;
  std::int64_t out_height_, out_width_;
  std::vector<std::int64_t> field_index_;  // one field's P·K² pixel indices, −1 in the padding
  Parameter& weight_;
  Parameter& bias_;
  // The last few gather indices by M, newest first: the batch size repeats from call to call.
  mutable std::mutex cache_mutex_;
  mutable std::vector<std::pair<std::int64_t, std::shared_ptr<const std::vector<std::int64_t>>>>
      index_cache_;
};

// The element encoder φ for fields of one channel: per entry of `channels` a 3×3 convolution
// with stride 2 and padding 1 (halving H and W, rounding up) and the activation, then the
// feature map flattened and a Linear to out_features. x [M, H·W] → [M, out_features]; e.g.
// 16×16 with channels {8, 16}: 8×8×8 → 4×4×16 = 256 → Linear(256, out). Parameters
// "convs.<k>.weight", "convs.<k>.bias", "linear.weight", "linear.bias". Thread-safe as Conv2d.
class ConvEncoder : public Layer {
 public:
  ConvEncoder(std::int64_t height, std::int64_t width, std::vector<std::int64_t> channels,
              std::int64_t out_features, core::Rng& rng, Activation activation = Activation::relu,
              DType dtype = DType::f32);
  Var forward(const Var& x) const override;
  std::int64_t in_features() const { return in_features_; }
  std::int64_t out_features() const { return linear_->out_features(); }

 private:
  std::int64_t in_features_;
  Activation activation_;
  std::vector<Conv2d*> convs_;
  Linear* linear_ = nullptr;
};

}  // namespace asbi::nn
