#pragma once
// Kernels and drivers of the CUDA kernel maps (sparse_map_kernel.cu). The drivers take the launcher
// (cuda/launch.cuh), so the tests also run them under the CPU emulator (tests/cuda_emu).
//
// The table is open addressing with linear probing over a power-of-two number of slots (>= 2N), keys
// claimed with atomicCAS; the per-site math (key packing, hashing, which input an output reads) is
// common/sparse_math.h, the same helpers the CPU kernels run. Input errors (sites outside the key
// space, duplicates) are flagged by the kernels that see them and raised, with the first bad row,
// before any map is written.
#include <ATen/core/Tensor.h>
#include <ATen/ops/all.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/eq.h>
#include <ATen/ops/full.h>
#include <ATen/ops/nonzero.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/unique_consecutive.h>

#include <cstdint>
#include <limits>
#include <vector>

#include "common/sparse_checks.h"
#include "cuda/launch.cuh"

namespace fastperc {
namespace cuda {
namespace sparse_map {

using ull = unsigned long long;
constexpr ull kNoRow = std::numeric_limits<ull>::max();
constexpr int64_t kEmptySlot = -1;  // keys are >= 0 (common/sparse_math.h)

// Which first-bad-row flag a kernel sets, in the error buffer of kErrorSlots entries.
enum ErrorSlot { kInputOutsideKeySpace = 0, kDuplicateInput, kOutputOutsideKeySpace, kOutsideGrid, kErrorSlots };

struct Triple {
  int64_t v[3];
};

inline Triple triple_of(const std::vector<int64_t>& t) { return {{t[0], t[1], t[2]}}; }

static __device__ void flag_row(ull* errors, int slot, int64_t row) { atomicMin(errors + slot, static_cast<ull>(row)); }

static __device__ int64_t find_row(const int64_t* __restrict__ keys, const int64_t* __restrict__ rows, int64_t mask,
                                   int64_t key) {
  int64_t slot = sparse_slot(key, mask);
  while (true) {
    const int64_t k = keys[slot];
    if (k == key) return rows[slot];
    if (k == kEmptySlot) return -1;
    slot = (slot + 1) & mask;
  }
}

// Inserts every input site; flags sites outside the key space, and duplicates (the copy that loses
// the insertion race, so the error message looks the rows up again).
static __global__ void insert_sites(const int32_t* __restrict__ c, int64_t n, int64_t mask, int64_t* __restrict__ keys,
                                    int64_t* __restrict__ rows, ull* __restrict__ errors) {
  FASTPERC_GRID_LOOP(i, n) {
    const int32_t* s = c + 4 * i;
    if (!site_in_key_space(s[0], s[1], s[2], s[3])) {
      flag_row(errors, kInputOutsideKeySpace, i);
      continue;
    }
    const int64_t key = sparse_key(s[0], s[1], s[2], s[3]);
    int64_t slot = sparse_slot(key, mask);
    while (true) {
      const ull prev = atomicCAS(reinterpret_cast<ull*>(keys + slot), static_cast<ull>(kEmptySlot), static_cast<ull>(key));
      if (prev == static_cast<ull>(kEmptySlot)) {
        rows[slot] = i;
        break;
      }
      if (prev == static_cast<ull>(key)) {
        flag_row(errors, kDuplicateInput, i);
        break;
      }
      slot = (slot + 1) & mask;
    }
  }
}

static __global__ void check_sites(const int32_t* __restrict__ c, int64_t n, ull* __restrict__ errors) {
  FASTPERC_GRID_LOOP(i, n) {
    const int32_t* s = c + 4 * i;
    if (!site_in_key_space(s[0], s[1], s[2], s[3])) flag_row(errors, kOutputOutsideKeySpace, i);
  }
}

// map[k, j] for every (offset k, output j); consecutive threads take consecutive j, so the writes of a
// warp are contiguous.
static __global__ void probe_map(const int32_t* __restrict__ out_c, int64_t n_out, int64_t volume, Triple ks, Triple st,
                                 Triple pd, Triple dl, bool transposed, const int64_t* __restrict__ keys,
                                 const int64_t* __restrict__ rows, int64_t mask, int32_t* __restrict__ map) {
  const auto find = [&](int64_t key) { return find_row(keys, rows, mask, key); };
  FASTPERC_GRID_LOOP(idx, n_out * volume) {
    const int64_t k = idx / n_out, j = idx - k * n_out;
    const int32_t* o = out_c + 4 * j;
    map[idx] = static_cast<int32_t>(map_entry(o[0], o + 1, k, ks.v, st.v, pd.v, dl.v, transposed, find));
  }
}

// Site `row` of coords, copied to the host for an error message.
inline std::vector<int32_t> host_site(const at::Tensor& coords, ull row) {
  const at::Tensor s = coords[static_cast<int64_t>(row)].cpu();
  const int32_t* p = s.const_data_ptr<int32_t>();
  return {p[0], p[1], p[2], p[3]};
}

// Raises the first flagged error (one device-to-host copy for all of them).
inline void raise_flagged(const at::Tensor& errors, const at::Tensor& in_c, const at::Tensor& out_c,
                          const std::vector<int64_t>& shape) {
  const at::Tensor host = errors.cpu();
  const ull* e = reinterpret_cast<const ull*>(host.const_data_ptr<int64_t>());
  if (e[kInputOutsideKeySpace] != kNoRow)
    check_site_in_key_space(host_site(in_c, e[kInputOutsideKeySpace]).data(), static_cast<int64_t>(e[kInputOutsideKeySpace]));
  if (e[kOutputOutsideKeySpace] != kNoRow)
    check_site_in_key_space(host_site(out_c, e[kOutputOutsideKeySpace]).data(),
                            static_cast<int64_t>(e[kOutputOutsideKeySpace]));
  if (e[kDuplicateInput] != kNoRow) {
    // Which copy lost the insertion race varies from run to run: name the first two rows holding the
    // site instead, found on the host (this is the error path).
    const at::Tensor site = in_c[static_cast<int64_t>(e[kDuplicateInput])];
    const at::Tensor rows = at::nonzero(at::eq(in_c, site.unsqueeze(0)).all(1)).cpu();
    const std::vector<int32_t> s = host_site(in_c, e[kDuplicateInput]);
    TORCH_CHECK(false, "fastperc: duplicate site (", s[0], ", ", s[1], ", ", s[2], ", ", s[3], ") at rows ",
                rows[0].item<int64_t>(), " and ", rows[1].item<int64_t>(),
                "; merge duplicates first (fastperc.sparse.voxelize)");
  }
  if (e[kOutsideGrid] != kNoRow) {
    const std::vector<int32_t> s = host_site(in_c, e[kOutsideGrid]);
    TORCH_CHECK(false, "fastperc: site ", static_cast<int64_t>(e[kOutsideGrid]), " (", s[0], ", ", s[1], ", ", s[2],
                ", ", s[3], ") lies outside spatial_shape ", at::IntArrayRef(shape), " or its batch index outside [0, ",
                kSparseBatchLimit - 1, "]");
  }
}

inline at::Tensor new_errors(const at::Tensor& like) {
  return at::full({kErrorSlots}, static_cast<int64_t>(kNoRow), like.options().dtype(at::kLong));
}

inline ull* error_ptr(at::Tensor& errors) { return reinterpret_cast<ull*>(errors.data_ptr<int64_t>()); }

// The key of every output site each input reaches through each offset, or -1; flags inputs outside
// the grid.
static __global__ void candidate_keys(const int32_t* __restrict__ c, int64_t n, int64_t volume, Triple ks, Triple st,
                                      Triple pd, Triple dl, Triple shape, Triple out_shape, bool transposed,
                                      int64_t* __restrict__ keys, ull* __restrict__ errors) {
  FASTPERC_GRID_LOOP(idx, n * volume) {
    const int64_t k = idx / n, i = idx - k * n;
    const int32_t* s = c + 4 * i;
    bool ok = s[0] >= 0 && s[0] < kSparseBatchLimit;
    for (int a = 0; a < 3; ++a) ok = ok && s[a + 1] >= 0 && s[a + 1] < shape.v[a];
    if (!ok) {
      if (k == 0) flag_row(errors, kOutsideGrid, i);
      keys[idx] = -1;
      continue;
    }
    const int64_t tap[3] = {k / (ks.v[1] * ks.v[2]), (k / ks.v[2]) % ks.v[1], k % ks.v[2]};
    int64_t o[3];
    for (int a = 0; a < 3 && ok; ++a)
      ok = target_of(s[a + 1], tap[a], st.v[a], pd.v[a], dl.v[a], transposed, o[a]) && o[a] >= 0 && o[a] < out_shape.v[a];
    keys[idx] = ok ? sparse_key(s[0], o[0], o[1], o[2]) : -1;
  }
}

static __global__ void unpack_keys(const int64_t* __restrict__ keys, int64_t n, int32_t* __restrict__ coords) {
  FASTPERC_GRID_LOOP(idx, 4 * n) { coords[idx] = sparse_key_part(keys[idx / 4], static_cast<int>(idx % 4)); }
}

// The op sparse_kernel_map on the launcher's device (the caller checked the device): (K, N_out).
template <typename Launch>
at::Tensor build_kernel_map(const Launch& launch, const at::Tensor& in_coords, const at::Tensor& out_coords,
                            at::IntArrayRef kernel_size, at::IntArrayRef stride, at::IntArrayRef padding,
                            at::IntArrayRef dilation, bool transposed) {
  check_sparse_coords(in_coords, "in_coords");
  check_sparse_coords(out_coords, "out_coords");
  const SparseConvGeometry geo = check_conv_geometry(kernel_size, stride, padding, dilation);
  const int64_t n_in = in_coords.size(0), n_out = out_coords.size(0), volume = geo.volume;
  check_map_size(volume, n_out, "the kernel map (K x N_out)");  // before any copy of the inputs
  const at::Tensor in_c = in_coords.contiguous();
  const at::Tensor out_c = out_coords.is_same(in_coords) ? in_c : out_coords.contiguous();
  int64_t slots = 16;
  while (slots < 2 * n_in) slots *= 2;
  at::Tensor keys = at::full({slots}, kEmptySlot, in_c.options().dtype(at::kLong));
  at::Tensor rows = at::empty({slots}, keys.options());
  at::Tensor errors = new_errors(in_c);
  if (n_in > 0)
    launch(grid_for(n_in), kThreads, insert_sites, in_c.const_data_ptr<int32_t>(), n_in, slots - 1,
           keys.data_ptr<int64_t>(), rows.data_ptr<int64_t>(), error_ptr(errors));
  if (n_out > 0 && !out_c.is_same(in_c))
    launch(grid_for(n_out), kThreads, check_sites, out_c.const_data_ptr<int32_t>(), n_out, error_ptr(errors));
  raise_flagged(errors, in_c, out_c, {});
  at::Tensor kmap = at::empty({volume, n_out}, in_c.options().dtype(at::kInt));
  if (n_out > 0)
    launch(grid_for(n_out * volume), kThreads, probe_map, out_c.const_data_ptr<int32_t>(), n_out, volume,
           triple_of(geo.ks), triple_of(geo.st), triple_of(geo.pd), triple_of(geo.dl), transposed,
           keys.const_data_ptr<int64_t>(),
           rows.const_data_ptr<int64_t>(), slots - 1, kmap.data_ptr<int32_t>());
  return kmap;
}

// The op sparse_out_coords on the launcher's device (the caller checked the device): the sorted
// output sites of a regular or transposed convolution.
template <typename Launch>
at::Tensor build_out_coords(const Launch& launch, const at::Tensor& in_coords, at::IntArrayRef kernel_size,
                            at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                            at::IntArrayRef spatial_shape, bool transposed) {
  check_sparse_coords(in_coords, "in_coords");
  const SparseConvGeometry geo = check_conv_geometry(kernel_size, stride, padding, dilation);
  const std::vector<int64_t> shape = check_triple(spatial_shape, "spatial_shape", 1);
  const std::vector<int64_t> out_shape = check_output_grid(geo, shape, transposed);
  const at::Tensor c = in_coords.contiguous();
  const int64_t n = c.size(0), volume = geo.volume;
  check_map_size(volume, n, "the candidate output sites (K x N_in)");
  at::Tensor keys = at::empty({n * volume}, c.options().dtype(at::kLong));
  at::Tensor errors = new_errors(c);
  if (n > 0)
    launch(grid_for(n * volume), kThreads, candidate_keys, c.const_data_ptr<int32_t>(), n, volume, triple_of(geo.ks),
           triple_of(geo.st), triple_of(geo.pd), triple_of(geo.dl), triple_of(shape), triple_of(out_shape), transposed,
           keys.data_ptr<int64_t>(), error_ptr(errors));
  raise_flagged(errors, c, c, shape);
  // Sorted unique keys; the -1 of "no output" sorts first and is dropped.
  at::Tensor unique = std::get<0>(at::unique_consecutive(std::get<0>(at::sort(keys))));
  if (unique.numel() > 0 && unique[0].item<int64_t>() < 0) unique = unique.slice(0, 1);
  const int64_t n_out = unique.numel();
  at::Tensor out = at::empty({n_out, 4}, c.options());
  if (n_out > 0)
    launch(grid_for(4 * n_out), kThreads, unpack_keys, unique.const_data_ptr<int64_t>(), n_out, out.data_ptr<int32_t>());
  return out;
}

}  // namespace sparse_map
}  // namespace cuda
}  // namespace fastperc
