#pragma once
// Shared pieces of the CPU SSIM forward and backward kernels: tiling and packing of padded input.
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <vector>

#include "common/ssim_checks.h"

namespace fastperc {
namespace cpu {

inline int64_t ssim_ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Tile edge lengths (D, H, W) over which one work item runs every stage with its buffers in L2; tall
// enough that the recomputed halo (k - 1 rows, twice that in the backward) stays a small share.
struct SsimTiling {
  int64_t td, th, tw;
};
inline SsimTiling ssim_tiling(const SsimGeometry& g, bool backward = false) {
  // Volumes: deep tiles, because the W and H passes run over the whole (D + k - 1) padded depth.
  // Measured on 128^3 and 4 x 64^3 (RESULTS.md): 2x faster forward than {4, 16, 64}.
  if (g.volumetric) return backward ? SsimTiling{16, 24, 64} : SsimTiling{32, 16, 64};
  return SsimTiling{1, 64, 256};
}

// Tile t of a D x H x W grid cut into tiles of `tiling`: its origin and extent along each axis.
struct SsimTileBox {
  int64_t d0, h0, w0, nd, nh, nw;
};
inline int64_t ssim_tile_count(const SsimTiling& tiling, int64_t D, int64_t H, int64_t W) {
  return ssim_ceil_div(D, tiling.td) * ssim_ceil_div(H, tiling.th) * ssim_ceil_div(W, tiling.tw);
}
inline SsimTileBox ssim_tile_box(const SsimTiling& tiling, int64_t D, int64_t H, int64_t W, int64_t t) {
  const int64_t th = ssim_ceil_div(H, tiling.th), tw = ssim_ceil_div(W, tiling.tw);
  SsimTileBox b{};
  b.d0 = (t / (th * tw)) * tiling.td;
  b.h0 = ((t / tw) % th) * tiling.th;
  b.w0 = (t % tw) * tiling.tw;
  b.nd = std::min(tiling.td, D - b.d0);
  b.nh = std::min(tiling.th, H - b.h0);
  b.nw = std::min(tiling.tw, W - b.w0);
  return b;
}

// Element strides of one image plane of x: (D, H, W), with D = 0 for 2D.
inline std::vector<int64_t> ssim_plane_strides(const at::Tensor& x) {
  if (x.dim() == 5) return {x.stride(2), x.stride(3), x.stride(4)};
  return {0, x.stride(2), x.stride(3)};
}

// Packs padded coordinates [d0, d0 + nd) x [h0, h0 + nh) x [w0, w0 + nw) of one plane of x and y into
// contiguous buffers of T, reading through the padding mode; coordinates outside the padded volume
// (the backward's halo) read 0.
template <typename scalar_t, typename T>
void ssim_pack(const scalar_t* x, const scalar_t* y, const std::vector<int64_t>& st, const SsimGeometry& g,
               int64_t d0, int64_t nd, int64_t h0, int64_t nh, int64_t w0, int64_t nw, T* xs, T* ys,
               std::vector<int64_t>& cols) {
  auto source = [&](int64_t p, int64_t padded, int64_t r, int64_t n) -> int64_t {
    return (p < 0 || p >= padded) ? -1 : ssim_pad_source(p, r, n, g.mode);
  };
  cols.resize(nw);
  // Columns whose sources are consecutive input columns: copied by a plain (vectorisable) loop.
  int64_t lo = nw, hi = 0;
  for (int64_t j = 0; j < nw; ++j) {
    const int64_t c = source(w0 + j, g.Wp, g.r, g.W);
    cols[j] = c < 0 ? -1 : c * st[2];
    if (c >= 0 && c == w0 + j - g.r) {  // not padding, not a mirror image
      lo = std::min(lo, j);
      hi = j + 1;
    }
  }
  const int64_t first = lo < hi ? cols[lo] : 0;
  for (int64_t dd = 0; dd < nd; ++dd) {
    const int64_t sd = source(d0 + dd, g.Dp, g.rd, g.D);
    for (int64_t hh = 0; hh < nh; ++hh) {
      const int64_t sh = source(h0 + hh, g.Hp, g.r, g.H);
      T* xr = xs + (dd * nh + hh) * nw;
      T* yr = ys + (dd * nh + hh) * nw;
      if (sd < 0 || sh < 0) {
        std::fill(xr, xr + nw, T(0));
        std::fill(yr, yr + nw, T(0));
        continue;
      }
      const scalar_t* xrow = x + sd * st[0] + sh * st[1];
      const scalar_t* yrow = y + sd * st[0] + sh * st[1];
      for (int64_t j = 0; j < lo; ++j) {
        xr[j] = cols[j] < 0 ? T(0) : static_cast<T>(xrow[cols[j]]);
        yr[j] = cols[j] < 0 ? T(0) : static_cast<T>(yrow[cols[j]]);
      }
      if (lo < hi) {
        const scalar_t* xs_row = xrow + first;
        const scalar_t* ys_row = yrow + first;
        const int64_t sw = st[2];
        if (sw == 1) {
          for (int64_t j = 0; j < hi - lo; ++j) xr[lo + j] = static_cast<T>(xs_row[j]);
          for (int64_t j = 0; j < hi - lo; ++j) yr[lo + j] = static_cast<T>(ys_row[j]);
        } else {
          for (int64_t j = 0; j < hi - lo; ++j) xr[lo + j] = static_cast<T>(xs_row[j * sw]);
          for (int64_t j = 0; j < hi - lo; ++j) yr[lo + j] = static_cast<T>(ys_row[j * sw]);
        }
      }
      for (int64_t j = std::max(hi, lo); j < nw; ++j) {
        xr[j] = cols[j] < 0 ? T(0) : static_cast<T>(xrow[cols[j]]);
        yr[j] = cols[j] < 0 ? T(0) : static_cast<T>(yrow[cols[j]]);
      }
    }
  }
}

// Sum of n values in 16 independent float64 lanes (vectorisable, no reassociation needed), lanes then added
// in a fixed order: deterministic, and 16 times shorter dependency chains than a plain loop.
template <typename Fn>
double lane_sum(int64_t n, Fn&& value) {
  constexpr int kLanes = 16;
  double lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) lanes[l] += value(i + l);
  for (; i < n; ++i) lanes[i % kLanes] += value(i);
  double total = 0;
  for (int l = 0; l < kLanes; ++l) total += lanes[l];
  return total;
}

}  // namespace cpu
}  // namespace fastperc
