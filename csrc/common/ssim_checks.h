#pragma once
// Input checks and geometry of the SSIM ops, shared by every device.
#include <ATen/core/Tensor.h>

#include <optional>
#include <vector>

#include "common/checks.h"
#include "common/ssim_math.h"

namespace fastperc {

// Sizes of one SSIM problem. 2D images are volumes of depth 1 filtered with one tap along D.
struct SsimGeometry {
  int64_t B, C, D, H, W;  // input
  int64_t k, kd;          // window taps along H and W; along D (1 for 2D)
  int64_t r, rd;          // padding on each side along H/W and along D (0 for "valid")
  int64_t Dp, Hp, Wp;     // padded input
  int64_t Do, Ho, Wo;     // SSIM map
  int64_t mode;
  bool volumetric;

  int64_t planes() const { return B * C; }
  int64_t map_size() const { return Do * Ho * Wo; }
  int64_t image_size() const { return D * H * W; }
};

// Element strides of one tensor of an SSIM op: batch, channel, depth (0 for 2D), height, width. Every
// tensor an SSIM kernel reads (x, y, per-pixel gradients) is addressed through its own strides: x and
// y routinely differ in layout (an HWC image permuted to CHW beside a contiguous render, channels_last,
// expanded or sliced views), and reading one with the other's strides is a silently wrong loss.
struct SsimStrides {
  int64_t b, c, d, h, w;
  FP_HD_MEMBER int64_t plane(int64_t bi, int64_t ci) const { return bi * b + ci * c; }
  FP_HD_MEMBER int64_t at(int64_t bi, int64_t ci, int64_t di, int64_t hi, int64_t wi) const {
    return bi * b + ci * c + di * d + hi * h + wi * w;
  }
};

inline SsimStrides ssim_strides_of(const at::Tensor& t) {
  if (t.dim() == 5) return {t.stride(0), t.stride(1), t.stride(2), t.stride(3), t.stride(4)};
  return {t.stride(0), t.stride(1), 0, t.stride(2), t.stride(3)};
}

inline SsimGeometry check_ssim_inputs(const at::Tensor& x, const at::Tensor& y, const at::Tensor& window, double c1,
                                      double c2, int64_t padding) {
  TORCH_CHECK(x.defined() && y.defined() && window.defined(), "fastperc: ssim got an undefined tensor");
  TORCH_CHECK(x.dim() == 4 || x.dim() == 5, "fastperc: x must be (B, C, H, W) or (B, C, D, H, W), got ", x.sizes());
  TORCH_CHECK(y.sizes() == x.sizes(), "fastperc: y must have the shape of x ", x.sizes(), ", got ", y.sizes());
  const auto t = x.scalar_type();
  TORCH_CHECK(t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16,
              "fastperc: x must be float16, bfloat16, float32 or float64, got ", t);
  TORCH_CHECK(y.scalar_type() == t, "fastperc: y must have the dtype of x (", t, "), got ", y.scalar_type());
  TORCH_CHECK(y.device() == x.device(), "fastperc: y is on ", y.device(), " but x is on ", x.device());
  TORCH_CHECK(window.device() == x.device(), "fastperc: window is on ", window.device(), " but x is on ", x.device());
  TORCH_CHECK(window.dim() == 1 && window.size(0) % 2 == 1, "fastperc: window must be 1-D with an odd number of taps, got ",
              window.sizes());
  TORCH_CHECK(window.scalar_type() == accumulate_type(t), "fastperc: window must be ", accumulate_type(t), ", got ",
              window.scalar_type());
  TORCH_CHECK(std::isfinite(c1) && std::isfinite(c2) && c1 > 0 && c2 > 0,
              "fastperc: c1 and c2 must be finite and > 0, got ", c1, " and ", c2);
  TORCH_CHECK(padding == kSsimValid || padding == kSsimZero || padding == kSsimReflect,
              "fastperc: padding must be 0 (valid), 1 (zero) or 2 (reflect), got ", padding);
  for (int64_t d = 0; d < x.dim(); ++d) TORCH_CHECK(x.size(d) > 0, "fastperc: x must not be empty, got ", x.sizes());

  SsimGeometry g{};
  g.volumetric = x.dim() == 5;
  g.B = x.size(0);
  g.C = x.size(1);
  g.D = g.volumetric ? x.size(2) : 1;
  g.H = x.size(-2);
  g.W = x.size(-1);
  g.k = window.size(0);
  g.kd = g.volumetric ? g.k : 1;
  g.mode = padding;
  g.r = padding == kSsimValid ? 0 : (g.k - 1) / 2;
  g.rd = g.volumetric ? g.r : 0;
  if (padding == kSsimValid) {
    TORCH_CHECK(g.H >= g.k && g.W >= g.k && g.D >= g.kd, "fastperc: with padding='valid' the image (",
                x.sizes().slice(2), ") must be at least the window size ", g.k, " in every spatial dimension");
  }
  if (padding == kSsimReflect) {
    TORCH_CHECK(g.H > g.r && g.W > g.r && g.D > g.rd, "fastperc: padding='reflect' needs every spatial size > ", g.r,
                " (half the window), got ", x.sizes().slice(2));
  }
  g.Dp = g.D + 2 * g.rd;
  g.Hp = g.H + 2 * g.r;
  g.Wp = g.W + 2 * g.r;
  g.Do = g.Dp - g.kd + 1;
  g.Ho = g.Hp - g.k + 1;
  g.Wo = g.Wp - g.k + 1;
  // The padded planes are the largest buffers a kernel may size (the backward's padded gradients).
  checked_size_product({g.B, g.C, g.Dp, g.Hp, g.Wp}, "the padded input");
  return g;
}

// Checks a per-pixel gradient (any strides, e.g. expanded) against the shape it must have.
inline void check_ssim_grad(const at::Tensor& grad, const at::Tensor& x, at::IntArrayRef shape, const char* name) {
  TORCH_CHECK(grad.sizes() == shape, "fastperc: ", name, " must have shape ", shape, ", got ", grad.sizes());
  TORCH_CHECK(grad.device() == x.device(), "fastperc: ", name, " is on ", grad.device(), " but x is on ", x.device());
  TORCH_CHECK(grad.scalar_type() == accumulate_type(x.scalar_type()), "fastperc: ", name, " must be ",
              accumulate_type(x.scalar_type()), ", got ", grad.scalar_type());
}

inline std::vector<int64_t> ssim_map_shape(const SsimGeometry& g) {
  if (g.volumetric) return {g.B, g.C, g.Do, g.Ho, g.Wo};
  return {g.B, g.C, g.Ho, g.Wo};
}

// The checked arguments of ssim_backward: its geometry and the optional weights (undefined if absent).
struct SsimBackwardArgs {
  SsimGeometry g;
  at::Tensor grad_cs, grad_l1;
};

inline SsimBackwardArgs check_ssim_backward_inputs(const at::Tensor& grad_ssim, const std::optional<at::Tensor>& grad_cs,
                                                   const std::optional<at::Tensor>& grad_l1, const at::Tensor& x,
                                                   const at::Tensor& y, const at::Tensor& window, double c1, double c2,
                                                   int64_t padding) {
  SsimBackwardArgs a{check_ssim_inputs(x, y, window, c1, c2, padding), grad_cs.value_or(at::Tensor()),
                     grad_l1.value_or(at::Tensor())};
  const auto map_shape = ssim_map_shape(a.g);
  check_ssim_grad(grad_ssim, x, map_shape, "grad_ssim");
  if (a.grad_cs.defined()) check_ssim_grad(a.grad_cs, x, map_shape, "grad_cs");
  if (a.grad_l1.defined()) check_ssim_grad(a.grad_l1, x, x.sizes(), "grad_l1");
  return a;
}

}  // namespace fastperc
