// CPU kernel maps of sparse convolution.
//
// Stride-1 convolutions (submanifold, and regular ones with stride 1) shift every output key by the
// same amount per offset, so with both site lists sorted by key the map is one merge-join per offset:
// sequential reads instead of a random probe per (site, offset). Outputs not in key order, strided and
// transposed convolutions probe an open-addressing hash table of the input sites instead. Both run
// multi-threaded over output sites. Output sites of regular and transposed convolutions: candidate
// keys, sorted and made unique.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "common/sparse_checks.h"
#include "kernels.h"

namespace fastperc {
namespace cpu {
namespace {

// Linear-probing table from site key to row. Keys are >= 0, so -1 marks an empty slot.
class SiteTable {
 public:
  explicit SiteTable(const at::Tensor& coords) {
    const int64_t n = coords.size(0);
    int64_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    mask_ = cap - 1;
    keys_.assign(cap, -1);
    rows_.assign(cap, -1);
    const auto c = coords.accessor<int32_t, 2>();
    for (int64_t i = 0; i < n; ++i) {
      check_site_in_key_space(c[i].data(), i);
      const int64_t key = sparse_key(c[i][0], c[i][1], c[i][2], c[i][3]);
      int64_t slot = sparse_slot(key, mask_);
      while (keys_[slot] != -1 && keys_[slot] != key) slot = (slot + 1) & mask_;
      TORCH_CHECK(keys_[slot] != key, "fastperc: duplicate site (", c[i][0], ", ", c[i][1], ", ", c[i][2], ", ",
                  c[i][3], ") at rows ", rows_[slot], " and ", i, "; merge duplicates first (fastperc.sparse.voxelize)");
      keys_[slot] = key;
      rows_[slot] = i;
    }
  }

  int64_t find(int64_t key) const {
    int64_t slot = sparse_slot(key, mask_);
    while (keys_[slot] != -1) {
      if (keys_[slot] == key) return rows_[slot];
      slot = (slot + 1) & mask_;
    }
    return -1;
  }

 private:
  int64_t mask_;
  std::vector<int64_t> keys_, rows_;
};

std::vector<int64_t> site_keys(const at::Tensor& coords) {
  const auto c = coords.accessor<int32_t, 2>();
  std::vector<int64_t> keys(static_cast<size_t>(coords.size(0)));
  for (int64_t i = 0; i < coords.size(0); ++i) {
    check_site_in_key_space(c[i].data(), i);
    keys[i] = sparse_key(c[i][0], c[i][1], c[i][2], c[i][3]);
  }
  return keys;
}

// Map of a stride-1 convolution by merge-joins; out_keys must be sorted.
void merge_join_map(const at::Tensor& in_c, const std::vector<int64_t>& out_keys, const at::Tensor& out_c,
                    const std::vector<int64_t>& ks, const std::vector<int64_t>& pd, const std::vector<int64_t>& dl,
                    int32_t* m) {
  // A submanifold map reads its own sites: their keys are the output keys already computed.
  const std::vector<int64_t> in_keys = in_c.is_same(out_c) ? out_keys : site_keys(in_c);
  std::vector<int64_t> order(in_keys.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(i);
  if (!std::is_sorted(in_keys.begin(), in_keys.end()))
    std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return in_keys[a] < in_keys[b]; });
  std::vector<int64_t> sorted(in_keys.size());
  for (size_t i = 0; i < order.size(); ++i) sorted[i] = in_keys[order[i]];
  for (size_t i = 1; i < sorted.size(); ++i)
    TORCH_CHECK(sorted[i] != sorted[i - 1], "fastperc: duplicate site at rows ", order[i - 1], " and ", order[i],
                "; merge duplicates first (fastperc.sparse.voxelize)");
  const int64_t n_out = static_cast<int64_t>(out_keys.size()), n_in = static_cast<int64_t>(sorted.size());
  const auto o = out_c.accessor<int32_t, 2>();
  // One merge per (kx, ky): the targets of the kz offsets of one output are increasing keys (z - pz,
  // z - pz + dz, ...), so after the first is found the others are a few steps further. The pointer
  // of the first target only moves forward over the block, as the output keys are sorted.
  at::parallel_for(0, n_out, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t kx = 0; kx < ks[0]; ++kx)
      for (int64_t ky = 0; ky < ks[1]; ++ky) {
        const int64_t dx = kx * dl[0] - pd[0], dy = ky * dl[1] - pd[1], dz0 = -pd[2];
        const int64_t delta0 = (dx << 32) + (dy << 16) + dz0;
        int32_t* rows = m + (kx * ks[1] + ky) * ks[2] * n_out;  // offsets k = (kx Ky + ky) Kz + kz
        int64_t p = std::lower_bound(sorted.begin(), sorted.end(), out_keys[begin] + delta0) - sorted.begin();
        for (int64_t j = begin; j < end; ++j) {
          const int64_t x = o[j][1] + dx, y = o[j][2] + dy, z0 = o[j][3] + dz0;
          if (x < 0 || y < 0 || x >= kSparseKeyLimit || y >= kSparseKeyLimit) {
            for (int64_t kz = 0; kz < ks[2]; ++kz) rows[kz * n_out + j] = -1;
            continue;
          }
          // The first target may have z < 0 (then it is no site, and its key borrows from y): start
          // the pointer at the first z >= 0 target instead.
          const int64_t first_kz = z0 >= 0 ? 0 : (-z0 + dl[2] - 1) / dl[2];
          const int64_t base = out_keys[j] + delta0;
          if (first_kz == 0)
            while (p < n_in && sorted[p] < base) ++p;
          int64_t q = p;
          for (int64_t kz = 0; kz < ks[2]; ++kz) {
            const int64_t z = z0 + kz * dl[2];
            int64_t found = -1;
            if (z >= 0 && z < kSparseKeyLimit) {
              const int64_t target = base + kz * dl[2];
              if (kz == first_kz && first_kz > 0)  // no monotone pointer for this start: search
                q = std::lower_bound(sorted.begin(), sorted.end(), target) - sorted.begin();
              while (q < n_in && sorted[q] < target) ++q;
              if (q < n_in && sorted[q] == target) found = order[q];
            }
            rows[kz * n_out + j] = static_cast<int32_t>(found);
          }
        }
      }
  });
}

}  // namespace

at::Tensor sparse_kernel_map_cpu(const at::Tensor& in_coords, const at::Tensor& out_coords, at::IntArrayRef kernel_size,
                                 at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                                 bool transposed) {
  check_sparse_coords(in_coords, "in_coords");
  check_sparse_coords(out_coords, "out_coords");
  const SparseConvGeometry geo = check_conv_geometry(kernel_size, stride, padding, dilation);
  const auto &ks = geo.ks, &st = geo.st, &pd = geo.pd, &dl = geo.dl;
  TORCH_CHECK(in_coords.device().is_cpu() && out_coords.device().is_cpu(), "fastperc: sparse_kernel_map_cpu got a non-CPU tensor");
  const int64_t volume = geo.volume, n_out = out_coords.size(0);
  check_map_size(volume, n_out, "the kernel map (K x N_out)");  // before any copy of the inputs
  const at::Tensor in_c = in_coords.contiguous(), out_c = out_coords.contiguous();
  at::Tensor kmap = at::empty({volume, n_out}, in_c.options().dtype(at::kInt));
  int32_t* m = kmap.data_ptr<int32_t>();
  const std::vector<int64_t> out_keys = site_keys(out_c);
  const bool unit_stride = st[0] == 1 && st[1] == 1 && st[2] == 1;
  if (n_out > 0 && unit_stride && std::is_sorted(out_keys.begin(), out_keys.end())) {
    if (!transposed) {
      merge_join_map(in_c, out_keys, out_c, ks, pd, dl, m);
      return kmap;
    }
    // Transposed, stride 1: o = i - p + k d <=> i = o + p - k d, i.e. offset K - 1 - k of a direct
    // convolution with padding (K - 1) d - p.
    std::vector<int64_t> mirrored_pad(3);
    for (int a = 0; a < 3; ++a) mirrored_pad[a] = dl[a] * (ks[a] - 1) - pd[a];
    merge_join_map(in_c, out_keys, out_c, ks, mirrored_pad, dl, m);
    return kmap.flip({0}).contiguous();
  }
  const SiteTable table(in_c);
  const int32_t* o = out_c.const_data_ptr<int32_t>();
  const auto find = [&](int64_t key) { return table.find(key); };
  at::parallel_for(0, n_out, 256, [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j)
      for (int64_t k = 0; k < volume; ++k)
        m[k * n_out + j] = static_cast<int32_t>(
            map_entry(o[4 * j], o + 4 * j + 1, k, ks.data(), st.data(), pd.data(), dl.data(), transposed, find));
  });
  return kmap;
}

at::Tensor sparse_out_coords_cpu(const at::Tensor& in_coords, at::IntArrayRef kernel_size, at::IntArrayRef stride,
                                 at::IntArrayRef padding, at::IntArrayRef dilation, at::IntArrayRef spatial_shape,
                                 bool transposed) {
  check_sparse_coords(in_coords, "in_coords");
  const SparseConvGeometry geo = check_conv_geometry(kernel_size, stride, padding, dilation);
  const auto &ks = geo.ks, &st = geo.st, &pd = geo.pd, &dl = geo.dl;
  const auto shape = check_triple(spatial_shape, "spatial_shape", 1);
  const std::vector<int64_t> out_shape = check_output_grid(geo, shape, transposed);
  const at::Tensor c = in_coords.contiguous();
  const auto a = c.accessor<int32_t, 2>();
  std::vector<int64_t> keys;
  keys.reserve(static_cast<size_t>(c.size(0)) * 4);
  std::vector<int64_t> reach[3];  // per axis: the output coordinates the site reaches through some tap
  for (int64_t i = 0; i < c.size(0); ++i) {
    for (int d = 1; d < 4; ++d)
      TORCH_CHECK(a[i][d] >= 0 && a[i][d] < shape[d - 1], "fastperc: site ", i, " lies outside spatial_shape ", shape);
    TORCH_CHECK(a[i][0] >= 0 && a[i][0] < kSparseBatchLimit, "fastperc: batch index ", a[i][0], " of site ", i,
                " outside [0, ", kSparseBatchLimit - 1, "]");
    // Every output the site reaches through some offset: the product of the axes' reaches. Listing
    // each axis first costs Kx + Ky + Kz per site, not Kx * Ky * Kz (2^48 with 65536-wide kernels).
    for (int d = 0; d < 3; ++d) {
      reach[d].clear();
      for (int64_t k = 0; k < ks[d]; ++k) {
        int64_t o = 0;
        if (target_of(a[i][d + 1], k, st[d], pd[d], dl[d], transposed, o) && o >= 0 && o < out_shape[d])
          reach[d].push_back(o);
      }
    }
    // At most 65536 per axis (check_conv_geometry), so the product fits int64.
    const int64_t reached = int64_t(reach[0].size()) * int64_t(reach[1].size()) * int64_t(reach[2].size());
    TORCH_CHECK(reached <= kSparseMaxSites, "fastperc: site ", i, " reaches ", reached, " output sites; at most ",
                kSparseMaxSites, " fit the int32 kernel maps");
    for (int64_t ox : reach[0])
      for (int64_t oy : reach[1])
        for (int64_t oz : reach[2]) keys.push_back(sparse_key(a[i][0], ox, oy, oz));
  }
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  TORCH_CHECK(static_cast<int64_t>(keys.size()) <= kSparseMaxSites, "fastperc: the convolution has ", keys.size(),
              " output sites; at most ", kSparseMaxSites, " fit the int32 kernel maps");
  at::Tensor out = at::empty({static_cast<int64_t>(keys.size()), 4}, c.options());
  int32_t* po = out.data_ptr<int32_t>();
  for (size_t j = 0; j < keys.size(); ++j) {
    for (int d = 0; d < 4; ++d) po[4 * j + d] = sparse_key_part(keys[j], d);
  }
  return out;
}

}  // namespace cpu
}  // namespace fastperc
