#pragma once
// Shared pieces of the CPU SSIM forward and backward kernels: tiling and packing of padded input.
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <type_traits>
#include <utility>
#include <vector>

#include "common/ssim_checks.h"
#include "cpu/isa/ssim_tile.h"

namespace fastperc {
namespace cpu {

inline int64_t ssim_ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Makes a work item's buffer hold at least n values: grown, never shrunk. resize() to each tile's
// size would value-initialise the buffer again whenever a large tile follows a smaller edge tile
// (ssim_w_tiles): memset took 17% of a zero-padded forward with 16-wide edges.
template <typename T>
void ssim_room(std::vector<T>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
}

// Tile extent along one axis of `extent`: equal tiles of about `nominal`, as many as extent / nominal
// rounded to the nearest (at least one). The backward tiles the padded grid, 266 wide for a 256-wide
// image with zero padding: ceil would cut it 256 + 10, and the 10-wide tiles cost their window halos
// and the work of a tile for 10 columns (the zero-padding backward ran 1.5x the valid one, RESULTS.md).
inline int64_t ssim_nominal_tile_count(int64_t extent, int64_t nominal) {
  return std::max<int64_t>(1, (extent + nominal / 2) / nominal);
}
inline int64_t ssim_tile_extent(int64_t extent, int64_t nominal) {
  return std::max<int64_t>(1, ssim_ceil_div(extent, ssim_nominal_tile_count(extent, nominal)));
}

// The tiles along one axis of the grid a kernel tiles: `edge` elements at each end (none where edge
// is 0), the rest cut into tiles of `inner` (the last one shorter where inner does not divide it).
struct SsimAxisTiles {
  int64_t extent = 1, edge = 0, inner = 1;
  int64_t count() const { return ssim_ceil_div(extent - 2 * edge, inner) + (edge > 0 ? 2 : 0); }
  int64_t largest() const { return std::min(extent, std::max(edge, inner)); }
  // First element and length of tile i.
  std::pair<int64_t, int64_t> tile(int64_t i) const {
    if (edge > 0) {
      if (i == 0) return {0, edge};
      if (i == count() - 1) return {extent - edge, edge};
      --i;
    }
    const int64_t first = edge + i * inner;
    return {first, std::min(inner, extent - edge - first)};
  }
};

// Tile edge lengths over which one work item runs every stage with its buffers in L2; tall enough
// that the recomputed halo (k - 1 rows, twice that in the backward) stays a small share.
struct SsimTiling {
  SsimAxisTiles d, h, w;
};

// Tiles along the W axis of a "same"-padded image. A tile whose input lies inside the image is read in
// place (ssim_tile_input); one that reaches the padding is packed first, a copy from L3 that overlaps
// no arithmetic. 512 wide was two 256-wide tiles, both reaching the padding, and the zero-padded
// forward took 1.35x the valid one under avx512 (Zen 5, RESULTS.md). So where W makes two tiles or
// more, each end gets an edge tile of a quarter of the nominal width (at least the reach: r for the
// forward's outputs, 3r for the backward's padded elements), and the rest is cut into one tile fewer
// than before, read in place: one tile more in all, one more halo (the window recomputed over k - 1
// more columns). Narrower images keep their one tile: thin edge tiles (16 columns, and 8 rows along
// H) made 256 x 256 images 5-30% slower on every ISA. Along H only the first and last of the 64-row
// tiles reach the padding.
inline SsimAxisTiles ssim_w_tiles(int64_t extent, int64_t nominal, int64_t reach) {
  const int64_t edge = std::max(nominal / 4, reach);
  const int64_t tiles = ssim_nominal_tile_count(extent, nominal);  // the count without edges
  if (reach == 0 || tiles < 2 || extent - 2 * edge < nominal / 2) return {extent, 0, ssim_tile_extent(extent, nominal)};
  return {extent, edge, ssim_ceil_div(extent - 2 * edge, tiles - 1)};
}

// Tiles of the forward's output map (Do x Ho x Wo) or of the backward's padded grid (Dp x Hp x Wp).
inline SsimTiling ssim_tiling(const SsimGeometry& g, bool backward = false) {
  const int64_t D = backward ? g.Dp : g.Do, H = backward ? g.Hp : g.Ho, W = backward ? g.Wp : g.Wo;
  // Volumes: deep tiles, because the W and H passes run over the whole (D + k - 1) padded depth.
  // Measured on 128^3 and 4 x 64^3 (RESULTS.md): 2x faster forward than {4, 16, 64}. Their sizes stay
  // fixed: equal tiles timed 0.8-1.0x these at 96^3 and 2 x 64^3 (noisy, not shown to be better).
  if (g.volumetric)
    return backward ? SsimTiling{{D, 0, 16}, {H, 0, 24}, {W, 0, 64}} : SsimTiling{{D, 0, 32}, {H, 0, 16}, {W, 0, 64}};
  const int64_t reach = g.mode == kSsimValid ? 0 : (backward ? 3 : 1) * g.r;
  return SsimTiling{{D, 0, 1}, {H, 0, ssim_tile_extent(H, 64)}, ssim_w_tiles(W, 256, reach)};
}

// A work item's buffers hold its tile plus `halos` window halos per axis (1 in the forward, 2 in the
// backward) times a dozen planes. A window so wide that one tile passes 2^24 elements (64 MiB per
// float plane) is refused here, before any thread allocates, rather than failing in a worker.
inline void check_ssim_tile_size(const SsimGeometry& g, const SsimTiling& t, int64_t halos) {
  const int64_t n = checked_size_product({t.d.largest() + halos * (g.kd - 1), t.h.largest() + halos * (g.k - 1),
                                          t.w.largest() + halos * (g.k - 1)}, "an SSIM tile");
  TORCH_CHECK(n <= (int64_t{1} << 24), "fastperc: a window of ", g.k, " taps is too wide for the CPU SSIM kernel (",
              n, " elements per tile; at most 2^24)");
}

// Tile t of the grid cut into tiles of `tiling` (t < ssim_tile_count): its origin and extent along each axis.
struct SsimTileBox {
  int64_t d0, h0, w0, nd, nh, nw;
};
inline int64_t ssim_tile_count(const SsimTiling& tiling) {
  return tiling.d.count() * tiling.h.count() * tiling.w.count();
}
inline SsimTileBox ssim_tile_box(const SsimTiling& tiling, int64_t t) {
  const int64_t nh = tiling.h.count(), nw = tiling.w.count();
  const auto [d0, nd] = tiling.d.tile(t / (nh * nw));
  const auto [h0, h_len] = tiling.h.tile((t / nw) % nh);
  const auto [w0, w_len] = tiling.w.tile(t % nw);
  return SsimTileBox{d0, h0, w0, nd, h_len, w_len};
}

// One row of one tensor into a contiguous buffer: columns [lo, hi) are consecutive input columns
// (a plain, vectorisable loop), the others read cols[j] (an input column, or -1 for a zero).
template <typename scalar_t, typename T>
void ssim_pack_row(const scalar_t* row, int64_t sw, const int64_t* cols, int64_t lo, int64_t hi, int64_t nw, T* dst) {
  auto gathered = [&](int64_t j) { return cols[j] < 0 ? T(0) : static_cast<T>(row[cols[j] * sw]); };
  for (int64_t j = 0; j < lo; ++j) dst[j] = gathered(j);
  if (lo < hi) {
    const scalar_t* src = row + cols[lo] * sw;
    if (sw == 1) {
      for (int64_t j = 0; j < hi - lo; ++j) dst[lo + j] = static_cast<T>(src[j]);
    } else {
      for (int64_t j = 0; j < hi - lo; ++j) dst[lo + j] = static_cast<T>(src[j * sw]);
    }
  }
  for (int64_t j = std::max(hi, lo); j < nw; ++j) dst[j] = gathered(j);
}

// Packs padded coordinates [d0, d0 + nd) x [h0, h0 + nh) x [w0, w0 + nw) of plane (b, c) of x and y
// into contiguous buffers of T, reading through the padding mode; coordinates outside the padded
// volume (the backward's halo) read 0. Each tensor is read with its own strides.
template <typename scalar_t, typename T>
void ssim_pack(const scalar_t* x, const SsimStrides& sx, const scalar_t* y, const SsimStrides& sy, int64_t b,
               int64_t c, const SsimGeometry& g, int64_t d0, int64_t nd, int64_t h0, int64_t nh, int64_t w0,
               int64_t nw, T* xs, T* ys, std::vector<int64_t>& cols) {
  auto source = [&](int64_t p, int64_t padded, int64_t r, int64_t n) -> int64_t {
    return (p < 0 || p >= padded) ? -1 : ssim_pad_source(p, r, n, g.mode);
  };
  ssim_room(cols, nw);
  // Columns whose sources are consecutive input columns: copied by a plain (vectorisable) loop.
  int64_t lo = nw, hi = 0;
  for (int64_t j = 0; j < nw; ++j) {
    cols[j] = source(w0 + j, g.Wp, g.r, g.W);
    if (cols[j] >= 0 && cols[j] == w0 + j - g.r) {  // not padding, not a mirror image
      lo = std::min(lo, j);
      hi = j + 1;
    }
  }
  const scalar_t* x_plane = x + sx.plane(b, c);
  const scalar_t* y_plane = y + sy.plane(b, c);
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
      ssim_pack_row(x_plane + sd * sx.d + sh * sx.h, sx.w, cols.data(), lo, hi, nw, xr);
      ssim_pack_row(y_plane + sd * sy.d + sh * sy.h, sy.w, cols.data(), lo, hi, nw, yr);
    }
  }
}

// The tile stages' view of padded coordinates [d0, d0 + nd) x [h0, h0 + nh) x [w0, w0 + nw) of plane
// (b, c) of x and y. Where the block lies inside the image and its rows are contiguous T (every tile of
// "valid" float32/float64 input) it is read in place: packing it was a pure copy from L3 or DRAM, 17%
// of the forward on a Zen 4, where read in place its loads overlap the W pass's arithmetic. Otherwise
// it is packed into xs / ys (through the padding mode) and the blocks point there.
template <typename scalar_t, typename T>
std::pair<SsimBlock<T>, SsimBlock<T>> ssim_tile_input(const scalar_t* x, const SsimStrides& sx, const scalar_t* y,
                                                      const SsimStrides& sy, int64_t b, int64_t c,
                                                      const SsimGeometry& g, int64_t d0, int64_t nd, int64_t h0,
                                                      int64_t nh, int64_t w0, int64_t nw, std::vector<T>& xs,
                                                      std::vector<T>& ys, std::vector<int64_t>& cols) {
  if constexpr (std::is_same_v<scalar_t, T>) {
    const int64_t xd0 = d0 - g.rd, xh0 = h0 - g.r, xw0 = w0 - g.r;  // input coordinates
    const bool inside = xd0 >= 0 && xh0 >= 0 && xw0 >= 0 && xd0 + nd <= g.D && xh0 + nh <= g.H && xw0 + nw <= g.W;
    if (inside && sx.w == 1 && sy.w == 1)
      return {SsimBlock<T>{x + sx.at(b, c, xd0, xh0, xw0), sx.h, sx.d},
              SsimBlock<T>{y + sy.at(b, c, xd0, xh0, xw0), sy.h, sy.d}};
  }
  ssim_room(xs, nd * nh * nw);
  ssim_room(ys, nd * nh * nw);
  ssim_pack(x, sx, y, sy, b, c, g, d0, nd, h0, nh, w0, nw, xs.data(), ys.data(), cols);
  return {SsimBlock<T>{xs.data(), nw, nh * nw}, SsimBlock<T>{ys.data(), nw, nh * nw}};
}

}  // namespace cpu
}  // namespace fastperc
