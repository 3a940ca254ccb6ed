// gram_backward on the CPU: out = scale (G + G^T) x.
//
// Output-stationary register tiles: each (mr x nr) tile of the output is one reduction over the C rows
// in order, with S = scale (G + G^T) packed in mr-row panels as the broadcast operand, and x read in
// place or packed in chunks of rows (which of the two: see below). Half-precision inputs run it on a
// float32 copy, inputs without contiguous rows (channels_last) on a contiguous copy.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "common/checks.h"
#include "cpu/cpu_isa.h"
#include "kernels.h"

namespace fastperc {
namespace cpu {
namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

template <typename T>
at::Tensor gram_backward_typed(const at::Tensor& grad, const at::Tensor& x, T scale) {
  const GramTile<T> tile = active_gram_tile<T>();
  const int mr = tile.mr, nr = tile.nr, lanes = tile.a_lanes;
  const int64_t B = x.size(0), C = x.size(1), N = x.size(2);
  const int64_t sb = x.stride(0), sc = x.stride(1);
  const int64_t row_tiles = ceil_div(C, mr);

  // S = scale (G + G^T) packed per tile of mr output rows, k-major, each value `lanes` times:
  // panel[t][j][r][l] = S[t * mr + r][j] (zero past row C), so a tile streams its contiguous panel
  // (from L1, or L2 where mr * lanes * C values outgrow it) for every column strip. `mr * lanes`
  // values make a panel row (the unit of the offsets below).
  const int64_t row_len = int64_t{mr} * lanes;
  const at::Tensor g = grad.contiguous();
  const T* g_data = g.const_data_ptr<T>();
  std::vector<T> panels(static_cast<size_t>(B * row_tiles * C * row_len), T(0));
  at::parallel_for(0, B * C, 64, [&](int64_t begin, int64_t end) {
    for (int64_t bj = begin; bj < end; ++bj) {
      const int64_t b = bj / C, j = bj % C;
      const T* gb = g_data + b * C * C;
      for (int64_t i = 0; i < C; ++i) {
        T* dst = &panels[((b * row_tiles + i / mr) * C + j) * row_len + (i % mr) * lanes];
        std::fill(dst, dst + lanes, scale * (gb[i * C + j] + gb[j * C + i]));
      }
    }
  });

  at::Tensor out = at::empty({B, C, N}, x.options());
  T* out_data = out.data_ptr<T>();
  const T* x_data = x.const_data_ptr<T>();
  // Rows of x per reduction chunk: a strip of kc rows and nr columns fills 16 KiB, half of L1.
  const int64_t kc = std::max<int64_t>(8, (int64_t{16} * 1024 / (nr * static_cast<int64_t>(sizeof(T)))) / 8 * 8);
  // Read in place, a tile's row of x is nr values: whole cache lines for avx512 (128 bytes), a line and
  // a half for avx2's 24 floats, half a line for generic's 8. Packing paid off for the latter two at
  // every C (Zen 4, paired: avx2 1.25-1.32x faster at C = 256-512 and style fwd+bwd 1.26-1.29x at
  // C = 64-128; generic 1.09-1.17x at C = 64-512), not for avx512 (packed took 0.92-1.36x the time).
  const bool whole_lines = (nr * static_cast<int64_t>(sizeof(T))) % 64 == 0;
  if (whole_lines) {
    // The tiles read x's rows in place, each tile one full reduction.
    const int64_t block = 8 * nr;  // columns per work item: C x block of x stays in L2
    const int64_t blocks = ceil_div(N, block);
    at::parallel_for(0, B * blocks, 1, [&](int64_t begin, int64_t end) {
      std::vector<T> edge_b, edge_c(static_cast<size_t>(mr * nr));
      for (int64_t item = begin; item < end; ++item) {
        const int64_t b = item / blocks, n_begin = (item % blocks) * block, n_end = std::min(N, n_begin + block);
        const T* xb = x_data + b * sb;
        T* ob = out_data + b * C * N;
        const int64_t full_end = n_begin + (n_end - n_begin) / nr * nr;
        if (full_end < n_end) {  // last columns: zero-padded copy so the tiles read in bounds
          const int64_t width = n_end - full_end;
          edge_b.assign(static_cast<size_t>(C * nr), T(0));
          for (int64_t j = 0; j < C; ++j)
            std::copy(xb + j * sc + full_end, xb + j * sc + full_end + width, &edge_b[j * nr]);
        }
        for (int64_t t = 0; t < row_tiles; ++t) {
          const T* a = panels.data() + (b * row_tiles + t) * C * row_len;
          const int64_t i0 = t * mr, rows = std::min<int64_t>(mr, C - i0);
          for (int64_t n0 = n_begin; n0 < n_end; n0 += nr) {
            const int64_t width = std::min<int64_t>(nr, n_end - n0);
            const bool edge = width < nr;
            const T* src = edge ? edge_b.data() : xb + n0;
            if (rows == mr && !edge) {
              tile.tile(C, a, mr, src, sc, ob + i0 * N + n0, N, /*accumulate=*/false);
              continue;
            }
            tile.tile(C, a, mr, src, edge ? nr : sc, edge_c.data(), nr, /*accumulate=*/false);
            for (int64_t r = 0; r < rows; ++r)
              std::copy(&edge_c[r * nr], &edge_c[r * nr] + width, ob + (i0 + r) * N + n0);
          }
        }
      }
    });
    return out;
  }
  // Work items are blocks of columns. The reduction over the C rows of x runs in chunks of kc rows,
  // each packed k-major per strip of nr columns (kc * nr values, 16 KiB at most, which stay in L1
  // while every row tile reads them) and added into the block's output tiles. Read in place, x's
  // rows sit N elements apart: every tile re-read its strip from L2 through lines it half used, and
  // the avx2 backward ran at 0.69x of MKL's (G + G^T) x at C = 512 on a Zen 4. Each output element
  // still adds its C products in row order into one float accumulator (stored and reloaded between
  // chunks, which rounds nothing), so the result is the same as one unbroken reduction.
  const int64_t strips = 8;
  const int64_t block = strips * nr;
  const int64_t blocks = ceil_div(N, block);
  const int64_t rows_p = row_tiles * mr;
  at::parallel_for(0, B * blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> packed(static_cast<size_t>(strips * kc * nr)), acc(static_cast<size_t>(rows_p * block));
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / blocks, n_begin = (item % blocks) * block, n_end = std::min(N, n_begin + block);
      const int64_t width = n_end - n_begin, used = ceil_div(width, nr);
      const T* xb = x_data + b * sb;
      for (int64_t k0 = 0; k0 < C; k0 += kc) {
        const int64_t k_len = std::min(kc, C - k0);
        for (int64_t st = 0; st < used; ++st) {
          T* dst = packed.data() + st * kc * nr;
          const int64_t n0 = n_begin + st * nr, w = std::min<int64_t>(nr, n_end - n0);
          for (int64_t k = 0; k < k_len; ++k) {
            const T* src = xb + (k0 + k) * sc + n0;
            std::copy(src, src + w, dst + k * nr);
            std::fill(dst + k * nr + w, dst + (k + 1) * nr, T(0));
          }
        }
        for (int64_t st = 0; st < used; ++st)
          for (int64_t t = 0; t < row_tiles; ++t)
            tile.tile(k_len, panels.data() + ((b * row_tiles + t) * C + k0) * row_len, mr,
                      packed.data() + st * kc * nr, nr, acc.data() + t * mr * block + st * nr, block,
                      /*accumulate=*/k0 > 0);
      }
      T* ob = out_data + b * C * N;
      for (int64_t i = 0; i < C; ++i) std::copy(&acc[i * block], &acc[i * block] + width, ob + i * N + n_begin);
    }
  });
  return out;
}

}  // namespace

at::Tensor gram_backward_cpu(const at::Tensor& grad, const at::Tensor& x, double scale) {
  check_features(x, "x");
  check_square_like(grad, x, "grad", /*allow_batch_one=*/false);
  check_finite_scale(scale, "scale");
  TORCH_CHECK(x.device().is_cpu(), "fastperc: gram_backward_cpu got a tensor on ", x.device());
  const auto t = x.scalar_type();
  if (t == at::kHalf || t == at::kBFloat16) {
    // Half precision: the float32 kernel on a float32 copy (products of half values are exact there),
    // rounded once to the input dtype. Deterministic like the float path, unlike a library GEMM.
    return gram_backward_typed<float>(grad, x.to(at::kFloat).contiguous(), static_cast<float>(scale)).to(t);
  }
  const at::Tensor xr = x.stride(2) == 1 ? x : x.contiguous();  // e.g. channels_last: rows made contiguous
  return AT_DISPATCH_FLOATING_TYPES(t, "fastperc_gram_backward_cpu", [&] {
    return gram_backward_typed<scalar_t>(grad, xr, static_cast<scalar_t>(scale));
  });
}

}  // namespace cpu
}  // namespace fastperc
