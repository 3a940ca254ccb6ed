// gram_backward on the CPU: out = scale (G + G^T) x.
//
// Output-stationary register tiles that read x's rows in place (no packing): the symmetric
// S = scale (G + G^T) is its own transpose, so its row j gives the tile's broadcast operand for
// reduction step j, and each (mr x nr) tile of the output is one full reduction over the C rows,
// written once. Float32/float64 with contiguous rows take this path; other inputs (half precision,
// channels_last) take one batched GEMM on float32 (common/gram_composites.cpp).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "common/checks.h"
#include "common/gram_composites.h"
#include "cpu/cpu_isa.h"

namespace fastperc {
namespace cpu {
namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

template <typename T>
at::Tensor gram_backward_typed(const at::Tensor& grad, const at::Tensor& x, T scale) {
  const GramTile<T> tile = active_gram_tile<T>();
  const int mr = tile.mr, nr = tile.nr;
  const int64_t B = x.size(0), C = x.size(1), N = x.size(2);
  const int64_t sb = x.stride(0), sc = x.stride(1);
  const int64_t lds = ceil_div(C, mr) * mr;  // padded so a tile's last rows read zeros

  // sym[b][j][i] = scale * (g[b][i][j] + g[b][j][i]), zero for i >= C.
  const at::Tensor g = grad.contiguous();
  const T* g_data = g.const_data_ptr<T>();
  std::vector<T> sym(static_cast<size_t>(B * C * lds), T(0));
  at::parallel_for(0, B * C, 64, [&](int64_t begin, int64_t end) {
    for (int64_t bj = begin; bj < end; ++bj) {
      const int64_t b = bj / C, j = bj % C;
      const T* gb = g_data + b * C * C;
      for (int64_t i = 0; i < C; ++i) sym[bj * lds + i] = scale * (gb[i * C + j] + gb[j * C + i]);
    }
  });

  at::Tensor out = at::empty({B, C, N}, x.options());
  T* out_data = out.data_ptr<T>();
  const T* x_data = x.const_data_ptr<T>();
  const int64_t block = 8 * nr;  // columns per work item
  const int64_t blocks = ceil_div(N, block);
  at::parallel_for(0, B * blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> edge_b, edge_c(static_cast<size_t>(mr * nr));
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / blocks, n_end = std::min(N, (item % blocks + 1) * block);
      const T* xb = x_data + b * sb;
      const T* sb_data = sym.data() + b * C * lds;
      T* ob = out_data + b * C * N;
      for (int64_t n0 = (item % blocks) * block; n0 < n_end; n0 += nr) {
        const int64_t width = std::min<int64_t>(nr, n_end - n0);
        const T* src = xb + n0;
        int64_t ldb = sc;
        if (width < nr) {  // last columns: zero-padded copy so the tile reads in bounds
          edge_b.assign(static_cast<size_t>(C * nr), T(0));
          for (int64_t j = 0; j < C; ++j) std::copy(xb + j * sc + n0, xb + j * sc + n0 + width, &edge_b[j * nr]);
          src = edge_b.data();
          ldb = nr;
        }
        for (int64_t i0 = 0; i0 < C; i0 += mr) {
          const int64_t rows = std::min<int64_t>(mr, C - i0);
          if (rows == mr && width == nr) {
            tile.tile(C, sb_data + i0, lds, src, ldb, ob + i0 * N + n0, N, /*accumulate=*/false);
            continue;
          }
          tile.tile(C, sb_data + i0, lds, src, ldb, edge_c.data(), nr, /*accumulate=*/false);
          for (int64_t r = 0; r < rows; ++r)
            std::copy(&edge_c[r * nr], &edge_c[r * nr] + width, ob + (i0 + r) * N + n0);
        }
      }
    }
  });
  return out;
}

at::Tensor gram_backward_cpu(const at::Tensor& grad, const at::Tensor& x, double scale) {
  check_features(x, "x");
  check_square_like(grad, x, "grad", /*allow_batch_one=*/false);
  check_finite_scale(scale, "scale");
  TORCH_CHECK(x.device().is_cpu(), "fastperc: gram_backward_cpu got a tensor on ", x.device());
  const auto t = x.scalar_type();
  if ((t != at::kFloat && t != at::kDouble) || x.stride(2) != 1) return gram_backward_composite(grad, x, scale);
  return AT_DISPATCH_FLOATING_TYPES(t, "fastperc_gram_backward_cpu", [&] {
    return gram_backward_typed<scalar_t>(grad, x, static_cast<scalar_t>(scale));
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(fastperc, CPU, m) { m.impl("gram_backward", &gram_backward_cpu); }

}  // namespace cpu
}  // namespace fastperc
