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
// With valid and zero padding a padded element is one input element or none, and a tile writes its
// gradient, plus the |x - y| term, straight into grad_x / grad_y. With reflect padding a last pass
// folds padded elements back onto the inputs they mirror and adds the |x - y| term. No element is
// written twice: no atomics, and results do not depend on the thread count. A gradient not asked for
// (output_mask) costs nothing past the shared moments: its two adjoint filters and its fold are skipped.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <memory>
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

// Valid and zero padding: the gradient of one tile's padded elements, written straight into the
// plane's gx / gy (contiguous D x H x W; null when not wanted), plus the |x - y| term when gl is given.
// Padded elements outside the input (zero padding's border) are dropped. xt / yt: x and y from the
// tile's first element; f_*: the adjoint-filtered moment gradients of the tile (nd x nh x nw).
template <typename scalar_t, typename T>
void write_tile_gradient(const SsimGeometry& g, int64_t b, int64_t c, const SsimTileBox& box, SsimBlock<T> xt,
                         SsimBlock<T> yt, const T* f_mx, const T* f_my, const T* f_esq, const T* f_exy,
                         const Weights<T>& gl, scalar_t* gx, scalar_t* gy) {
  // Input coordinate = padded coordinate - r; the tile's columns that land inside the input.
  const int64_t w_first = std::max<int64_t>(0, g.r - box.w0);
  const int64_t w_end = std::min<int64_t>(box.nw, g.W + g.r - box.w0);
  const bool plane_l1 = gl.data != nullptr && gl.per_plane();
  const T l1_plane = plane_l1 ? gl.at(b, c, 0, 0, 0) : T(0);
  for (int64_t dd = 0; dd < box.nd; ++dd) {
    const int64_t d = box.d0 + dd - g.rd;
    if (d < 0 || d >= g.D) continue;
    for (int64_t hh = 0; hh < box.nh; ++hh) {
      const int64_t h = box.h0 + hh - g.r;
      if (h < 0 || h >= g.H) continue;
      const int64_t t_row = (dd * box.nh + hh) * box.nw;
      const T* xr = xt.data + dd * xt.plane + hh * xt.row;
      const T* yr = yt.data + dd * yt.plane + hh * yt.row;
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
  const int64_t padded_size = g.Dp * g.Hp * g.Wp;
  at::Tensor grad_x = need_x ? at::empty(x.sizes(), x.options().memory_format(at::MemoryFormat::Contiguous))
                             : at::empty({0}, x.options());
  at::Tensor grad_y = need_y ? at::empty(y.sizes(), y.options().memory_format(at::MemoryFormat::Contiguous))
                             : at::empty({0}, y.options());
  scalar_t* gx = need_x ? grad_x.data_ptr<scalar_t>() : nullptr;
  scalar_t* gy = need_y ? grad_y.data_ptr<scalar_t>() : nullptr;
  // Valid and zero padding: a padded element is one input element or none, so tiles write the
  // gradient (and the |x - y| term) straight into grad_x / grad_y and drop the zero padding. Reflect
  // mirrors borders onto several inputs: tiles fill padded planes, and a fold pass sums them. Going
  // direct saves the padded planes (memory and traffic) and the fold pass: about 3% of the 1x3x512x512
  // backward on a Zen 4 (RESULTS.md).
  const bool direct = g.mode != kSsimReflect;
  // Every padded element is written by exactly one tile: no zero fill needed.
  const int64_t wanted = direct ? 0 : int64_t(need_x) + int64_t(need_y);
  std::unique_ptr<T[]> padded_grad(new T[static_cast<size_t>(wanted * g.planes() * padded_size)]);
  T* px = !direct && need_x ? padded_grad.get() : nullptr;
  T* py = !direct && need_y ? padded_grad.get() + (need_x ? g.planes() * padded_size : 0) : nullptr;
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
      if (direct) {
        write_tile_gradient(g, b, c, box, xt, yt, f_mx, f_my, f_esq, f_exy, gl,
                            gx != nullptr ? gx + plane * g.image_size() : nullptr,
                            gy != nullptr ? gy + plane * g.image_size() : nullptr);
        continue;
      }
      for (int64_t dd = 0; dd < td; ++dd)
        for (int64_t hh = 0; hh < th; ++hh) {
          const T* xr = xt.data + dd * xt.plane + hh * xt.row;
          const T* yr = yt.data + dd * yt.plane + hh * yt.row;
          const int64_t t_row = (dd * th + hh) * tw;
          const int64_t p_row = plane * padded_size + ((pd0 + dd) * g.Hp + ph0 + hh) * g.Wp + pw0;
          if (px != nullptr)
            for (int64_t ww = 0; ww < tw; ++ww) {
              const int64_t i = t_row + ww;
              px[p_row + ww] = f_mx[i] + T(2) * xr[ww] * f_esq[i] + yr[ww] * f_exy[i];
            }
          if (py != nullptr)
            for (int64_t ww = 0; ww < tw; ++ww) {
              const int64_t i = t_row + ww;
              py[p_row + ww] = f_my[i] + T(2) * yr[ww] * f_esq[i] + xr[ww] * f_exy[i];
            }
        }
    }
  });

  if (direct) return {grad_x, grad_y};
  // Reflect: fold the padded gradient onto the inputs and add the |x - y| term: sign(x - y) * gl.
  const bool plane_l1 = gl.data != nullptr && gl.per_plane();
  at::parallel_for(0, g.planes() * g.D * g.H, 16, [&](int64_t begin, int64_t end) {
    int64_t sd[3], sh[3], sw[3];
    for (int64_t row = begin; row < end; ++row) {
      const int64_t plane = row / (g.D * g.H), d = (row / g.H) % g.D, h = row % g.H;
      const int64_t b = plane / g.C, c = plane % g.C;
      const int nsd = ssim_fold_sources(d, g.D, g.rd, g.mode, sd);
      const int nsh = ssim_fold_sources(h, g.H, g.r, g.mode, sh);
      const scalar_t* xr = x_data + sx.at(b, c, d, h, 0);
      const scalar_t* yr = y_data + sy.at(b, c, d, h, 0);
      // Columns with a single padded source (all of them but the mirrored borders) take a plain loop;
      // the others gather their mirror images too.
      const int64_t single_lo = std::min(g.W, g.r + 1);
      const int64_t single_hi = std::max(single_lo, g.W - 1 - g.r);
      auto column = [&](int64_t wq, int nsw, const int64_t* sw) {
        T ax = 0, ay = 0;
        for (int i = 0; i < nsd; ++i)
          for (int j = 0; j < nsh; ++j)
            for (int l = 0; l < nsw; ++l) {
              const int64_t p = plane * padded_size + (sd[i] * g.Hp + sh[j]) * g.Wp + sw[l];
              if (px != nullptr) ax += px[p];
              if (py != nullptr) ay += py[p];
            }
        if (gl.data != nullptr) {
          const T s = l1_gradient(static_cast<T>(xr[wq * sx.w]), static_cast<T>(yr[wq * sy.w]), gl.at(b, c, d, h, wq));
          ax += s;
          ay -= s;
        }
        if (gx != nullptr) gx[row * g.W + wq] = static_cast<scalar_t>(ax);
        if (gy != nullptr) gy[row * g.W + wq] = static_cast<scalar_t>(ay);
      };
      for (int64_t wq = 0; wq < g.W; ++wq) {
        if (wq == single_lo && single_lo < single_hi && nsd == 1 && nsh == 1 && (gl.data == nullptr || plane_l1)) {
          const int64_t src = plane * padded_size + (sd[0] * g.Hp + sh[0]) * g.Wp + g.r;
          // The |x - y| term of the L1 + SSIM loss, sign(x - y) * gl, with gl one value per plane.
          const T l1 = plane_l1 ? gl.at(b, c, 0, 0, 0) : T(0);
          auto l1_term = [&](int64_t q) {
            return l1 * ssim_l1_sign(static_cast<T>(xr[q * sx.w]), static_cast<T>(yr[q * sy.w]));
          };
          if (gx != nullptr) {
            if (plane_l1)
              for (int64_t q = single_lo; q < single_hi; ++q)
                gx[row * g.W + q] = static_cast<scalar_t>(px[src + q] + l1_term(q));
            else
              for (int64_t q = single_lo; q < single_hi; ++q) gx[row * g.W + q] = static_cast<scalar_t>(px[src + q]);
          }
          if (gy != nullptr) {
            if (plane_l1)
              for (int64_t q = single_lo; q < single_hi; ++q)
                gy[row * g.W + q] = static_cast<scalar_t>(py[src + q] - l1_term(q));
            else
              for (int64_t q = single_lo; q < single_hi; ++q) gy[row * g.W + q] = static_cast<scalar_t>(py[src + q]);
          }
          wq = single_hi - 1;
          continue;
        }
        const int nsw = ssim_fold_sources(wq, g.W, g.r, g.mode, sw);
        column(wq, nsw, sw);
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
