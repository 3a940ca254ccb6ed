// CUDA K nearest neighbours and the backward of their squared distances: brute force tiled through
// shared memory, deterministic backward. Kernels, drivers and the design: knn_device.cuh.
//
// Status: compiled and linked in CI and run in the tests under the CPU emulator (tests/cuda_emu);
// not yet run on a GPU (no GPU was available to this project so far).
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <tuple>

#include "cuda/knn_device.cuh"
#include "kernels.h"

namespace fastperc {
namespace cuda {

std::tuple<at::Tensor, at::Tensor> knn_points_cuda(const at::Tensor& x, const at::Tensor& y, const at::Tensor& x_lengths,
                                                   const at::Tensor& y_lengths, int64_t k) {
  TORCH_CHECK(x.is_cuda(), "fastperc: knn_points_cuda got a tensor on ", x.device());
  const c10::cuda::CUDAGuard guard(x.device());
  return knn::forward(CudaLaunch{c10::cuda::getCurrentCUDAStream()}, x, y, x_lengths, y_lengths, k);
}

std::tuple<at::Tensor, at::Tensor> knn_points_backward_cuda(const at::Tensor& grad_dists, const at::Tensor& x,
                                                            const at::Tensor& y, const at::Tensor& idx) {
  TORCH_CHECK(x.is_cuda(), "fastperc: knn_points_backward_cuda got a tensor on ", x.device());
  const c10::cuda::CUDAGuard guard(x.device());
  return knn::backward(CudaLaunch{c10::cuda::getCurrentCUDAStream()}, grad_dists, x, y, idx);
}

}  // namespace cuda
}  // namespace fastperc
