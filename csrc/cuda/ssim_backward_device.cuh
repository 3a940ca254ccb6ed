#pragma once
// Kernels and driver of the CUDA SSIM backward (ssim_backward_kernel.cu): moments -> per-pixel moment
// gradients -> adjoint of the window filter on the padded grid -> fold onto the inputs (+ the |x - y|
// term). Same math as the CPU kernel (common/ssim_math.h).
//
// Fused path (2D, float32 accumulation, window <= kFusedMaxWin): kernel one recomputes the moments of
// a 16 x 32 map tile in shared memory (stage one of the fused forward) and writes the four per-pixel
// moment gradients; kernel two, per 16 x 32 tile, loads each gradient map's halo into shared memory
// and applies the adjoint window along W and H. With valid or zero padding (one padded copy per input
// pixel) it folds the result onto x and y itself; with reflect it writes the padded grid and
// fold_to_inputs adds the mirrored copies. 3D, float64 and wider windows take the separable passes.
#include <array>
#include <tuple>

#include "cuda/ssim_forward_device.cuh"

namespace fastperc {
namespace cuda {
namespace ssim_detail {


// A per-pixel weight tensor (any strides) or none.
template <typename T>
struct Weights {
  const T* data;
  SsimStrides st;
};

template <typename T>
Weights<T> weights_of(const at::Tensor& t) {
  if (!t.defined()) return {nullptr, {0, 0, 0, 0, 0}};
  return {t.const_data_ptr<T>(), ssim_strides_of(t)};
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
    ssim_pixel_grad<T>(m[i], m[n + i], m[2 * n + i], m[3 * n + i], c1, c2, weight_at(gs, b, c, od, oh, ow),
                       weight_at(gc, b, c, od, oh, ow), d[i], d[n + i], d[2 * n + i], d[3 * n + i]);
  }
}

// The four moment gradients of every pixel of one map tile: d[s][plane][oh][ow], s = mx, my, esq,
// exy, with n = planes * Ho * Wo.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    ssim_moment_grads_2d(const scalar_t* __restrict__ x, const scalar_t* __restrict__ y, SsimStrides sx, SsimStrides sy,
                         Dims g, const float* __restrict__ window, float c1, float c2, Weights<float> gs,
                         Weights<float> gc, int64_t tiles_w, int64_t plane0, int64_t n, float* __restrict__ d) {
  __shared__ float in_x[kFusedInH][kFusedInW], in_y[kFusedInH][kFusedInW];
  __shared__ float along_w[kSsimMoments][kFusedInH][kFusedTileW];
  __shared__ float w[kFusedMaxWin];
  const int tid = threadIdx.x;
  const int64_t tile = blockIdx.x, plane = plane0 + blockIdx.y, b = plane / g.C, c = plane % g.C;
  const int64_t oh0 = (tile / tiles_w) * kFusedTileH, ow0 = (tile % tiles_w) * kFusedTileW;
  const int k = static_cast<int>(g.k);
  fused_moments_along_w(x, y, sx, sy, g, window, plane, oh0, ow0, in_x, in_y, along_w, w);
  const int q = tid % kFusedTileW;
  for (int r = tid / kFusedTileW; r < kFusedTileH; r += kThreads / kFusedTileW) {
    const int64_t oh = oh0 + r, ow = ow0 + q;
    if (oh >= g.Ho || ow >= g.Wo) continue;
    float m[kSsimMoments];
    fused_moments_at(along_w, w, k, r, q, m);
    const int64_t i = (plane * g.Ho + oh) * g.Wo + ow;
    ssim_pixel_grad<float>(m[0], m[1], m[2], m[3], c1, c2, weight_at(gs, b, c, 0, oh, ow),
                           weight_at(gc, b, c, 0, oh, ow), d[i], d[n + i], d[2 * n + i], d[3 * n + i]);
  }
}

constexpr int kFusedRowsPerThread = kFusedTileH / (kThreads / kFusedTileW);  // 2: rows r0 and r0 + 8

// F(p) = sum_{a, b} w[a] w[b] d(p - (a, b)) of one plane's gradient map d (Ho x Wo, zero outside) at
// the 16 x 32 padded pixels from (ph0, pw0): loads the map pixels that reach them into halo, applies
// the adjoint window along W (along_w), then along H. Thread tid gets column tid % 32, rows tid / 32
// + 8 e, in f[e]. Two barriers; the caller's next call may start right after (its first writes to
// halo and along_w come after barriers every thread passes only when done reading them).
__device__ __forceinline__ void adjoint_window_tile(const float* __restrict__ d, const Dims& g, int64_t ph0,
                                                    int64_t pw0, const float* w, float (*halo)[kFusedInW],
                                                    float (*along_w)[kFusedTileW], float f[kFusedRowsPerThread]) {
  const int tid = threadIdx.x, k = static_cast<int>(g.k);
  const int in_h = kFusedTileH + k - 1, in_w = kFusedTileW + k - 1;
  const int64_t mh0 = ph0 - (k - 1), mw0 = pw0 - (k - 1);  // the map pixels whose windows reach the tile
  for (int idx = tid; idx < in_h * in_w; idx += kThreads) {
    const int i = idx / in_w, j = idx % in_w;
    const int64_t oh = mh0 + i, ow = mw0 + j;
    halo[i][j] = oh >= 0 && oh < g.Ho && ow >= 0 && ow < g.Wo ? d[oh * g.Wo + ow] : 0.f;
  }
  __syncthreads();
  for (int idx = tid; idx < in_h * kFusedTileW; idx += kThreads) {
    const int i = idx / kFusedTileW, j = idx % kFusedTileW;
    float a = 0.f;
    for (int t = 0; t < k; ++t) a += w[t] * halo[i][j + k - 1 - t];
    along_w[i][j] = a;
  }
  __syncthreads();
  for (int e = 0; e < kFusedRowsPerThread; ++e) {
    const int rr = tid / kFusedTileW + e * (kThreads / kFusedTileW), q = tid % kFusedTileW;
    float a = 0.f;
    for (int t = 0; t < k; ++t) a += w[t] * along_w[rr + k - 1 - t][q];
    f[e] = a;
  }
}

// Per 16 x 32 tile of one input plane, valid or zero padding (the padded pixel p = q + r is the only
// copy of input pixel q): F_s at p for the maps a wanted gradient reads, then
// grad_x = F_mx + 2 x F_esq + y F_exy (+ L1), grad_y = F_my + 2 y F_esq + x F_exy (- L1), stored
// contiguous in the input dtype.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    ssim_adjoint_fold_2d(const float* __restrict__ d, int64_t n, Dims g, const float* __restrict__ window,
                         const scalar_t* __restrict__ x, const scalar_t* __restrict__ y, SsimStrides sx, SsimStrides sy,
                         Weights<float> gl, int64_t tiles_w, int64_t plane0, scalar_t* __restrict__ gx,
                         scalar_t* __restrict__ gy) {
  __shared__ float halo[kFusedInH][kFusedInW];
  __shared__ float along_w[kFusedInH][kFusedTileW];
  __shared__ float w[kFusedMaxWin];
  const int tid = threadIdx.x, q = tid % kFusedTileW, r0 = tid / kFusedTileW;
  const int64_t tile = blockIdx.x, plane = plane0 + blockIdx.y, b = plane / g.C, c = plane % g.C;
  const int64_t qh0 = (tile / tiles_w) * kFusedTileH, qw0 = (tile % tiles_w) * kFusedTileW;
  if (tid < g.k) w[tid] = window[tid];
  float f[kSsimMoments][kFusedRowsPerThread] = {};
  for (int s = 0; s < kSsimMoments; ++s) {
    const bool wanted = s >= 2 || (s == 0 ? gx != nullptr : gy != nullptr);  // 0: x; 1: y; 2, 3: both
    if (wanted)  // uniform across the block
      adjoint_window_tile(d + s * n + plane * g.Ho * g.Wo, g, qh0 + g.r, qw0 + g.r, w, halo, along_w, f[s]);
  }
  for (int e = 0; e < kFusedRowsPerThread; ++e) {
    const int64_t qh = qh0 + r0 + e * (kThreads / kFusedTileW), qw = qw0 + q;
    if (qh >= g.H || qw >= g.W) continue;
    const float xv = static_cast<float>(x[b * sx.b + c * sx.c + qh * sx.h + qw * sx.w]);
    const float yv = static_cast<float>(y[b * sy.b + c * sy.c + qh * sy.h + qw * sy.w]);
    float ax = f[0][e] + 2.f * xv * f[2][e] + yv * f[3][e];
    float ay = f[1][e] + 2.f * yv * f[2][e] + xv * f[3][e];
    if (gl.data != nullptr) {
      const float v = ssim_l1_sign(xv, yv) * weight_at(gl, b, c, 0, qh, qw);
      ax += v;
      ay -= v;
    }
    const int64_t out = (plane * g.H + qh) * g.W + qw;
    if (gx != nullptr) gx[out] = static_cast<scalar_t>(ax);
    if (gy != nullptr) gy[out] = static_cast<scalar_t>(ay);
  }
}

// Reflect padding: an input pixel has up to three copies per axis, so the four F_s are written on
// the padded grid, f[s][plane][Hp][Wp] with padded_total = planes * Hp * Wp, and fold_to_inputs adds
// the copies.
static __global__ void __launch_bounds__(kThreads)
    ssim_adjoint_padded_2d(const float* __restrict__ d, int64_t n, Dims g, const float* __restrict__ window,
                           int64_t tiles_w, int64_t plane0, int64_t padded_total, float* __restrict__ f_out) {
  __shared__ float halo[kFusedInH][kFusedInW];
  __shared__ float along_w[kFusedInH][kFusedTileW];
  __shared__ float w[kFusedMaxWin];
  const int tid = threadIdx.x, q = tid % kFusedTileW, r0 = tid / kFusedTileW;
  const int64_t tile = blockIdx.x, plane = plane0 + blockIdx.y;
  const int64_t ph0 = (tile / tiles_w) * kFusedTileH, pw0 = (tile % tiles_w) * kFusedTileW;
  if (tid < g.k) w[tid] = window[tid];
  for (int s = 0; s < kSsimMoments; ++s) {
    float f[kFusedRowsPerThread];
    adjoint_window_tile(d + s * n + plane * g.Ho * g.Wo, g, ph0, pw0, w, halo, along_w, f);
    for (int e = 0; e < kFusedRowsPerThread; ++e) {
      const int64_t ph = ph0 + r0 + e * (kThreads / kFusedTileW), pw = pw0 + q;
      if (ph < g.Hp && pw < g.Wp) f_out[s * padded_total + (plane * g.Hp + ph) * g.Wp + pw] = f[e];
    }
  }
}

// grad_x[q] = sum over padded copies p of q of F(d_mx)_p + 2 x_q F(d_esq)_p + y_q F(d_exy)_p (+ L1),
// likewise for y; F is [4][planes][Dp][Hp][Wp]. Output contiguous in the input dtype.
template <typename scalar_t, typename T>
__global__ void fold_to_inputs(const T* __restrict__ f, int64_t padded_total, const scalar_t* __restrict__ x,
                               const scalar_t* __restrict__ y, SsimStrides sx, SsimStrides sy, Dims g, Weights<T> gl,
                               int64_t n, scalar_t* __restrict__ gx, scalar_t* __restrict__ gy) {
  FASTPERC_GRID_LOOP(i, n) {
    const int64_t wq = i % g.W, h = (i / g.W) % g.H, d = (i / (g.W * g.H)) % g.D;
    const int64_t plane = i / (g.W * g.H * g.D), b = plane / g.C, c = plane % g.C;
    int64_t sd[3], sh[3], sw[3];
    const int nd = ssim_fold_sources(d, g.D, g.rd, g.mode, sd);
    const int nh = ssim_fold_sources(h, g.H, g.r, g.mode, sh);
    const int nw = ssim_fold_sources(wq, g.W, g.r, g.mode, sw);
    T s[kSsimMoments] = {0, 0, 0, 0};
    for (int a = 0; a < nd; ++a)
      for (int e = 0; e < nh; ++e)
        for (int l = 0; l < nw; ++l) {
          const int64_t p = ((plane * g.Dp + sd[a]) * g.Hp + sh[e]) * g.Wp + sw[l];
          for (int q = 0; q < kSsimMoments; ++q) s[q] += f[q * padded_total + p];
        }
    const int64_t ox = b * sx.b + c * sx.c + d * sx.d + h * sx.h + wq * sx.w;
    const int64_t oy = b * sy.b + c * sy.c + d * sy.d + h * sy.h + wq * sy.w;
    const T xv = static_cast<T>(x[ox]), yv = static_cast<T>(y[oy]);
    T ax = s[0] + T(2) * xv * s[2] + yv * s[3];
    T ay = s[1] + T(2) * yv * s[2] + xv * s[3];
    if (gl.data != nullptr) {
      const T sign = ssim_l1_sign(xv, yv);
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
  // An unwanted gradient comes back empty and is not written.
  at::Tensor gx = need_x ? at::empty(x.sizes(), x.options().memory_format(at::MemoryFormat::Contiguous))
                         : at::empty({0}, x.options());
  at::Tensor gy = need_y ? at::empty(y.sizes(), y.options().memory_format(at::MemoryFormat::Contiguous))
                         : at::empty({0}, y.options());
  if constexpr (std::is_same_v<T, float>) {
    if (fused_eligible<T>(geo)) {
      const int64_t n = planes * geo.map_size();
      at::Tensor dm = at::empty({kSsimMoments * n}, opts);
      const int64_t map_tiles_w = (geo.Wo + kFusedTileW - 1) / kFusedTileW;
      const int64_t map_tiles = map_tiles_w * ((geo.Ho + kFusedTileH - 1) / kFusedTileH);
      const int64_t in_tiles_w = (geo.W + kFusedTileW - 1) / kFusedTileW;
      const int64_t in_tiles = in_tiles_w * ((geo.H + kFusedTileH - 1) / kFusedTileH);
      TORCH_CHECK(in_tiles < (int64_t{1} << 31), "fastperc: image too large for the CUDA SSIM kernel");
      for (int64_t p0 = 0; p0 < planes; p0 += kGridChunk) {
        const unsigned chunk = static_cast<unsigned>(std::min<int64_t>(kGridChunk, planes - p0));
        launch(dim3(static_cast<unsigned>(map_tiles), chunk), kThreads, ssim_moment_grads_2d<scalar_t>,
               x.const_data_ptr<scalar_t>(), y.const_data_ptr<scalar_t>(), ssim_strides_of(x), ssim_strides_of(y), g, w,
               c1, c2, weights_of<float>(grad_ssim), weights_of<float>(grad_cs), map_tiles_w, p0, n,
               dm.data_ptr<float>());
      }
      if (geo.mode == kSsimReflect) {
        const int64_t padded_total = planes * geo.Hp * geo.Wp;
        const int64_t pad_tiles_w = (geo.Wp + kFusedTileW - 1) / kFusedTileW;
        const int64_t pad_tiles = pad_tiles_w * ((geo.Hp + kFusedTileH - 1) / kFusedTileH);
        at::Tensor f = at::empty({kSsimMoments * padded_total}, opts);
        for (int64_t p0 = 0; p0 < planes; p0 += kGridChunk) {
          const unsigned chunk = static_cast<unsigned>(std::min<int64_t>(kGridChunk, planes - p0));
          launch(dim3(static_cast<unsigned>(pad_tiles), chunk), kThreads, ssim_adjoint_padded_2d,
                 dm.const_data_ptr<float>(), n, g, w, pad_tiles_w, p0, padded_total, f.data_ptr<float>());
        }
        const int64_t total = planes * geo.image_size();
        launch(grid_for(total), kThreads, fold_to_inputs<scalar_t, T>, f.const_data_ptr<T>(), padded_total,
               x.const_data_ptr<scalar_t>(), y.const_data_ptr<scalar_t>(), ssim_strides_of(x), ssim_strides_of(y), g,
               weights_of<T>(grad_l1), total, need_x ? gx.data_ptr<scalar_t>() : nullptr,
               need_y ? gy.data_ptr<scalar_t>() : nullptr);
        return {gx, gy};
      }
      for (int64_t p0 = 0; p0 < planes; p0 += kGridChunk) {
        const unsigned chunk = static_cast<unsigned>(std::min<int64_t>(kGridChunk, planes - p0));
        launch(dim3(static_cast<unsigned>(in_tiles), chunk), kThreads, ssim_adjoint_fold_2d<scalar_t>,
               dm.const_data_ptr<float>(), n, g, w, x.const_data_ptr<scalar_t>(), y.const_data_ptr<scalar_t>(),
               ssim_strides_of(x), ssim_strides_of(y), weights_of<float>(grad_l1), in_tiles_w, p0,
               need_x ? gx.data_ptr<scalar_t>() : nullptr, need_y ? gy.data_ptr<scalar_t>() : nullptr);
      }
      return {gx, gy};
    }
  }

  const at::Tensor m = window_moments<scalar_t, T>(launch, x, y, window, geo);
  const int64_t n = planes * geo.map_size();
  at::Tensor dm = at::empty({kSsimMoments * n}, opts);
  launch(grid_for(n), kThreads, moment_grads<T>, m.const_data_ptr<T>(), n, g, c1, c2, weights_of<T>(grad_ssim),
         weights_of<T>(grad_cs), dm.data_ptr<T>());

  // Adjoint of the filter, axis by axis, back to the padded grid [4][planes][Dp][Hp][Wp].
  const int64_t maps = kSsimMoments * planes;
  at::Tensor cur = dm;
  if (g.kd > 1) {
    at::Tensor next = at::empty({maps * g.Dp * g.Ho * g.Wo}, opts);
    launch(grid_for(next.numel()), kThreads, correlate_axis_adjoint<T>, cur.const_data_ptr<T>(), maps, g.Do,
           g.Ho * g.Wo, w, g.kd, next.data_ptr<T>());
    cur = next;
  }
  {
    at::Tensor next = at::empty({maps * g.Dp * g.Hp * g.Wo}, opts);
    launch(grid_for(next.numel()), kThreads, correlate_axis_adjoint<T>, cur.const_data_ptr<T>(), maps * g.Dp, g.Ho,
           g.Wo, w, g.k, next.data_ptr<T>());
    cur = next;
  }
  const int64_t padded_total = planes * g.Dp * g.Hp * g.Wp;
  at::Tensor f = at::empty({kSsimMoments * padded_total}, opts);
  launch(grid_for(f.numel()), kThreads, correlate_axis_adjoint<T>, cur.const_data_ptr<T>(), maps * g.Dp * g.Hp, g.Wo,
         int64_t{1}, w, g.k, f.data_ptr<T>());

  const int64_t total = planes * geo.image_size();
  launch(grid_for(total), kThreads, fold_to_inputs<scalar_t, T>, f.const_data_ptr<T>(), padded_total,
         x.const_data_ptr<scalar_t>(), y.const_data_ptr<scalar_t>(), ssim_strides_of(x), ssim_strides_of(y), g,
         weights_of<T>(grad_l1), total,
         need_x ? gx.data_ptr<scalar_t>() : nullptr, need_y ? gy.data_ptr<scalar_t>() : nullptr);
  return {gx, gy};
}

// The op ssim_backward on the launcher's device, given its checked arguments.
template <typename Launch>
std::tuple<at::Tensor, at::Tensor> ssim_backward_op(const Launch& launch, const at::Tensor& grad_ssim,
                                                    const SsimBackwardArgs& a, const at::Tensor& x,
                                                    const at::Tensor& y, const at::Tensor& window, double c1, double c2,
                                                    std::array<bool, 2> output_mask) {
  if (!output_mask[0] && !output_mask[1]) return {at::empty({0}, x.options()), at::empty({0}, y.options())};
  const at::Tensor w = window.contiguous();
  std::tuple<at::Tensor, at::Tensor> out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "fastperc_ssim_backward_cuda", [&] {
    using T = ssim_acc_t<scalar_t>;
    out = backward_typed<scalar_t, T>(launch, grad_ssim, a.grad_cs, a.grad_l1, x, y, w, a.g, static_cast<T>(c1),
                                      static_cast<T>(c2), output_mask[0], output_mask[1]);
  });
  return out;
}

}  // namespace ssim_detail
}  // namespace cuda
}  // namespace fastperc
