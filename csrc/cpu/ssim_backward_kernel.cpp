// CPU SSIM backward: gradients of sum(gs * SSIM + gc * CS) + sum(gl * |x - y|) with respect to x and y,
// for per-pixel weights gs, gc (SSIM-map shaped) and gl (input shaped), each of any strides: the mean
// reductions pass expanded (B, C, 1, 1) tensors, which cost nothing to read.
//
// Work items are (plane, tile of the *padded* input). A tile recomputes the moments of every output
// pixel of the map whose window touches it, forms the four per-pixel moment gradients (common/ssim_math.h),
// applies the adjoint of the window filter (the same separable stages with the window flipped) and
// combines them with x and y into the gradient of its padded elements:
//   dL/dx_p = F(d_mx)_p + 2 x_p F(d_esq)_p + y_p F(d_exy)_p  (and symmetrically for y),
// esq being the window sum of x^2 + y^2.
// A padded element that is the only copy of its input element (every one with valid and zero
// padding) has its gradient, plus the |x - y| term, written by its tile straight into grad_x /
// grad_y. With reflect padding the elements near the borders (SsimBand) go to a small store, and a
// last pass folds them onto the inputs they mirror and adds the |x - y| term. No element is written
// twice: no atomics, and results do not depend on the thread count. A gradient not asked for
// (output_mask) costs nothing past the shared moments: its two adjoint filters and its fold are skipped.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <memory>
#include <optional>
#include <tuple>
#include <type_traits>
#include <vector>

#include "common/ssim_checks.h"
#include "cpu/cpu_isa.h"
#include "cpu/ssim_cpu.h"
#include "kernels.h"

namespace fastperc {
namespace cpu {
namespace {

// Strided element of a per-pixel weight tensor at plane (b, c) and spatial (d, h, w).
template <typename T>
struct Weights {
  const T* data = nullptr;
  SsimStrides st{};
  explicit Weights(const at::Tensor& t) {
    if (!t.defined()) return;
    data = t.const_data_ptr<T>();
    st = ssim_strides_of(t);
  }
  T at(int64_t b, int64_t c, int64_t d, int64_t h, int64_t w) const { return data[st.at(b, c, d, h, w)]; }
  // The mean reductions pass (B, C) values expanded over the map: one value per plane.
  bool per_plane() const { return st.d == 0 && st.h == 0 && st.w == 0; }
};

// Fills the upstream weights of the outputs [od0, od0 + od) x ... of one plane, zero outside the map.
template <typename T>
void gather_weights(const Weights<T>& wt, const SsimGeometry& g, int64_t b, int64_t c, int64_t od0, int64_t od,
                    int64_t oh0, int64_t oh, int64_t ow0, int64_t ow, T* out) {
  const int64_t w_lo = std::clamp<int64_t>(-ow0, 0, ow), w_hi = std::clamp<int64_t>(g.Wo - ow0, w_lo, ow);
  const T plane_value = wt.per_plane() ? wt.at(b, c, 0, 0, 0) : T(0);
  for (int64_t dd = 0; dd < od; ++dd)
    for (int64_t hh = 0; hh < oh; ++hh) {
      T* row = out + (dd * oh + hh) * ow;
      const int64_t o_d = od0 + dd, o_h = oh0 + hh;
      if (o_d < 0 || o_d >= g.Do || o_h < 0 || o_h >= g.Ho) {
        std::fill(row, row + ow, T(0));
        continue;
      }
      std::fill(row, row + w_lo, T(0));
      if (wt.per_plane()) {
        std::fill(row + w_lo, row + w_hi, plane_value);
      } else {
        for (int64_t ww = w_lo; ww < w_hi; ++ww) row[ww] = wt.at(b, c, o_d, o_h, ow0 + ww);
      }
      std::fill(row + w_hi, row + ow, T(0));
    }
}

// sign(x - y) * gl, the gradient of gl * |x - y| with respect to x (branch-free: ssim_l1_sign).
template <typename T>
inline T l1_gradient(T x, T y, T gl) {
  return ssim_l1_sign(x, y) * gl;
}

// Reflect padding: the padded elements near the borders, whose gradients the fold pass sums onto the
// inputs they mirror. Along each padded axis, a band of 2r + 1 elements at each end: the padding (r),
// the r input elements it mirrors, and the edge element between them (reflect does not repeat it; it
// is in the band only to keep the band's shape simple). The input elements between the bands have no
// mirror image: their padded element is their only copy, and its tile writes it straight into the
// gradient. Stored plane by plane, the padded box minus its inner box, in order: 22k of the 272k
// padded elements of a 512 x 512 plane with 11 taps, where padded planes and a fold of every element
// took 6.5 MB at 1 x 3 x 512^2.
struct SsimBand {
  struct Axis {
    int64_t extent, band, inner;  // inner: the elements between the two bands (none for a short axis)
    bool in_inner(int64_t p) const { return p >= band && p < band + inner; }
  };
  Axis d, h, w;
  int64_t per_plane;

  explicit SsimBand(const SsimGeometry& g)
      : d(axis(g.Dp, g.rd)), h(axis(g.Hp, g.r)), w(axis(g.Wp, g.r)),
        per_plane(g.Dp * g.Hp * g.Wp - d.inner * h.inner * w.inner) {}
  static Axis axis(int64_t extent, int64_t r) {
    const int64_t band = r > 0 ? 2 * r + 1 : 0;
    return {extent, band, std::max<int64_t>(0, extent - 2 * band)};
  }
  // Position in its plane's store of padded element (pd, ph, pw), one outside the inner box: the
  // elements before it in row-major order, less the inner ones among them.
  int64_t index(int64_t pd, int64_t ph, int64_t pw) const {
    int64_t i = pd * h.extent * w.extent - std::clamp<int64_t>(pd - d.band, 0, d.inner) * h.inner * w.inner;
    if (!d.in_inner(pd)) return i + ph * w.extent + pw;
    i += ph * w.extent - std::clamp<int64_t>(ph - h.band, 0, h.inner) * w.inner;
    if (!h.in_inner(ph)) return i + pw;
    return i + pw - std::clamp<int64_t>(pw - w.band, 0, w.inner);
  }
};

// The gradient of one tile's padded elements. Those that are the only copy of their input element
// (with valid and zero padding, every element inside the input; with reflect, those in no band) go
// straight into the plane's gx / gy (contiguous D x H x W; null when not wanted), plus the |x - y|
// term when gl is given. Reflect's banded elements go to the plane's band stores bx / by, without the
// term, which the fold adds once; zero padding's other elements (its zeros) are dropped. xt / yt: x
// and y from the tile's first element; f_*: the adjoint-filtered moment gradients of the tile.
template <typename scalar_t, typename T>
void write_tile_gradient(const SsimGeometry& g, int64_t b, int64_t c, const SsimTileBox& box, SsimBlock<T> xt,
                         SsimBlock<T> yt, const T* f_mx, const T* f_my, const T* f_esq, const T* f_exy,
                         const Weights<T>& gl, scalar_t* gx, scalar_t* gy, const SsimBand* band, T* bx, T* by) {
  // The tile's columns written straight into the gradient (input coordinate = padded one - r).
  const int64_t direct_lo = band != nullptr ? band->w.band : g.r;
  const int64_t direct_hi = band != nullptr ? band->w.band + band->w.inner : g.r + g.W;
  const int64_t w_first = std::clamp<int64_t>(direct_lo - box.w0, 0, box.nw);
  const int64_t w_end = std::clamp<int64_t>(direct_hi - box.w0, w_first, box.nw);
  const bool plane_l1 = gl.data != nullptr && gl.per_plane();
  const T l1_plane = plane_l1 ? gl.at(b, c, 0, 0, 0) : T(0);
  for (int64_t dd = 0; dd < box.nd; ++dd) {
    const int64_t pd = box.d0 + dd, d = pd - g.rd;
    for (int64_t hh = 0; hh < box.nh; ++hh) {
      const int64_t ph = box.h0 + hh, h = ph - g.r;
      const bool direct_row = band != nullptr ? band->d.in_inner(pd) && band->h.in_inner(ph)
                                              : d >= 0 && d < g.D && h >= 0 && h < g.H;
      const int64_t t_row = (dd * box.nh + hh) * box.nw;
      const T* xr = xt.data + dd * xt.plane + hh * xt.row;
      const T* yr = yt.data + dd * yt.plane + hh * yt.row;
      if (band != nullptr) {  // the banded columns of this row: all of them outside the inner rows
        // Each run [from, to) lies in one band of the row (or the whole of a banded row): contiguous in
        // the store, one index for it and a plain loop.
        auto store = [&](T* s, const T* f_m, const T* own, const T* other, int64_t from, int64_t to) {
          if (s == nullptr || from >= to) return;
          T* const dst = s + band->index(pd, ph, box.w0 + from) - from;
          for (int64_t ww = from; ww < to; ++ww) {
            const int64_t i = t_row + ww;
            dst[ww] = f_m[i] + T(2) * own[ww] * f_esq[i] + other[ww] * f_exy[i];
          }
        };
        const int64_t lo = direct_row ? w_first : box.nw, hi = direct_row ? w_end : box.nw;
        store(bx, f_mx, xr, yr, 0, lo);
        store(bx, f_mx, xr, yr, hi, box.nw);
        store(by, f_my, yr, xr, 0, lo);
        store(by, f_my, yr, xr, hi, box.nw);
      }
      if (!direct_row) continue;
      const int64_t out_row = (d * g.H + h) * g.W + box.w0 - g.r;
      // grad_own = F(d_m) + 2 own F(d_esq) + other F(d_exy), plus sign * the |x - y| term: x takes
      // (mx, +), y takes (my, -). Three loops, each one the compiler vectorises where it can: without
      // gl, with one gl per plane (the mean reductions: a constant here), and with a gl per element
      // (read through its strides).
      auto write = [&](scalar_t* o, const T* f_m, const T* own, const T* other, T sign) {
        if (o == nullptr) return;
        o += out_row;
        if (gl.data == nullptr) {
          for (int64_t ww = w_first; ww < w_end; ++ww) {
            const int64_t i = t_row + ww;
            o[ww] = static_cast<scalar_t>(f_m[i] + T(2) * own[ww] * f_esq[i] + other[ww] * f_exy[i]);
          }
        } else if (plane_l1) {
          const T l1 = sign * l1_plane;
          for (int64_t ww = w_first; ww < w_end; ++ww) {
            const int64_t i = t_row + ww;
            o[ww] = static_cast<scalar_t>((f_m[i] + T(2) * own[ww] * f_esq[i] + other[ww] * f_exy[i]) +
                                          l1 * ssim_l1_sign(xr[ww], yr[ww]));
          }
        } else {
          for (int64_t ww = w_first; ww < w_end; ++ww) {
            const int64_t i = t_row + ww;
            o[ww] = static_cast<scalar_t>((f_m[i] + T(2) * own[ww] * f_esq[i] + other[ww] * f_exy[i]) +
                                          sign * l1_gradient(xr[ww], yr[ww], gl.at(b, c, d, h, box.w0 + ww - g.r)));
          }
        }
      };
      write(gx, f_mx, xr, yr, T(1));
      write(gy, f_my, yr, xr, T(-1));
    }
  }
}

template <typename scalar_t, typename T>
std::tuple<at::Tensor, at::Tensor> ssim_backward_typed(const at::Tensor& grad_ssim, const at::Tensor& grad_cs,
                                                       const at::Tensor& grad_l1, const at::Tensor& x,
                                                       const at::Tensor& y, const at::Tensor& window,
                                                       const SsimGeometry& g, T c1, T c2, bool need_x,
                                                       bool need_y) {
  const SsimTile<T> isa = active_ssim_tile<T>();
  const SsimTiling tile = ssim_tiling(g, /*backward=*/true);
  check_ssim_tile_size(g, tile, 2);
  const int64_t tiles = ssim_tile_count(tile);
  const T* w_data = window.const_data_ptr<T>();
  const std::vector<T> w_flip(std::make_reverse_iterator(w_data + g.k), std::make_reverse_iterator(w_data));
  const std::vector<T> w(w_data, w_data + g.k);
  const SsimStrides sx = ssim_strides_of(x), sy = ssim_strides_of(y);
  const scalar_t* x_data = x.const_data_ptr<scalar_t>();
  const scalar_t* y_data = y.const_data_ptr<scalar_t>();
  const Weights<T> gs(grad_ssim), gc(grad_cs), gl(grad_l1);
  at::Tensor grad_x = need_x ? at::empty(x.sizes(), x.options().memory_format(at::MemoryFormat::Contiguous))
                             : at::empty({0}, x.options());
  at::Tensor grad_y = need_y ? at::empty(y.sizes(), y.options().memory_format(at::MemoryFormat::Contiguous))
                             : at::empty({0}, y.options());
  scalar_t* gx = need_x ? grad_x.data_ptr<scalar_t>() : nullptr;
  scalar_t* gy = need_y ? grad_y.data_ptr<scalar_t>() : nullptr;
  // Reflect: the banded padded elements of each plane (SsimBand), one store per wanted gradient,
  // every element written by exactly one tile (no zero fill needed).
  const std::optional<SsimBand> band = g.mode == kSsimReflect ? std::optional<SsimBand>(g) : std::nullopt;
  const int64_t band_size = band ? g.planes() * band->per_plane : 0;
  std::unique_ptr<T[]> band_store(new T[static_cast<size_t>((int64_t(need_x) + int64_t(need_y)) * band_size)]);
  T* const bx = band && need_x ? band_store.get() : nullptr;
  T* const by = band && need_y ? band_store.get() + (need_x ? band_size : 0) : nullptr;
  // The adjoint filter runs on the moment gradients each wanted input needs, moved to the front of
  // dmom: x needs (mx, esq, exy), y needs (my, esq, exy), both need all four (mx, my, esq, exy).
  const int filtered = need_x && need_y ? kSsimMoments : 3;

  at::parallel_for(0, g.planes() * tiles, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> xs, ys, scratch, moments, wgs, wgc, dmap, dmom, adj;
    std::vector<int64_t> cols;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t plane = item / tiles, t = item % tiles;
      const int64_t b = plane / g.C, c = plane % g.C;
      const SsimTileBox box = ssim_tile_box(tile, t);
      const int64_t pd0 = box.d0, ph0 = box.h0, pw0 = box.w0, td = box.nd, th = box.nh, tw = box.nw;
      // The outputs whose windows reach the tile (od x oh x ow from od0, oh0, ow0), and of those the
      // ones in the SSIM map (cd x ch x cw from cd0, ch0, cw0). The others have no upstream weight and
      // zero moment gradients: only the map's are computed, from the input they read (id x ih x iw in
      // padded coordinates from cd0, ch0, cw0), which holds the tile.
      const int64_t od0 = pd0 - g.kd + 1, oh0 = ph0 - g.k + 1, ow0 = pw0 - g.k + 1;
      const int64_t od = td + g.kd - 1, oh = th + g.k - 1, ow = tw + g.k - 1;
      const int64_t cd0 = std::max<int64_t>(od0, 0), ch0 = std::max<int64_t>(oh0, 0), cw0 = std::max<int64_t>(ow0, 0);
      const int64_t cd = std::min(od0 + od, g.Do) - cd0, ch = std::min(oh0 + oh, g.Ho) - ch0;
      const int64_t cw = std::min(ow0 + ow, g.Wo) - cw0;
      const int64_t id = cd + g.kd - 1, ih = ch + g.k - 1, iw = cw + g.k - 1;
      const int64_t nc = cd * ch * cw, no = od * oh * ow, nt = td * th * tw;
      ssim_room(scratch,
                std::max(ssim_scratch_size<T>(kSsimMoments, id, ih, iw), ssim_scratch_size<T>(filtered, od, oh, ow)));
      ssim_room(moments, kSsimMoments * nc);
      ssim_room(wgs, nc);
      ssim_room(dmap, kSsimMoments * nc);
      ssim_room(dmom, filtered * no);
      ssim_room(adj, filtered * nt);
      // The input those outputs read, in place where it can be (ssim_tile_input), as in the forward.
      const auto [xb, yb] = ssim_tile_input(x_data, sx, y_data, sy, b, c, g, cd0, id, ch0, ih, cw0, iw, xs, ys, cols);
      isa.moments(xb, yb, id, ih, iw, w.data(), static_cast<int>(g.k), static_cast<int>(g.kd), scratch.data(),
                  moments.data());
      gather_weights(gs, g, b, c, cd0, cd, ch0, ch, cw0, cw, wgs.data());
      if (gc.data != nullptr) {
        ssim_room(wgc, nc);
        gather_weights(gc, g, b, c, cd0, cd, ch0, ch, cw0, cw, wgc.data());
      }
      isa.pixel_grads(moments.data(), nc, c1, c2, wgs.data(), gc.data != nullptr ? wgc.data() : nullptr, dmap.data());
      // The moment gradients the adjoint filter needs, each on the whole od x oh x ow output box, zero
      // outside the map: x needs (mx, esq, exy), y needs (my, esq, exy), both need all four.
      static constexpr int kForX[3] = {0, 2, 3}, kForY[3] = {1, 2, 3}, kForBoth[kSsimMoments] = {0, 1, 2, 3};
      const int* maps = filtered == kSsimMoments ? kForBoth : (need_x ? kForX : kForY);
      for (int m = 0; m < filtered; ++m) {
        const T* src = dmap.data() + maps[m] * nc;
        T* dst = dmom.data() + m * no;
        for (int64_t dd = 0; dd < od; ++dd)
          for (int64_t hh = 0; hh < oh; ++hh) {
            T* row = dst + (dd * oh + hh) * ow;
            const int64_t sd = od0 + dd - cd0, sh = oh0 + hh - ch0;
            if (sd < 0 || sd >= cd || sh < 0 || sh >= ch) {
              std::fill(row, row + ow, T(0));
              continue;
            }
            const int64_t lead = cw0 - ow0;
            std::fill(row, row + lead, T(0));
            std::copy(src + (sd * ch + sh) * cw, src + (sd * ch + sh + 1) * cw, row + lead);
            std::fill(row + lead + cw, row + ow, T(0));
          }
      }
      isa.filter(dmom.data(), filtered, od, oh, ow, w_flip.data(), static_cast<int>(g.k), static_cast<int>(g.kd),
                 scratch.data(), adj.data());
      // With both inputs: [mx, my, esq, exy]; with one: [m, esq, exy] (f_mx and f_my the same map).
      const T* f_mx = adj.data();
      const T* f_my = filtered == kSsimMoments ? f_mx + nt : f_mx;
      const T* f_esq = f_my + nt;
      const T* f_exy = f_esq + nt;
      // x and y at the tile's elements.
      const int64_t at_tile[2] = {(pd0 - cd0) * xb.plane + (ph0 - ch0) * xb.row + pw0 - cw0,
                                  (pd0 - cd0) * yb.plane + (ph0 - ch0) * yb.row + pw0 - cw0};
      const SsimBlock<T> xt{xb.data + at_tile[0], xb.row, xb.plane}, yt{yb.data + at_tile[1], yb.row, yb.plane};
      const int64_t band_at = band ? plane * band->per_plane : 0;
      write_tile_gradient(g, b, c, box, xt, yt, f_mx, f_my, f_esq, f_exy, gl,
                          gx != nullptr ? gx + plane * g.image_size() : nullptr,
                          gy != nullptr ? gy + plane * g.image_size() : nullptr, band ? &*band : nullptr,
                          bx != nullptr ? bx + band_at : nullptr, by != nullptr ? by + band_at : nullptr);
    }
  });

  if (!band) return {grad_x, grad_y};
  // Reflect: each input element whose own padded element is banded sums its copies from the store (its
  // mirror images are banded too) and adds the |x - y| term, sign(x - y) * gl; the others were written
  // by their tiles. An input row whose padded row is banded has every element banded, and so do the
  // rows of its copies: each copy row is a contiguous run of the store, added in plain loops (copies
  // in the order ssim_fold_sources lists them, as a per-element sum would). Other rows have banded
  // elements in their first and last r + 1 columns only, and one copy row.
  at::parallel_for(0, g.planes() * g.D * g.H, 16, [&](int64_t begin, int64_t end) {
    int64_t sd[3], sh[3], sw[3];
    std::vector<T> ax(static_cast<size_t>(g.W)), ay(static_cast<size_t>(g.W));
    for (int64_t row = begin; row < end; ++row) {
      const int64_t plane = row / (g.D * g.H), d = (row / g.H) % g.D, h = row % g.H;
      const int64_t b = plane / g.C, c = plane % g.C;
      const int nsd = ssim_fold_sources(d, g.D, g.rd, g.mode, sd);
      const int nsh = ssim_fold_sources(h, g.H, g.r, g.mode, sh);
      const T* const sx_plane = bx != nullptr ? bx + plane * band->per_plane : nullptr;
      const T* const sy_plane = by != nullptr ? by + plane * band->per_plane : nullptr;
      const scalar_t* xr = x_data + sx.at(b, c, d, h, 0);
      const scalar_t* yr = y_data + sy.at(b, c, d, h, 0);
      // ax / ay (w) + the |x - y| term, written to the gradients, for w in [from, to).
      auto finish = [&](int64_t from, int64_t to) {
        for (int64_t wq = from; wq < to; ++wq) {
          T vx = ax[wq], vy = ay[wq];
          if (gl.data != nullptr) {
            const T s =
                l1_gradient(static_cast<T>(xr[wq * sx.w]), static_cast<T>(yr[wq * sy.w]), gl.at(b, c, d, h, wq));
            vx += s;
            vy -= s;
          }
          if (gx != nullptr) gx[row * g.W + wq] = static_cast<scalar_t>(vx);
          if (gy != nullptr) gy[row * g.W + wq] = static_cast<scalar_t>(vy);
        }
      };
      const bool banded_row = !band->d.in_inner(d + g.rd) || !band->h.in_inner(h + g.r);
      if (banded_row) {
        std::fill(ax.begin(), ax.end(), T(0));
        std::fill(ay.begin(), ay.end(), T(0));
        // Mirror columns: w in [1, r] also reads padded column r - w; w in [W - 1 - r, W - 2] also
        // 2 (W - 1) - w + r (ssim_fold_sources).
        const int64_t left_hi = std::min(g.r, g.W - 1);
        const int64_t right_lo = std::max<int64_t>(0, g.W - 1 - g.r), right_hi = g.W - 2;
        auto add_row = [&](std::vector<T>& acc, const T* src) {
          if (src == nullptr) return;
          for (int64_t wq = 0; wq < g.W; ++wq) acc[wq] += src[wq + g.r];
          for (int64_t wq = 1; wq <= left_hi; ++wq) acc[wq] += src[g.r - wq];
          for (int64_t wq = right_lo; wq <= right_hi; ++wq) acc[wq] += src[2 * (g.W - 1) - wq + g.r];
        };
        for (int i = 0; i < nsd; ++i)
          for (int j = 0; j < nsh; ++j) {
            const int64_t at = band->index(sd[i], sh[j], 0);  // a banded row: its Wp elements in order
            add_row(ax, sx_plane != nullptr ? sx_plane + at : nullptr);
            add_row(ay, sy_plane != nullptr ? sy_plane + at : nullptr);
          }
        finish(0, g.W);
        continue;
      }
      // One copy row (sd[0], sh[0]), inner: its banded columns are the first and last 2r + 1.
      for (int64_t wq = 0; wq < g.W; ++wq) {
        if (band->w.in_inner(wq + g.r)) wq = band->w.band + band->w.inner - g.r;  // past the inner columns
        if (wq >= g.W) break;
        const int nsw = ssim_fold_sources(wq, g.W, g.r, g.mode, sw);
        ax[wq] = ay[wq] = T(0);  // only the banded columns are summed (and zeroed) in this row
        for (int l = 0; l < nsw; ++l) {
          const int64_t p = band->index(sd[0], sh[0], sw[l]);
          if (sx_plane != nullptr) ax[wq] += sx_plane[p];
          if (sy_plane != nullptr) ay[wq] += sy_plane[p];
        }
        finish(wq, wq + 1);
      }
    }
  });
  return {grad_x, grad_y};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> ssim_backward_cpu(const at::Tensor& grad_ssim, const std::optional<at::Tensor>& grad_cs,
                                                     const std::optional<at::Tensor>& grad_l1, const at::Tensor& x,
                                                     const at::Tensor& y, const at::Tensor& window, double c1,
                                                     double c2, int64_t padding, std::array<bool, 2> output_mask) {
  const SsimBackwardArgs a = check_ssim_backward_inputs(grad_ssim, grad_cs, grad_l1, x, y, window, c1, c2, padding);
  TORCH_CHECK(x.device().is_cpu(), "fastperc: ssim_backward_cpu got a tensor on ", x.device());
  if (!output_mask[0] && !output_mask[1]) return {at::empty({0}, x.options()), at::empty({0}, y.options())};
  const at::Tensor w = window.contiguous();
  std::tuple<at::Tensor, at::Tensor> out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "fastperc_ssim_backward_cpu", [&] {
    using T = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    out = ssim_backward_typed<scalar_t, T>(grad_ssim, a.grad_cs, a.grad_l1, x, y, w, a.g, static_cast<T>(c1),
                                           static_cast<T>(c2), output_mask[0], output_mask[1]);
  });
  return out;
}

}  // namespace cpu
}  // namespace fastperc
