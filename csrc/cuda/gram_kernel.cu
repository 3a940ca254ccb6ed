// CUDA Gram kernel: 64x64 shared-memory tiles of the upper triangle only, split-K over N, partials
// added in a fixed order. Kernels and driver: gram_device.cuh.
//
// Status: compiled and linked in CI and run in the tests under the CPU emulator (tests/cuda_emu);
// not yet run on a GPU (no GPU was available to this project so far).
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include "cuda/gram_device.cuh"
#include "kernels.h"

namespace fastperc {
namespace cuda {
namespace {

int multiprocessor_count(int device) {
  int count = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
  return count;
}

}  // namespace

at::Tensor gram_cuda(const at::Tensor& x, double scale) {
  check_features(x, "x");
  check_finite_scale(scale, "scale");
  TORCH_CHECK(x.is_cuda(), "fastperc: gram_cuda got a tensor on ", x.device());
  const c10::cuda::CUDAGuard guard(x.device());
  return gram_detail::gram_forward(CudaLaunch{c10::cuda::getCurrentCUDAStream()}, x, scale,
                                   multiprocessor_count(x.get_device()));
}

}  // namespace cuda
}  // namespace fastperc
