// CPU SSIM forward: per-image means of SSIM, CS and |x - y| (op `ssim`), and the SSIM map (`ssim_map`).
//
// Work items are (plane, output tile). Each packs its padded input tile once (any strides and
// dtypes, padding applied while packing), forms x, y, x^2 + y^2, xy, filters them separably along W,
// H (and D) with the ISA's vectorised stages, and turns the four moments into SSIM and CS per pixel.
// Tile sums go to their own slots and are added per plane in tile order: results do not depend on
// the thread count. |x - y| is summed over the input elements each tile owns, in the same pass.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <cmath>
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

template <typename scalar_t, typename T>
void ssim_forward_typed(const at::Tensor& x, const at::Tensor& y, const at::Tensor& window, const SsimGeometry& g,
                        T c1, T c2, at::Tensor* map, at::Tensor* means /* [3]: ssim, cs, |x - y| */) {
  const SsimTile<T> isa = active_ssim_tile<T>();
  const SsimTiling tile = ssim_tiling(g);
  check_ssim_tile_size(g, tile, 1);
  const int64_t tiles = ssim_tile_count(tile);
  const std::vector<T> w(window.const_data_ptr<T>(), window.const_data_ptr<T>() + g.k);
  const SsimStrides sx = ssim_strides_of(x), sy = ssim_strides_of(y);
  const scalar_t* x_data = x.const_data_ptr<scalar_t>();
  const scalar_t* y_data = y.const_data_ptr<scalar_t>();
  std::vector<double> sums(static_cast<size_t>(g.planes() * tiles * 3), 0.0);  // ssim, cs, |x - y|
  T* map_data = map != nullptr ? map->data_ptr<T>() : nullptr;

  at::parallel_for(0, g.planes() * tiles, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> xs, ys, scratch, moments, ssim, cs;
    std::vector<int64_t> cols;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t plane = item / tiles, t = item % tiles;
      const int64_t b = plane / g.C, c = plane % g.C;
      const SsimTileBox box = ssim_tile_box(tile, t);
      const int64_t od0 = box.d0, oh0 = box.h0, ow0 = box.w0, od = box.nd, oh = box.nh, ow = box.nw;
      const int64_t pd = od + g.kd - 1, ph = oh + g.k - 1, pw = ow + g.k - 1;
      const int64_t no = od * oh * ow;
      ssim_room(scratch, ssim_scratch_size<T>(kSsimMoments, pd, ph, pw));
      ssim_room(moments, kSsimMoments * no);
      ssim_room(ssim, no);
      ssim_room(cs, no);
      const auto [xb, yb] = ssim_tile_input(x_data, sx, y_data, sy, b, c, g, od0, pd, oh0, ph, ow0, pw, xs, ys, cols);
      isa.moments(xb, yb, pd, ph, pw, w.data(), static_cast<int>(g.k), static_cast<int>(g.kd), scratch.data(),
                  moments.data());
      isa.pixels(moments.data(), no, c1, c2, ssim.data(), cs.data());

      double* out = &sums[item * 3];
      out[0] = isa.sum(ssim.data(), no);
      out[1] = isa.sum(cs.data(), no);
      if (map_data != nullptr) {
        T* dst = map_data + plane * g.map_size();
        for (int64_t dd = 0; dd < od; ++dd)
          for (int64_t hh = 0; hh < oh; ++hh)
            std::copy(&ssim[(dd * oh + hh) * ow], &ssim[(dd * oh + hh) * ow] + ow,
                      dst + ((od0 + dd) * g.Ho + oh0 + hh) * g.Wo + ow0);
      }
      // |x - y| over the input elements this tile owns: those at its output coordinates (shifted by
      // the padding), and for "valid" the last tiles also own the border past the last output.
      auto own = [](int64_t o0, int64_t n, int64_t in_total, int64_t r, bool last) {
        const int64_t hi = last ? in_total : std::min(o0 + n, in_total);
        return std::make_pair(o0 + r, hi + r);  // padded coordinates
      };
      const bool valid = g.mode == kSsimValid;
      const auto [pd_lo, pd_hi] = own(od0, od, g.D, g.rd, valid && od0 + od == g.Do);
      const auto [ph_lo, ph_hi] = own(oh0, oh, g.H, g.r, valid && oh0 + oh == g.Ho);
      const auto [pw_lo, pw_hi] = own(ow0, ow, g.W, g.r, valid && ow0 + ow == g.Wo);
      double l1 = 0;
      for (int64_t dd = pd_lo; dd < pd_hi; ++dd)
        for (int64_t hh = ph_lo; hh < ph_hi; ++hh) {
          const T* xr = xb.data + (dd - od0) * xb.plane + (hh - oh0) * xb.row + pw_lo - ow0;
          const T* yr = yb.data + (dd - od0) * yb.plane + (hh - oh0) * yb.row + pw_lo - ow0;
          l1 += isa.abs_diff_sum(xr, yr, pw_hi - pw_lo);
        }
      out[2] = l1;
    }
  });

  if (means != nullptr) {
    T* out[3] = {means[0].data_ptr<T>(), means[1].data_ptr<T>(), means[2].data_ptr<T>()};
    const double count[3] = {double(g.map_size()), double(g.map_size()), double(g.image_size())};
    for (int64_t plane = 0; plane < g.planes(); ++plane) {
      double acc[3] = {0, 0, 0};
      for (int64_t t = 0; t < tiles; ++t)
        for (int q = 0; q < 3; ++q) acc[q] += sums[(plane * tiles + t) * 3 + q];
      for (int q = 0; q < 3; ++q) out[q][plane] = static_cast<T>(acc[q] / count[q]);
    }
  }
}

template <typename Fn>
void dispatch_ssim(const at::Tensor& x, Fn&& fn) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "fastperc_ssim_cpu", [&] {
    using T = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    fn(scalar_t(0), T(0));
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> ssim_cpu(const at::Tensor& x, const at::Tensor& y,
                                                        const at::Tensor& window, double c1, double c2,
                                                        int64_t padding) {
  const SsimGeometry g = check_ssim_inputs(x, y, window, c1, c2, padding);
  TORCH_CHECK(x.device().is_cpu(), "fastperc: ssim_cpu got a tensor on ", x.device());
  const auto options = x.options().dtype(accumulate_type(x.scalar_type()));
  at::Tensor means[3] = {at::empty({g.B, g.C}, options), at::empty({g.B, g.C}, options), at::empty({g.B, g.C}, options)};
  const at::Tensor w = window.contiguous();
  dispatch_ssim(x, [&](auto s, auto t) {
    using scalar_t = decltype(s);
    using T = decltype(t);
    ssim_forward_typed<scalar_t, T>(x, y, w, g, static_cast<T>(c1), static_cast<T>(c2), nullptr, means);
  });
  return {means[0], means[1], means[2]};
}

at::Tensor ssim_map_cpu(const at::Tensor& x, const at::Tensor& y, const at::Tensor& window, double c1, double c2,
                        int64_t padding) {
  const SsimGeometry g = check_ssim_inputs(x, y, window, c1, c2, padding);
  TORCH_CHECK(x.device().is_cpu(), "fastperc: ssim_map_cpu got a tensor on ", x.device());
  at::Tensor map = at::empty(ssim_map_shape(g), x.options().dtype(accumulate_type(x.scalar_type())));
  const at::Tensor w = window.contiguous();
  dispatch_ssim(x, [&](auto s, auto t) {
    using scalar_t = decltype(s);
    using T = decltype(t);
    ssim_forward_typed<scalar_t, T>(x, y, w, g, static_cast<T>(c1), static_cast<T>(c2), &map, nullptr);
  });
  return map;
}

}  // namespace cpu
}  // namespace fastperc
