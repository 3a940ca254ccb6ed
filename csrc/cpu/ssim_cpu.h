#pragma once
// Shared pieces of the CPU SSIM forward and backward kernels: tiling and packing of padded input.
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <vector>

#include "common/ssim_checks.h"

namespace fastperc {
namespace cpu {

inline int64_t ssim_ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Tile edge lengths (D, H, W) over which one work item runs every stage with its buffers in L2. The
// backward recomputes a halo of k - 1 on each side, so it takes taller tiles to keep that share small.
struct SsimTiling {
  int64_t td, th, tw;
};
inline SsimTiling ssim_tiling(const SsimGeometry& g, bool backward = false) {
  if (g.volumetric) return backward ? SsimTiling{8, 16, 64} : SsimTiling{4, 16, 64};
  return backward ? SsimTiling{1, 64, 256} : SsimTiling{1, 32, 256};
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
  for (int64_t j = 0; j < nw; ++j) {
    const int64_t c = source(w0 + j, g.Wp, g.r, g.W);
    cols[j] = c < 0 ? -1 : c * st[2];
  }
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
      for (int64_t j = 0; j < nw; ++j) {
        const int64_t c = cols[j];
        xr[j] = c < 0 ? T(0) : static_cast<T>(xrow[c]);
        yr[j] = c < 0 ? T(0) : static_cast<T>(yrow[c]);
      }
    }
  }
}

}  // namespace cpu
}  // namespace fastperc
