#pragma once
// Separable passes of the CUDA SSIM kernels, shared by the forward (ssim_kernel.cu) and the backward
// (ssim_backward_kernel.cu). Each pass is a grid-stride kernel over its output with 64-bit indexing;
// intermediates live in global memory as [4 moments][plane][D][H][W]. The per-pixel math and the
// padding maps are the ones the CPU kernels use (common/ssim_math.h).
//
// The drivers take the launcher (cuda/launch.cuh), so the tests also run them under the CPU emulator
// (tests/cuda_emu).
//
// Status: compiled and linked in CI, run in the tests under the CPU emulator; not yet run on a GPU
// (no GPU was available to this project so far). This separable, unfused design is the
// correct-first version; a shared-memory fused version is the next step once it can be measured.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <algorithm>

#include "common/ssim_checks.h"
#include "common/ssim_math.h"
#include "cuda/launch.cuh"

namespace fastperc {
namespace cuda {
namespace ssim_detail {

// The sizes the device code needs (SsimGeometry's methods are host-only).
struct Dims {
  int64_t C, D, H, W, k, kd, r, rd, Dp, Hp, Wp, Do, Ho, Wo, mode;
};

inline Dims dims_of(const SsimGeometry& g) {
  return {g.C, g.D, g.H, g.W, g.k, g.kd, g.r, g.rd, g.Dp, g.Hp, g.Wp, g.Do, g.Ho, g.Wo, g.mode};
}

// out[s][plane][pd][ph][ow] = sum_t w[t] stat_s(padded (pd, ph, ow + t)) for stats x, y, x^2 + y^2,
// xy, reading x and y (each with its own strides) through the padding; n = planes * Dp * Hp * Wo.
template <typename scalar_t, typename T>
__global__ void moments_along_w(const scalar_t* __restrict__ x, const scalar_t* __restrict__ y, SsimStrides sx,
                                SsimStrides sy, Dims g, const T* __restrict__ w, int64_t n, T* __restrict__ out) {
  FASTPERC_GRID_LOOP(i, n) {
    const int64_t ow = i % g.Wo, ph = (i / g.Wo) % g.Hp, pd = (i / (g.Wo * g.Hp)) % g.Dp;
    const int64_t plane = i / (g.Wo * g.Hp * g.Dp);
    const int64_t sd = ssim_pad_source(pd, g.rd, g.D, g.mode), sh = ssim_pad_source(ph, g.r, g.H, g.mode);
    T a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    if (sd >= 0 && sh >= 0) {
      const int64_t bx = (plane / g.C) * sx.b + (plane % g.C) * sx.c + sd * sx.d + sh * sx.h;
      const int64_t by = (plane / g.C) * sy.b + (plane % g.C) * sy.c + sd * sy.d + sh * sy.h;
      for (int64_t t = 0; t < g.k; ++t) {
        const int64_t sw = ssim_pad_source(ow + t, g.r, g.W, g.mode);
        if (sw < 0) continue;
        const T xv = static_cast<T>(x[bx + sw * sx.w]), yv = static_cast<T>(y[by + sw * sy.w]), wt = w[t];
        a0 += wt * xv;
        a1 += wt * yv;
        a2 += wt * ssim_square_sum(xv, yv);
        a3 += wt * ssim_mul(xv, yv);
      }
    }
    out[i] = a0;
    out[n + i] = a1;
    out[2 * n + i] = a2;
    out[3 * n + i] = a3;
  }
}

// Valid correlation along the middle axis of [outer][len][inner]: output [outer][len - k + 1][inner].
template <typename T>
__global__ void correlate_axis(const T* __restrict__ in, int64_t outer, int64_t len, int64_t inner,
                               const T* __restrict__ w, int64_t k, T* __restrict__ out) {
  const int64_t out_len = len - k + 1;
  const int64_t n = outer * out_len * inner;
  FASTPERC_GRID_LOOP(i, n) {
    const int64_t j = i % inner, o = (i / inner) % out_len, p = i / (inner * out_len);
    const T* src = in + (p * len + o) * inner + j;
    T acc = 0;
    for (int64_t t = 0; t < k; ++t) acc += w[t] * src[t * inner];
    out[i] = acc;
  }
}

// Adjoint of correlate_axis: [outer][len][inner] -> [outer][len + k - 1][inner],
// out[q] = sum_t w[t] in[q - t] over 0 <= q - t < len.
template <typename T>
__global__ void correlate_axis_adjoint(const T* __restrict__ in, int64_t outer, int64_t len, int64_t inner,
                                       const T* __restrict__ w, int64_t k, T* __restrict__ out) {
  const int64_t out_len = len + k - 1;
  const int64_t n = outer * out_len * inner;
  FASTPERC_GRID_LOOP(i, n) {
    const int64_t j = i % inner, q = (i / inner) % out_len, p = i / (inner * out_len);
    T acc = 0;
    for (int64_t t = 0; t < k; ++t) {
      const int64_t o = q - t;
      if (o >= 0 && o < len) acc += w[t] * in[(p * len + o) * inner + j];
    }
    out[i] = acc;
  }
}

// The kSsimMoments window moments of every SSIM-map pixel: [4][planes][Do][Ho][Wo] in acc type.
template <typename scalar_t, typename T, typename Launch>
at::Tensor window_moments(const Launch& launch, const at::Tensor& x, const at::Tensor& y, const at::Tensor& window,
                          const SsimGeometry& geo) {
  const Dims g = dims_of(geo);
  const int64_t planes = geo.planes();
  const auto opts = x.options().dtype(window.scalar_type());
  const T* w = window.const_data_ptr<T>();
  const int64_t n_w = planes * g.Dp * g.Hp * g.Wo;
  at::Tensor along_w = at::empty({kSsimMoments * n_w}, opts);
  launch(grid_for(n_w), kThreads, moments_along_w<scalar_t, T>, x.const_data_ptr<scalar_t>(),
         y.const_data_ptr<scalar_t>(), ssim_strides_of(x), ssim_strides_of(y), g, w, n_w, along_w.data_ptr<T>());
  at::Tensor along_h = at::empty({kSsimMoments * planes * g.Dp * g.Ho * g.Wo}, opts);
  launch(grid_for(along_h.numel()), kThreads, correlate_axis<T>, along_w.const_data_ptr<T>(),
         kSsimMoments * planes * g.Dp, g.Hp, g.Wo, w, g.k, along_h.data_ptr<T>());
  if (g.kd == 1) return along_h;
  at::Tensor along_d = at::empty({kSsimMoments * planes * g.Do * g.Ho * g.Wo}, opts);
  launch(grid_for(along_d.numel()), kThreads, correlate_axis<T>, along_h.const_data_ptr<T>(), kSsimMoments * planes,
         g.Dp, g.Ho * g.Wo, w, g.kd, along_d.data_ptr<T>());
  return along_d;
}

}  // namespace ssim_detail
}  // namespace cuda
}  // namespace fastperc
