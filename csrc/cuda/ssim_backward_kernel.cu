// CUDA SSIM backward (op `ssim_backward`): moments -> per-pixel moment gradients -> adjoint of the
// window filter on the padded grid -> fold onto the inputs (+ the |x - y| term). Same math as the CPU
// kernel (common/ssim_math.h). Kernels and driver: ssim_backward_device.cuh; status (run under the CPU
// emulator, not yet on a GPU): ssim_passes.cuh.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <array>
#include <optional>
#include <tuple>

#include "cuda/ssim_backward_device.cuh"
#include "kernels.h"

namespace fastperc {
namespace cuda {
using namespace ssim_detail;

std::tuple<at::Tensor, at::Tensor> ssim_backward_cuda(const at::Tensor& grad_ssim,
                                                      const std::optional<at::Tensor>& grad_cs,
                                                      const std::optional<at::Tensor>& grad_l1, const at::Tensor& x,
                                                      const at::Tensor& y, const at::Tensor& window, double c1,
                                                      double c2, int64_t padding, std::array<bool, 2> output_mask) {
  const SsimBackwardArgs a = check_ssim_backward_inputs(grad_ssim, grad_cs, grad_l1, x, y, window, c1, c2, padding);
  TORCH_CHECK(x.is_cuda(), "fastperc: the CUDA ssim_backward kernel got a tensor on ", x.device());
  const c10::cuda::CUDAGuard guard(x.device());
  return ssim_backward_op(CudaLaunch{c10::cuda::getCurrentCUDAStream()}, grad_ssim, a, x, y, window, c1, c2,
                          output_mask);
}

}  // namespace cuda
}  // namespace fastperc
