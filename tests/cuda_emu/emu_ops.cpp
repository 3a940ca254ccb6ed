// The CUDA kernel drivers of fastperc, run on CPU tensors under the emulator (emulate.h), registered
// as torch.ops.fastperc_emu.* with the schemas of the real ops. Built by tests/test_cuda_emulated.py.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

#include "emulate.h"
// The kernel headers come after the emulator's macros.
#include "cuda/sparse_conv_device.cuh"
#include "cuda/sparse_map_device.cuh"

namespace {

using namespace fastperc;

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
  m.def("sparse_kernel_map(Tensor in_coords, Tensor out_coords, int[] kernel_size, int[] stride, int[] padding, "
        "int[] dilation, bool transposed) -> Tensor");
  m.def("sparse_out_coords(Tensor in_coords, int[] kernel_size, int[] stride, int[] padding, int[] dilation, "
        "int[] spatial_shape, bool transposed) -> Tensor");
  m.def("sparse_conv(Tensor feats, Tensor weight, Tensor kmap, Tensor? inv_map=None) -> Tensor");
  m.def("sparse_conv_backward(Tensor grad_out, Tensor feats, Tensor weight, Tensor kmap, Tensor? inv_map=None) "
        "-> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(fastperc_emu, CPU, m) {
  m.impl("sparse_kernel_map", &sparse_kernel_map);
  m.impl("sparse_out_coords", &sparse_out_coords);
  m.impl("sparse_conv", &sparse_conv);
  m.impl("sparse_conv_backward", &sparse_conv_backward);
}
