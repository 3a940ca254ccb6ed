#pragma once
// Every device kernel entry point, declared once. ops.cpp registers them (the only unit that includes
// torch/library.h, ~9 s of parsing per unit); each *_kernel.cpp / *.cu defines its own with lean ATen
// headers. Signatures follow the schemas in op_schemas.h.
#include <ATen/core/Tensor.h>

#include <array>
#include <optional>
#include <tuple>

#define FASTPERC_DECLARE_KERNELS(suffix)                                                                              \
  at::Tensor gram_##suffix(const at::Tensor& x, double scale);                                                        \
  at::Tensor gram_backward_##suffix(const at::Tensor& grad, const at::Tensor& x, double scale);                       \
  std::tuple<at::Tensor, at::Tensor> style_loss_##suffix(const at::Tensor& x, const at::Tensor& target,               \
                                                         double gram_scale, double loss_scale);                       \
  std::tuple<at::Tensor, at::Tensor, at::Tensor> ssim_##suffix(const at::Tensor& x, const at::Tensor& y,              \
                                                               const at::Tensor& window, double c1, double c2,        \
                                                               int64_t padding);                                      \
  at::Tensor ssim_map_##suffix(const at::Tensor& x, const at::Tensor& y, const at::Tensor& window, double c1,         \
                               double c2, int64_t padding);                                                           \
  std::tuple<at::Tensor, at::Tensor> ssim_backward_##suffix(                                                          \
      const at::Tensor& grad_ssim, const std::optional<at::Tensor>& grad_cs, const std::optional<at::Tensor>& grad_l1, \
      const at::Tensor& x, const at::Tensor& y, const at::Tensor& window, double c1, double c2, int64_t padding,      \
      std::array<bool, 2> output_mask);                                                                               \
  at::Tensor sparse_kernel_map_##suffix(const at::Tensor& in_coords, const at::Tensor& out_coords,                    \
                                        at::IntArrayRef kernel_size, at::IntArrayRef stride, at::IntArrayRef padding, \
                                        at::IntArrayRef dilation, bool transposed);                                   \
  at::Tensor sparse_out_coords_##suffix(const at::Tensor& in_coords, at::IntArrayRef kernel_size,                     \
                                        at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,    \
                                        at::IntArrayRef spatial_shape, bool transposed);                              \
  at::Tensor sparse_conv_##suffix(const at::Tensor& feats, const at::Tensor& weight, const at::Tensor& kmap,          \
                                  const std::optional<at::Tensor>& inv_map);                                          \
  std::tuple<at::Tensor, at::Tensor> sparse_conv_backward_##suffix(                                                   \
      const at::Tensor& grad_out, const at::Tensor& feats, const at::Tensor& weight, const at::Tensor& kmap,          \
      const std::optional<at::Tensor>& inv_map, std::array<bool, 2> output_mask);                                     \
  std::tuple<at::Tensor, at::Tensor> knn_points_##suffix(const at::Tensor& x, const at::Tensor& y,                    \
                                                         const at::Tensor& x_lengths, const at::Tensor& y_lengths,    \
                                                         int64_t k);                                                  \
  std::tuple<at::Tensor, at::Tensor> knn_points_backward_##suffix(const at::Tensor& grad_dists, const at::Tensor& x,  \
                                                                  const at::Tensor& y, const at::Tensor& idx);

namespace fastperc {
namespace cpu {
FASTPERC_DECLARE_KERNELS(cpu)
}  // namespace cpu
namespace cuda {
FASTPERC_DECLARE_KERNELS(cuda)
}  // namespace cuda
}  // namespace fastperc

#undef FASTPERC_DECLARE_KERNELS
