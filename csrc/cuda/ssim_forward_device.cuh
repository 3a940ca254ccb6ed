#pragma once
// Kernels and driver of the CUDA SSIM forward (ssim_kernel.cu).
//
// Fused path (2D, float32 accumulation, window <= kFusedMaxWin): one block per 16 x 32 tile of the
// SSIM map loads its padded input tile once into shared memory, filters the four moments along W
// into shared memory, then along H per output pixel, forms SSIM and CS, and writes the tile's sums
// (a fixed-order tree) to a per-tile slot; a second kernel adds a plane's slots in order, in double.
// Nothing per pixel touches global memory unless the map itself is asked for.
// Separable path (3D, float64, wider windows): the window moments of ssim_passes.cuh in global
// memory, then SSIM and CS per pixel, then per-plane means.
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>

#include <tuple>
#include <type_traits>

#include "cuda/ssim_passes.cuh"

namespace fastperc {
namespace cuda {
namespace ssim_detail {

constexpr int kFusedTileH = 16, kFusedTileW = 32;  // map tile; 256 threads as 32 x 8, two rows each
constexpr int kFusedMaxWin = 23;                   // keeps the float32 shared memory under 48 KiB
constexpr int kFusedInH = kFusedTileH + kFusedMaxWin - 1, kFusedInW = kFusedTileW + kFusedMaxWin - 1;

template <typename T>
bool fused_eligible(const SsimGeometry& g) {
  return std::is_same_v<T, float> && !g.volumetric && g.k <= kFusedMaxWin;
}

// Stage one of the fused kernels: the padded input tile of map tile (oh0, ow0) of one plane into
// shared memory (zeros past the padded grid), then its four moments filtered along W for every input
// row of the tile (along_w), and the window taps (w). Ends with a barrier.
template <typename scalar_t>
__device__ __forceinline__ void fused_moments_along_w(const scalar_t* __restrict__ x, const scalar_t* __restrict__ y,
                                                      const SsimStrides& sx, const SsimStrides& sy, const Dims& g,
                                                      const float* __restrict__ window, int64_t plane, int64_t oh0,
                                                      int64_t ow0, float (*in_x)[kFusedInW], float (*in_y)[kFusedInW],
                                                      float (*along_w)[kFusedInH][kFusedTileW], float* w) {
  const int tid = threadIdx.x;
  const int k = static_cast<int>(g.k), in_h = kFusedTileH + k - 1, in_w = kFusedTileW + k - 1;
  const int64_t b = plane / g.C, c = plane % g.C;
  const int64_t bx = b * sx.b + c * sx.c, by = b * sy.b + c * sy.c;
  if (tid < k) w[tid] = window[tid];
  for (int idx = tid; idx < in_h * in_w; idx += kThreads) {
    const int r = idx / in_w, q = idx % in_w;
    const int64_t ph = oh0 + r, pw = ow0 + q;
    float xv = 0.f, yv = 0.f;
    if (ph < g.Hp && pw < g.Wp) {
      const int64_t sh = ssim_pad_source(ph, g.r, g.H, g.mode), sw = ssim_pad_source(pw, g.r, g.W, g.mode);
      if (sh >= 0 && sw >= 0) {
        xv = static_cast<float>(x[bx + sh * sx.h + sw * sx.w]);
        yv = static_cast<float>(y[by + sh * sy.h + sw * sy.w]);
      }
    }
    in_x[r][q] = xv;
    in_y[r][q] = yv;
  }
  __syncthreads();
  for (int idx = tid; idx < in_h * kFusedTileW; idx += kThreads) {
    const int r = idx / kFusedTileW, q = idx % kFusedTileW;
    float a0 = 0.f, a1 = 0.f, a2 = 0.f, a3 = 0.f;
    for (int t = 0; t < k; ++t) {
      const float xv = in_x[r][q + t], yv = in_y[r][q + t], wt = w[t];
      a0 += wt * xv;
      a1 += wt * yv;
      a2 += wt * ssim_square_sum(xv, yv);
      a3 += wt * ssim_mul(xv, yv);
    }
    along_w[0][r][q] = a0;
    along_w[1][r][q] = a1;
    along_w[2][r][q] = a2;
    along_w[3][r][q] = a3;
  }
  __syncthreads();
}

// Stage two: the four window moments of map pixel (row r, column q) of the tile.
__device__ __forceinline__ void fused_moments_at(const float (*along_w)[kFusedInH][kFusedTileW], const float* w, int k,
                                                 int r, int q, float m[kSsimMoments]) {
  for (int s = 0; s < kSsimMoments; ++s) m[s] = 0.f;
  for (int t = 0; t < k; ++t)
    for (int s = 0; s < kSsimMoments; ++s) m[s] += w[t] * along_w[s][r + t][q];
}

// SSIM (and CS) of one map tile; map, when given, receives the per-pixel SSIM. tile_sums[plane][tile]
// gets the tile's SSIM and CS sums (2 values). planes beyond the grid limit come in chunks (plane0).
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    ssim_fused_2d(const scalar_t* __restrict__ x, const scalar_t* __restrict__ y, SsimStrides sx, SsimStrides sy,
                  Dims g, const float* __restrict__ window, float c1, float c2, int64_t tiles_w, int64_t tiles,
                  int64_t plane0, float* __restrict__ map, float* __restrict__ tile_sums) {
  __shared__ float in_x[kFusedInH][kFusedInW], in_y[kFusedInH][kFusedInW];
  __shared__ float along_w[kSsimMoments][kFusedInH][kFusedTileW];
  __shared__ float w[kFusedMaxWin];
  __shared__ float red[2][kThreads];
  const int tid = threadIdx.x;
  const int64_t tile = blockIdx.x, plane = plane0 + blockIdx.y;
  const int64_t oh0 = (tile / tiles_w) * kFusedTileH, ow0 = (tile % tiles_w) * kFusedTileW;
  const int k = static_cast<int>(g.k);
  fused_moments_along_w(x, y, sx, sy, g, window, plane, oh0, ow0, in_x, in_y, along_w, w);
  // Along H per map pixel, then SSIM and CS.
  const int q = tid % kFusedTileW;
  float sum_s = 0.f, sum_c = 0.f;
  for (int r = tid / kFusedTileW; r < kFusedTileH; r += kThreads / kFusedTileW) {
    const int64_t oh = oh0 + r, ow = ow0 + q;
    if (oh >= g.Ho || ow >= g.Wo) continue;
    float m[kSsimMoments];
    fused_moments_at(along_w, w, k, r, q, m);
    float ssim, cs;
    ssim_pixel<float>(m[0], m[1], m[2], m[3], c1, c2, ssim, cs);
    if (map != nullptr) map[(plane * g.Ho + oh) * g.Wo + ow] = ssim;
    sum_s += ssim;
    sum_c += cs;
  }
  red[0][tid] = sum_s;
  red[1][tid] = sum_c;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride /= 2) {
    if (tid < stride) {
      red[0][tid] += red[0][tid + stride];
      red[1][tid] += red[1][tid + stride];
    }
    __syncthreads();
  }
  if (tid == 0) {
    tile_sums[2 * (plane * tiles + tile)] = red[0][0];
    tile_sums[2 * (plane * tiles + tile) + 1] = red[1][0];
  }
}

// One block per plane: means of SSIM and CS from the plane's tile sums, added in double in order.
static __global__ void tile_sums_to_means(const float* __restrict__ tile_sums, int64_t tiles, int64_t count,
                                          float* __restrict__ ssim_mean, float* __restrict__ cs_mean) {
  __shared__ double partial[2][kThreads];
  const float* sums = tile_sums + 2 * blockIdx.x * tiles;
  double s = 0, q = 0;
  for (int64_t i = threadIdx.x; i < tiles; i += kThreads) {
    s += static_cast<double>(sums[2 * i]);
    q += static_cast<double>(sums[2 * i + 1]);
  }
  partial[0][threadIdx.x] = s;
  partial[1][threadIdx.x] = q;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) {
      partial[0][threadIdx.x] += partial[0][threadIdx.x + stride];
      partial[1][threadIdx.x] += partial[1][threadIdx.x + stride];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    ssim_mean[blockIdx.x] = static_cast<float>(partial[0][0] / count);
    cs_mean[blockIdx.x] = static_cast<float>(partial[1][0] / count);
  }
}


template <typename T>
__global__ void ssim_pixels(const T* __restrict__ m, int64_t n, T c1, T c2, T* __restrict__ ssim, T* __restrict__ cs) {
  FASTPERC_GRID_LOOP(i, n) {
    T s, q;
    ssim_pixel<T>(m[i], m[n + i], m[2 * n + i], m[3 * n + i], c1, c2, s, q);
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
__global__ void plane_l1(const scalar_t* __restrict__ x, const scalar_t* __restrict__ y, SsimStrides sx, SsimStrides sy,
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

// The SSIM map (when map is given) and/or the per-plane means of SSIM, CS and |x - y| (when means,
// three (B, C) tensors, are given), in the acc type T.
template <typename scalar_t, typename T, typename Launch>
void ssim_forward(const Launch& launch, const at::Tensor& x, const at::Tensor& y, const at::Tensor& window,
                  const SsimGeometry& geo, T c1, T c2, at::Tensor* map, at::Tensor* means) {
  const int64_t planes = geo.planes();
  if (means != nullptr)
    launch(static_cast<unsigned>(planes), kThreads, plane_l1<scalar_t, T>, x.const_data_ptr<scalar_t>(),
           y.const_data_ptr<scalar_t>(), ssim_strides_of(x), ssim_strides_of(y), dims_of(geo), means[2].data_ptr<T>());
  if constexpr (std::is_same_v<T, float>) {
    if (fused_eligible<T>(geo)) {
      const int64_t tiles_w = (geo.Wo + kFusedTileW - 1) / kFusedTileW;
      const int64_t tiles = tiles_w * ((geo.Ho + kFusedTileH - 1) / kFusedTileH);
      TORCH_CHECK(tiles < (int64_t{1} << 31), "fastperc: image too large for the CUDA SSIM kernel");
      at::Tensor tile_sums = at::empty({planes * tiles * 2}, x.options().dtype(at::kFloat));
      for (int64_t p0 = 0; p0 < planes; p0 += kGridChunk) {
        const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(std::min<int64_t>(kGridChunk, planes - p0)));
        launch(grid, kThreads, ssim_fused_2d<scalar_t>, x.const_data_ptr<scalar_t>(), y.const_data_ptr<scalar_t>(),
               ssim_strides_of(x), ssim_strides_of(y), dims_of(geo), window.const_data_ptr<float>(), c1, c2, tiles_w,
               tiles, p0, map != nullptr ? map->data_ptr<float>() : nullptr, tile_sums.data_ptr<float>());
      }
      if (means != nullptr)
        launch(static_cast<unsigned>(planes), kThreads, tile_sums_to_means, tile_sums.const_data_ptr<float>(), tiles,
               geo.map_size(), means[0].data_ptr<float>(), means[1].data_ptr<float>());
      return;
    }
  }
  const at::Tensor m = window_moments<scalar_t, T>(launch, x, y, window, geo);
  const int64_t n = planes * geo.map_size();
  at::Tensor ssim = map != nullptr ? *map : at::empty({n}, m.options());
  at::Tensor cs;
  if (means != nullptr) cs = at::empty({n}, m.options());
  launch(grid_for(n), kThreads, ssim_pixels<T>, m.const_data_ptr<T>(), n, c1, c2, ssim.data_ptr<T>(),
         means != nullptr ? cs.data_ptr<T>() : nullptr);
  if (means == nullptr) return;
  launch(static_cast<unsigned>(planes), kThreads, plane_means<T>, ssim.const_data_ptr<T>(), geo.map_size(),
         means[0].data_ptr<T>());
  launch(static_cast<unsigned>(planes), kThreads, plane_means<T>, cs.const_data_ptr<T>(), geo.map_size(),
         means[1].data_ptr<T>());
}

template <typename scalar_t>
using ssim_acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;

// The op ssim on the launcher's device, given its checked geometry: per-plane means of SSIM, CS and
// |x - y|, (B, C) each.
template <typename Launch>
std::tuple<at::Tensor, at::Tensor, at::Tensor> ssim_op(const Launch& launch, const at::Tensor& x, const at::Tensor& y,
                                                       const at::Tensor& window, double c1, double c2,
                                                       const SsimGeometry& g) {
  const auto options = x.options().dtype(accumulate_type(x.scalar_type()));
  at::Tensor means[3] = {at::empty({g.B, g.C}, options), at::empty({g.B, g.C}, options), at::empty({g.B, g.C}, options)};
  const at::Tensor w = window.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "fastperc_ssim_cuda", [&] {
    using T = ssim_acc_t<scalar_t>;
    ssim_forward<scalar_t, T>(launch, x, y, w, g, static_cast<T>(c1), static_cast<T>(c2), nullptr, means);
  });
  return {means[0], means[1], means[2]};
}

// The op ssim_map on the launcher's device, given its checked geometry.
template <typename Launch>
at::Tensor ssim_map_op(const Launch& launch, const at::Tensor& x, const at::Tensor& y, const at::Tensor& window,
                       double c1, double c2, const SsimGeometry& g) {
  at::Tensor map = at::empty(ssim_map_shape(g), x.options().dtype(accumulate_type(x.scalar_type())));
  const at::Tensor w = window.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "fastperc_ssim_map_cuda", [&] {
    using T = ssim_acc_t<scalar_t>;
    ssim_forward<scalar_t, T>(launch, x, y, w, g, static_cast<T>(c1), static_cast<T>(c2), &map, nullptr);
  });
  return map;
}

}  // namespace ssim_detail
}  // namespace cuda
}  // namespace fastperc
