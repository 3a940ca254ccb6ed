#pragma once
// Kernels and driver of the CUDA SSIM forward (ssim_kernel.cu): the separable window moments
// (ssim_passes.cuh), SSIM and CS per pixel, and per-plane means summed in double in a fixed order.
#include "cuda/ssim_passes.cuh"

namespace fastperc {
namespace cuda {
namespace ssim_detail {


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
__global__ void plane_l1(const scalar_t* __restrict__ x, const scalar_t* __restrict__ y, Strides sx, Strides sy,
                         Dims g, T* __restrict__ out) {
  __shared__ double partial[kThreads];
  const int64_t plane = blockIdx.x, count = g.D * g.H * g.W;
  const int64_t b = plane / g.C, c = plane % g.C;
  double s = 0;
  for (int64_t i = threadIdx.x; i < count; i += kThreads) {
    const int64_t d0 = i / (g.H * g.W), h = (i / g.W) % g.H, w = i % g.W;
    const int64_t ox = b * sx.b + c * sx.c + d0 * sx.d + h * sx.h + w * sx.w;
    const int64_t oy = b * sy.b + c * sy.c + d0 * sy.d + h * sy.h + w * sy.w;
    const T d = static_cast<T>(x[ox]) - static_cast<T>(y[oy]);
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

// The SSIM map (and, with means, the per-plane means of SSIM, CS and |x - y|) in the acc type T.
template <typename scalar_t, typename T, typename Launch>
void ssim_forward(const Launch& launch, const at::Tensor& x, const at::Tensor& y, const at::Tensor& window,
                  const SsimGeometry& geo, T c1, T c2, at::Tensor& map, at::Tensor* means) {
  const at::Tensor m = window_moments<scalar_t, T>(launch, x, y, window, geo);
  const int64_t n = geo.planes() * geo.map_size();
  at::Tensor cs;
  if (means != nullptr) cs = at::empty({n}, map.options());
  launch(grid_for(n), kThreads, ssim_pixels<T>, m.const_data_ptr<T>(), n, c1, c2, map.data_ptr<T>(),
         means != nullptr ? cs.data_ptr<T>() : nullptr);
  if (means == nullptr) return;
  const unsigned planes = static_cast<unsigned>(geo.planes());
  launch(planes, kThreads, plane_means<T>, map.const_data_ptr<T>(), geo.map_size(), means[0].data_ptr<T>());
  launch(planes, kThreads, plane_means<T>, cs.const_data_ptr<T>(), geo.map_size(), means[1].data_ptr<T>());
  launch(planes, kThreads, plane_l1<scalar_t, T>, x.const_data_ptr<scalar_t>(), y.const_data_ptr<scalar_t>(),
         strides_of(x), strides_of(y), dims_of(geo), means[2].data_ptr<T>());
}

}  // namespace ssim_detail
}  // namespace cuda
}  // namespace fastperc
