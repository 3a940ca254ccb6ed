// CPU sparse convolution: gather-GEMM, output stationary and deterministic (no atomics).
//
// Forward: gather-GEMM-scatter per kernel offset over that offset's pairs only (no work for missing
// neighbours), through register tiles that read the gathered rows in place (cpu/isa/sparse_tile.h);
// outputs add their terms in offset order. The input gradient is the same computation on the inverted
// map with W[k]^T; the weight gradient dW[k] = sum_j x[map[k, j]]^T g[j] sums fixed blocks of
// outputs separately and adds the blocks in order. Neither depends on the thread count.
#include <ATen/core/Tensor.h>
#include <ATen/ops/aminmax.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <optional>
#include <tuple>
#include <vector>

#include "common/sparse_checks.h"
#include "cpu/cpu_isa.h"
#include "cpu/huge_pages.h"
#include "kernels.h"

namespace fastperc {
namespace cpu {
namespace {

int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

// Starts loading a gathered row into the cache: rows are picked by the map, so the hardware
// prefetcher cannot guess them. gather_gemm issues it about four tiles before the first tile that
// reads the row (kRowsTilesAhead).
template <typename T>
void prefetch_row(const T* row, int64_t n) {
  for (int64_t e = 0; e < n; e += 64 / static_cast<int64_t>(sizeof(T))) __builtin_prefetch(row + e);
}

// Runs worker(take) on each intra-op thread; take() hands out the items 0, 1, ... one at a time (past
// the last: n_items or more). The work of an item follows the density of the scan, which varies along
// it: a fixed split of the items left one thread idle for 6% of a LiDAR forward on 2 threads. What an
// item computes does not depend on the thread that takes it.
template <class Worker>
void parallel_items(int64_t n_items, const Worker& worker) {
  std::atomic<int64_t> next{0};
  at::parallel_for(0, std::min<int64_t>(n_items, at::get_num_threads()), 1,
                   [&](int64_t, int64_t) { worker([&] { return next++; }); });
}

// How far ahead gather_gemm fetches rows, in tiles. At 32 columns the avx2 3 x 4 tile is one tile per
// step of mr rows: fetched two steps (two tiles) ahead, the 5 cm LiDAR C = 32 forward ran 5% slower
// than four tiles ahead; at 64 columns (two tiles a step) one or two steps ahead made no difference.
constexpr int64_t kRowsTilesAhead = 4;

// What gather_gemm checks as it lists a map's pairs, besides their range: the names its range error
// gives, and optionally that the map is the inverse of another.
struct MapChecks {
  const char* map_name = "kernel map";
  const char* rows_name = "feats";
  // (K, n_rows) or null: the map must list the pair (i, j) exactly where inverse_of lists (j, i).
  // Each listed pair is looked up in it (other_lists_pair), so inverse_of lists every pair of the map,
  // and, if pairs_listed is given (K entries), the listed pairs are counted per offset for the caller
  // to compare with inverse_of's own counts: equal counts then make the two maps list the same pairs.
  const int32_t* inverse_of = nullptr;
  int64_t* pairs_listed = nullptr;
  // A pair inverse_of does not list ends the blocks not yet started (out is then partly written):
  // for a guess at the inverse, which the caller replaces when it is wrong.
  bool stop_at_first_mismatch = false;
};

// The order in which gather_gemm reads the map's rows against the weights' offsets. Mirrored: offset k
// reads row K-1-k. The inverse of a submanifold map is the map mirrored: its offsets are symmetric
// (kernel sizes odd, "same" padding), and site i sits at offset d from site j exactly where j sits at
// -d from i.
enum class MapOrder { kAsGiven, kMirrored };

[[noreturn]] void bad_map_entry(const MapChecks& checks, int64_t value, int64_t n_rows) {
  TORCH_CHECK(false, "fastperc: ", checks.map_name, " entries must be -1 or rows of ", checks.rows_name, " (< ", n_rows,
              "), got ", value);
}

// Raises bad_map_entry for the first of the work items' first bad entries (flat map indices, -1 for
// none), if any: gather_gemm and weight_grad record them as they list, and report after their items.
void report_bad_entry(const std::vector<int64_t>& bad, const MapChecks& checks, const int32_t* map, int64_t n_rows) {
  for (const int64_t at : bad)
    if (at >= 0) bad_map_entry(checks, map[at], n_rows);
}

// per_offset[k] = sum over the blocks b of per_item[b * volume + k]: the pairs listed per offset, from
// the counts of the (block, offset) work items, added in block order.
void sum_over_blocks(const std::vector<int64_t>& per_item, int64_t n_blocks, int64_t volume, int64_t* per_offset) {
  for (int64_t k = 0; k < volume; ++k) {
    per_offset[k] = 0;
    for (int64_t b = 0; b < n_blocks; ++b) per_offset[k] += per_item[b * volume + k];
  }
}

[[noreturn]] void not_the_inverse(int64_t k) {
  TORCH_CHECK(false, "fastperc: inv_map is not the inverse of kmap (offset ", k,
              "): pass the inverse of this map (fastperc.sparse.functional.invert_map) or None to rebuild it");
}

// The pairs of each offset of map (K, n): K counts. One sequential pass; the loop vectorizes.
std::vector<int64_t> pairs_per_offset(const int32_t* map, int64_t volume, int64_t n) {
  std::vector<int64_t> pairs(static_cast<size_t>(volume), 0);
  at::parallel_for(0, volume, 1, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      int64_t count = 0;
      for (int64_t j = 0; j < n; ++j) count += map[k * n + j] >= 0;
      pairs[k] = count;
    }
  });
  return pairs;
}

// n rows of `width` values as rows of padded_width (zeros after each row): src itself when the widths
// agree, else a copy in `store`.
template <typename T>
const T* padded_rows(const T* src, int64_t n, int64_t width, int64_t padded_width, std::vector<T>& store) {
  if (width == padded_width) return src;
  store.assign(static_cast<size_t>(n * padded_width), T(0));
  for (int64_t i = 0; i < n; ++i) std::copy(src + i * width, src + (i + 1) * width, &store[i * padded_width]);
  return store.data();
}

// The rows variant that pads the output columns least (the widest among equals).
template <typename T>
typename SparseTile<T>::Rows pick_rows_tile(const SparseTile<T>& tiles, int64_t cout) {
  typename SparseTile<T>::Rows best = tiles.rows[0];
  for (int i = 1; i < tiles.n_rows; ++i)
    if (round_up(cout, tiles.rows[i].nr) < round_up(cout, best.nr)) best = tiles.rows[i];
  return best;
}

// out[j] = sum_k rows[map[k, j]] @ w[k], rows (n_rows, cin), w (K, cin, cout) -> out (n_out, cout).
// Work items are blocks of consecutive output rows (small enough to stay in L2), accumulated in out
// itself, or in a scratch block padded to whole tiles of columns where cout is not. Within a block,
// offset by offset in order, the offset's pairs are listed from the map (SparseTile::list, vector
// code) and multiplied with W[k] mr at a time by the rows tiles, which read the input rows in place
// and add into the output rows. Only existing neighbours cost work, every output row adds its terms
// in offset order whatever the thread count, and sorted sites make the inputs of a block nearly
// contiguous. Map entries are checked as they are listed, before any row is read; the first bad one
// (in block order) is raised after the blocks have run, so out is then never returned. With
// checks.inverse_of, returns the first offset (in block order) with a pair inverse_of does not list,
// -1 if none; the caller decides what that means.
template <typename T>
int64_t gather_gemm(const T* rows, int64_t n_rows, int64_t cin, const int32_t* map, int64_t volume, int64_t n_out,
                    const T* w, int64_t cout, T* out, const MapChecks& checks = {},
                    MapOrder order = MapOrder::kAsGiven) {
  const SparseTile<T> tiles = active_sparse_tile<T>();
  const typename SparseTile<T>::Rows tile = pick_rows_tile(tiles, cout);
  const int mr = tile.mr, nr = tile.nr;
  const int64_t coutp = round_up(cout, nr);
  // Weights padded to whole tiles of columns so every tile reads in bounds.
  std::vector<T> w_store;
  const T* wp = padded_rows(w, volume * cin, cout, coutp, w_store);
  const int64_t block = std::max<int64_t>(mr, int64_t{256} * 1024 / (static_cast<int64_t>(sizeof(T)) * coutp));
  const int64_t n_blocks = (n_out + block - 1) / block;
  // The steps of mr rows that rows are fetched ahead of their tiles (coutp / nr tiles a step).
  const int64_t ahead = std::max<int64_t>(1, (kRowsTilesAhead * nr + coutp - 1) / coutp);
  // Blocks are summed in out itself when its rows are whole tiles, else in a scratch block copied out.
  const bool in_place = coutp == cout;
  std::vector<int64_t> bad(static_cast<size_t>(n_blocks), -1);  // flat index of a block's first bad entry
  // With checks.inverse_of: per block, the first offset with a pair inverse_of does not list (-1 if
  // none), and the pairs listed per (block, offset).
  const bool check_inverse = checks.inverse_of != nullptr;
  std::vector<int64_t> not_inverse(check_inverse ? n_blocks : 0, -1);
  std::vector<int64_t> listed(check_inverse ? n_blocks * volume : 0, 0);
  std::atomic<bool> stop{false};
  parallel_items(n_blocks, [&](const auto& take) {
    // Scratch rows (none when in place), plus one sink row that the padding of a last partial tile
    // writes to.
    const int64_t scratch_rows = in_place ? 0 : block;
    std::vector<T> scratch(static_cast<size_t>((scratch_rows + 1) * coutp));
    T* const sink = scratch.data() + scratch_rows * coutp;
    std::vector<int32_t> found_row(static_cast<size_t>(block + 16)), found_pos(static_cast<size_t>(block + 16));
    std::vector<const T*> a(static_cast<size_t>(block + mr));
    std::vector<T*> c(static_cast<size_t>(block + mr));
    for (int64_t b = take(); b < n_blocks && !stop.load(std::memory_order_relaxed); b = take()) {
      const int64_t jb = b * block, je = std::min(n_out, jb + block);
      T* const acc = in_place ? out + jb * cout : scratch.data();
      std::fill(acc, acc + (je - jb) * coutp, T(0));
      for (int64_t k = 0; k < volume; ++k) {
        const int64_t map_row = order == MapOrder::kMirrored ? volume - 1 - k : k;
        const int64_t np = tiles.list(map + map_row * n_out + jb, je - jb, n_rows, found_row.data(), found_pos.data());
        if (np < 0) {
          bad[b] = map_row * n_out + jb + (-1 - np);
          break;
        }
        if (np == 0) continue;
        for (int64_t q = 0; q < np; ++q) {
          a[q] = rows + int64_t{found_row[q]} * cin;
          c[q] = acc + int64_t{found_pos[q]} * coutp;
        }
        for (int64_t q = 0; q < std::min<int64_t>(np, ahead * mr); ++q) prefetch_row(a[q], cin);
        for (int64_t q = np; q % mr != 0; ++q) {
          a[q] = a[0];
          c[q] = sink;
        }
        const T* wk = wp + k * cin * coutp;
        // The next offset's entries, fetched a few lines per tile while this offset's tiles run: the list
        // pass reads a block's entries as `volume` short runs (8 KiB each at C = 32), too short for the
        // hardware prefetcher, and waited on memory for most of its time without this.
        const bool last_offset = k + 1 == volume;
        const int64_t next_row = order == MapOrder::kMirrored ? map_row - 1 : map_row + 1;
        const int32_t* next_entries = last_offset ? nullptr : map + next_row * n_out + jb;
        const int64_t entry_lines = last_offset ? 0 : (je - jb + 15) / 16;  // 16 entries a cache line
        const int64_t lines_per_tile = (entry_lines * mr + np - 1) / np;
        int64_t fetched = 0;
        for (int64_t p0 = 0; p0 < np; p0 += mr) {
          for (int64_t q = p0 + ahead * mr; q < std::min<int64_t>(np, p0 + (ahead + 1) * mr); ++q)
            prefetch_row(a[q], cin);
          for (int64_t e = 0; e < lines_per_tile && fetched < entry_lines; ++e, ++fetched)
            __builtin_prefetch(next_entries + 16 * fetched);
          if (check_inverse)  // what the check below reads for this tile's pairs
            for (int64_t q = p0; q < std::min<int64_t>(np, p0 + mr); ++q)
              __builtin_prefetch(checks.inverse_of + k * n_rows + found_row[q]);
          for (int64_t n0 = 0; n0 < coutp; n0 += nr) tile.tile(cin, &a[p0], wk + n0, coutp, &c[p0], n0);
        }
        // Each pair against inverse_of, after the tiles, which fetched the entries it reads: read before
        // them, those scattered entries were a wait on memory (about 7% of an input gradient). The tiles
        // read rows the listing checked, whatever this finds, and its error is raised after the blocks.
        if (check_inverse) {
          bool ok = true;
          for (int64_t q = 0; q < np; ++q)
            ok &= other_lists_pair(checks.inverse_of, n_rows, k, found_row[q], jb + found_pos[q]);
          if (!ok && not_inverse[b] < 0) {
            not_inverse[b] = k;
            if (checks.stop_at_first_mismatch) stop = true;
          }
          listed[b * volume + k] = np;
        }
      }
      if (!in_place)
        for (int64_t j = jb; j < je; ++j)
          std::copy(&scratch[(j - jb) * coutp], &scratch[(j - jb) * coutp] + cout, out + j * cout);
    }
  });
  report_bad_entry(bad, checks, map, n_rows);
  if (!check_inverse) return -1;
  if (checks.pairs_listed != nullptr) sum_over_blocks(listed, n_blocks, volume, checks.pairs_listed);
  for (int64_t b = 0; b < n_blocks; ++b)
    if (not_inverse[b] >= 0) return not_inverse[b];
  return -1;
}

// The pairs variant that pads dW (cin x cout) least; among equals, the one that copies the fewest
// rows into padded ones (weight_grad), then the earliest.
template <typename T>
typename SparseTile<T>::Pairs pick_pairs_tile(const SparseTile<T>& tiles, int64_t n_in, int64_t cin, int64_t n_out,
                                              int64_t cout) {
  using Pairs = typename SparseTile<T>::Pairs;
  const auto area = [&](const Pairs& t) { return round_up(cin, t.mr) * round_up(cout, t.nr); };
  const auto copied = [&](const Pairs& t) {
    return (cin % t.mr != 0 ? n_in * round_up(cin, t.mr) : 0) + (cout % t.nr != 0 ? n_out * round_up(cout, t.nr) : 0);
  };
  Pairs best = tiles.pairs[0];
  for (int i = 1; i < tiles.n_pairs; ++i) {
    const Pairs& t = tiles.pairs[i];
    if (area(t) < area(best) || (area(t) == area(best) && copied(t) < copied(best))) best = t;
  }
  return best;
}

// dW[k] (cin x cout) = sum over the pairs (i, j) of offset k of x[i]^T g[j]. Work items are (block of
// outputs, offset), each summing its pairs into its own partial dW through the pair tiles, which read
// x and g rows in place; the partials of an offset are then added in block order. The blocks are
// fixed, so the sums do not depend on the thread count. Items are handed out one at a time, block-major
// (the centre offset of a submanifold map has the most pairs). Map entries are checked as they are
// listed, before any row is read; the first bad one (in item order) is reported after the items have
// run, as gather_gemm does. pairs_listed (K counts) receives the map's pairs per offset.
template <typename T>
void weight_grad(const T* x, int64_t n_in, int64_t cin, const T* g, int64_t cout, const int32_t* map,
                 int64_t volume, int64_t n_out, T* dw, int64_t* pairs_listed) {
  const SparseTile<T> tiles = active_sparse_tile<T>();
  const typename SparseTile<T>::Pairs tile = pick_pairs_tile(tiles, n_in, cin, n_out, cout);
  const int mr = tile.mr, nr = tile.nr;
  const int64_t cinp = round_up(cin, mr), coutp = round_up(cout, nr);
  // The tiles read whole tiles of columns from every row.
  std::vector<T> x_store, g_store;
  const T* xs = padded_rows(x, n_in, cin, cinp, x_store);
  const T* gs = padded_rows(g, n_out, cout, coutp, g_store);
  // Blocks of at least 16384 outputs, fewer where the partials would pass 16 MiB (wide channels).
  const int64_t slab = cinp * coutp, chunk = 256;
  const int64_t max_blocks = std::max<int64_t>(1, (int64_t{16} << 20) / (volume * slab * static_cast<int64_t>(sizeof(T))));
  const int64_t block = std::max<int64_t>(16384, (n_out + max_blocks - 1) / max_blocks);
  const int64_t n_blocks = (n_out + block - 1) / block;
  std::vector<T> partial(static_cast<size_t>(n_blocks * volume * slab), T(0));
  const int64_t passes = (cinp / mr) * (coutp / nr);
  std::vector<int64_t> bad(static_cast<size_t>(n_blocks * volume), -1);  // flat index of an item's first bad entry
  std::vector<int64_t> listed_pairs(static_cast<size_t>(n_blocks * volume), 0);
  parallel_items(n_blocks * volume, [&](const auto& take) {
    // Two buffers of listed pairs: the rows of one are fetched while the other's are multiplied.
    std::array<std::vector<const T*>, 2> a, bg;
    for (int s = 0; s < 2; ++s) {
      a[s].resize(static_cast<size_t>(2 * chunk));
      bg[s].resize(static_cast<size_t>(2 * chunk));
    }
    std::vector<int32_t> found_row(static_cast<size_t>(chunk + 16)), found_pos(static_cast<size_t>(chunk + 16));
    for (int64_t item = take(); item < n_blocks * volume; item = take()) {
      const int64_t b = item / volume, k = item % volume;
      const int64_t jb = b * block, je = std::min(n_out, jb + block);
      const int32_t* mk = map + k * n_out;
      T* acc = &partial[item * slab];
      // Lists pairs into buffer s, a chunk of entries at a time, until at least a chunk of pairs is
      // listed or the block's entries end; returns how many. A bad entry ends the item.
      int64_t j0 = jb;
      auto fill = [&](int s) {
        int64_t np = 0;
        for (; np < chunk && j0 < je; j0 += chunk) {
          const int64_t listed = tiles.list(mk + j0, std::min(chunk, je - j0), n_in, found_row.data(), found_pos.data());
          if (listed < 0) {
            bad[item] = k * n_out + j0 + (-1 - listed);
            j0 = je;
            break;
          }
          listed_pairs[item] += listed;
          for (int64_t q = 0; q < listed; ++q) {
            a[s][np + q] = xs + int64_t{found_row[q]} * cinp;
            bg[s][np + q] = gs + (j0 + found_pos[q]) * coutp;
          }
          np += listed;
        }
        return np;
      };
      // Multiplies buffer s's np pairs and, a few rows before each tile, fetches the rows of the next
      // buffer's next_np pairs: those rows come from memory (a block's rows do not stay in cache from one
      // offset to the next), and without this the first pass over them waited on it.
      auto flush = [&](int s, int64_t np, int next, int64_t next_np) {
        const int64_t per_tile = (next_np + passes - 1) / passes;
        int64_t fetched = 0;
        for (int64_t c0 = 0; c0 < cinp; c0 += mr)
          for (int64_t n0 = 0; n0 < coutp; n0 += nr) {
            for (int64_t e = 0; e < per_tile && fetched < next_np; ++e, ++fetched) {
              prefetch_row(a[next][fetched], cinp);
              prefetch_row(bg[next][fetched], coutp);
            }
            tile.tile(np, a[s].data(), c0, bg[s].data(), n0, acc + c0 * coutp + n0, coutp);
          }
      };
      int cur = 0;
      for (int64_t np = fill(cur); np > 0;) {
        const int64_t next_np = fill(1 - cur);
        flush(cur, np, 1 - cur, next_np);
        cur = 1 - cur;
        np = next_np;
      }
    }
  });
  report_bad_entry(bad, MapChecks{}, map, n_in);
  sum_over_blocks(listed_pairs, n_blocks, volume, pairs_listed);
  at::parallel_for(0, volume, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> sum(static_cast<size_t>(slab));
    for (int64_t k = begin; k < end; ++k) {
      std::copy(&partial[k * slab], &partial[(k + 1) * slab], sum.begin());
      for (int64_t b = 1; b < n_blocks; ++b) {
        const T* part = &partial[(b * volume + k) * slab];
        for (int64_t e = 0; e < slab; ++e) sum[e] += part[e];
      }
      for (int64_t c = 0; c < cin; ++c) std::copy(&sum[c * coutp], &sum[c * coutp] + cout, dw + (k * cin + c) * cout);
    }
  });
}

// The range of kmap's entries, in one pass (min and max together), for the backward's paths where no
// listing reads them before they are used (see sparse_conv_backward_cpu).
void check_map_rows(const at::Tensor& kmap, int64_t n_rows) {
  if (kmap.numel() == 0) return;
  const auto [lo_t, hi_t] = at::aminmax(kmap);
  const int64_t lo = lo_t.item<int64_t>(), hi = hi_t.item<int64_t>();
  TORCH_CHECK(lo >= -1 && hi < n_rows, "fastperc: kernel map entries must be -1 or rows of feats (< ", n_rows,
              "), got ", lo < -1 ? lo : hi);
}

}  // namespace

at::Tensor sparse_conv_cpu(const at::Tensor& feats, const at::Tensor& weight, const at::Tensor& kmap,
                           const std::optional<at::Tensor>& inv_map /* only the backward reads it */) {
  check_sparse_features(feats, weight, /*half_types=*/false);
  check_kernel_map(kmap, weight.size(0), feats);
  if (inv_map.has_value() && inv_map->defined()) check_inverse_map(*inv_map, weight.size(0), feats);
  TORCH_CHECK(feats.device().is_cpu(), "fastperc: sparse_conv_cpu got a tensor on ", feats.device());
  const at::Tensor f = feats.contiguous(), w = weight.contiguous(), m = kmap.contiguous();
  const int64_t n_out = m.size(1), cout = w.size(2);
  at::Tensor out = at::empty({n_out, cout}, f.options());
  if (n_out == 0) return out;
  advise_huge_pages(out);
  AT_DISPATCH_FLOATING_TYPES(f.scalar_type(), "fastperc_sparse_conv_cpu", [&] {
    gather_gemm<scalar_t>(f.const_data_ptr<scalar_t>(), f.size(0), f.size(1), m.const_data_ptr<int32_t>(), w.size(0),
                          n_out, w.const_data_ptr<scalar_t>(), cout, out.data_ptr<scalar_t>());
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> sparse_conv_backward_cpu(const at::Tensor& grad_out, const at::Tensor& feats,
                                                             const at::Tensor& weight, const at::Tensor& kmap,
                                                             const std::optional<at::Tensor>& inv_map,
                                                             std::array<bool, 2> output_mask) {
  at::Tensor inv = check_sparse_conv_backward(grad_out, feats, weight, kmap, inv_map, /*half_types=*/false);
  TORCH_CHECK(feats.device().is_cpu(), "fastperc: sparse_conv_backward_cpu got a tensor on ", feats.device());
  const at::Tensor g = grad_out.contiguous(), f = feats.contiguous(), w = weight.contiguous(), m = kmap.contiguous();
  const int64_t volume = w.size(0), cin = w.size(1), cout = w.size(2), n_in = f.size(0), n_out = m.size(1);
  // Only the gradients output_mask asks for (gather_gemm writes every output row, weight_grad every
  // dW entry).
  const bool want_feats = output_mask[0], want_weight = output_mask[1];
  // kmap's entries are checked by the listings that read them: weight_grad's, and the mirrored guess
  // at the inverse (below). Checked here first instead where no weight gradient is computed, and in
  // build_inverse (they index the inverse). On a layer's backward (both gradients, cached inverse) and
  // on a submanifold map without one, this saves a pass over kmap.
  const bool rebuild_inverse = want_feats && !inv.defined();
  if (!want_weight || n_in == 0 || n_out == 0) check_map_rows(kmap, n_in);
  at::Tensor grad_feats, grad_weight;  // (not structured bindings: the dispatch lambda captures them)
  std::tie(grad_feats, grad_weight) = sparse_backward_outputs(f, w, output_mask, n_out == 0 || n_in == 0);
  if (n_out == 0 || n_in == 0) return {grad_feats, grad_weight};
  if (want_feats) advise_huge_pages(grad_feats);

  // Inverse map: for a fixed offset each input feeds at most one output. Given (cached by the caller
  // with the forward map), or else tried as the map mirrored (MapOrder), then rebuilt here if that is
  // not it. A given one is checked where it is read, by the input gradient's listing: its entries'
  // range, each pair against kmap, and its pairs per offset against kmap's (counted by weight_grad's
  // listing when it runs). That costs the random reads of a separate check no more (they were 7 of
  // the 42 ms of a 5 cm C = 64 input gradient). Without want_feats it is not read, so not checked.
  //
  // The mirrored map needs no counts: if every pair it lists at offset k is kmap's, its pairs of
  // offset k are at most kmap's there, and as its counts are kmap's in reverse order, the totals agree
  // and so does every offset. A submanifold map (the layers' most common one) is its own mirrored
  // inverse: the guess saves building 27 x 4 bytes a site (a quarter of a 5 cm C = 32 backward). Only
  // square maps can be; on another, the guess stops at the first block that finds a pair kmap lacks.
  const bool check_given_inverse = want_feats && inv.defined();
  const bool try_mirrored = rebuild_inverse && n_in == n_out;
  // A map that feeds one input to two outputs at an offset has no inverse: building one would keep one
  // of the two and silently drop the other's gradient. Raised instead, for the first such offset.
  const auto build_inverse = [&] {
    check_map_rows(m, n_in);  // a guess that stopped early did not list every entry
    at::Tensor built = at::empty({volume, n_in}, m.options());
    advise_huge_pages(built);  // written whole by the fill: 27 x 4 bytes a site, fresh memory every call
    built.fill_(-1);
    const int32_t* pm = m.const_data_ptr<int32_t>();
    int32_t* pi = built.data_ptr<int32_t>();
    // Per offset, the first output whose input an earlier output of that offset already took.
    std::vector<int64_t> fed_twice(static_cast<size_t>(volume), -1);
    at::parallel_for(0, volume, 1, [&](int64_t begin, int64_t end) {  // offsets write disjoint rows
      for (int64_t k = begin; k < end; ++k)
        for (int64_t j = 0; j < n_out; ++j) {
          const int64_t i = pm[k * n_out + j];
          if (i < 0) continue;
          if (pi[k * n_in + i] >= 0 && fed_twice[k] < 0) fed_twice[k] = j;
          pi[k * n_in + i] = static_cast<int32_t>(j);
        }
    });
    for (int64_t k = 0; k < volume; ++k)
      TORCH_CHECK(fed_twice[k] < 0, "fastperc: kernel map feeds input row ", pm[k * n_out + fed_twice[k]],
                  " to two outputs at offset ", k, " (the second: ", fed_twice[k],
                  "); a convolution's map lists each input at most once per offset");
    return built;
  };
  AT_DISPATCH_FLOATING_TYPES(f.scalar_type(), "fastperc_sparse_conv_backward_cpu", [&] {
    using T = scalar_t;
    std::vector<int64_t> inverse_pairs(static_cast<size_t>(volume)), map_pairs(static_cast<size_t>(volume));
    if (want_feats) {
      const at::Tensor wt = w.transpose(1, 2).contiguous();  // (K, cout, cin)
      const auto input_grad = [&](const int32_t* map, const MapChecks& checks, MapOrder order) {
        return gather_gemm<T>(g.const_data_ptr<T>(), n_out, cout, map, volume, n_in, wt.const_data_ptr<T>(), cin,
                              grad_feats.data_ptr<T>(), checks, order);
      };
      MapChecks checks{"inv_map", "grad_out", nullptr, nullptr};
      if (check_given_inverse) {
        checks.inverse_of = m.const_data_ptr<int32_t>();
        checks.pairs_listed = inverse_pairs.data();
        const int64_t mismatch = input_grad(inv.const_data_ptr<int32_t>(), checks, MapOrder::kAsGiven);
        if (mismatch >= 0) not_the_inverse(mismatch);
      } else {
        bool done = false;
        if (try_mirrored) {
          MapChecks mirrored{"kernel map", "feats", m.const_data_ptr<int32_t>(), nullptr, true};  // n_out == n_in
          done = input_grad(m.const_data_ptr<int32_t>(), mirrored, MapOrder::kMirrored) < 0;
        }
        if (!done) {
          inv = build_inverse();
          input_grad(inv.const_data_ptr<int32_t>(), checks, MapOrder::kAsGiven);
        }
      }
    }
    if (want_weight)
      weight_grad<T>(f.const_data_ptr<T>(), n_in, cin, g.const_data_ptr<T>(), cout, m.const_data_ptr<int32_t>(), volume,
                     n_out, grad_weight.data_ptr<T>(), map_pairs.data());
    if (check_given_inverse) {
      if (!want_weight) map_pairs = pairs_per_offset(m.const_data_ptr<int32_t>(), volume, n_out);
      for (int64_t k = 0; k < volume; ++k)
        if (map_pairs[k] != inverse_pairs[k]) not_the_inverse(k);
    }
  });
  return {grad_feats, grad_weight};
}

}  // namespace cpu
}  // namespace fastperc
