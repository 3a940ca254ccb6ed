// The CUDA kernel drivers of fastperc, run on CPU tensors under the emulator (emulate.h), registered
// as torch.ops.fastperc_emu.* with the schemas of the real ops. Built by tests/cuda_emu/__init__.py.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <array>
#include <optional>
#include <tuple>
#include <type_traits>

#include "emulate.h"
// The kernel headers come after the emulator's macros. Batch items and planes beyond 2 are launched in
// chunks here (65535 on a GPU), so the tests run the chunk loops.
#define FASTPERC_GRID_CHUNK 2
#include "cuda/gram_device.cuh"
#include "cuda/sparse_conv_device.cuh"
#include "cuda/sparse_map_device.cuh"
#include "cuda/ssim_backward_device.cuh"
#include "cuda/ssim_forward_device.cuh"

namespace {

using namespace fastperc;

template <typename T>
using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

// sms: the multiprocessor count the N splits are sized for (more gives more splits).
at::Tensor gram(const at::Tensor& x, double scale, int64_t sms) {
  check_features(x, "x");
  check_finite_scale(scale, "scale");
  return cuda::gram_detail::gram_forward(emu::Launch{}, x, scale, sms);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ssim(const at::Tensor& x, const at::Tensor& y, const at::Tensor& window,
                                                    double c1, double c2, int64_t padding) {
  const SsimGeometry g = check_ssim_inputs(x, y, window, c1, c2, padding);
  const auto options = x.options().dtype(accumulate_type(x.scalar_type()));
  at::Tensor means[3] = {at::empty({g.B, g.C}, options), at::empty({g.B, g.C}, options), at::empty({g.B, g.C}, options)};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "ssim_emulated", [&] {
    using T = acc_t<scalar_t>;
    cuda::ssim_detail::ssim_forward<scalar_t, T>(emu::Launch{}, x, y, window.contiguous(), g, static_cast<T>(c1),
                                                 static_cast<T>(c2), nullptr, means);
  });
  return {means[0], means[1], means[2]};
}

at::Tensor ssim_map(const at::Tensor& x, const at::Tensor& y, const at::Tensor& window, double c1, double c2,
                    int64_t padding) {
  const SsimGeometry g = check_ssim_inputs(x, y, window, c1, c2, padding);
  at::Tensor map = at::empty(ssim_map_shape(g), x.options().dtype(accumulate_type(x.scalar_type())));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "ssim_map_emulated", [&] {
    using T = acc_t<scalar_t>;
    cuda::ssim_detail::ssim_forward<scalar_t, T>(emu::Launch{}, x, y, window.contiguous(), g, static_cast<T>(c1),
                                                 static_cast<T>(c2), &map, nullptr);
  });
  return map;
}

std::tuple<at::Tensor, at::Tensor> ssim_backward(const at::Tensor& grad_ssim, const std::optional<at::Tensor>& grad_cs,
                                                 const std::optional<at::Tensor>& grad_l1, const at::Tensor& x,
                                                 const at::Tensor& y, const at::Tensor& window, double c1, double c2,
                                                 int64_t padding, std::array<bool, 2> output_mask) {
  const SsimBackwardArgs a = check_ssim_backward_inputs(grad_ssim, grad_cs, grad_l1, x, y, window, c1, c2, padding);
  if (!output_mask[0] && !output_mask[1]) return {at::empty({0}, x.options()), at::empty({0}, y.options())};
  std::tuple<at::Tensor, at::Tensor> out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "ssim_backward_emulated", [&] {
    using T = acc_t<scalar_t>;
    out = cuda::ssim_detail::backward_typed<scalar_t, T>(emu::Launch{}, grad_ssim, a.grad_cs, a.grad_l1, x, y,
                                                         window.contiguous(), a.g, static_cast<T>(c1),
                                                         static_cast<T>(c2), output_mask[0], output_mask[1]);
  });
  return out;
}

at::Tensor sparse_kernel_map(const at::Tensor& in_coords, const at::Tensor& out_coords, at::IntArrayRef kernel_size,
                             at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, bool transposed) {
  check_sparse_coords(in_coords, "in_coords");
  check_sparse_coords(out_coords, "out_coords");
  const at::Tensor in_c = in_coords.contiguous();
  const at::Tensor out_c = out_coords.is_same(in_coords) ? in_c : out_coords.contiguous();
  return cuda::sparse_map::build_kernel_map(emu::Launch{}, in_c, out_c, check_triple(kernel_size, "kernel_size", 1),
                                            check_triple(stride, "stride", 1), check_triple(padding, "padding", 0),
                                            check_triple(dilation, "dilation", 1), transposed);
}

at::Tensor sparse_out_coords(const at::Tensor& in_coords, at::IntArrayRef kernel_size, at::IntArrayRef stride,
                             at::IntArrayRef padding, at::IntArrayRef dilation, at::IntArrayRef spatial_shape,
                             bool transposed) {
  check_sparse_coords(in_coords, "in_coords");
  return cuda::sparse_map::build_out_coords(emu::Launch{}, in_coords.contiguous(), check_triple(kernel_size, "kernel_size", 1),
                                            check_triple(stride, "stride", 1), check_triple(padding, "padding", 0),
                                            check_triple(dilation, "dilation", 1),
                                            check_triple(spatial_shape, "spatial_shape", 1), transposed);
}

at::Tensor sparse_conv(const at::Tensor& feats, const at::Tensor& weight, const at::Tensor& kmap,
                       const std::optional<at::Tensor>&) {
  check_sparse_features(feats, weight, /*half_types=*/true);
  check_kernel_map(kmap, weight.size(0), feats);
  return cuda::sparse_conv::forward(emu::Launch{}, feats.contiguous(), weight.contiguous(), kmap.contiguous());
}

std::tuple<at::Tensor, at::Tensor> sparse_conv_backward(const at::Tensor& grad_out, const at::Tensor& feats,
                                                         const at::Tensor& weight, const at::Tensor& kmap,
                                                         const std::optional<at::Tensor>& inv_map) {
  check_sparse_features(feats, weight, /*half_types=*/true);
  check_kernel_map(kmap, weight.size(0), feats);
  check_sparse_grad_out(grad_out, feats, weight, kmap);
  at::Tensor inv;
  if (inv_map.has_value() && inv_map->defined()) {
    check_inverse_map(*inv_map, weight.size(0), feats);
    inv = inv_map->contiguous();
  }
  return cuda::sparse_conv::backward(emu::Launch{}, grad_out.contiguous(), feats.contiguous(), weight.contiguous(),
                                     kmap.contiguous(), inv);
}

}  // namespace

TORCH_LIBRARY(fastperc_emu, m) {
  m.def("gram(Tensor x, float scale, int sms) -> Tensor");
  m.def("ssim(Tensor x, Tensor y, Tensor window, float c1, float c2, int padding) -> (Tensor, Tensor, Tensor)");
  m.def("ssim_map(Tensor x, Tensor y, Tensor window, float c1, float c2, int padding) -> Tensor");
  m.def("ssim_backward(Tensor grad_ssim, Tensor? grad_cs, Tensor? grad_l1, Tensor x, Tensor y, Tensor window, "
        "float c1, float c2, int padding, bool[2] output_mask=[True, True]) -> (Tensor, Tensor)");
  m.def("sparse_kernel_map(Tensor in_coords, Tensor out_coords, int[] kernel_size, int[] stride, int[] padding, "
        "int[] dilation, bool transposed) -> Tensor");
  m.def("sparse_out_coords(Tensor in_coords, int[] kernel_size, int[] stride, int[] padding, int[] dilation, "
        "int[] spatial_shape, bool transposed) -> Tensor");
  m.def("sparse_conv(Tensor feats, Tensor weight, Tensor kmap, Tensor? inv_map=None) -> Tensor");
  m.def("sparse_conv_backward(Tensor grad_out, Tensor feats, Tensor weight, Tensor kmap, Tensor? inv_map=None) "
        "-> (Tensor, Tensor)");
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
}
