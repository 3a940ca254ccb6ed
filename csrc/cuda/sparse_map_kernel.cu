// CUDA kernel maps of sparse convolution: a GPU hash table of the input sites, probed once per
// (output site, offset); output sites of regular and transposed convolutions by sort + unique of the
// candidate keys. Kernels and drivers: sparse_map_device.cuh.
//
// Status: compiled and linked in CI and run in the tests under the CPU emulator (tests/cuda_emu);
// not yet run on a GPU (no GPU was available to this project so far).
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "cuda/sparse_map_device.cuh"
#include "kernels.h"

namespace fastperc {
namespace cuda {
at::Tensor sparse_kernel_map_cuda(const at::Tensor& in_coords, const at::Tensor& out_coords, at::IntArrayRef kernel_size,
                                  at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                                  bool transposed) {
  TORCH_CHECK(in_coords.is_cuda() && out_coords.device() == in_coords.device(),
              "fastperc: in_coords and out_coords must be on the same CUDA device, got ", in_coords.device(), " and ",
              out_coords.device());
  const c10::cuda::CUDAGuard guard(in_coords.device());
  return sparse_map::build_kernel_map(CudaLaunch{c10::cuda::getCurrentCUDAStream()}, in_coords, out_coords,
                                      kernel_size, stride, padding, dilation, transposed);
}

at::Tensor sparse_out_coords_cuda(const at::Tensor& in_coords, at::IntArrayRef kernel_size, at::IntArrayRef stride,
                                  at::IntArrayRef padding, at::IntArrayRef dilation, at::IntArrayRef spatial_shape,
                                  bool transposed) {
  TORCH_CHECK(in_coords.is_cuda(), "fastperc: sparse_out_coords_cuda got a tensor on ", in_coords.device());
  const c10::cuda::CUDAGuard guard(in_coords.device());
  return sparse_map::build_out_coords(CudaLaunch{c10::cuda::getCurrentCUDAStream()}, in_coords, kernel_size, stride,
                                      padding, dilation, spatial_shape, transposed);
}

}  // namespace cuda
}  // namespace fastperc
