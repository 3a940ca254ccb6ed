// CUDA SSIM forward: ops `ssim` (per-plane means of SSIM, CS and |x - y|) and `ssim_map`.
// Kernels and driver: ssim_forward_device.cuh; design and status (run under the CPU emulator, not yet
// on a GPU): ssim_passes.cuh.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <tuple>

#include "cuda/ssim_forward_device.cuh"
#include "kernels.h"

namespace fastperc {
namespace cuda {
namespace {

using namespace ssim_detail;

void check_cuda(const at::Tensor& x, const SsimGeometry& g) {
  TORCH_CHECK(x.is_cuda(), "fastperc: the CUDA ssim kernel got a tensor on ", x.device());
  TORCH_CHECK(g.planes() <= int64_t{0x7fffffff}, "fastperc: B * C = ", g.planes(), " is too large for the CUDA kernel");
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> ssim_cuda(const at::Tensor& x, const at::Tensor& y,
                                                         const at::Tensor& window, double c1, double c2,
                                                         int64_t padding) {
  const SsimGeometry g = check_ssim_inputs(x, y, window, c1, c2, padding);
  check_cuda(x, g);
  const c10::cuda::CUDAGuard guard(x.device());
  return ssim_op(CudaLaunch{c10::cuda::getCurrentCUDAStream()}, x, y, window, c1, c2, g);
}

at::Tensor ssim_map_cuda(const at::Tensor& x, const at::Tensor& y, const at::Tensor& window, double c1, double c2,
                         int64_t padding) {
  const SsimGeometry g = check_ssim_inputs(x, y, window, c1, c2, padding);
  check_cuda(x, g);
  const c10::cuda::CUDAGuard guard(x.device());
  return ssim_map_op(CudaLaunch{c10::cuda::getCurrentCUDAStream()}, x, y, window, c1, c2, g);
}

}  // namespace cuda
}  // namespace fastperc
