// CUDA SSIM forward: ops `ssim` (per-plane means of SSIM, CS and |x - y|) and `ssim_map`.
// Kernels and driver: ssim_forward_device.cuh; design and status (run under the CPU emulator, not yet
// on a GPU): ssim_passes.cuh.
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>
#include <type_traits>

#include "cuda/ssim_forward_device.cuh"

namespace fastperc {
namespace cuda {
namespace {

using namespace ssim_detail;

void check_cuda(const at::Tensor& x, const SsimGeometry& g) {
  TORCH_CHECK(x.is_cuda(), "fastperc: the CUDA ssim kernel got a tensor on ", x.device());
  TORCH_CHECK(g.planes() <= int64_t{0x7fffffff}, "fastperc: B * C = ", g.planes(), " is too large for the CUDA kernel");
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ssim_cuda(const at::Tensor& x, const at::Tensor& y,
                                                         const at::Tensor& window, double c1, double c2,
                                                         int64_t padding) {
  const SsimGeometry g = check_ssim_inputs(x, y, window, c1, c2, padding);
  check_cuda(x, g);
  const c10::cuda::CUDAGuard guard(x.device());
  const auto options = x.options().dtype(accumulate_type(x.scalar_type()));
  at::Tensor means[3] = {at::empty({g.B, g.C}, options), at::empty({g.B, g.C}, options), at::empty({g.B, g.C}, options)};
  const at::Tensor w = window.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "fastperc_ssim_cuda", [&] {
    using T = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    ssim_forward<scalar_t, T>(CudaLaunch{c10::cuda::getCurrentCUDAStream()}, x, y, w, g, static_cast<T>(c1),
                              static_cast<T>(c2), nullptr, means);
  });
  return {means[0], means[1], means[2]};
}

at::Tensor ssim_map_cuda(const at::Tensor& x, const at::Tensor& y, const at::Tensor& window, double c1, double c2,
                         int64_t padding) {
  const SsimGeometry g = check_ssim_inputs(x, y, window, c1, c2, padding);
  check_cuda(x, g);
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor map = at::empty(ssim_map_shape(g), x.options().dtype(accumulate_type(x.scalar_type())));
  const at::Tensor w = window.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "fastperc_ssim_map_cuda", [&] {
    using T = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    ssim_forward<scalar_t, T>(CudaLaunch{c10::cuda::getCurrentCUDAStream()}, x, y, w, g, static_cast<T>(c1),
                              static_cast<T>(c2), &map, nullptr);
  });
  return map;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastperc, CUDA, m) {
  m.impl("ssim", &ssim_cuda);
  m.impl("ssim_map", &ssim_map_cuda);
}

}  // namespace cuda
}  // namespace fastperc
