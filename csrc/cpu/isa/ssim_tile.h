#pragma once
// Tile stages of the CPU SSIM kernels, compiled once per ISA (ssim_tile_<isa>.cpp, like gram_tile.h):
// plain loops over contiguous tile buffers that the compiler vectorises for that ISA.
#include <cstdint>

#include "cpu/isa/arch.h"

namespace fastperc {
namespace cpu {

// A dp x hp x wp block of one tensor read in place: element (d, h, w) at data[d * plane + h * row + w].
// A packed tile buffer has row = wp and plane = hp * wp; the forward reads float32/float64 images
// with unit W stride straight from the tensor (no copy into a tile buffer).
template <typename T>
struct SsimBlock {
  const T* data;
  int64_t row, plane;
};

template <typename T>
struct SsimTile {
  // The kSsimMoments (4) window moments E[x], E[y], E[x^2 + y^2], E[xy] of every valid position of
  // the dp x hp x wp blocks x and y (the products formed on the fly), consecutive in `out`;
  // `scratch` holds ssim_scratch_size<T>(kSsimMoments, dp, hp, wp) elements.
  void (*moments)(SsimBlock<T> x, SsimBlock<T> y, int64_t dp, int64_t hp, int64_t wp, const T* w, int k, int kd,
                  T* scratch, T* out);
  // For each of `count` volumes of dp x hp x wp elements (consecutive in `in`), the valid separable
  // correlation with w (k taps) along W and H, and along D when kd > 1 (kd == k then): the results,
  // (dp - kd + 1) x (hp - k + 1) x (wp - k + 1) each, consecutive in `out`. `scratch` holds
  // ssim_scratch_size<T>(count, dp, hp, wp) elements.
  void (*filter)(const T* in, int count, int64_t dp, int64_t hp, int64_t wp, const T* w, int k, int kd, T* scratch,
                 T* out);
  // SSIM and CS of n pixels from their four moments (moment s of pixel i at m[s * n + i]).
  void (*pixels)(const T* m, int64_t n, T c1, T c2, T* ssim, T* cs);
  // d[s * n + i]: gradient of gs[i] * ssim + gc[i] * cs (gc may be null) with respect to moment s.
  void (*pixel_grads)(const T* m, int64_t n, T c1, T c2, const T* gs, const T* gc, T* d);
  // sum_i v[i] and sum_i |x[i] - y[i]| over i < n in float64, in 16 lanes added in a fixed order:
  // the same value on every ISA (and so every thread count and machine).
  double (*sum)(const T* v, int64_t n);
  double (*abs_diff_sum)(const T* x, const T* y, int64_t n);
};

// The W pass writes its rows into `scratch` from a 64-byte cache line boundary, at a stride of an odd
// number of lines: the H pass loads every vector of them k times, a load that straddles two lines
// takes two load slots, and rows 2^n lines apart fall into the same few L1 sets and alias 4 KiB apart
// (a 1 KiB stride ran the W pass 1.25x and the H pass 1.13x slower than 1088 bytes on Zen 5).
template <typename T>
constexpr int64_t kSsimRowAlign = 64 / sizeof(T);

template <typename T>
constexpr int64_t ssim_row_stride(int64_t len) {
  return ((len + kSsimRowAlign<T> - 1) / kSsimRowAlign<T> | 1) * kSsimRowAlign<T>;
}

// Elements of the `scratch` that moments and filter take for `count` volumes of dp x hp x wp: the
// padded W-pass rows, the H-pass output of a volume (kd > 1), and the slack to align the first.
template <typename T>
constexpr int64_t ssim_scratch_size(int64_t count, int64_t dp, int64_t hp, int64_t wp) {
  return count * dp * hp * (ssim_row_stride<T>(wp) + wp) + kSsimRowAlign<T>;
}

#if defined(FASTPERC_X86)
SsimTile<float> ssim_tile_f32_avx512();
SsimTile<double> ssim_tile_f64_avx512();
SsimTile<float> ssim_tile_f32_avx2();
SsimTile<double> ssim_tile_f64_avx2();
#elif defined(FASTPERC_ARM64)
SsimTile<float> ssim_tile_f32_neon();
SsimTile<double> ssim_tile_f64_neon();
#endif
SsimTile<float> ssim_tile_f32_generic();
SsimTile<double> ssim_tile_f64_generic();

}  // namespace cpu
}  // namespace fastperc
