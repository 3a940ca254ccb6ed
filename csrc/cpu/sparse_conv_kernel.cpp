// CPU sparse convolution: gather-GEMM, output stationary and deterministic (no atomics).
//
// Forward: gather-GEMM-scatter per kernel offset over that offset's pairs only (no work for missing
// neighbours), through the Gram kernel's register tiles (cpu/isa); outputs add their terms in offset
// order. The input gradient is the same computation on the inverted map with W[k]^T; the weight
// gradient dW[k] = sum_j x[map[k, j]]^T g[j] runs per offset over fixed chunks of pairs. Neither
// depends on the thread count.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>
#include <tuple>
#include <vector>

#include "common/sparse_checks.h"
#include "cpu/cpu_isa.h"

namespace fastperc {
namespace cpu {
namespace {

int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

[[noreturn]] void bad_map_entry(int64_t value, int64_t n_rows) {
  TORCH_CHECK(false, "fastperc: kernel map entries must be -1 or rows of feats (< ", n_rows, "), got ", value);
}

// Per offset k, the outputs j that have that neighbour (map[k, j] >= 0), in increasing order. The same
// pass checks every entry is -1 or a row < n_rows, so a bad map fails before any row is read and the
// check costs no extra pass over the (K, N_out) map.
std::vector<std::vector<int64_t>> pairs_per_offset(const int32_t* map, int64_t volume, int64_t n_out,
                                                   int64_t n_rows) {
  std::vector<std::vector<int64_t>> outputs(static_cast<size_t>(volume));
  std::vector<int64_t> bad(static_cast<size_t>(volume), -1);  // first bad entry's index per offset
  at::parallel_for(0, volume, 1, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const int32_t* mk = map + k * n_out;
      for (int64_t j = 0; j < n_out; ++j) {
        const int64_t v = mk[j];
        if (v >= 0) {
          if (v >= n_rows && bad[k] < 0) bad[k] = j;
          outputs[k].push_back(j);
        } else if (v != -1 && bad[k] < 0) {
          bad[k] = j;
        }
      }
    }
  });
  for (int64_t k = 0; k < volume; ++k)
    if (bad[k] >= 0) bad_map_entry(map[k * n_out + bad[k]], n_rows);
  return outputs;
}

// out[j] = sum_k rows[map[k, j]] @ w[k], rows (n_rows, cin), w (K, cin, cout) -> out (n_out, cout).
// Work items are blocks of consecutive output rows (small enough to stay in L2). Within a block, offset
// by offset in order, the offset's pairs are cut into tiles of mr, gathered into a k-major panel,
// multiplied with W[k] through the register tiles and added to their output rows. Only existing
// neighbours cost work, every output row adds its terms in offset order whatever the thread count,
// and sorted sites make the gathered inputs of a block nearly contiguous.
template <typename T>
void gather_gemm(const T* rows, int64_t n_rows, int64_t cin, const int32_t* map, int64_t volume, int64_t n_out,
                 const T* w, int64_t cout, T* out) {
  const GramTile<T> tile = active_gram_tile<T>();
  const int mr = tile.mr, nr = tile.nr;
  const int64_t coutp = round_up(cout, nr);
  // Weights padded to whole tiles of columns so every tile reads in bounds.
  std::vector<T> wp(static_cast<size_t>(volume * cin * coutp), T(0));
  for (int64_t k = 0; k < volume; ++k)
    for (int64_t c = 0; c < cin; ++c)
      std::copy(w + (k * cin + c) * cout, w + (k * cin + c + 1) * cout, &wp[(k * cin + c) * coutp]);
  const std::vector<std::vector<int64_t>> outputs = pairs_per_offset(map, volume, n_out, n_rows);
  const int64_t block = std::max<int64_t>(mr, (int64_t{256} * 1024 / (static_cast<int64_t>(sizeof(T)) * coutp)) / mr * mr);
  at::parallel_for(0, (n_out + block - 1) / block, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> panel(static_cast<size_t>(cin * mr)), acc(static_cast<size_t>(mr * coutp));
    for (int64_t b = begin; b < end; ++b) {
      const int64_t jb = b * block, je = std::min(n_out, jb + block);
      std::fill(out + jb * cout, out + je * cout, T(0));
      for (int64_t k = 0; k < volume; ++k) {
        const std::vector<int64_t>& ok = outputs[k];
        const int64_t lo = std::lower_bound(ok.begin(), ok.end(), jb) - ok.begin();
        const int64_t hi = std::lower_bound(ok.begin(), ok.end(), je) - ok.begin();
        const int32_t* mk = map + k * n_out;
        const T* wk = &wp[k * cin * coutp];
        for (int64_t p0 = lo; p0 < hi; p0 += mr) {
          const int64_t here = std::min<int64_t>(mr, hi - p0);
          for (int64_t r = 0; r < mr; ++r) {
            if (r >= here) {
              for (int64_t c = 0; c < cin; ++c) panel[c * mr + r] = T(0);
              continue;
            }
            const T* row = rows + mk[ok[p0 + r]] * cin;
            for (int64_t c = 0; c < cin; ++c) panel[c * mr + r] = row[c];
          }
          for (int64_t n0 = 0; n0 < coutp; n0 += nr)
            tile.tile(cin, panel.data(), mr, wk + n0, coutp, acc.data() + n0, coutp, /*accumulate=*/false);
          for (int64_t r = 0; r < here; ++r) {
            T* dst = out + ok[p0 + r] * cout;
            const T* src = &acc[r * coutp];
            for (int64_t c = 0; c < cout; ++c) dst[c] += src[c];
          }
        }
      }
    }
  });
}

// One pass (min and max together) over a map that is read without pairs_per_offset.
void check_map_rows(const at::Tensor& kmap, int64_t n_rows) {
  if (kmap.numel() == 0) return;
  const auto [lo_t, hi_t] = at::aminmax(kmap);
  const int64_t lo = lo_t.item<int64_t>(), hi = hi_t.item<int64_t>();
  if (lo < -1) bad_map_entry(lo, n_rows);
  if (hi >= n_rows) bad_map_entry(hi, n_rows);
}

at::Tensor sparse_conv_cpu(const at::Tensor& feats, const at::Tensor& weight, const at::Tensor& kmap,
                           const std::optional<at::Tensor>& /*inv_map: only the backward reads it*/) {
  check_sparse_features(feats, weight, /*half_types=*/false);
  check_kernel_map(kmap, weight.size(0), feats);
  TORCH_CHECK(feats.device().is_cpu(), "fastperc: sparse_conv_cpu got a tensor on ", feats.device());
  const at::Tensor f = feats.contiguous(), w = weight.contiguous(), m = kmap.contiguous();
  const int64_t n_out = m.size(1), cout = w.size(2);
  at::Tensor out = at::empty({n_out, cout}, f.options());
  if (n_out == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(f.scalar_type(), "fastperc_sparse_conv_cpu", [&] {
    gather_gemm<scalar_t>(f.const_data_ptr<scalar_t>(), f.size(0), f.size(1), m.const_data_ptr<int32_t>(), w.size(0),
                          n_out, w.const_data_ptr<scalar_t>(), cout, out.data_ptr<scalar_t>());
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> sparse_conv_backward_cpu(const at::Tensor& grad_out, const at::Tensor& feats,
                                                             const at::Tensor& weight, const at::Tensor& kmap,
                                                             const std::optional<at::Tensor>& inv_map) {
  at::Tensor inv = check_sparse_conv_backward(grad_out, feats, weight, kmap, inv_map, /*half_types=*/false);
  check_map_rows(kmap, feats.size(0));
  const at::Tensor g = grad_out.contiguous(), f = feats.contiguous(), w = weight.contiguous(), m = kmap.contiguous();
  const int64_t volume = w.size(0), cin = w.size(1), cout = w.size(2), n_in = f.size(0), n_out = m.size(1);
  if (n_out == 0 || n_in == 0) return {at::zeros_like(f), at::zeros_like(w)};
  // Both are written in full below (gather_gemm clears its output blocks; dW is stored per offset).
  at::Tensor grad_feats = at::empty_like(f), grad_weight = at::empty_like(w);

  // Inverse map: for a fixed offset each input feeds at most one output. Given (cached by the caller
  // with the forward map; its entries are checked (< N_out) by gather_gemm's first pass) or rebuilt here.
  if (!inv.defined()) {
    inv = at::full({volume, n_in}, -1, m.options());
    const int32_t* pm = m.const_data_ptr<int32_t>();
    int32_t* pi = inv.data_ptr<int32_t>();
    for (int64_t k = 0; k < volume; ++k)
      for (int64_t j = 0; j < n_out; ++j)
        if (pm[k * n_out + j] >= 0) pi[k * n_in + pm[k * n_out + j]] = static_cast<int32_t>(j);
  }
  AT_DISPATCH_FLOATING_TYPES(f.scalar_type(), "fastperc_sparse_conv_backward_cpu", [&] {
    using T = scalar_t;
    const at::Tensor wt = w.transpose(1, 2).contiguous();  // (K, cout, cin)
    gather_gemm<T>(g.const_data_ptr<T>(), n_out, cout, inv.const_data_ptr<int32_t>(), volume, n_in,
                   wt.const_data_ptr<T>(), cin, grad_feats.data_ptr<T>());

    // dW[k] (cin x cout) = sum over pairs (i, j) of x[i]^T g[j], in chunks of 256 pairs.
    const GramTile<T> tile = active_gram_tile<T>();
    const int mr = tile.mr, nr = tile.nr;
    const int64_t cinp = round_up(cin, mr), coutp = round_up(cout, nr), chunk = 256;
    const T* px = f.const_data_ptr<T>();
    const T* pg = g.const_data_ptr<T>();
    const int32_t* pm = m.const_data_ptr<int32_t>();
    T* pw = grad_weight.data_ptr<T>();
    at::parallel_for(0, volume, 1, [&](int64_t begin, int64_t end) {
      std::vector<T> a(static_cast<size_t>(chunk * cinp)), b(static_cast<size_t>(chunk * coutp)),
          acc(static_cast<size_t>(cinp * coutp));
      for (int64_t k = begin; k < end; ++k) {
        std::fill(acc.begin(), acc.end(), T(0));
        int64_t filled = 0;
        auto flush = [&] {
          for (int64_t c0 = 0; c0 < cinp; c0 += mr)
            for (int64_t n0 = 0; n0 < coutp; n0 += nr)
              tile.tile(filled, a.data() + c0, cinp, b.data() + n0, coutp, acc.data() + c0 * coutp + n0, coutp, true);
          filled = 0;
        };
        for (int64_t j = 0; j < n_out; ++j) {
          const int64_t i = pm[k * n_out + j];
          if (i < 0) continue;
          std::fill(a.begin() + filled * cinp, a.begin() + (filled + 1) * cinp, T(0));
          std::copy(px + i * cin, px + (i + 1) * cin, a.begin() + filled * cinp);
          std::fill(b.begin() + filled * coutp, b.begin() + (filled + 1) * coutp, T(0));
          std::copy(pg + j * cout, pg + (j + 1) * cout, b.begin() + filled * coutp);
          if (++filled == chunk) flush();
        }
        if (filled > 0) flush();
        for (int64_t c = 0; c < cin; ++c) std::copy(&acc[c * coutp], &acc[c * coutp] + cout, pw + (k * cin + c) * cout);
      }
    });
  });
  return {grad_feats, grad_weight};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastperc, CPU, m) {
  m.impl("sparse_conv", &sparse_conv_cpu);
  m.impl("sparse_conv_backward", &sparse_conv_backward_cpu);
}

}  // namespace cpu
}  // namespace fastperc
