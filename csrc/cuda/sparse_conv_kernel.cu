// CUDA sparse convolution: implicit gather-GEMM, output stationary and deterministic (no atomics).
// Kernels, drivers and the design: sparse_conv_device.cuh.
//
// Status: compiled and linked in CI and run in the tests under the CPU emulator (tests/cuda_emu);
// not yet run on a GPU (no GPU was available to this project so far).
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <array>
#include <optional>
#include <tuple>

#include "cuda/sparse_conv_device.cuh"
#include "kernels.h"

namespace fastperc {
namespace cuda {
at::Tensor sparse_conv_cuda(const at::Tensor& feats, const at::Tensor& weight, const at::Tensor& kmap,
                            const std::optional<at::Tensor>& inv_map /* shape-checked; only the backward reads it */) {
  TORCH_CHECK(feats.is_cuda(), "fastperc: sparse_conv_cuda got a tensor on ", feats.device());
  const c10::cuda::CUDAGuard guard(feats.device());
  return sparse_conv::forward(CudaLaunch{c10::cuda::getCurrentCUDAStream()}, feats, weight, kmap, inv_map);
}

std::tuple<at::Tensor, at::Tensor> sparse_conv_backward_cuda(const at::Tensor& grad_out, const at::Tensor& feats,
                                                              const at::Tensor& weight, const at::Tensor& kmap,
                                                              const std::optional<at::Tensor>& inv_map,
                                                              std::array<bool, 2> output_mask) {
  TORCH_CHECK(feats.is_cuda(), "fastperc: sparse_conv_backward_cuda got a tensor on ", feats.device());
  const c10::cuda::CUDAGuard guard(feats.device());
  return sparse_conv::backward(CudaLaunch{c10::cuda::getCurrentCUDAStream()}, grad_out, feats, weight, kmap, inv_map,
                              output_mask);
}

}  // namespace cuda
}  // namespace fastperc
