// CUDA SSIM forward: ops `ssim` (per-plane means of SSIM, CS and |x - y|) and `ssim_map`.
// See ssim_passes.cuh for the design and its status (compiled, not yet run on a GPU).
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <tuple>
#include <type_traits>

#include "cuda/ssim_passes.cuh"

namespace fastperc {
namespace cuda {
namespace {

using namespace ssim_detail;

template <typename T>
__global__ void ssim_pixels(const T* __restrict__ m, int64_t n, T c1, T c2, T* __restrict__ ssim, T* __restrict__ cs) {
  FASTPERC_GRID_LOOP(i, n) {
    T s, q;
    ssim_pixel<T>(m[i], m[n + i], m[2 * n + i], m[3 * n + i], m[4 * n + i], c1, c2, s, q);
    ssim[i] = s;
    if (cs != nullptr) cs[i] = q;
  }
}

// One block per plane: the mean of its `count` values, summed in double in a fixed order.
template <typename T>
__global__ void plane_means(const T* __restrict__ data, int64_t count, T* __restrict__ out) {
  __shared__ double partial[kThreads];
  const T* plane = data + blockIdx.x * count;
  double s = 0;
  for (int64_t i = threadIdx.x; i < count; i += kThreads) s += static_cast<double>(plane[i]);
  partial[threadIdx.x] = s;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = static_cast<T>(partial[0] / count);
}

// One block per plane: mean |x - y| over the plane's D x H x W elements.
template <typename scalar_t, typename T>
__global__ void plane_l1(const scalar_t* __restrict__ x, const scalar_t* __restrict__ y, Strides st, Dims g,
                         T* __restrict__ out) {
  __shared__ double partial[kThreads];
  const int64_t plane = blockIdx.x, count = g.D * g.H * g.W;
  const int64_t base = (plane / g.C) * st.b + (plane % g.C) * st.c;
  double s = 0;
  for (int64_t i = threadIdx.x; i < count; i += kThreads) {
    const int64_t off = base + (i / (g.H * g.W)) * st.d + ((i / g.W) % g.H) * st.h + (i % g.W) * st.w;
    const T d = static_cast<T>(x[off]) - static_cast<T>(y[off]);
    s += static_cast<double>(d < T(0) ? -d : d);
  }
  partial[threadIdx.x] = s;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[plane] = static_cast<T>(partial[0] / count);
}

template <typename scalar_t, typename T>
void ssim_forward(const at::Tensor& x, const at::Tensor& y, const at::Tensor& window, const SsimGeometry& geo, T c1,
                  T c2, at::Tensor& map, at::Tensor* means) {
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const at::Tensor m = window_moments<scalar_t, T>(x, y, window, geo, stream);
  const int64_t n = geo.planes() * geo.map_size();
  at::Tensor cs;
  if (means != nullptr) cs = at::empty({n}, map.options());
  ssim_pixels<T><<<grid_for(n), kThreads, 0, stream>>>(m.const_data_ptr<T>(), n, c1, c2, map.data_ptr<T>(),
                                                       means != nullptr ? cs.data_ptr<T>() : nullptr);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  if (means == nullptr) return;
  const unsigned planes = static_cast<unsigned>(geo.planes());
  plane_means<T><<<planes, kThreads, 0, stream>>>(map.const_data_ptr<T>(), geo.map_size(), means[0].data_ptr<T>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  plane_means<T><<<planes, kThreads, 0, stream>>>(cs.const_data_ptr<T>(), geo.map_size(), means[1].data_ptr<T>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  plane_l1<scalar_t, T><<<planes, kThreads, 0, stream>>>(x.const_data_ptr<scalar_t>(), y.const_data_ptr<scalar_t>(),
                                                         strides_of(x), dims_of(geo), means[2].data_ptr<T>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

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
  at::Tensor map = at::empty(ssim_map_shape(g), options);
  const at::Tensor w = window.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "fastperc_ssim_cuda", [&] {
    using T = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    ssim_forward<scalar_t, T>(x, y, w, g, static_cast<T>(c1), static_cast<T>(c2), map, means);
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
    ssim_forward<scalar_t, T>(x, y, w, g, static_cast<T>(c1), static_cast<T>(c2), map, nullptr);
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
