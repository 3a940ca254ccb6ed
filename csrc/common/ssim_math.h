#pragma once
// Per-pixel SSIM math shared by the CPU and CUDA kernels (Wang et al. 2004).
//
// From the four window moments of one output pixel -- mx = E[x], my = E[y], esq = E[x^2 + y^2],
// exy = E[xy] -- SSIM = l * cs with l = (2 mx my + c1) / (mx^2 + my^2 + c1) and
// cs = (2 sxy + c2) / (var + c2); var = sxx + syy = max(esq - mx^2 - my^2, 0) (rounding can make it
// negative), sxy = exy - mx my. SSIM and CS use the two variances only as their sum, so the kernels
// filter x^2 + y^2 as one map: four window sums per pixel instead of five (E[x^2], E[y^2] apart),
// a fifth less work in every window pass of the forward and of the backward.
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

// sign(x - y): 1, -1 or 0, the gradient of |x - y| with respect to x (0 at a tie, as torch's abs).
// Two comparisons and no branch: as nested selects GCC compiled it to branches in the CPU backward's
// loops, which mispredicted on every other pixel of a noisy image (the L1 + SSIM backward took 2.7x
// the SSIM backward's time under avx512, where its |x - y| term is a few percent of the work).
template <typename T>
FP_HD T ssim_l1_sign(T x, T y) {
  return static_cast<T>(x > y) - static_cast<T>(x < y);
}

// The window moments per pixel: mx, my, esq, exy (their order in every moment buffer).
constexpr int kSsimMoments = 4;

// a * b rounded on its own. nvcc would contract mx * my into an FMA with the subtraction it feeds and
// leave mx * mx + my * my to another pattern; rounded alike, x == y gives var == 2 sxy and
// mx^2 + my^2 == 2 mx my to the last bit, so SSIM(x, x) == 1 exactly on every device (the host build
// does not contract at all).
template <typename T>
FP_HD T ssim_mul(T a, T b) {
#if defined(__CUDA_ARCH__)
  if constexpr (sizeof(T) == sizeof(float)) {
    return __fmul_rn(a, b);
  } else {
    return __dmul_rn(a, b);
  }
#else
  return a * b;
#endif
}

// x^2 + y^2 of one element, as the moment kernels filter it: its products rounded alike with x * y's
// (ssim_mul), so that x == y gives exactly twice x * y.
template <typename T>
FP_HD T ssim_square_sum(T x, T y) {
  return ssim_mul(x, x) + ssim_mul(y, y);
}

// SSIM = (n1 / d1) (n2 / d2) and CS = n2 / d2 of one pixel from its four moments:
// n1 = 2 mx my + c1, d1 = mx^2 + my^2 + c1, n2 = 2 sxy + c2, d2 = max(var_raw, 0) + c2 with
// var_raw = esq - mx^2 - my^2 (the forward and the backward take the same roundings from here).
template <typename T>
struct SsimTerms {
  T n1, d1, n2, d2, var_raw;
};

template <typename T>
FP_HD SsimTerms<T> ssim_terms(T mx, T my, T esq, T exy, T c1, T c2) {
  const T mxy = ssim_mul(mx, my), msq = ssim_mul(mx, mx) + ssim_mul(my, my);
  const T var_raw = esq - msq;
  const T var = var_raw > T(0) ? var_raw : T(0);
  return {T(2) * mxy + c1, msq + c1, T(2) * (exy - mxy) + c2, var + c2, var_raw};
}

template <typename T>
FP_HD void ssim_pixel(T mx, T my, T esq, T exy, T c1, T c2, T& ssim, T& cs) {
  const SsimTerms<T> t = ssim_terms(mx, my, esq, exy, c1, c2);
  cs = t.n2 / t.d2;
  ssim = t.n1 / t.d1 * cs;
}

// Gradient of gs * ssim + gc * cs with respect to the four moments. The clamp passes the gradient
// where the raw variance sum is >= 0, as torch.clamp(min=0) does.
template <typename T>
FP_HD void ssim_pixel_grad(T mx, T my, T esq, T exy, T c1, T c2, T gs, T gc, T& d_mx, T& d_my, T& d_esq, T& d_exy) {
  const SsimTerms<T> t = ssim_terms(mx, my, esq, exy, c1, c2);
  const T n1 = t.n1, d1 = t.d1, n2 = t.n2, d2 = t.d2;
  const T inv_d1 = T(1) / d1, inv_d2 = T(1) / d2;  // two divisions per pixel
  const T l = n1 * inv_d1, cs = n2 * inv_d2;
  const T dl = gs * cs;       // d(gs l cs + gc cs) / dl
  const T dcs = gs * l + gc;  // ... / dcs
  const T inv_d1_sq = inv_d1 * inv_d1;
  const T d_sxy = dcs * T(2) * inv_d2;
  // The clamp as a factor of 1 or 0, not a select of the product: GCC 12 sinks a product used only
  // in one arm into that arm and then, as it might trap, no longer vectorises the loop (the CPU
  // kernels' moment-gradient stage ran scalar under avx2 and generic, 2x slower).
  const T keep = t.var_raw >= T(0) ? T(1) : T(0);
  const T d_var = keep * (-dcs * n2 * inv_d2 * inv_d2);
  d_esq = d_var;
  d_exy = d_sxy;
  // var = esq - mx^2 - my^2 and sxy = exy - mx my carry mx and my too.
  d_mx = dl * T(2) * (my * d1 - mx * n1) * inv_d1_sq - T(2) * mx * d_var - my * d_sxy;
  d_my = dl * T(2) * (mx * d1 - my * n1) * inv_d1_sq - T(2) * my * d_var - mx * d_sxy;
}

}  // namespace fastperc
