#pragma once
// Per-pixel SSIM math shared by the CPU and CUDA kernels (Wang et al. 2004).
//
// From the window moments of one output pixel -- mx = E[x], my = E[y], exx = E[x^2], eyy = E[y^2],
// exy = E[xy] -- SSIM = l * cs with l = (2 mx my + c1) / (mx^2 + my^2 + c1) and
// cs = (2 sxy + c2) / (sxx + syy + c2); sxx = max(exx - mx^2, 0) (rounding can make it negative),
// syy likewise, sxy = exy - mx my.
#include <cstdint>

#include "common/config.h"

namespace fastperc {

// Padding modes of the SSIM ops (the `padding` int of their schemas).
enum SsimPadding : int64_t { kSsimValid = 0, kSsimZero = 1, kSsimReflect = 2 };

// Index of the input element that padded coordinate p (of a dimension of n elements padded by r on
// each side) reads, or -1 for a zero. torch's "reflect": -1 -> 1, n -> n - 2 (edge not repeated).
FP_HD int64_t ssim_pad_source(int64_t p, int64_t r, int64_t n, int64_t mode) {
  if (mode == kSsimValid) return p;
  int64_t q = p - r;
  if (q >= 0 && q < n) return q;
  if (mode == kSsimZero) return -1;
  if (q < 0) q = -q;
  if (q >= n) q = 2 * (n - 1) - q;
  return q;
}

// The padded coordinates along one dimension whose values are copies of input element q (the inverse
// of ssim_pad_source): q + r itself, and with reflect padding up to two mirror images. Returns how many.
FP_HD int ssim_fold_sources(int64_t q, int64_t n, int64_t r, int64_t mode, int64_t out[3]) {
  if (mode == kSsimValid) {
    out[0] = q;
    return 1;
  }
  int count = 0;
  out[count++] = q + r;
  if (mode == kSsimReflect) {
    if (q >= 1 && q <= r) out[count++] = r - q;
    if (q >= n - 1 - r && q <= n - 2) out[count++] = 2 * (n - 1) - q + r;
  }
  return count;
}

template <typename T>
FP_HD void ssim_pixel(T mx, T my, T exx, T eyy, T exy, T c1, T c2, T& ssim, T& cs) {
  const T sxx_raw = exx - mx * mx, syy_raw = eyy - my * my;
  const T sxx = sxx_raw > T(0) ? sxx_raw : T(0);
  const T syy = syy_raw > T(0) ? syy_raw : T(0);
  const T sxy = exy - mx * my;
  cs = (T(2) * sxy + c2) / (sxx + syy + c2);
  ssim = (T(2) * mx * my + c1) / (mx * mx + my * my + c1) * cs;
}

// Gradient of gs * ssim + gc * cs with respect to the five moments. The clamp passes the gradient
// where the raw variance is >= 0, as torch.clamp(min=0) does.
template <typename T>
FP_HD void ssim_pixel_grad(T mx, T my, T exx, T eyy, T exy, T c1, T c2, T gs, T gc, T& d_mx, T& d_my, T& d_exx,
                           T& d_eyy, T& d_exy) {
  const T sxx_raw = exx - mx * mx, syy_raw = eyy - my * my;
  const T sxx = sxx_raw > T(0) ? sxx_raw : T(0);
  const T syy = syy_raw > T(0) ? syy_raw : T(0);
  const T sxy = exy - mx * my;
  const T n1 = T(2) * mx * my + c1, d1 = mx * mx + my * my + c1;
  const T n2 = T(2) * sxy + c2, d2 = sxx + syy + c2;
  const T inv_d1 = T(1) / d1, inv_d2 = T(1) / d2;  // two divisions per pixel
  const T l = n1 * inv_d1, cs = n2 * inv_d2;
  const T dl = gs * cs;       // d(gs l cs + gc cs) / dl
  const T dcs = gs * l + gc;  // ... / dcs
  const T inv_d1_sq = inv_d1 * inv_d1;
  const T d_sxy = dcs * T(2) * inv_d2;
  const T d_var = -dcs * n2 * inv_d2 * inv_d2;
  const T d_sxx = sxx_raw >= T(0) ? d_var : T(0);
  const T d_syy = syy_raw >= T(0) ? d_var : T(0);
  d_exx = d_sxx;
  d_eyy = d_syy;
  d_exy = d_sxy;
  d_mx = dl * T(2) * (my * d1 - mx * n1) * inv_d1_sq - T(2) * mx * d_sxx - my * d_sxy;
  d_my = dl * T(2) * (mx * d1 - my * n1) * inv_d1_sq - T(2) * my * d_syy - mx * d_sxy;
}

}  // namespace fastperc
