// CPU Gram kernel: upper triangle only, packed panels, ISA-specific register tiles, multi-threaded.
//
// The columns (N) are cut into slabs whose size depends on the shape alone; each (batch, slab, group
// of tile rows) is one work item writing its own rows of that slab's partial Gram. The partials are
// then added in slab order while mirroring into the full (B, C, C) result. Because neither the slabs
// nor the per-element order of additions depend on the thread count, 1 and 2 threads give bit-equal
// results; row groups (which do depend on it) only decide who computes which tiles.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "common/checks.h"
#include "common/gram_math.h"
#include "cpu/cpu_isa.h"
#include "kernels.h"

namespace fastperc {
namespace cpu {
namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Depth of one packed step: a panel (nr x kc) fills `kib` KiB (16 by default, half of L1) and stays
// there while it is multiplied with the tile rows above it, which stream from L2.
int64_t panel_depth(int nr, size_t elem, int kib) {
  const int64_t kc = (int64_t{kib} * 1024 / (nr * static_cast<int64_t>(elem))) / 8 * 8;
  return std::max<int64_t>(kc, 16);
}

// Columns per slab: about 8192 (enough work per item, few partials), in slabs of equal size (a
// multiple of kc), fewer and larger until the partials fit 256 MiB. Equal slabs keep the work items
// even: 8192 rounded down to whole packed steps once cut 16384 columns into 8064 + 8064 + 256 with
// avx2's kc = 168, and one thread got three times the other's work (the Gram forward at C = 128 ran
// at half the avx512 path's speed on a Zen 4, where both have the same FMA throughput).
int64_t slab_columns(int64_t B, int64_t N, int64_t rows, int64_t ld, int64_t kc, size_t elem) {
  const int64_t budget = int64_t{256} << 20;
  int64_t slabs = std::max<int64_t>(1, ceil_div(N, 8192));
  while (slabs > 1 && B * slabs * rows * ld * static_cast<int64_t>(elem) > budget) slabs = ceil_div(slabs, 2);
  return ceil_div(ceil_div(N, slabs), kc) * kc;
}

// Packs rows [first_row, first_row + panels * width) of x, columns [k0, k0 + depth), into k-major
// panels as acc_t: dst[(p * depth + k) * width + r] = x[first_row + p * width + r, k0 + k], zero past
// channel C. Contiguous float rows go through the ISA's 8 x 8 transposes.
template <typename scalar_t, typename acc_t>
void pack_panels(const GramTile<acc_t>& isa, const scalar_t* x, int64_t sc, int64_t sn, int64_t C,
                 int64_t first_row, int64_t panels, int width, int64_t k0, int64_t depth, acc_t* dst) {
  for (int64_t p = 0; p < panels; ++p) {
    acc_t* panel = dst + p * depth * width;
    int r = 0;
    if constexpr (std::is_same_v<scalar_t, acc_t>) {
      if (isa.pack8 != nullptr && sn == 1) {
        for (; r + 8 <= width && first_row + p * width + r + 8 <= C; r += 8)
          isa.pack8(x + (first_row + p * width + r) * sc + k0, sc, depth, panel + r, width);
      }
    }
    for (; r < width; ++r) {
      const int64_t row = first_row + p * width + r;
      if (row >= C) {
        for (int64_t k = 0; k < depth; ++k) panel[k * width + r] = acc_t(0);
        continue;
      }
      const scalar_t* src = x + row * sc + k0 * sn;
      for (int64_t k = 0; k < depth; ++k) panel[k * width + r] = static_cast<acc_t>(src[k * sn]);
    }
  }
}

// Splits tile rows [0, row_tiles) into `groups` ranges of about equal upper-triangle work.
std::vector<int64_t> balanced_row_groups(int64_t row_tiles, int64_t groups, int mr, int nr, int64_t col_tiles) {
  auto work = [&](int64_t ti) { return col_tiles - (ti * mr) / nr; };
  int64_t total = 0;
  for (int64_t ti = 0; ti < row_tiles; ++ti) total += work(ti);
  std::vector<int64_t> bounds{0};
  int64_t done = 0;
  for (int64_t ti = 0; ti < row_tiles; ++ti) {
    done += work(ti);
    if (static_cast<int64_t>(bounds.size()) < groups && done * groups >= total * static_cast<int64_t>(bounds.size()))
      bounds.push_back(ti + 1);
  }
  while (static_cast<int64_t>(bounds.size()) <= groups) bounds.push_back(row_tiles);
  bounds.back() = row_tiles;
  return bounds;
}

// bfloat16 rows packed as pairs of consecutive columns, one uint32 each (the low half holds the even
// column), for the AVX512-BF16 tiles: dst[(p * pairs + q) * width + r] = x[row, k0 + 2q .. k0 + 2q + 1].
void pack_bf16_pairs(const c10::BFloat16* x, int64_t sc, int64_t C, int64_t first_row, int64_t panels, int width,
                     int64_t k0, int64_t k_len, uint32_t* dst) {
  const int64_t pairs = (k_len + 1) / 2;
  for (int64_t p = 0; p < panels; ++p) {
    uint32_t* panel = dst + p * pairs * width;
    for (int r = 0; r < width; ++r) {
      const int64_t row = first_row + p * width + r;
      if (row >= C) {
        for (int64_t q = 0; q < pairs; ++q) panel[q * width + r] = 0;
        continue;
      }
      const c10::BFloat16* src = x + row * sc + k0;
      for (int64_t q = 0; q < k_len / 2; ++q)
        panel[q * width + r] = uint32_t(src[2 * q].x) | (uint32_t(src[2 * q + 1].x) << 16);
      if (k_len % 2) panel[(pairs - 1) * width + r] = uint32_t(src[k_len - 1].x);
    }
  }
}

// One register-tile kernel and how to pack for it: `step` columns of x per packed element, `a_lanes`
// copies of each value the tile broadcasts (GramTile::a_lanes).
template <typename packed_t, typename acc_t>
struct GramPlan {
  int mr, nr, step, panel_kib;
  void (*tile)(int64_t depth, const packed_t* a, int64_t lda, const packed_t* b, int64_t ldb, acc_t* c, int64_t ldc,
               bool accumulate);
  int a_lanes = 1;
};

// The mr rows of one tile row from first_row on, read from the packed panels (k-major, nr wide, the
// first holding row first_panel * nr), each value stored LANES times: dst[(k * mr + r) * LANES + l].
// Rows past the panels (a last tile row past C where mr does not divide nr) are zero. Written in order,
// LANES copies a store (movss, shufps, movups). A scalar store per copy cost 1.4 ms of the 8.7 ms
// generic forward at C = 64, N = 65536, one thread (timed with the tile calls skipped; Zen 5).
template <int LANES, typename T>
void pack_broadcast_rows(const T* panels, int64_t first_panel, int64_t panel_count, int nr, int64_t depth,
                         int64_t first_row, int mr, T* dst) {
  constexpr int kMaxRows = 16;
  TORCH_INTERNAL_ASSERT(mr <= kMaxRows);
  const T zero[1] = {T(0)};
  const T* src[kMaxRows];
  int64_t step[kMaxRows];
  for (int r = 0; r < mr; ++r) {
    const int64_t row = first_row + r, panel = row / nr - first_panel;
    src[r] = panel < panel_count ? panels + panel * depth * nr + row % nr : zero;
    step[r] = panel < panel_count ? nr : 0;
  }
  for (int64_t k = 0; k < depth; ++k, dst += mr * LANES)
    for (int r = 0; r < mr; ++r) {
      const T v = src[r][k * step[r]];
      for (int l = 0; l < LANES; ++l) dst[r * LANES + l] = v;
    }
}

template <typename scalar_t, typename acc_t, typename packed_t, typename Pack>
void gram_cpu_typed(const at::Tensor& x, acc_t scale, at::Tensor& out, const GramPlan<packed_t, acc_t>& plan,
                    Pack&& pack_panels_of) {
  const int mr = plan.mr, nr = plan.nr, step = plan.step, lanes = plan.a_lanes;
  // With one lane, tile rows are read from the same packed panels as tile columns: mr divides nr.
  // With more, they are packed apart (pack_broadcast_rows).
  TORCH_INTERNAL_ASSERT(lanes == 1 ? nr % mr == 0 : lanes == 2 || lanes == 4, "fastperc: Gram tile ", mr, " x ", nr,
                        " with ", lanes, " lanes: one lane needs mr to divide nr; more, 2 or 4");
  const int64_t B = x.size(0), C = x.size(1), N = x.size(2);
  const int64_t sb = x.stride(0);
  const int64_t row_tiles = ceil_div(C, mr), col_tiles = ceil_div(C, nr);
  const int64_t ld = col_tiles * nr;
  const int64_t rows = std::max(ld, row_tiles * mr);  // a partial's rows: the last tile row may pass ld
  const int64_t kc = panel_depth(nr, sizeof(packed_t), plan.panel_kib);  // packed elements per step
  const int64_t slab = slab_columns(B, N, rows, ld, kc * step, sizeof(acc_t));
  const int64_t slabs = ceil_div(N, slab);

  at::Tensor partial = at::zeros({B, slabs, rows, ld}, out.options());
  acc_t* partial_data = partial.data_ptr<acc_t>();
  const scalar_t* x_data = x.const_data_ptr<scalar_t>();

  const int64_t groups = std::clamp<int64_t>(ceil_div(2 * at::get_num_threads(), B * slabs), 1, row_tiles);
  const std::vector<int64_t> bounds = balanced_row_groups(row_tiles, groups, mr, nr, col_tiles);

  at::parallel_for(0, B * slabs * groups, 1, [&](int64_t begin, int64_t end) {
    std::vector<packed_t> pack, rows_pack;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t g = item % groups, s = (item / groups) % slabs, b = item / (groups * slabs);
      const int64_t ti0 = bounds[g], ti1 = bounds[g + 1];
      if (ti0 == ti1) continue;
      const int64_t p0 = (ti0 * mr) / nr;  // first panel: holds the group's first row
      pack.resize((col_tiles - p0) * kc * nr);
      if (lanes > 1) rows_pack.resize(mr * kc * lanes);
      acc_t* part = partial_data + (b * slabs + s) * rows * ld;
      const scalar_t* xb = x_data + b * sb;
      const int64_t k_end = std::min(N, (s + 1) * slab);
      for (int64_t k0 = s * slab; k0 < k_end; k0 += kc * step) {
        const int64_t k_len = std::min(kc * step, k_end - k0), depth = ceil_div(k_len, step);
        pack_panels_of(xb, p0 * nr, col_tiles - p0, nr, k0, k_len, pack.data());
        if (lanes > 1) {
          // One tile row at a time: its pre-broadcast copy (mr * depth * lanes values) stays in L1
          // while the panels right of the diagonal stream past it. Packed for the whole group at once,
          // the copies of 256 rows took 2 MiB, past L2, and 8 x 256 x 4096 ran 1.3x slower per image.
          for (int64_t ti = ti0; ti < ti1; ++ti) {
            const int64_t row = ti * mr;
            if (lanes == 4)
              pack_broadcast_rows<4>(pack.data(), p0, col_tiles - p0, nr, depth, row, mr, rows_pack.data());
            else
              pack_broadcast_rows<2>(pack.data(), p0, col_tiles - p0, nr, depth, row, mr, rows_pack.data());
            for (int64_t tj = row / nr; tj < col_tiles; ++tj)
              plan.tile(depth, rows_pack.data(), mr, pack.data() + (tj - p0) * depth * nr, nr,
                        part + row * ld + tj * nr, ld, /*accumulate=*/true);
          }
          continue;
        }
        for (int64_t tj = p0; tj < col_tiles; ++tj) {
          const packed_t* b_panel = pack.data() + (tj - p0) * depth * nr;
          for (int64_t ti = ti0; ti < ti1 && ti * mr <= tj * nr + nr - 1; ++ti) {
            const int64_t row = ti * mr;
            const packed_t* a = pack.data() + (row / nr - p0) * depth * nr + row % nr;
            plan.tile(depth, a, nr, b_panel, nr, part + row * ld + tj * nr, ld, /*accumulate=*/true);
          }
        }
      }
    }
  });

  acc_t* out_data = out.data_ptr<acc_t>();
  at::parallel_for(0, B * C, 16, [&](int64_t begin, int64_t end) {
    for (int64_t bi = begin; bi < end; ++bi) {
      const int64_t b = bi / C, i = bi % C;
      const acc_t* part = partial_data + b * slabs * rows * ld;
      acc_t* row = out_data + bi * C;
      for (int64_t j = 0; j < C; ++j) row[j] = gram_reduce_element<acc_t>(part, slabs, rows * ld, ld, i, j, scale);
    }
  });
}

}  // namespace

at::Tensor gram_cpu(const at::Tensor& x, double scale) {
  check_features(x, "x");
  check_finite_scale(scale, "scale");
  TORCH_CHECK(x.device().is_cpu(), "fastperc: gram_cpu got a tensor on ", x.device());
  at::Tensor out = at::empty({x.size(0), x.size(1), x.size(1)}, x.options().dtype(accumulate_type(x.scalar_type())));
  const int64_t sc = x.stride(1), sn = x.stride(2), C = x.size(1);
#if defined(FASTPERC_X86)
  if (x.scalar_type() == at::kBFloat16 && sn == 1 && bf16_dot_supported()) {
    // bf16 products are exact in float32: pairs of them summed by vdpbf16ps, float32 accumulation.
    const GramTileBf16 t = gram_tile_bf16_avx512();
    const GramPlan<uint32_t, float> plan{t.mr, t.nr, 2, 16, t.tile};
    gram_cpu_typed<c10::BFloat16, float, uint32_t>(
        x, static_cast<float>(scale), out, plan,
        [&](const c10::BFloat16* xb, int64_t first_row, int64_t panels, int width, int64_t k0, int64_t k_len,
            uint32_t* dst) { pack_bf16_pairs(xb, sc, C, first_row, panels, width, k0, k_len, dst); });
    return out;
  }
#endif
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "fastperc_gram_cpu", [&] {
    using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    const GramTile<acc_t> tile = active_gram_tile<acc_t>();
    // Pre-broadcast tile rows (a_lanes > 1) take 8 KiB panels: a tile row's copy (generic float: 6 rows
    // x 256 deep x 16 bytes) and the panel it meets share L1. 16 KiB ran C = 64 1.25x slower (Zen 5).
    const GramPlan<acc_t, acc_t> plan =
        tile.triangle_tile != nullptr && (tile.triangle_max_c == 0 || C <= tile.triangle_max_c)
            ? GramPlan<acc_t, acc_t>{tile.triangle_mr, tile.triangle_nr, 1, tile.triangle_panel_kib, tile.triangle_tile}
            : GramPlan<acc_t, acc_t>{tile.mr, tile.nr, 1, tile.a_lanes > 1 ? 8 : 16, tile.tile, tile.a_lanes};
    gram_cpu_typed<scalar_t, acc_t, acc_t>(
        x, static_cast<acc_t>(scale), out, plan,
        [&](const scalar_t* xb, int64_t first_row, int64_t panels, int width, int64_t k0, int64_t k_len, acc_t* dst) {
          pack_panels(tile, xb, sc, sn, C, first_row, panels, width, k0, k_len, dst);
        });
  });
  return out;
}

}  // namespace cpu
}  // namespace fastperc
