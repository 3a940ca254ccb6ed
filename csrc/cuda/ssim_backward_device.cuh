#pragma once
// Kernels and driver of the CUDA SSIM backward (ssim_backward_kernel.cu): moments -> per-pixel moment
// gradients -> adjoint of the window filter on the padded grid -> fold onto the inputs (+ the |x - y|
// term). Same math as the CPU kernel (common/ssim_math.h).
#include "cuda/ssim_passes.cuh"

namespace fastperc {
namespace cuda {
namespace ssim_detail {


// A per-pixel weight tensor (any strides) or none.
template <typename T>
struct Weights {
  const T* data;
  Strides st;
};

template <typename T>
Weights<T> weights_of(const at::Tensor& t) {
  if (!t.defined()) return {nullptr, {0, 0, 0, 0, 0}};
  return {t.const_data_ptr<T>(), strides_of(t)};
}

template <typename T>
__device__ __forceinline__ T weight_at(const Weights<T>& w, int64_t b, int64_t c, int64_t d, int64_t h, int64_t x) {
  return w.data == nullptr ? T(0) : w.data[b * w.st.b + c * w.st.c + d * w.st.d + h * w.st.h + x * w.st.w];
}

template <typename T>
__global__ void moment_grads(const T* __restrict__ m, int64_t n, Dims g, T c1, T c2, Weights<T> gs, Weights<T> gc,
                             T* __restrict__ d) {
  FASTPERC_GRID_LOOP(i, n) {
    const int64_t ow = i % g.Wo, oh = (i / g.Wo) % g.Ho, od = (i / (g.Wo * g.Ho)) % g.Do;
    const int64_t plane = i / (g.Wo * g.Ho * g.Do), b = plane / g.C, c = plane % g.C;
    ssim_pixel_grad<T>(m[i], m[n + i], m[2 * n + i], m[3 * n + i], m[4 * n + i], c1, c2,
                       weight_at(gs, b, c, od, oh, ow), weight_at(gc, b, c, od, oh, ow), d[i], d[n + i],
                       d[2 * n + i], d[3 * n + i], d[4 * n + i]);
  }
}

// grad_x[q] = sum over padded copies p of q of F(d_mx)_p + 2 x_q F(d_exx)_p + y_q F(d_exy)_p (+ L1),
// likewise for y; F is [5][planes][Dp][Hp][Wp]. Output contiguous in the input dtype.
template <typename scalar_t, typename T>
__global__ void fold_to_inputs(const T* __restrict__ f, int64_t padded_total, const scalar_t* __restrict__ x,
                               const scalar_t* __restrict__ y, Strides sx, Strides sy, Dims g, Weights<T> gl, int64_t n,
                               scalar_t* __restrict__ gx, scalar_t* __restrict__ gy) {
  FASTPERC_GRID_LOOP(i, n) {
    const int64_t wq = i % g.W, h = (i / g.W) % g.H, d = (i / (g.W * g.H)) % g.D;
    const int64_t plane = i / (g.W * g.H * g.D), b = plane / g.C, c = plane % g.C;
    int64_t sd[3], sh[3], sw[3];
    const int nd = ssim_fold_sources(d, g.D, g.rd, g.mode, sd);
    const int nh = ssim_fold_sources(h, g.H, g.r, g.mode, sh);
    const int nw = ssim_fold_sources(wq, g.W, g.r, g.mode, sw);
    T s[5] = {0, 0, 0, 0, 0};
    for (int a = 0; a < nd; ++a)
      for (int e = 0; e < nh; ++e)
        for (int l = 0; l < nw; ++l) {
          const int64_t p = ((plane * g.Dp + sd[a]) * g.Hp + sh[e]) * g.Wp + sw[l];
          for (int q = 0; q < 5; ++q) s[q] += f[q * padded_total + p];
        }
    const int64_t ox = b * sx.b + c * sx.c + d * sx.d + h * sx.h + wq * sx.w;
    const int64_t oy = b * sy.b + c * sy.c + d * sy.d + h * sy.h + wq * sy.w;
    const T xv = static_cast<T>(x[ox]), yv = static_cast<T>(y[oy]);
    T ax = s[0] + T(2) * xv * s[2] + yv * s[4];
    T ay = s[1] + T(2) * yv * s[3] + xv * s[4];
    if (gl.data != nullptr) {
      const T diff = xv - yv;
      const T sign = diff > T(0) ? T(1) : (diff < T(0) ? T(-1) : T(0));
      const T v = sign * weight_at(gl, b, c, d, h, wq);
      ax += v;
      ay -= v;
    }
    if (gx != nullptr) gx[i] = static_cast<scalar_t>(ax);
    if (gy != nullptr) gy[i] = static_cast<scalar_t>(ay);
  }
}

// (grad_x, grad_y) in the input dtype; an unwanted one comes back empty.
template <typename scalar_t, typename T, typename Launch>
std::tuple<at::Tensor, at::Tensor> backward_typed(const Launch& launch, const at::Tensor& grad_ssim, const at::Tensor& grad_cs,
                                                  const at::Tensor& grad_l1, const at::Tensor& x, const at::Tensor& y,
                                                  const at::Tensor& window, const SsimGeometry& geo, T c1, T c2,
                                                  bool need_x, bool need_y) {
  const Dims g = dims_of(geo);
  const int64_t planes = geo.planes();
  const auto opts = x.options().dtype(window.scalar_type());
  const T* w = window.const_data_ptr<T>();

  const at::Tensor m = window_moments<scalar_t, T>(launch, x, y, window, geo);
  const int64_t n = planes * geo.map_size();
  at::Tensor dm = at::empty({5 * n}, opts);
  launch(grid_for(n), kThreads, moment_grads<T>, m.const_data_ptr<T>(), n, g, c1, c2, weights_of<T>(grad_ssim),
         weights_of<T>(grad_cs), dm.data_ptr<T>());

  // Adjoint of the filter, axis by axis, back to the padded grid [5][planes][Dp][Hp][Wp].
  at::Tensor cur = dm;
  if (g.kd > 1) {
    at::Tensor next = at::empty({5 * planes * g.Dp * g.Ho * g.Wo}, opts);
    launch(grid_for(next.numel()), kThreads, correlate_axis_adjoint<T>, cur.const_data_ptr<T>(), 5 * planes, g.Do,
           g.Ho * g.Wo, w, g.kd, next.data_ptr<T>());
    cur = next;
  }
  {
    at::Tensor next = at::empty({5 * planes * g.Dp * g.Hp * g.Wo}, opts);
    launch(grid_for(next.numel()), kThreads, correlate_axis_adjoint<T>, cur.const_data_ptr<T>(), 5 * planes * g.Dp,
           g.Ho, g.Wo, w, g.k, next.data_ptr<T>());
    cur = next;
  }
  const int64_t padded_total = planes * g.Dp * g.Hp * g.Wp;
  at::Tensor f = at::empty({5 * padded_total}, opts);
  launch(grid_for(f.numel()), kThreads, correlate_axis_adjoint<T>, cur.const_data_ptr<T>(), 5 * planes * g.Dp * g.Hp,
         g.Wo, int64_t{1}, w, g.k, f.data_ptr<T>());

  // An unwanted gradient comes back empty; its fold writes are skipped (the filters are shared).
  at::Tensor gx = need_x ? at::empty(x.sizes(), x.options().memory_format(at::MemoryFormat::Contiguous))
                         : at::empty({0}, x.options());
  at::Tensor gy = need_y ? at::empty(y.sizes(), y.options().memory_format(at::MemoryFormat::Contiguous))
                         : at::empty({0}, y.options());
  const int64_t total = planes * geo.image_size();
  launch(grid_for(total), kThreads, fold_to_inputs<scalar_t, T>, f.const_data_ptr<T>(), padded_total,
         x.const_data_ptr<scalar_t>(), y.const_data_ptr<scalar_t>(), strides_of(x), strides_of(y), g,
         weights_of<T>(grad_l1), total,
         need_x ? gx.data_ptr<scalar_t>() : nullptr, need_y ? gy.data_ptr<scalar_t>() : nullptr);
  return {gx, gy};
}

}  // namespace ssim_detail
}  // namespace cuda
}  // namespace fastperc
