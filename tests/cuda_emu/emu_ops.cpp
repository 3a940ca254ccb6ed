// The CUDA kernel drivers of fastperc, run on CPU tensors under the emulator (emulate.h), registered
// as torch.ops.fastperc_emu.* with the schemas of the real ops. Built by tests/cuda_emu/__init__.py.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <array>
#include <optional>
#include <tuple>

#include "emulate.h"
#include "op_schemas.h"
// The kernel headers come after the emulator's macros. Batch items and planes beyond 2 are launched in
// chunks here (65535 on a GPU), so the tests run the chunk loops.
#define FASTPERC_GRID_CHUNK 2
#include "cuda/gram_device.cuh"
#include "cuda/knn_device.cuh"
#include "cuda/sparse_conv_device.cuh"
#include "cuda/sparse_map_device.cuh"
#include "cuda/ssim_backward_device.cuh"
#include "cuda/ssim_forward_device.cuh"

namespace {

using namespace fastperc;

// sms: the multiprocessor count the N splits are sized for (more gives more splits).
at::Tensor gram(const at::Tensor& x, double scale, int64_t sms) {
  check_features(x, "x");
  check_finite_scale(scale, "scale");
  return cuda::gram_detail::gram_forward(emu::Launch{}, x, scale, sms);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ssim(const at::Tensor& x, const at::Tensor& y, const at::Tensor& window,
                                                    double c1, double c2, int64_t padding) {
  const SsimGeometry g = check_ssim_inputs(x, y, window, c1, c2, padding);
  return cuda::ssim_detail::ssim_op(emu::Launch{}, x, y, window, c1, c2, g);
}

at::Tensor ssim_map(const at::Tensor& x, const at::Tensor& y, const at::Tensor& window, double c1, double c2,
                    int64_t padding) {
  const SsimGeometry g = check_ssim_inputs(x, y, window, c1, c2, padding);
  return cuda::ssim_detail::ssim_map_op(emu::Launch{}, x, y, window, c1, c2, g);
}

std::tuple<at::Tensor, at::Tensor> ssim_backward(const at::Tensor& grad_ssim, const std::optional<at::Tensor>& grad_cs,
                                                 const std::optional<at::Tensor>& grad_l1, const at::Tensor& x,
                                                 const at::Tensor& y, const at::Tensor& window, double c1, double c2,
                                                 int64_t padding, std::array<bool, 2> output_mask) {
  const SsimBackwardArgs a = check_ssim_backward_inputs(grad_ssim, grad_cs, grad_l1, x, y, window, c1, c2, padding);
  return cuda::ssim_detail::ssim_backward_op(emu::Launch{}, grad_ssim, a, x, y, window, c1, c2, output_mask);
}

at::Tensor sparse_kernel_map(const at::Tensor& in_coords, const at::Tensor& out_coords, at::IntArrayRef kernel_size,
                             at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, bool transposed) {
  return cuda::sparse_map::build_kernel_map(emu::Launch{}, in_coords, out_coords, kernel_size, stride, padding,
                                            dilation, transposed);
}

at::Tensor sparse_out_coords(const at::Tensor& in_coords, at::IntArrayRef kernel_size, at::IntArrayRef stride,
                             at::IntArrayRef padding, at::IntArrayRef dilation, at::IntArrayRef spatial_shape,
                             bool transposed) {
  return cuda::sparse_map::build_out_coords(emu::Launch{}, in_coords, kernel_size, stride, padding, dilation,
                                            spatial_shape, transposed);
}

at::Tensor sparse_conv(const at::Tensor& feats, const at::Tensor& weight, const at::Tensor& kmap,
                       const std::optional<at::Tensor>& inv_map) {
  return cuda::sparse_conv::forward(emu::Launch{}, feats, weight, kmap, inv_map);
}

std::tuple<at::Tensor, at::Tensor> sparse_conv_backward(const at::Tensor& grad_out, const at::Tensor& feats,
                                                         const at::Tensor& weight, const at::Tensor& kmap,
                                                         const std::optional<at::Tensor>& inv_map,
                                                         std::array<bool, 2> output_mask) {
  return cuda::sparse_conv::backward(emu::Launch{}, grad_out, feats, weight, kmap, inv_map, output_mask);
}

std::tuple<at::Tensor, at::Tensor> knn_points(const at::Tensor& x, const at::Tensor& y, const at::Tensor& x_lengths,
                                              const at::Tensor& y_lengths, int64_t k) {
  return cuda::knn::forward(emu::Launch{}, x, y, x_lengths, y_lengths, k);
}

std::tuple<at::Tensor, at::Tensor> knn_points_backward(const at::Tensor& grad_dists, const at::Tensor& x,
                                                       const at::Tensor& y, const at::Tensor& idx) {
  return cuda::knn::backward(emu::Launch{}, grad_dists, x, y, idx);
}

}  // namespace

TORCH_LIBRARY(fastperc_emu, m) {
  m.def("gram(Tensor x, float scale, int sms) -> Tensor");
  // The ops' own schemas, except gram's extra sms (the SM count its split-K choice assumes).
  using namespace fastperc::schema;
  m.def(kSsimSchema);
  m.def(kSsimMapSchema);
  m.def(kSsimBackwardSchema);
  m.def(kSparseKernelMapSchema);
  m.def(kSparseOutCoordsSchema);
  m.def(kSparseConvSchema);
  m.def(kSparseConvBackwardSchema);
  m.def(kKnnPointsSchema);
  m.def(kKnnPointsBackwardSchema);
}

TORCH_LIBRARY_IMPL(fastperc_emu, CPU, m) {
  m.impl("gram", &gram);
  m.impl("ssim", &ssim);
  m.impl("ssim_map", &ssim_map);
  m.impl("ssim_backward", &ssim_backward);
  m.impl("sparse_kernel_map", &sparse_kernel_map);
  m.impl("sparse_out_coords", &sparse_out_coords);
  m.impl("sparse_conv", &sparse_conv);
  m.impl("sparse_conv_backward", &sparse_conv_backward);
  m.impl("knn_points", &knn_points);
  m.impl("knn_points_backward", &knn_points_backward);
}
